"""``edgenas analyze`` on the two third-party reference models, for every shipped device: per-operator and
total latency, SRAM, the host arena (checked against TFLM itself), flash; and its errors."""

import json
from pathlib import Path

import pytest
from lut_fixtures import fixture_lut

from edgenas_keras import lut as lutmod
from edgenas_keras import tflm
from edgenas_keras.space import SearchSpace
from edgenas_keras.tflite_model import read_model
from pipeline.cli import main

REF = Path(__file__).parent.parent / "data" / "reference_models"
MODELS = [REF / "mlperf_tiny_vww_96_int8.tflite", REF / "tflm_person_detect.tflite"]


def analyze(capsys, *argv):
    rc = main(["analyze", *map(str, argv), "--json"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else None), out.err


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_every_analytical_device_prices_both_reference_models(model, capsys):
    graph = read_model(model).graph()
    results = {}
    for device in ("cortex-m4", "cortex-m7", "riscv", "cortex-a53"):
        rc, r, err = analyze(capsys, model, "--device", device, "--no-arena")
        assert rc == 0, err
        assert [o["key"] for o in r["ops"]] == graph.keys
        assert r["latency_ms"] == pytest.approx(sum(o["latency_us"] for o in r["ops"]) / 1000, rel=1e-6)
        assert r["flash_bytes"] == model.stat().st_size and not r["estimated_ops"]
        assert 50_000 < r["sram_bytes"] < 200_000
        results[device] = r["latency_ms"]
    assert results["cortex-a53"] < results["cortex-m7"] < results["cortex-m4"] < results["riscv"]
    rc, r, _ = analyze(capsys, model, "--device", "cortex-m7", "--clock-mhz", "240", "--no-arena")
    assert r["latency_ms"] == pytest.approx(2 * results["cortex-m7"], rel=1e-6)


def test_host_arena_is_the_smallest_arena_tflm_accepts(capsys):
    rc, r, err = analyze(capsys, MODELS[0], "--device", "cortex-m7")
    assert rc == 0, err
    data = MODELS[0].read_bytes()
    arena = r["host_arena_bytes"]
    tflm.interpreter(data, arena)                 # allocates with the reported arena...
    with pytest.raises(RuntimeError):
        tflm.interpreter(data, arena - 1)         # ...and not with one byte less


def test_measured_lut_missing_keys_is_an_error_unless_estimates_are_allowed(tmp_path, capsys):
    path = tmp_path / "fixture.json"
    fixture_lut(SearchSpace.load()).save(path)   # covers our space only: relu convs, pools are missing
    rc, _, err = analyze(capsys, MODELS[0], "--lut", path, "--no-arena")
    assert rc == 2 and "lacks" in err and "AVERAGE_POOL_2D" in err
    rc, r, err = analyze(capsys, MODELS[0], "--lut", path, "--no-arena", "--allow-estimate")
    assert rc == 0 and "warning" in err and r["estimated_ops"] > 0
    assert all(o["latency_us"] > 0 for o in r["ops"])
    assert {o["op"] for o in r["ops"] if o["estimated"]} >= {"AVERAGE_POOL_2D", "RESHAPE"}


def test_corrupt_and_float_models_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    rc, _, err = analyze(capsys, bad, "--device", "cortex-m7")
    assert rc == 2 and "not a TFLite flatbuffer" in err
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(MODELS[0].read_bytes()[:4000])
    rc, _, err = analyze(capsys, truncated, "--device", "cortex-m7")
    assert rc == 2 and "error:" in err
    import tensorflow as tf
    import tf_keras as keras

    m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    flt = tmp_path / "float.tflite"
    flt.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    rc, _, err = analyze(capsys, flt, "--device", "cortex-m7")
    assert rc == 2 and "not a full-int8 model" in err


def test_unknown_device_is_a_user_error(capsys):
    rc, _, err = analyze(capsys, MODELS[0], "--device", "no-such-board")
    assert rc == 2 and "no shipped LUT for device 'no-such-board'" in err
    assert "cortex-m7" in lutmod.shipped_devices()
