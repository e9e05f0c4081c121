"""``edgenas analyze`` on the two third-party reference models, for every shipped device: per-operator and
total latency, SRAM, the host arena (checked against TFLM itself), flash; and its errors."""

import json
from pathlib import Path

import pytest
from lut_fixtures import fixture_lut

from edgenas_keras import lut as lutmod
from edgenas_keras.tflite import tflm
from edgenas_keras.arch.space import SearchSpace
from edgenas_keras.tflite.model import read_model
from pipeline.cli import main

REF = Path(__file__).parent.parent / "data" / "reference_models"
MODELS = [REF / "mlperf_tiny_vww_96_int8.tflite", REF / "tflm_person_detect.tflite"]


def analyze(capsys, *argv):
    rc = main(["analyze", *map(str, argv), "--json"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else None), out.err


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
@pytest.mark.parametrize("kind", ["shipped", "analytical"])
def test_every_device_prices_both_reference_models(model, kind, capsys):
    # shipped: the tables timed on the emulated cores (they list the reference models' keys) and cortex-a53's
    # analytical one; analytical: the cycle models kept for any-shape pricing (cortex-m7-analytical...)
    graph = read_model(model).graph()
    suffix = "" if kind == "shipped" else "-analytical"
    results, clocks = {}, {}
    for device in ("cortex-m4", "cortex-m7", "riscv"):
        rc, r, err = analyze(capsys, model, "--device", device + suffix, "--no-arena")
        assert rc == 0, err
        assert r["device"] == device    # an alias prices as its device
        assert [o["key"] for o in r["ops"]] == graph.keys
        assert r["latency_ms"] == pytest.approx(sum(o["latency_us"] for o in r["ops"]) / 1000, rel=1e-6)
        assert r["flash_bytes"] == model.stat().st_size and not r["estimated_ops"]
        assert 50_000 < r["sram_bytes"] < 200_000
        results[device], clocks[device] = r["latency_ms"], r["clock_mhz"]
    rc, r, _ = analyze(capsys, model, "--device", "cortex-a53", "--no-arena")
    # the Cortex-A53 (NEON, 1.2 GHz) beats the M7, which beats the M4; RV32 with reference kernels is slowest
    assert r["latency_ms"] < results["cortex-m7"] < results["cortex-m4"] < results["riscv"]
    rc, r, _ = analyze(capsys, model, "--device", "cortex-m7" + suffix, "--clock-mhz", 2 * clocks["cortex-m7"],
                       "--no-arena")
    assert r["latency_ms"] == pytest.approx(results["cortex-m7"] / 2, rel=1e-6)


def test_emulated_alias_is_the_shipped_table(capsys):
    # cortex-m7-emulated (older configs) names the very table cortex-m7 does: same file, same figures
    rc, a, err = analyze(capsys, MODELS[1], "--device", "cortex-m7", "--no-arena")
    assert rc == 0, err
    rc, b, err = analyze(capsys, MODELS[1], "--device", "cortex-m7-emulated", "--no-arena")
    assert rc == 0, err
    assert (b["device"], b["lut_sha256"], b["latency_ms"]) == ("cortex-m7", a["lut_sha256"], a["latency_ms"])
    assert lutmod.load_device("cortex-m7").metadata["method"] == "emulated"
    assert lutmod.load_device("cortex-m7-analytical").metadata["method"] == "analytical"


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


def test_model_outside_an_emulated_table_is_a_clear_error(tmp_path, capsys):
    """The shipped cortex-m7 table lists the space's keys at 96 px and the reference models' only: a 32 px
    network's operators are not in it. One error line names the missing keys, the build command and the two
    ways to price it anyway; the analytical alias prices it."""
    import tf_keras as keras

    from edgenas_keras.model.export import random_representative, to_int8_tflite

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.ReLU(6.0)(L.Conv2D(8, 3, strides=2, padding="same")(inp))
    out = L.Softmax()(L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    tiny = tmp_path / "tiny32.tflite"
    tiny.write_bytes(to_int8_tflite(keras.Model(inp, out), random_representative((32, 32, 3), n=4, seed=0)))
    conv = "CONV_2D|in=32x32x3|out=8|k=3|s=2|p=same|act=relu6"
    assert conv not in lutmod.load_device("cortex-m7").entries
    rc, _, err = analyze(capsys, tiny, "--device", "cortex-m7", "--no-arena")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: LUT ") and "Traceback" not in err
    assert "cortex-m7.json lacks 3 key(s)" in lines[0] and conv in lines[0]
    assert "edgenas lut build --device cortex-m7 --method emulated" in lines[0]
    assert "--device cortex-m7-analytical" in lines[0] and "--allow-estimate" in lines[0]
    rc, r, err = analyze(capsys, tiny, "--device", "cortex-m7-analytical", "--no-arena")
    assert rc == 0, err
    assert r["device"] == "cortex-m7" and not r["estimated_ops"] and r["ops"][0]["key"] == conv
    assert r["latency_ms"] > 0
    rc, r, err = analyze(capsys, tiny, "--device", "cortex-m7", "--no-arena", "--allow-estimate")
    assert rc == 0 and "warning: 3 operator key(s)" in err and r["estimated_ops"] == 3
