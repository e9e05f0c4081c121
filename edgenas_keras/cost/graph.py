"""TFLite-operator-level view of a model: the one LUT key function and the block -> operator decomposition.

Everything that prices a model (latency from a LUT, peak SRAM, flash) works on an ``OpGraph``: the int8
operators the TFLite converter produces (BatchNorm folded into the convolution, ReLU6 fused as the
operator's activation), with their activation tensors. ``arch_graph`` derives it from an architecture
without building anything; ``edgenas_keras.tflite.model`` derives the same structure from any ``.tflite``
file, so one LUT prices our blocks and third-party models alike. Tests check that both agree on converted
models.

Pure Python: no TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgenas_keras.arch.plan import BlockPlan, block_choices, block_plan, plan, reachable_in_channels
from edgenas_keras.arch.plan import se_reduced_channels as se_reduced_channels  # re-exported (moved to arch.plan)
from edgenas_keras.arch.space import Arch, BlockSlot, SearchSpace


HW = tuple[int, int]

# Operators whose output height and width follow from the input, kernel, stride, dilation and padding.
WINDOW_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D")
# Operators whose output is 1x1 spatially in the default key (a global reduction, a dense layer).
_OUT_1X1_OPS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "FULLY_CONNECTED")


def hw_pair(value, name: str = "value") -> HW:
    """``(h, w)`` from an int (square) or a 2-sequence; both must be positive integers (``ValueError``)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
        h, w = (int(v) for v in value)
    else:
        h = w = int(value)
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return h, w


def _fmt_hw(hw: HW) -> str:
    """``3`` for a square pair (today's key text), ``10x4`` otherwise."""
    return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


def _parse_hw(text: str, key: str) -> HW:
    parts = text.split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise ValueError(f"malformed LUT key {key!r}: {text!r} is not N or HxW")
    return hw_pair(tuple(int(p) for p in parts) if len(parts) == 2 else int(parts[0]))


def default_out_hw(op: str, in_shape, kernel=1, stride=1, padding: str = "none", dilation=1) -> HW:
    """The output (H, W) a key implies when it does not spell the output shape out.

    Window operators (convolutions, pools): TFLite's SAME/VALID rule per side with the dilated kernel
    ``(k - 1) * d + 1`` (``conv_out``). ``TRANSPOSE_CONV``: ``h * s`` (SAME) or ``(h - 1) * s + k`` (VALID).
    Global reductions and FULLY_CONNECTED: 1x1. Everything else keeps the input's (H, W).
    """
    h, w = int(in_shape[0]), int(in_shape[1])
    (kh, kw), (sh, sw), (dh, dw) = hw_pair(kernel), hw_pair(stride), hw_pair(dilation)
    if op in WINDOW_OPS:
        return conv_out(h, (kh - 1) * dh + 1, sh, padding), conv_out(w, (kw - 1) * dw + 1, sw, padding)
    if op == "TRANSPOSE_CONV":
        if padding == "valid":
            return (h - 1) * sh + kh, (w - 1) * sw + kw
        return h * sh, w * sw
    if op in _OUT_1X1_OPS:
        return 1, 1
    return h, w


