"""Non-square kernels, pools and strides, dilation and depth multipliers: every attribute that changes an
operator's work is in its LUT key and in the cost models (issue 11, item 4).

Each test converts its own small Keras models to full int8 and checks against the converted file's own
tensor shapes: MACs, keys, analytical prices, CMSIS-NN scratch, ``edgenas analyze`` and the measured host
table (a missing key is a clear error; ``edgenas lut build --model`` builds it)."""

import json
import math

import numpy as np
import pytest

from edgenas_keras import lut as lutmod
from edgenas_keras.lut import measure as lut_build
from edgenas_keras.lut import analytical as lut_models
from edgenas_keras.cost.estimate import cmsis_nn_scratch
from edgenas_keras.errors import MissingLutKeysError
from edgenas_keras.model.export import random_representative, to_int8_tflite
from edgenas_keras.cost.graph import OpNode, lut_key, parse_key, reachable_keys, spec_from_key
from edgenas_keras.arch.space import SearchSpace
from edgenas_keras.tflite.model import parse
from pipeline.cli import main

# the analytical tables by their shipped names (the cortex-m4/m7/riscv names are the emulated tables, which
# list the space's keys only; their analytical models ship as <device>-analytical)
DEVICES = tuple(d if f"{d}-analytical" not in lutmod.shipped_devices() else f"{d}-analytical"
                for d in lut_models.DEVICES)


def _convert(layers_fn, shape, seed=0, batch=None) -> bytes:
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    x = keras.Input(shape, batch_size=batch)
    model = keras.Model(x, layers_fn(keras.layers, x))
    return to_int8_tflite(model, random_representative(shape, n=4, seed=seed))


def _kws_like(L, x):
    """50x7x1 -> 10x4 conv stride (2, 1) -> 1x3 -> 3x1 -> depthwise x2 -> Keras-dilated 3x3 -> 25x5 pool -> dense."""
    x = L.Conv2D(16, (10, 4), strides=(2, 1), padding="same", activation="relu")(x)   # 25x7x16
    x = L.Conv2D(16, (1, 3), padding="valid", activation="relu")(x)                    # 25x5x16
    x = L.Conv2D(16, (3, 1), padding="same", activation="relu")(x)                     # 25x5x16
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(x)  # 25x5x32
    x = L.Conv2D(16, 3, dilation_rate=2, padding="same")(x)                            # 25x5x16 (space-to-batch)
    x = L.AveragePooling2D((25, 5))(x)                                                 # 1x1x16
    return L.Dense(4)(L.Flatten()(x))


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    data = _convert(_kws_like, (50, 7, 1))
    path = tmp_path_factory.mktemp("nonsquare") / "kws_like.tflite"
    path.write_bytes(data)
    return path, parse(data), _runtime_shapes(data)


@pytest.fixture(scope="module")
def kws_fixed(tmp_path_factory):
    """The same layers exported with a fixed batch of 1: a native dilated CONV_2D, which analyze accepts (it
    refuses the space-to-batch form TFLM runs wrong, tests/tflite/test_shape_consistency.py)."""
    data = _convert(_kws_like, (50, 7, 1), batch=1)
    path = tmp_path_factory.mktemp("nonsquare_fixed") / "kws_fixed.tflite"
    path.write_bytes(data)
    return path, parse(data), _runtime_shapes(data)


def _runtime_shapes(data: bytes) -> dict[int, tuple[int, ...]]:
    """Every tensor's shape as the TFLite runtime allocates it (the file stores batch 1 even where
    SPACE_TO_BATCH_ND makes it 4 at run time)."""
    import tensorflow as tf

    it = tf.lite.Interpreter(model_content=data)
    it.allocate_tensors()
    return {d["index"]: tuple(int(v) for v in d["shape"]) for d in it.get_tensor_details()}


def _macs_from_tensors(shapes, o) -> int:
    """MACs of a convolution from the runtime's tensor shapes: output [N, OH, OW, OC], weights
    CONV_2D [OC, KH, KW, IC] (N*OH*OW*OC*KH*KW*IC), DEPTHWISE_CONV_2D [1, KH, KW, OC] (N*OH*OW*OC*KH*KW)."""
    out, w = shapes[o.outputs[0]], shapes[o.inputs[1]]
    return int(np.prod(out)) * w[1] * w[2] * (w[3] if o.op == "CONV_2D" else 1)


def _key_with(keys, *parts):
    hits = [k for k in keys if all(p in k for p in parts)]
    assert len(hits) == 1, (parts, keys)
    return hits[0]


