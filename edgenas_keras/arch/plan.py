"""The block plan: what each block of an architecture is, worked out once. Pure Python: no TensorFlow here.

Every interpreter of an architecture (the Keras builder ``edgenas_keras.model.builder.build_model``, the
int8 operator graph ``edgenas_keras.cost.graph.arch_graph`` and through it the LUT keys and the cost tables,
and ``reachable_keys``) reads the rules of a block from here instead of re-deriving them:

- a block's input channels are the output channels of the last non-skip block before it, or the stem's
  (``plan`` threads them once from the stem, as timm's ``EfficientNetBuilder`` threads ``in_chs``);
- an inverted residual expands to ``in_ch * e`` channels, a depthwise-separable block runs its depthwise
  convolution on its ``in_ch`` input channels;
- the squeeze-and-excitation bottleneck has ``se_reduced_channels(mid_ch, r)`` channels;
- the residual ADD applies exactly when ``has_residual(stride, in_ch, out_ch)``: the one place that rule is
  written in the library.

The supernet (``edgenas_keras.model.supernet``) samples a path per step and knows its input channel count
only as a tensor (threaded from block to block), so it cannot call ``plan``. Its residual mask
``tf.equal(cin, c_sel)``, applied only on stride-1 slots, is the per-sample tensor form of the same rule
(``tests/arch/test_plan.py`` checks that it adds the residual exactly where ``plan`` says, on fixed paths).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from edgenas_keras.arch.space import Arch, Block, BlockSlot, SearchSpace


def se_reduced_channels(channels: int, ratio: int) -> int:
    """Channels of the squeeze-and-excitation bottleneck: ``channels // ratio``, at least 8 (tiny bottlenecks
    quantise badly).

    Args:
        channels: channels the SE gate scales (the depthwise convolution's output channels).
        ratio: the reduction ``r`` (> 0).

    Returns:
        The bottleneck's channel count.
    """
    return max(8, channels // ratio)


def has_residual(stride: int, in_channels: int, out_channels: int) -> bool:
    """Whether a convolution block adds its input to its output (the residual ADD): the input and output
    tensors must have the same shape, i.e. stride 1 and equal channel counts.

    The one place this rule is written in the library (``plan``, ``block_plan`` and everything that reads
    them use it; the supernet applies its tensor form, see the module docstring).

    Args:
        stride: the block's stride (1 or 2).
        in_channels: channels of the block's input.
        out_channels: channels of the block's output (its projection).

    Returns:
        True when the block has a residual ADD.
    """
    return stride == 1 and in_channels == out_channels


def _same_out(size: int, stride: int) -> int:
    """Output side in pixels of a SAME-padded window operator (TFLite and Keras): ``ceil(size / stride)``."""
    return -(-size // stride)


@dataclass(frozen=True)
class BlockPlan:
    """One block of an architecture with every width and shape its interpreters need.

    Attributes:
        index: the block's position in the space (0-based).
        block: the block's choice.
        stride: the slot's stride (1 or 2).
        in_res: input side in pixels (square).
        out_res: output side in pixels (``in_res`` for skip).
        in_ch: input channels: the output channels of the last non-skip block before it, or the stem's.
        out_ch: output channels: ``block.channels``, or ``in_ch`` for skip.
        mid_ch: channels of the depthwise convolution: ``in_ch * e`` for ir, ``in_ch`` for dws, 0 for skip.
        se_ch: SE bottleneck channels ``se_reduced_channels(mid_ch, r)``; 0 without SE (and for skip).
        residual: ``has_residual(stride, in_ch, out_ch)`` for a convolution block; False for skip.
    """

    index: int
    block: Block
    stride: int
    in_res: int
    out_res: int
    in_ch: int
    out_ch: int
    mid_ch: int
    se_ch: int
    residual: bool

    @property
    def is_skip(self) -> bool:
        """True for a skip block (an identity: no operators)."""
        return self.block.op == "skip"


def block_plan(slot: BlockSlot, in_ch: int, block: Block, in_res: int | None = None) -> BlockPlan:
    """The plan of one block at ``slot`` with ``in_ch`` input channels.

    Does not check that ``slot`` allows ``block`` (``SearchSpace.check`` does, and ``plan`` calls it).

    Args:
        slot: the searchable position (stride, input resolution, index).
        in_ch: channels of the block's input (> 0).
        block: the block's choice.
        in_res: input side in pixels; None takes ``slot.in_res`` (the space's own resolution).

    Returns:
        The block's ``BlockPlan``.

    Raises:
        ValueError: ``in_ch`` or ``in_res`` is not positive, or a skip sits at a stride other than 1 (an
            identity cannot change the shape).
    """
    res = slot.in_res if in_res is None else in_res
    if in_ch < 1 or res < 1:
        raise ValueError(f"block {slot.index + 1}: input must have positive channels and side, got "
                         f"{in_ch} channels at {res} px")
    if block.op == "skip":
        if slot.stride != 1:
            raise ValueError(f"block {slot.index + 1}: skip needs stride 1, the slot has stride {slot.stride}")
        return BlockPlan(slot.index, block, slot.stride, res, res, in_ch, in_ch, 0, 0, False)
    mid = in_ch * block.expansion if block.op == "ir" else in_ch
    se_ch = se_reduced_channels(mid, block.se) if block.se else 0
    return BlockPlan(slot.index, block, slot.stride, res, _same_out(res, slot.stride), in_ch, block.channels,
                     mid, se_ch, has_residual(slot.stride, in_ch, block.channels))


def plan(space: SearchSpace, arch: Arch, resolution: int | None = None) -> tuple[BlockPlan, ...]:
    """Every block of ``arch`` in ``space``, channels threaded once from the stem through skips.

    Args:
        space: the search space.
        arch: an architecture of ``space``.
        resolution: input side in pixels; None takes ``space.resolution``. Sides follow TensorFlow's SAME
            padding (``ceil(side / stride)``), so any positive resolution works, as in ``arch_graph``.

    Returns:
        One ``BlockPlan`` per block, in order. The head reads ``plans[-1].out_ch`` channels at
        ``plans[-1].out_res`` pixels.

    Raises:
        ValueError: ``space`` does not allow ``arch`` (the message names the first offending block).
    """
    space.check(arch)
    res = _same_out(resolution or space.resolution, space.stem_stride)
    ch = space.stem_channels
    out = []
    for slot, b in zip(space.slots, arch.blocks):
        p = block_plan(slot, ch, b, in_res=res)
        out.append(p)
        res, ch = p.out_res, p.out_ch
    return tuple(out)


def block_choices(slot: BlockSlot) -> Iterator[Block]:
    """Every legal block of ``slot``: each allowed operation with each of its factors' values (skip once,
    where legal; dws without an expansion). ``sum(1 for _ in block_choices(s)) == s.cardinality``.

    Args:
        slot: the searchable position.

    Returns:
        An iterator of ``Block``, operations in the slot's order, then kernel, expansion, se, channels.
    """
    c = slot.choices
    for op in slot.ops:
        if op == "skip":
            yield Block("skip")
            continue
        for k in c["kernel"]:
            for e in (c["expansion"] if op == "ir" else (None,)):
                for se in c["se"]:
                    for cout in c["channels"]:
                        yield Block(op, k, e, se, cout)


def reachable_in_channels(space: SearchSpace) -> tuple[frozenset[int], ...]:
    """The channel counts each block's input can have over all architectures of ``space``, and the head's.

    Args:
        space: the search space.

    Returns:
        ``num_blocks + 1`` sets of channel counts: entry i for block i's input, the last for the head's.
    """
    reach = frozenset({space.stem_channels})
    out = [reach]
    for slot in space.slots:
        # The output channels of every (input, legal choice) pair: a legal skip passes each input through.
        reach = frozenset(block_plan(slot, cin, b).out_ch for cin in reach for b in block_choices(slot))
        out.append(reach)
    return tuple(out)
