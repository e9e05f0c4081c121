"""Search space, codec and index form."""

import math

import numpy as np
import pytest

from edgenas_keras.arch.space import Arch, Block, SearchSpace, canonical, decode, encode


@pytest.fixture(scope="module")
def space():
    return SearchSpace.load()


def test_default_space_has_seven_blocks_and_exact_cardinality(space):
    assert space.num_blocks == 7
    # per block: dws 3k*3se*5c = 45, ir 45*3e = 135, + skip where the stride is 1
    per = [181 if s == 1 else 180 for s in space.strides]
    assert space.cardinality == math.prod(per) == 181**4 * 180**3
    assert [s.in_res for s in space.slots] == [48, 48, 24, 24, 12, 12, 6]


def test_codec_round_trip_10000(space):
    archs = space.sample(10_000, seed=7)
    for a in archs:
        s = encode(a)
        assert decode(s) == a
        assert space.contains(a)
    assert len({encode(a) for a in archs}) > 9_900  # the sampler explores, it does not repeat


def test_decode_accepts_any_factor_order_and_canonicalises():
    assert canonical("ir_c32_se4_e6_k3-skip") == "ir_k3_e6_se4_c32-skip"
    assert decode("dws_k5_c24").blocks[0] == Block("dws", 5, None, 0, 24)


@pytest.mark.parametrize("text, token, position", [
    ("ir_k3_e4_c16-dws_k5_x24", "dws_k5_x24", 2),
    ("conv_k3_c16", "conv_k3_c16", 1),
    ("ir_k3_c16", "ir_k3_c16", 1),            # ir without expansion
    ("dws_k3_e2_c16", "dws_k3_e2_c16", 1),    # dws with expansion
    ("skip-skip_c16", "skip_c16", 2),
    ("ir_k3_e4_c16--skip", "", 2),
    ("ir_k3_k5_e4_c16", "ir_k3_k5_e4_c16", 1),
])
def test_malformed_strings_name_the_token_and_position(text, token, position):
    with pytest.raises(ValueError) as e:
        decode(text)
    assert f"block {position} token {token!r}" in str(e.value)


def test_contains_rejects_skip_at_stride_two_and_unknown_values(space):
    ok = space.sample(seed=1)
    blocks = list(ok.blocks)
    blocks[1] = Block("skip")  # block 2 has stride 2
    assert not space.contains(Arch(tuple(blocks)))
    blocks = list(ok.blocks)
    blocks[0] = Block("dws", 9, None, 0, 16)
    with pytest.raises(ValueError, match="kernel 9"):
        space.check(Arch(tuple(blocks)))
    assert not space.contains(Arch(ok.blocks[:6]))


def test_index_form_round_trip_and_seeded_sampling(space):
    a, b = space.sample(50, seed=3), space.sample(50, seed=3)
    assert a == b
    assert a != space.sample(50, seed=4)
    for arch in a:
        idx = space.to_indices(arch)
        assert idx.shape == (7, 5)
        assert space.from_indices(idx) == arch


def test_user_space_file_is_validated(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("resolution: 64\nstem: {out_channels: 8}\nblocks: [{stride: 3}]\nchoices: {op: [dws]}\n")
    with pytest.raises(ValueError, match=r"blocks\[0\].stride"):
        SearchSpace.load(p)
    p.write_text("resolution: 64\nin_channels: 1\nstem: {out_channels: 8}\nblocks: [{stride: 1}, {stride: 2}]\n"
                 "choices: {op: [dws, skip], kernel: [3], expansion: [2], se: [0], channels: [8, 16]}\n")
    sp = SearchSpace.load(p)
    assert sp.num_blocks == 2 and sp.cardinality == (2 + 1) * 2
    assert np.all(sp.to_indices(sp.sample(seed=0)) >= 0)