# -- keys --------------------------------------------------------------------------------------------------

def test_square_keys_are_todays_strings_and_shipped_tables_stay_valid():
    assert lut_key("CONV_2D", (96, 96, 3), 16, 3, 2, "same", "relu6") == "CONV_2D|in=96x96x3|out=16|k=3|s=2|p=same|act=relu6"
    assert lut_key("CONV_2D", (96, 96, 3), 16, (3, 3), (2, 2), "same", "relu6", dilation=(1, 1),
                   depth_multiplier=1, out_hw=(48, 48)) == "CONV_2D|in=96x96x3|out=16|k=3|s=2|p=same|act=relu6"
    assert lut_key("MUL", (6, 6, 32), 32, variant="bcast") == "MUL|in=6x6x32|out=32|k=1|s=1|p=none|act=none|bcast"
    # The search space is all square: none of its keys carries an extended field.
    for k in reachable_keys(SearchSpace.load()):
        assert "x" not in k.split("|k=")[1] and "|d=" not in k and "|dm=" not in k, k
    for device in lutmod.shipped_devices():
        t = lutmod.load_device(device)   # checksums in lut_assets/manifest.json still match
        for k in t.entries:
            assert spec_from_key(k).key == k


@pytest.mark.parametrize("key", [
    lut_key("CONV_2D", (50, 7, 1), 16, (10, 4), (2, 1), "same", "relu"),
    lut_key("CONV_2D", (25, 7, 16), 16, (1, 3), 1, "valid"),
    lut_key("CONV_2D", (16, 16, 8), 8, 3, 1, "same", dilation=2),
    lut_key("CONV_2D", (16, 16, 8), 8, (3, 2), (2, 1), "valid", dilation=(2, 1)),
    lut_key("DEPTHWISE_CONV_2D", (25, 5, 16), 32, 3, 1, "same", "relu", depth_multiplier=2),
    lut_key("AVERAGE_POOL_2D", (25, 5, 16), 16, (25, 5), (25, 5), "valid"),
    lut_key("CONV_2D", (40, 10, 16), 16, 3, 1, "valid", out_hw=(32, 8)),     # a space-to-batch convolution
    lut_key("RESHAPE", (1, 1, 16), 16, out_hw=(4, 4)),
    lut_key("MUL", (6, 6, 32), 32, variant="bcast"),
])
def test_parse_key_is_the_exact_inverse(key):
    f = parse_key(key)
    again = lut_key(f["op"], f["in_shape"], f["out_channels"], f["kernel_hw"], f["stride_hw"], f["padding"],
                    f["activation"], f["variant"], dilation=f["dilation_hw"], depth_multiplier=f["depth_multiplier"],
                    out_hw=f["out_shape"][:2])
    assert again == key and spec_from_key(key).key == key


def test_extended_fields_are_parsed():
    f = parse_key("CONV_2D|in=50x7x1|out=16|k=10x4|s=2x1|p=same|act=relu")
    assert f["kernel_hw"] == (10, 4) and f["stride_hw"] == (2, 1) and f["out_shape"] == (25, 7, 16)
    assert "kernel" not in f and "stride" not in f           # no squared stand-in for a non-square window
    f = parse_key("DEPTHWISE_CONV_2D|in=16x16x8|out=16|k=3|s=1|p=valid|act=relu6|d=2|dm=2")
    assert f["dilation_hw"] == (2, 2) and f["depth_multiplier"] == 2 and f["out_shape"] == (12, 12, 16)
    assert parse_key("AVERAGE_POOL_2D|in=25x5x16|out=16|k=25x5|s=25x5|p=valid|act=none")["out_shape"] == (1, 1, 16)
    for bad in ("CONV_2D|in=3x3|out=2", "CONV_2D|in=3x3x1|out=2|k=0", "CONV_2D|in=3x3x1|out=2|k=3x",
                "CONV_2D|in=3x3x1|out=1x2", "CONV_2D|in=3x3x1|out=2|dm=x"):
        with pytest.raises(ValueError, match="malformed LUT key"):
            parse_key(bad)


# -- converted models: MACs, keys, memory ------------------------------------------------------------------

