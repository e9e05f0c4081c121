"""The block plan (``edgenas_keras.arch.plan``) against every interpreter of an architecture: the int8 operator
graph (``cost.graph.arch_graph``), the LUT keys (``reachable_keys``), the Keras builder and the supernet."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas_keras.arch.plan import (BlockPlan, block_choices, block_plan, has_residual, plan,
                                     reachable_in_channels, se_reduced_channels)
from edgenas_keras.arch.space import Arch, Block, SearchSpace, decode
from edgenas_keras.cost.graph import OpSpec, arch_graph, block_specs, lut_key, reachable_keys

# len(reachable_keys(SearchSpace.load())) and len(reachable_keys(SearchSpace.load(), [64, 96, 128])), measured
# at commit f864f4b, before reachable_keys read the plan (its own nested loop over op, k, e, se, c).
REACHABLE_KEYS_DEFAULT = 633
REACHABLE_KEYS_64_96_128 = 1395


@pytest.fixture(scope="module")
def space():
    return SearchSpace.load()


def _hand_plan(space, arch):
    """The rules written out independently of the library: (in_ch, out_ch, mid_ch, residual) per block."""
    c, rows = space.stem_channels, []
    for stride, b in zip(space.strides, arch.blocks):
        if b.op == "skip":
            rows.append((c, c, 0, False))
            continue
        mid = c * b.expansion if b.op == "ir" else c
        rows.append((c, b.channels, mid, stride == 1 and c == b.channels))
        c = b.channels
    return rows


def test_has_residual_is_stride_one_and_equal_channels():
    assert has_residual(1, 16, 16)
    assert not has_residual(2, 16, 16)
    assert not has_residual(1, 16, 24)
    assert not has_residual(2, 16, 24)


def test_plan_threads_channels_through_skips_from_the_stem(space):
    arch = decode("ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c24-dws_k3_c24-ir_k5_e2_c48-skip")
    p = plan(space, arch)
    assert all(isinstance(b, BlockPlan) for b in p)
    assert [b.in_ch for b in p] == [16, 16, 24, 24, 24, 24, 48]
    assert [b.out_ch for b in p] == [16, 24, 24, 24, 24, 48, 48]
    assert [b.mid_ch for b in p] == [64, 16, 0, 144, 24, 48, 0]
    assert [b.se_ch for b in p] == [0, 0, 0, se_reduced_channels(144, 4), 0, 0, 0] == [0, 0, 0, 36, 0, 0, 0]
    # Block 4 keeps 24 channels but has stride 2; block 5 (stride 1, 24 -> 24) adds its input.
    assert [b.residual for b in p] == [True, False, False, False, True, False, False]
    assert [b.in_res for b in p] == [48, 48, 24, 24, 12, 12, 6]
    assert [b.out_res for b in p] == [48, 24, 24, 12, 12, 6, 6]
    assert space.channels_in(arch) == [b.in_ch for b in p] and space.out_channels(arch) == 48


def test_plan_follows_a_resolution_override_and_rejects_foreign_archs(space):
    arch = space.sample(seed=3)
    assert [b.in_res for b in plan(space, arch, 64)] == [s.in_res for s in space.with_resolution(64).slots]
    assert plan(space, arch, 64)[-1].out_res == space.with_resolution(64).final_resolution == 4
    with pytest.raises(ValueError, match="block 2"):
        plan(space, Arch((Block("skip"),) * 7))   # block 2 has stride 2
    with pytest.raises(ValueError, match="skip needs stride 1"):
        block_plan(space.slots[1], 16, Block("skip"))


def test_block_choices_enumerate_each_slot_once(space):
    d = space.to_dict()
    d["blocks"][3]["choices"] = {"op": ["dws", "skip"], "se": [0], "channels": [24, 40]}   # stride 2: no skip
    custom = SearchSpace.from_dict(d)
    for sp in (space, custom):
        for slot in sp.slots:
            blocks = list(block_choices(slot))
            assert len(blocks) == len(set(blocks)) == slot.cardinality
            assert all(sp.contains(Arch(tuple(b if i == slot.index else sp.sample(seed=1).blocks[i]
                                              for i in range(sp.num_blocks))))
                       for b in blocks[:: max(1, len(blocks) // 7)])
    assert [b.op for b in block_choices(custom.slots[3])] == ["dws"] * 6


def test_plan_equals_the_operator_graph_for_200_architectures(space):
    for arch in space.sample(200, seed=16):
        p = plan(space, arch)
        assert [(b.in_ch, b.out_ch, b.mid_ch, b.residual) for b in p] == _hand_plan(space, arch)
        g = arch_graph(space, arch)
        nodes = g.nodes
        convs = [b for b in p if not b.is_skip]
        dws = [i for i, n in enumerate(nodes) if n.spec.op == "DEPTHWISE_CONV_2D"]
        assert len(dws) == len(convs)
        # A block runs from its expansion (ir) or depthwise conv to the next block's first operator; the head
        # is the last three (MEAN, FULLY_CONNECTED, SOFTMAX).
        starts = [i - (b.block.op == "ir") for i, b in zip(dws, convs)]
        x = nodes[0].output                       # the stem's output: the first block's input tensor
        for b, lo, hi, dw_at in zip(convs, starts, starts[1:] + [len(nodes) - 3], dws):
            seg = nodes[lo:hi]
            first = seg[0]
            assert first.inputs == (x,) and first.spec.in_shape == (b.in_res, b.in_res, b.in_ch)
            if b.block.op == "ir":
                assert first.spec.op == "CONV_2D" and first.spec.out_shape[2] == b.mid_ch
            dw = nodes[dw_at].spec
            assert dw.in_shape[2] == b.mid_ch and dw.out_shape == (b.out_res, b.out_res, b.mid_ch)
            seg = nodes[dw_at:hi]
            if b.se_ch:
                assert [n.spec.op for n in seg[1:5]] == ["MEAN", "CONV_2D", "CONV_2D", "MUL"]
                assert seg[2].spec.out_shape[2] == b.se_ch
            adds = [n for n in seg if n.spec.op == "ADD"]
            assert len(adds) == int(b.residual)
            assert all(a.inputs[0] == x for a in adds)
            proj = [n for n in seg if n.spec.op == "CONV_2D"][-1].spec
            assert proj.out_shape == (b.out_res, b.out_res, b.out_ch)
            x = seg[-1].output
        if not convs:
            continue
        head = nodes[-3]
        assert head.spec.op == "MEAN" and head.inputs == (x,) and head.spec.in_shape[2] == p[-1].out_ch
        # The per-block operators are the ones block_specs prices (the cost tables' unit).
        blocks = [k for b in convs for k in (s.key for s in block_specs(space.slots[b.index], b.in_ch, b.block))]
        assert blocks == g.keys[1:-3]


@pytest.mark.slow
def test_reachable_keys_are_those_of_the_plan_and_unchanged(space):
    keys = reachable_keys(space)
    assert len(keys) == REACHABLE_KEYS_DEFAULT
    assert len(reachable_keys(space, [64, 96, 128])) == REACHABLE_KEYS_64_96_128
    seen = set()
    for arch in space.sample(300, seed=5):
        seen.update(arch_graph(space, arch).keys)
    assert seen <= set(keys)
    reach = reachable_in_channels(space)
    assert len(reach) == space.num_blocks + 1
    assert reach[0] == {space.stem_channels} and reach[-1] == {16, 24, 32, 48, 64}
    # Every plan's input channels are reachable, and every block key comes from block_choices at one of them.
    for arch in space.sample(300, seed=6):
        for b in plan(space, arch):
            assert b.in_ch in reach[b.index]
    from_choices = {s.key for slot, ins in zip(space.slots, reach) for cin in ins
                    for b in block_choices(slot) for s in block_specs(slot, cin, b)}
    assert from_choices <= set(keys)
    # The rest: the stem, and the head (MEAN and FULLY_CONNECTED at each final width, SOFTMAX).
    f, n = space.final_resolution, space.num_classes
    head = {k for c in reach[-1] for k in (OpSpec("MEAN", (f, f, c), (1, 1, c)).key,
                                            lut_key("FULLY_CONNECTED", (1, 1, c), n))}
    stem = arch_graph(space, space.sample(seed=0)).keys[0]
    assert set(keys) == from_choices | head | {stem, lut_key("SOFTMAX", (1, 1, n), n)}


@pytest.mark.slow
def test_keras_model_has_the_plans_adds_and_widths(space):
    from edgenas_keras.model.builder import build_model

    small = space.with_resolution(32)
    archs = small.sample(3, seed=21) + [decode("ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c24-dws_k3_c24-"
                                               "ir_k5_e2_c48-skip")]
    for arch in archs:
        p = plan(small, arch)
        model = build_model(small, arch)
        names = {layer.name: layer for layer in model.layers}
        adds = sorted(int(n[1:].split("_")[0]) for n in names if n.endswith("_add"))
        assert adds == [b.index for b in p if b.residual], str(arch)
        for b in p:
            n = f"b{b.index}"
            if b.is_skip:
                assert not any(k.startswith(f"{n}_") for k in names)
                continue
            assert names[f"{n}_dw"].output.shape[1:] == (b.out_res, b.out_res, b.mid_ch)
            assert names[f"{n}_project_conv"].filters == b.out_ch
            if b.block.op == "ir":
                assert names[f"{n}_expand_conv"].filters == b.mid_ch
                assert names[f"{n}_expand_conv"].input.shape[-1] == b.in_ch
            else:
                assert f"{n}_expand_conv" not in names
            if b.se_ch:
                assert names[f"{n}_sereduce"].filters == b.se_ch


@pytest.mark.slow
def test_supernet_paths_add_the_residual_where_the_plan_does(space):
    """The supernet threads its input channel count as a tensor and masks the residual with ``cin == c`` on
    stride-1 slots. On fixed one-hot paths: the count it threads equals the plan's ``in_ch`` at every block,
    and with the projection zeroed (its batch norm then outputs beta = 0) a convolution block's output is
    non-zero exactly when the residual is added."""
    import tensorflow as tf

    from edgenas_keras.model.supernet import Supernet
    from edgenas_keras.search.selection import one_hot_gates

    small = space.with_resolution(32)
    net = Supernet(small)

    def bn(x, gamma, beta):
        return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=1e-3, is_training=True)[0]

    images = tf.constant(np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32))
    forced = decode("ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c24-dws_k3_c24-ir_k5_e2_c48-skip")
    archs = [forced] + small.sample(5, seed=31)
    assert any(b.residual for a in archs for b in plan(small, a))
    for arch in archs:
        gates = tf.constant(one_hot_gates(small, small.to_indices(arch)))
        x = tf.nn.relu6(bn(tf.nn.conv2d(images, net.stem_w, small.stem_stride, "SAME"), *net.stem_bn))
        cin = tf.constant(float(small.stem_channels))
        for b, blk in zip(plan(small, arch), net.blocks):
            assert float(cin) == b.in_ch, (str(arch), b.index)
            if not b.is_skip:
                zeroed = dict(blk, proj_w=tf.zeros_like(blk["proj_w"]))
                probe, _ = net._block(zeroed, x, cin, gates[b.index], bn)
                assert bool(tf.reduce_any(probe != 0)) == b.residual, (str(arch), b.index)
            x, cin = net._block(blk, x, cin, gates[b.index], bn)
            assert float(cin) == b.out_ch
