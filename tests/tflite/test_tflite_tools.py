"""Reading .tflite files and the TFLM helpers, on real third-party models and on models we convert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgenas_keras.cost import graph as ops
from edgenas_keras.tflite import tflm
from edgenas_keras.errors import UserError
from edgenas_keras.tflite.model import hwc, parse, read_int8_model, read_model
from model_fixtures import small_block_net

REF = Path(__file__).resolve().parents[1] / "data" / "reference_models"
MLPERF = REF / "mlperf_tiny_vww_96_int8.tflite"
PERSON = REF / "tflm_person_detect.tflite"
# Host arenas from PROVENANCE.md (measured by bisection on an x86-64 host by someone else).
PROVENANCE_ARENA = {MLPERF: 103_683, PERSON: 85_269}


@pytest.mark.parametrize("path, channels, counts, first_key", [
    (MLPERF, 3, {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1, "RESHAPE": 1,
                 "FULLY_CONNECTED": 1, "SOFTMAX": 1},
     "CONV_2D|in=96x96x3|out=8|k=3|s=2|p=same|act=relu"),
    (PERSON, 1, {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 14, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "SOFTMAX": 1},
     "DEPTHWISE_CONV_2D|in=96x96x1|out=8|k=3|s=2|p=same|act=relu6|dm=8"),   # depth multiplier 8
])
def test_reference_models_parse(path, channels, counts, first_key):
    m = read_int8_model(path)
    assert {op: m.op_types.count(op) for op in m.op_set} == counts
    [inp] = m.input_details()
    assert inp["shape"] == [1, 96, 96, channels] and inp["dtype"] == "int8" and len(inp["scale"]) == 1
    [out] = m.output_details()
    assert out["shape"] == [1, 2] and out["dtype"] == "int8"
    g = m.graph()
    assert g.keys[0] == first_key
    assert g.keys[-1] == "SOFTMAX|in=1x1x2|out=2|k=1|s=1|p=none|act=none"
    assert len(g.nodes) == 31 and g.tensor_bytes[g.input_id] == 96 * 96 * channels
    assert g.tensor_bytes[g.output_id] == 2
    # MobileNetV1 x0.25 at 96x96: the last pointwise conv is 256 -> 256 channels on a 3x3 map.
    last_conv = [s for s in g.specs if s.op == "CONV_2D" and s.in_shape == (3, 3, 256)][-1]
    assert last_conv.weights == 256 * 256 and last_conv.bias == 256 and last_conv.quant_channels == 256
    assert m.constant_bytes > 200_000


def test_hwc_pads_lower_ranks():
    assert hwc((1, 96, 96, 3)) == (96, 96, 3)
    assert hwc((1, 256)) == (1, 1, 256)
    assert hwc((7,)) == (1, 1, 7)


def test_corrupt_and_missing_files_are_user_errors(tmp_path):
    data = MLPERF.read_bytes()
    for name, payload in [("garbage.tflite", b"not a model at all" * 10), ("truncated.tflite", data[:5000])]:
        bad = tmp_path / name
        bad.write_bytes(payload)
        with pytest.raises(UserError, match=name):
            read_model(bad)
    with pytest.raises(UserError, match="missing.tflite"):
        read_model(tmp_path / "missing.tflite")


@pytest.fixture(scope="module")
def converted():
    """A small network of the operators our blocks produce, converted to int8 and to float."""
    import tensorflow as tf

    from edgenas_keras.model.export import random_representative, to_int8_tflite

    model = small_block_net(32, 2)
    int8 = to_int8_tflite(model, random_representative((32, 32, 3), n=4, seed=0))
    flt = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return int8, flt


@pytest.mark.slow
def test_converted_model_matches_our_operator_decomposition(converted):
    int8, _ = converted
    g = parse(int8, "converted.tflite").require_int8().graph()
    stem = ops.conv2d((32, 32, 3), 16, 3, 2, "relu6")
    dw = ops.depthwise((16, 16, 16), 3, 1)
    want = [stem.key, dw.key,
            ops.OpSpec("MEAN", (16, 16, 16), (1, 1, 16)).key,
            ops.conv2d((1, 1, 16), 8, activation="relu6").key,
            ops.conv2d((1, 1, 8), 16, activation="relu6").key,
            ops.OpSpec("MUL", (16, 16, 16), (16, 16, 16), variant="bcast").key,
            ops.conv2d((16, 16, 16), 16).key,
            ops.OpSpec("ADD", (16, 16, 16), (16, 16, 16)).key,
            ops.OpSpec("MEAN", (16, 16, 16), (1, 1, 16)).key,
            ops.lut_key("FULLY_CONNECTED", (1, 1, 16), 2),
            ops.lut_key("SOFTMAX", (1, 1, 2), 2)]
    assert g.keys == want
    assert g.specs[0].weights == stem.weights and g.specs[0].quant_channels == 16
    # The residual ADD reads the stem's output tensor: the graph keeps the skip connection.
    add = g.nodes[7]
    assert g.nodes[0].output in add.inputs


@pytest.mark.slow
def test_float_model_is_refused_naming_the_file(converted):
    _, flt = converted
    m = parse(flt, "float_model.tflite")
    assert not m.is_int8
    with pytest.raises(UserError, match=r"float_model\.tflite is not a full-int8 model: input tensor .* float32"):
        m.require_int8()


@pytest.mark.parametrize("path", [MLPERF, PERSON])
def test_min_arena_is_the_exact_allocation_threshold(path):
    data = path.read_bytes()
    arena = tflm.min_arena_bytes(data)
    tflm.interpreter(data, arena)
    with pytest.raises(RuntimeError):
        tflm.interpreter(data, arena - 1)
    # PROVENANCE.md's figures were measured in another build/process; they agree within TFLM's 16-byte
    # arena alignment (see README.md, "Model files").
    assert abs(arena - PROVENANCE_ARENA[path]) < tflm.ARENA_ALIGNMENT


def test_run_classifies_and_time_invoke_reports_overhead():
    data = MLPERF.read_bytes()
    m = read_model(MLPERF)
    [d] = m.input_details()
    x = tflm.quantize(np.full((1, 96, 96, 3), 0.5, np.float32), d["scale"][0], d["zero_point"][0])
    assert x.dtype == np.int8 and int(x.flat[0]) in (-1, 0)   # 0.5 / (1/255) - 128 = -0.5
    [out] = tflm.run(data, x)
    assert out.shape == (1, 2) and out.dtype == np.int8
    [o] = m.output_details()
    probs = tflm.dequantize(out, o["scale"][0], o["zero_point"][0])
    assert abs(float(probs.sum()) - 1.0) < 0.02   # softmax output
    timing = tflm.time_invoke(data, repeats=5, warmup=1)
    assert 0 < timing.overhead_s < timing.median_s and timing.net_s > 0.5 * timing.median_s