@pytest.mark.slow
def test_macs_and_keys_come_from_the_real_shapes(kws):
    _, m, shapes = kws
    graph = m.graph()
    convs = [(o, s) for o, s in zip(m.operators, graph.specs) if o.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) >= 5
    for o, s in convs:
        assert s.macs == _macs_from_tensors(shapes, o), s.key
    keys = graph.keys
    k104 = _key_with(keys, "CONV_2D|in=50x7x1|", "k=10x4|s=2x1|p=same")
    assert graph.specs[keys.index(k104)].macs == 25 * 7 * 16 * 10 * 4    # 112,000, not 10x10's 280,000
    assert _key_with(keys, "CONV_2D|in=25x7x16|out=16|k=1x3|s=1|p=valid")
    assert _key_with(keys, "CONV_2D|in=25x5x16|out=16|k=3x1|s=1|p=same")
    dw = _key_with(keys, "DEPTHWISE_CONV_2D|in=25x5x16|out=32|", "|dm=2")
    assert graph.specs[keys.index(dw)].macs == 25 * 5 * 32 * 9
    pool = _key_with(keys, "AVERAGE_POOL_2D|in=25x5x16|out=16|k=25x5|s=25x5|p=valid")
    assert spec_from_key(pool).out_shape == (1, 1, 16)                   # not zero output columns
    # Keras' dilation_rate converts to space-to-batch: the CONV_2D runs on 4 tiles (the file says batch 1);
    # all of their work counts: 4 x 13x3x16 outputs x 3x3x32 taps.
    tiled = [s for o, s in convs if shapes[o.outputs[0]][0] == 4]
    assert len(tiled) == 1 and tiled[0].macs == 4 * 13 * 3 * 16 * 9 * 32
    assert tiled[0].key == "CONV_2D|in=60x5x32|out=52x3x16|k=3|s=1|p=valid|act=none"
    assert graph.macs == sum(_macs_from_tensors(shapes, o) for o, _ in convs) + 16 * 4   # + the dense layer


@pytest.mark.slow
def test_cmsis_scratch_and_flash_use_kernel_height_and_width(kws):
    _, m, _ = kws
    graph = m.graph()
    by_key = {s.key: s for s in graph.specs}
    conv = by_key[_key_with(graph.keys, "k=10x4")]
    assert conv.weights == 16 * 10 * 4 * 1
    assert cmsis_nn_scratch(OpNode(conv, (0,), 1)) == 2 * 2 * 10 * 4 * 1      # im2col: 2 columns of KH*KW*C int16
    one_by_three = by_key[_key_with(graph.keys, "k=1x3")]
    assert cmsis_nn_scratch(OpNode(one_by_three, (0,), 1)) == 2 * 2 * 3 * 16
    dw = by_key[_key_with(graph.keys, "|dm=2")]
    assert cmsis_nn_scratch(OpNode(dw, (0,), 1)) == 0   # CMSIS-NN's generic depthwise kernel takes no buffer


# -- analytical tables -------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_analytical_tables_price_non_square_ops_from_their_work(kws, device):
    _, m, _ = kws
    t = lutmod.load_device(device)
    for k in m.graph().keys:
        v = t.op_us(k)
        assert math.isfinite(v) and v > 0, k
    k104 = lut_key("CONV_2D", (50, 7, 1), 16, (10, 4), (2, 1), "same", "relu")
    k1010 = lut_key("CONV_2D", (50, 7, 1), 16, 10, (2, 1), "same", "relu")
    assert t.op_us(k104) < 0.6 * t.op_us(k1010)
    k13 = lut_key("CONV_2D", (25, 7, 16), 16, (1, 3), 1, "same", "relu")
    k33 = lut_key("CONV_2D", (25, 7, 16), 16, 3, 1, "same", "relu")
    assert t.op_us(k13) < 0.6 * t.op_us(k33)
    # Stride (2, 1) halves the rows only: between stride 1 and stride 2.
    s11, s21, s22 = (t.op_us(lut_key("CONV_2D", (24, 24, 16), 32, 3, s, "same")) for s in (1, (2, 1), 2))
    assert s22 < s21 < s11
    # A 25x5 pool over a 25x5 map: one output of 125 taps per channel (the 25x25 reading gave 0 columns);
    # a 5x5 pool with stride 5: five outputs of 25 taps. Priced per output x tap, per output element.
    c = t.metadata["model"]["coefficients"]
    pool = lut_key("AVERAGE_POOL_2D", (25, 5, 16), 16, (25, 5), (25, 5), "valid")
    small = lut_key("AVERAGE_POOL_2D", (25, 5, 16), 16, (5, 5), (5, 5), "valid")
    assert t.raw(pool) == math.ceil(c["call"] + 1 * 1 * 16 * (125 * c["pool_tap"] + c["out_elem"] / 2))
    assert t.raw(small) == math.ceil(c["call"] + 5 * 1 * 16 * (25 * c["pool_tap"] + c["out_elem"] / 2))
    # A depth multiplier of 2 doubles the MACs (and takes CMSIS-NN's generic kernel).
    dm1 = t.op_us(lut_key("DEPTHWISE_CONV_2D", (24, 24, 16), 16, 3, 1, "same", "relu6"))
    dm2 = t.op_us(lut_key("DEPTHWISE_CONV_2D", (24, 24, 16), 32, 3, 1, "same", "relu6", depth_multiplier=2))
    assert dm2 > 1.5 * dm1
    # Dilation spreads the taps without adding any: a dilated VALID convolution has fewer outputs, less work.
    d1 = t.op_us(lut_key("CONV_2D", (16, 16, 8), 8, 3, 1, "valid"))
    d2 = t.op_us(lut_key("CONV_2D", (16, 16, 8), 8, 3, 1, "valid", dilation=2))
    assert 0 < d2 < d1