def lut_key(op: str, in_shape: tuple[int, int, int], out_channels: int, kernel=1, stride=1,
            padding: str = "none", activation: str = "none", variant: str = "", *, dilation=1,
            depth_multiplier: int = 1, out_hw: HW | None = None) -> str:
    """The one LUT key function (DESIGN.md section 4). Profilers that write LUTs and estimators that read
    them both call this. ``in_shape`` is the first input's (H, W, C); resolution is always an argument.

    ``kernel``, ``stride`` and ``dilation`` are an int (square) or an ``(h, w)`` pair. LUT format v1,
    extended compatibly: a square, undilated operator with depth multiplier 1 whose output (H, W) is the one
    ``default_out_hw`` implies gets exactly the historical key
    ``OP|in=HxWxC|out=C|k=K|s=S|p=PAD|act=ACT[|variant]``; otherwise ``k=KHxKW`` / ``s=SHxSW`` for unequal
    sides, and extra fields after ``act``: ``d=D`` or ``d=DHxDW`` (dilation != 1), ``dm=M`` (depth
    multiplier != 1), and ``out=OHxOWxOC`` replaces ``out=OC`` when ``out_hw`` differs from the implied one.
    ``variant`` distinguishes operators whose cost differs at the same shapes (``bcast`` for a MUL that
    broadcasts a 1x1xC gate over HxWxC). ``parse_key`` is the exact inverse. Raises ``ValueError`` for a
    non-positive kernel, stride, dilation or depth multiplier.
    """
    h, w, c = (int(v) for v in in_shape)
    k, s, d = hw_pair(kernel, "kernel"), hw_pair(stride, "stride"), hw_pair(dilation, "dilation")
    dm = int(depth_multiplier)
    if dm < 1:
        raise ValueError(f"depth_multiplier must be positive, got {depth_multiplier!r}")
    out = str(int(out_channels))
    if out_hw is not None:
        oh, ow = (int(v) for v in out_hw)
        if (oh, ow) != default_out_hw(op, (h, w, c), k, s, padding, d):
            out = f"{oh}x{ow}x{int(out_channels)}"
    key = f"{op}|in={h}x{w}x{c}|out={out}|k={_fmt_hw(k)}|s={_fmt_hw(s)}|p={padding}|act={activation}"
    if d != (1, 1):
        key += f"|d={_fmt_hw(d)}"
    if dm != 1:
        key += f"|dm={dm}"
    return key + (f"|{variant}" if variant else "")


def parse_key(key: str) -> dict:
    """Inverse of ``lut_key`` (for profilers that regenerate a single-operator model from its key, and for
    the analytical cycle models). Reads historical v1 keys and the extended fields alike.

    Returns ``op``, ``variant``, ``in_shape`` (H, W, C), ``out_channels``, ``out_shape`` (OH, OW, OC: from
    the key when spelled out, else ``default_out_hw``), ``kernel_hw``, ``stride_hw``, ``dilation_hw`` (pairs),
    ``depth_multiplier``, ``padding``, ``activation``; for square kernels/strides also the historical ints
    ``kernel`` and ``stride``. ``lut_key(op, in_shape, out_channels, kernel_hw, stride_hw, padding,
    activation, variant, dilation=dilation_hw, depth_multiplier=..., out_hw=out_shape[:2]) == key`` for every
    key ``lut_key`` writes. A malformed key raises ``ValueError``.
    """
    parts = key.split("|")
    out = {"op": parts[0], "variant": "", "kernel_hw": (1, 1), "stride_hw": (1, 1), "dilation_hw": (1, 1),
           "depth_multiplier": 1, "padding": "none", "activation": "none"}
    out_hw = None
    try:
        for p in parts[1:]:
            if "=" not in p:
                out["variant"] = p
                continue
            name, val = p.split("=", 1)
            if name == "in":
                out["in_shape"] = tuple(int(v) for v in val.split("x"))
                if len(out["in_shape"]) != 3:
                    raise ValueError("in= needs HxWxC")
            elif name == "out":
                dims = tuple(int(v) for v in val.split("x"))
                if len(dims) == 3:
                    out_hw, out["out_channels"] = dims[:2], dims[2]
                elif len(dims) == 1:
                    out["out_channels"] = dims[0]
                else:
                    raise ValueError("out= needs C or HxWxC")
            elif name in ("k", "s", "d"):
                out[{"k": "kernel_hw", "s": "stride_hw", "d": "dilation_hw"}[name]] = _parse_hw(val, key)
            elif name == "dm":
                out["depth_multiplier"] = int(val)
            elif name == "p":
                out["padding"] = val
            elif name == "act":
                out["activation"] = val
    except ValueError as exc:
        raise ValueError(f"malformed LUT key {key!r}: {exc}") from None
    if "in_shape" not in out or "out_channels" not in out:
        raise ValueError(f"malformed LUT key {key!r}")
    if out_hw is None:
        out_hw = default_out_hw(out["op"], out["in_shape"], out["kernel_hw"], out["stride_hw"], out["padding"],
                                out["dilation_hw"])
    out["out_shape"] = (int(out_hw[0]), int(out_hw[1]), out["out_channels"])
    for name in ("kernel", "stride"):
        hw = out[f"{name}_hw"]
        if hw[0] == hw[1]:
            out[name] = hw[0]
    return out


def spec_from_key(key: str) -> OpSpec:
    """The ``OpSpec`` a key describes (shapes and window attributes; no weight counts): what the analytical
    cycle models price and ``OpSpec.macs`` counts. ``spec_from_key(k).key == k``."""
    f = parse_key(key)
    return OpSpec(f["op"], f["in_shape"], f["out_shape"], f["kernel_hw"], f["stride_hw"], f["padding"],
                  f["activation"], f["variant"], dilation_hw=f["dilation_hw"],
                  depth_multiplier=f["depth_multiplier"])


def conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output length of a window operator along one side (TFLite): VALID ``(size - kernel) // stride + 1``
    (``kernel`` is the dilated extent), otherwise SAME ``ceil(size / stride)``."""
    if padding == "valid":
        return (size - kernel) // stride + 1
    return -(-size // stride)


@dataclass(frozen=True)
class OpSpec:
    """One int8 TFLite operator as the cost models see it.

    Shapes are (H, W, C) as the tensors have them (never squared). ``kernel_hw``, ``stride_hw`` and
    ``dilation_hw`` are (h, w) pairs; an int given for any of them means a square pair.
    ``depth_multiplier`` is DEPTHWISE_CONV_2D's (output channels = input channels x multiplier).
    """

    op: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel_hw: tuple[int, int] = (1, 1)
    stride_hw: tuple[int, int] = (1, 1)
    padding: str = "none"
    activation: str = "none"
    variant: str = ""
    weights: int = 0          # int8 weight elements
    bias: int = 0             # int32 bias elements
    quant_channels: int = 0   # per-channel quantisation parameters of the weights (0: none)
    batchnorm: bool = False   # trained with a BatchNormalization that the converter folds in (Keras: 4 params/ch)
    dilation_hw: tuple[int, int] = (1, 1)
    depth_multiplier: int = 1

    def __post_init__(self):
        for name in ("kernel_hw", "stride_hw", "dilation_hw"):
            object.__setattr__(self, name, hw_pair(getattr(self, name), name))
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "out_shape", tuple(int(v) for v in self.out_shape))

    @property
    def key(self) -> str:
        """This operator's LUT key (``lut_key``)."""
        return lut_key(self.op, self.in_shape, self.out_shape[2], self.kernel_hw, self.stride_hw, self.padding,
                       self.activation, self.variant, dilation=self.dilation_hw,
                       depth_multiplier=self.depth_multiplier, out_hw=self.out_shape[:2])

    @property
    def taps(self) -> int:
        """Filter taps per output element: kernel height x width (dilation spreads them, not adds)."""
        return self.kernel_hw[0] * self.kernel_hw[1]

    @property
    def macs(self) -> int:
        """Multiply-accumulates from the real shapes: CONV_2D OH*OW*OC*KH*KW*C_in, DEPTHWISE_CONV_2D
        OH*OW*OC*KH*KW (each output channel reads one input channel), FULLY_CONNECTED in elements x OC;
        0 for operators without weights (pools, elementwise, reductions)."""
        oh, ow, oc = self.out_shape
        if self.op == "CONV_2D":
            return oh * ow * oc * self.taps * self.in_shape[2]
        if self.op == "DEPTHWISE_CONV_2D":
            return oh * ow * oc * self.taps
        if self.op == "FULLY_CONNECTED":
            return self.in_shape[0] * self.in_shape[1] * self.in_shape[2] * oc
        return 0

    @property
    def params(self) -> int:
        """Weights plus biases (elements)."""
        return self.weights + self.bias


@dataclass
class OpNode:
    """One operator of an ``OpGraph``: its ``OpSpec``, the activation tensor ids it reads and the one it writes."""
    spec: OpSpec
    inputs: tuple[int, ...]   # activation tensor ids read
    output: int               # activation tensor id written