# -- edgenas analyze and the measured host table -----------------------------------------------------------

@pytest.mark.slow
def test_analyze_reports_the_true_macs_of_a_10x4_convolution(kws, kws_fixed, capsys):
    # analyze refuses the space-to-batch form TFLM runs wrong and prices the fixed-batch export.
    assert main(["analyze", str(kws[0]), "--device", "cortex-m7-analytical", "--no-arena"]) == 2
    assert "SPACE_TO_BATCH_ND" in capsys.readouterr().err
    path, m, shapes = kws_fixed
    assert "SPACE_TO_BATCH_ND" not in m.op_types
    assert main(["analyze", str(path), "--device", "cortex-m7-analytical", "--no-arena", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    conv = [o for o in r["ops"] if o["op"] == "CONV_2D" and "k=10x4" in o["key"]]
    assert len(conv) == 1 and conv[0]["macs"] == 112000 and conv[0]["out_shape"] == [25, 7, 16]
    assert conv[0]["latency_us"] > 0
    o = [op for op in m.operators if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert r["macs"] == sum(_macs_from_tensors(shapes, op) for op in o) + 16 * 4
    assert main(["analyze", str(path), "--device", "cortex-m7-analytical", "--no-arena"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if "50x7x1" in ln]
    assert len(line) == 1 and " 112000 " in line[0]


@pytest.mark.slow
@pytest.mark.skipif("host-tflm" not in lutmod.shipped_devices(), reason="host table not built")
def test_measured_host_table_lacking_a_non_square_key_names_it_and_the_build_command(kws_fixed, capsys):
    path, m, _ = kws_fixed
    table = lutmod.load_device("host-tflm")
    k104 = _key_with(m.graph().keys, "k=10x4")
    with pytest.raises(MissingLutKeysError) as e:
        table.require([k104])
    assert e.value.missing == [k104]
    assert k104 in str(e.value) and "edgenas lut build --device host-tflm" in str(e.value)
    assert "--model MODEL.tflite" in str(e.value)
    assert main(["analyze", str(path), "--device", "host-tflm", "--no-arena"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and err[0].startswith("error: LUT ") and "edgenas lut build --device host-tflm" in err[0]
    assert "Traceback" not in err[0]


NATIVE = [
    lut_key("CONV_2D", (20, 9, 4), 8, (10, 4), (2, 1), "same", "relu"),
    lut_key("CONV_2D", (12, 12, 8), 8, (1, 3), 1, "valid"),
    lut_key("CONV_2D", (12, 12, 8), 8, (3, 1), (2, 1), "same", "relu6"),
    lut_key("CONV_2D", (16, 16, 8), 8, 3, 1, "same", "relu", dilation=2),
    lut_key("DEPTHWISE_CONV_2D", (16, 16, 8), 8, 3, 1, "valid", "relu6", dilation=(2, 1)),
    lut_key("DEPTHWISE_CONV_2D", (12, 12, 8), 16, 3, 1, "same", "relu6", depth_multiplier=2),
    lut_key("AVERAGE_POOL_2D", (25, 5, 16), 16, (25, 5), (25, 5), "valid"),
    lut_key("MAX_POOL_2D", (12, 12, 16), 16, (2, 1), (2, 1), "valid"),
]


@pytest.mark.slow
@pytest.mark.parametrize("key", NATIVE, ids=lambda k: k.split("|", 1)[0] + ":" + "|".join(k.split("|")[3:5]))
def test_single_op_model_regenerates_non_square_and_dilated_keys(key):
    data = lut_build.single_op_model(key)
    m = parse(data).require_int8()
    assert [m.op_spec(o).key for o in m.operators] == [key]
    o = m.operators[0]
    if o.op == "CONV_2D" and "|d=" in key:
        assert (o.options["DilationHFactor"], o.options["DilationWFactor"]) == (2, 2)
    assert lut_build.measure_model(data, budget_s=0.02)["value"] > 0     # TFLM runs it


def test_unbuildable_keys_say_why():
    assert lut_build.unbuildable_reason(NATIVE[0]) == ""
    assert "RESHAPE" in lut_build.unbuildable_reason(lut_key("RESHAPE", (1, 1, 16), 16))
    assert "output 32x8" in lut_build.unbuildable_reason(lut_key("CONV_2D", (40, 10, 16), 16, 3, 1, "valid",
                                                                 out_hw=(32, 8)))


def _small(L, x):
    x = L.Conv2D(8, (10, 4), strides=(2, 1), padding="same", activation="relu")(x)     # 10x9x8
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(x)  # 10x9x16
    x = L.MaxPooling2D((2, 1))(x)                                                      # 5x9x16
    return L.Dense(3)(L.Flatten()(x))                                                  # RESHAPE + FC


@pytest.mark.slow
def test_lut_build_adds_a_models_non_square_keys_to_a_measured_table(tmp_path, capsys):
    a = tmp_path / "a.tflite"
    a.write_bytes(_convert(_small, (20, 9, 4)))
    b = tmp_path / "b.tflite"
    b.write_bytes(_convert(lambda L, x: L.Conv2D(8, (1, 3), padding="valid")(x), (12, 12, 8), seed=1))
    out = tmp_path / "host.json"
    assert main(["lut", "build", "--device", "host-tflm", "--model", str(a), "--out", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    r = json.loads(cap.out)
    keys_a = parse(a.read_bytes()).graph().keys
    reshape = [k for k in keys_a if k.startswith("RESHAPE|")]
    assert list(r["skipped"]) == reshape and "warning: skipping RESHAPE|" in cap.err
    t = lutmod.load(out)
    assert sorted(t.entries) == sorted(k for k in keys_a if k not in reshape)
    k104 = _key_with(keys_a, "k=10x4|s=2x1")
    assert t.metadata["method"] == "measured" and t.entries[k104].value > 0
    # More work costs more here too: the 10x10 reading of the same convolution has 2.5x the MACs.
    k1010 = lut_key("CONV_2D", (20, 9, 4), 8, 10, (2, 1), "same", "relu")
    assert lut_build.measure_key(k1010)["value"] > t.entries[k104].value
    # The table prices model a (RESHAPE estimated on request), and a second model adds to it.
    assert main(["analyze", str(a), "--lut", str(out), "--no-arena", "--allow-estimate", "--json"]) == 0
    ops = json.loads(capsys.readouterr().out)["ops"]
    assert [o["estimated"] for o in ops] == [k in reshape for k in keys_a]
    before = {k: e.value for k, e in t.entries.items()}
    assert main(["lut", "build", "--device", "host-tflm", "--model", str(b), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    t2 = lutmod.load(out)
    (kb,) = parse(b.read_bytes()).graph().keys
    assert "k=1x3" in kb and set(t2.entries) == set(before) | {kb}
    assert all(t2.entries[k].value == v for k, v in before.items())       # kept, not measured again


@pytest.mark.slow
def test_profile_set_of_a_models_keys_holds_the_non_square_operators(tmp_path, capsys):
    a = tmp_path / "a.tflite"
    a.write_bytes(_convert(_small, (20, 9, 4)))
    out = tmp_path / "set"
    assert main(["lut", "profile-set", "--device", "myboard", "--out", str(out), "--model", str(a), "--json"]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    keys = [e["key"] for e in manifest["keys"]]
    assert keys == [k for k in parse(a.read_bytes()).graph().keys if not k.startswith("RESHAPE|")]
    for e in manifest["keys"]:           # each board model is exactly the keyed operator
        m = parse((out / e["file"]).read_bytes())
        assert [m.op_spec(o).key for o in m.operators] == [e["key"]] and e["arena_bytes"] > 0
    assert any("k=10x4|s=2x1" in k for k in keys) and any("|dm=2" in k for k in keys)
    assert '"' + keys[0] + '"' in (out / "profile_set.cc").read_text()