@dataclass
class OpGraph:
    """Operators in execution order over int8 activation tensors (sizes in bytes)."""

    tensor_bytes: list[int] = field(default_factory=list)
    nodes: list[OpNode] = field(default_factory=list)
    input_id: int = 0
    output_id: int = 0
    # Constant tensors (weights, biases, axes) in the flatbuffer; None: derive from the operators.
    n_constants: int | None = None

    def tensor(self, shape: tuple[int, ...]) -> int:
        """Register an activation tensor of ``shape`` (int8: one byte per element); returns its id."""
        n = 1
        for s in shape:
            n *= int(s)
        self.tensor_bytes.append(n)
        return len(self.tensor_bytes) - 1

    def add(self, spec: OpSpec, inputs: tuple[int, ...]) -> int:
        """Append an operator reading tensor ids ``inputs``; returns the id of its new output tensor."""
        out = self.tensor(spec.out_shape)
        self.nodes.append(OpNode(spec, tuple(inputs), out))
        self.output_id = out
        return out

    @property
    def constant_tensors(self) -> int:
        """Weights and bias of each weighted operator, MEAN's axis tensor (what the converter writes)."""
        if self.n_constants is not None:
            return self.n_constants
        return sum(2 if s.weights else 0 for s in self.specs) + sum(1 for s in self.specs if s.op == "MEAN")

    @property
    def all_tensors(self) -> int:
        """Activation plus constant tensors (what the flatbuffer and the arena's per-tensor overhead count)."""
        return len(self.tensor_bytes) + self.constant_tensors

    @property
    def specs(self) -> list[OpSpec]:
        """The operators' specs, in order."""
        return [n.spec for n in self.nodes]

    @property
    def op_types(self) -> list[str]:
        """The operators' builtin names, in order."""
        return [n.spec.op for n in self.nodes]

    @property
    def keys(self) -> list[str]:
        """The operators' LUT keys, in order."""
        return [n.spec.key for n in self.nodes]

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference."""
        return sum(s.macs for s in self.specs)

    @property
    def params(self) -> int:
        """Parameters of the int8 model (weights + biases, BatchNorm folded)."""
        return sum(s.params for s in self.specs)

    @property
    def keras_params(self) -> int:
        """Parameters of the Keras training model: a folded BN had gamma, beta, mean and variance (4 per
        channel) where the int8 model has one bias."""
        return self.params + sum(3 * s.out_shape[2] for s in self.specs if s.batchnorm)


# -- constructors of the operators our blocks use ----------------------------------------------------------

def conv2d(in_shape, out_c, kernel=1, stride=1, activation="none", padding="same", bn=True) -> OpSpec:
    """A CONV_2D on an (H, W, C) input with ``out_c`` filters of ``kernel`` x ``kernel`` (int8 weights,
    per-channel quantisation, int32 bias; batch norm folded when ``bn``).
    """
    h, w, c = in_shape
    out = (conv_out(h, kernel, stride, padding), conv_out(w, kernel, stride, padding), out_c)
    return OpSpec("CONV_2D", tuple(in_shape), out, kernel, stride, padding, activation,
                  weights=kernel * kernel * c * out_c, bias=out_c, quant_channels=out_c, batchnorm=bn)


def depthwise(in_shape, kernel, stride, activation="relu6", padding="same") -> OpSpec:
    """A DEPTHWISE_CONV_2D (multiplier 1) on an (H, W, C) input with a ``kernel`` x ``kernel`` window."""
    h, w, c = in_shape
    out = (conv_out(h, kernel, stride, padding), conv_out(w, kernel, stride, padding), c)
    return OpSpec("DEPTHWISE_CONV_2D", tuple(in_shape), out, kernel, stride, padding, activation,
                  weights=kernel * kernel * c, bias=c, quant_channels=c, batchnorm=True)


def _se(g: OpGraph, x: int, shape, cr: int) -> int:
    """Append squeeze-and-excitation over ``x`` (shape (H, W, C)) with a ``cr``-channel bottleneck."""
    h, w, c = shape
    pooled = g.add(OpSpec("MEAN", (h, w, c), (1, 1, c)), (x,))
    z = g.add(conv2d((1, 1, c), cr, activation="relu6", bn=False), (pooled,))
    gate = g.add(conv2d((1, 1, cr), c, activation="relu6", bn=False), (z,))
    return g.add(OpSpec("MUL", (h, w, c), (h, w, c), variant="bcast"), (x, gate))


def arch_graph(space: SearchSpace, arch: Arch, resolution: int | None = None) -> OpGraph:
    """The int8 TFLite operators of ``arch`` in ``space``, in execution order: the stem, each block as
    ``edgenas_keras.arch.plan.plan`` lays it out, the head.

    Args:
        space: the search space.
        arch: an architecture of ``space``.
        resolution: input side in pixels; None takes the space's (LUT keys carry it; nothing is hard-coded).

    Returns:
        The ``OpGraph`` (activation sizes in bytes, int8).

    Raises:
        ValueError: ``space`` does not allow ``arch``.
    """
    plans = plan(space, arch, resolution)
    res = resolution or space.resolution
    g = OpGraph()
    x = g.tensor((res, res, space.in_channels))
    g.input_id = x
    x = g.add(conv2d((res, res, space.in_channels), space.stem_channels, space.stem_kernel,
                     space.stem_stride, "relu6"), (x,))
    shape = g.nodes[-1].spec.out_shape
    for p in plans:
        x, shape = _add_block(g, x, shape, p)
    h, w, c = shape
    x = g.add(OpSpec("MEAN", (h, w, c), (1, 1, c)), (x,))
    fc = OpSpec("FULLY_CONNECTED", (1, 1, c), (1, 1, space.num_classes),
                weights=c * space.num_classes, bias=space.num_classes, quant_channels=1)
    x = g.add(fc, (x,))
    g.add(OpSpec("SOFTMAX", (1, 1, space.num_classes), (1, 1, space.num_classes)), (x,))
    return g


def reachable_keys(space: SearchSpace, resolutions: list[int] | None = None) -> list[str]:
    """Every LUT key any architecture of ``space`` can produce (stem, blocks, head), sorted.

    A block's input channels are the stem's or any earlier block's choice that only skips separate from it
    (``edgenas_keras.arch.plan.reachable_in_channels``); each slot contributes every legal block
    (``block_choices``) at each of them.

    Args:
        space: the search space.
        resolutions: input sides in pixels (each must divide by the total stride); None: the space's own.

    Returns:
        The sorted LUT keys.

    Raises:
        ValueError: a resolution is not divisible by the space's total stride.
    """
    keys: set[str] = set()
    for res in resolutions or [space.resolution]:
        sp = space.with_resolution(res) if res != space.resolution else space
        stem = conv2d((res, res, sp.in_channels), sp.stem_channels, sp.stem_kernel, sp.stem_stride, "relu6")
        keys.add(stem.key)
        reach = reachable_in_channels(sp)
        for slot, ins in zip(sp.slots, reach):
            for cin in sorted(ins):
                for b in block_choices(slot):
                    keys.update(spec.key for spec in block_specs(slot, cin, b))
        f = sp.final_resolution
        for cin in reach[-1]:
            keys.add(OpSpec("MEAN", (f, f, cin), (1, 1, cin)).key)
            keys.add(lut_key("FULLY_CONNECTED", (1, 1, cin), sp.num_classes))
        keys.add(lut_key("SOFTMAX", (1, 1, sp.num_classes), sp.num_classes))
    return sorted(keys)


def _add_block(g: OpGraph, x: int, shape, p: BlockPlan) -> tuple[int, tuple]:
    """Append the operators of the block ``p`` plans to ``g``, reading tensor ``x`` of ``shape`` (H, W, C with
    C == ``p.in_ch``); returns the output tensor and shape (skip adds nothing)."""
    if p.is_skip:
        return x, shape
    block_in = x
    if p.block.op == "ir":
        x = g.add(conv2d(shape, p.mid_ch, activation="relu6"), (x,))
        shape = g.nodes[-1].spec.out_shape
    x = g.add(depthwise(shape, p.block.kernel, p.stride), (x,))
    shape = g.nodes[-1].spec.out_shape
    if p.se_ch:
        x = _se(g, x, shape, p.se_ch)
    x = g.add(conv2d(shape, p.out_ch), (x,))
    shape = g.nodes[-1].spec.out_shape
    if p.residual:
        x = g.add(OpSpec("ADD", shape, shape), (block_in, x))
    return x, shape


def block_specs(slot: BlockSlot, cin: int, block) -> list[OpSpec]:
    """The int8 operators of one block at ``slot`` (at the slot's input resolution).

    Args:
        slot: the searchable position.
        cin: the block's input channels.
        block: the block's choice (``edgenas_keras.arch.space.Block``).

    Returns:
        Its operators in execution order (empty for skip).
    """
    g = OpGraph()
    x = g.tensor((slot.in_res, slot.in_res, cin))
    _add_block(g, x, (slot.in_res, slot.in_res, cin), block_plan(slot, cin, block))
    return g.specs
