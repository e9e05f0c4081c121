"""Training, QAT, int8 export and budget validation on a tiny synthetic VWW set, through the CLI.

One short training run (32x32 inputs, one float and one QAT epoch) is shared by every test in this module:
what is checked is the plumbing a user relies on (the QAT model converts to exactly the operators the search
priced, both int8 models run in TFLM, the outputs and figures are written, validation decides correctly and
names what fails), not accuracy, which needs real schedules (README.md, "Retraining", has those figures).
"""

from __future__ import annotations

import json

import pytest
from lut_fixtures import fixture_lut
from train_support import synth_data_fixture, train_run_fixture

from edgenas_keras.data.synth import SynthSpec
from edgenas_keras.cost.graph import arch_graph
from edgenas_keras.arch.space import SearchSpace, decode
from edgenas_keras.tflite.model import read_model
from pipeline.cli import main

RES = 32
# SE in two blocks (the custom Multiply QuantizeConfig), plain dws and ir blocks elsewhere, a residual ADD.
ARCH = "dws_k3_se4_c16-ir_k3_e2_c24-skip-dws_k5_c32-dws_k3_c32-dws_k3_se8_c48-skip"


@pytest.fixture(scope="module")
def space():
    return SearchSpace.load().with_resolution(RES)


data_dir = synth_data_fixture(SynthSpec(n=240, seed=3, resolution=RES, eval_fraction=0.25))
train_run = train_run_fixture(ARCH, RES, epochs=1, seed=7)  # edgenas train --json once


@pytest.mark.slow
def test_train_writes_models_history_and_figures(train_run):
    out, printed = train_run
    for name in ("float_model.keras", "qat_model.h5", "model_int8.tflite", "model_ptq_int8.tflite",
                 "history.json", "metrics.json", "config.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".staging-*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {k: v for k, v in printed.items() if k != "out_dir"}
    for key in ("accuracy_float", "accuracy_qat", "accuracy_int8_tflm", "accuracy_ptq_int8_tflm"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["eval_examples"] > 30 and metrics["train_examples"] > 100
    history = json.loads((out / "history.json").read_text())
    assert len(history["float"]["loss"]) == 1 and len(history["qat"]["loss"]) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == ARCH and config["train"]["seed"] == 7 and config["resolution"] == RES
    assert config["dataset_fingerprint"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model_int8.tflite", "model_ptq_int8.tflite"])
def test_int8_models_have_exactly_the_priced_operators(train_run, space, name):
    model = read_model(train_run[0] / name)
    assert model.is_int8, model.int8_problems()
    assert model.op_types == arch_graph(space, decode(ARCH)).op_types
    assert "MUL" in model.op_types   # the SE gate survived QAT and conversion as one int8 MUL


@pytest.mark.slow
def test_qat_converts_an_architecture_without_se(space):
    from edgenas_keras.model.builder import build_model
    from edgenas_keras.model.export import random_representative, to_int8_tflite
    from edgenas_keras.model.qat import quantize_model
    from edgenas_keras.tflite.model import parse

    arch = decode("ir_k3_e2_c16-dws_k3_c24-skip-dws_k3_c32-skip-dws_k3_c48-skip")
    qmodel = quantize_model(build_model(space, arch, RES))
    model = parse(to_int8_tflite(qmodel, random_representative((RES, RES, 3), n=4)))
    assert model.is_int8
    assert model.op_types == arch_graph(space, arch).op_types


@pytest.mark.slow
def test_calibrated_qat_model_starts_where_post_training_quantisation_ends(train_run, data_dir):
    """``calibrate_ranges`` gives every activation range of the QAT model the float tensor's extremes over the
    representative images (tfmot starts them at [-6, 6] and moves them 0.1% per step); converted before any
    fine-tune, the QAT model then computes what plain post-training quantisation of the float model does."""
    import numpy as np
    import tf_keras as keras

    from edgenas_keras.tflite import tflm
    from edgenas_keras.model.export import to_int8_tflite
    from edgenas_keras.model.qat import calibrate_ranges, quantize_model
    from edgenas_keras.train import representative_fn, representative_images
    from edgenas_keras.tflite.model import parse

    float_model = keras.models.load_model(train_run[0] / "float_model.keras")
    images = representative_images(data_dir, RES, 3, 48, seed=1)
    qmodel = quantize_model(float_model)
    assert calibrate_ranges(qmodel, float_model, [images[:32], images[32:]]) > 20
    layers = [layer for layer in qmodel.layers if layer.name.startswith("quant_") and layer.name.endswith("relu")]
    assert len(layers) >= 5
    for wrapper in layers:
        tensor = keras.Model(float_model.inputs, float_model.get_layer(wrapper.layer.name).output)(images)
        ranges = {w.name.split("/")[-1].split(":")[0]: float(w.numpy()) for w in wrapper.weights}
        assert ranges["output_min"] == pytest.approx(min(0.0, float(np.min(tensor))), abs=1e-5), wrapper.name
        assert ranges["output_max"] == pytest.approx(float(np.max(tensor)), rel=1e-5), wrapper.name

    rep = representative_fn(images)
    qat_int8, ptq_int8 = to_int8_tflite(qmodel, rep), to_int8_tflite(float_model, rep)
    outputs = []
    for blob in (qat_int8, ptq_int8):
        details = parse(blob).input_details()[0]
        runner = tflm.Runner(blob)
        q = tflm.quantize(images, details["scale"][0], details["zero_point"][0])
        outputs.append(np.stack([runner(x[None])[0].reshape(-1) for x in q]).astype(int))
    diff = np.abs(outputs[0] - outputs[1])   # in output quanta (1/256 of probability)
    agree = np.mean(outputs[0].argmax(1) == outputs[1].argmax(1))
    # Rounding differs in a few places between the two conversions; tfmot's [-6, 6] starting ranges give
    # differences of 100+ quanta here.
    assert np.median(diff) <= 4 and diff.max() <= 32 and agree >= 0.9, (np.median(diff), diff.max(), agree)


@pytest.mark.slow
def test_batch_norm_recalibration_reaches_inside_the_qat_wrappers(train_run, data_dir):
    """After the QAT fine-tune ``train`` recomputes BN statistics on the QAT model, whose BatchNormalization
    layers sit inside tfmot's wrappers: every one of them must be found and updated."""
    import numpy as np
    import tf_keras as keras

    from edgenas_keras.data.reader import make_dataset
    from edgenas_keras.model.qat import quantize_model
    from edgenas_keras.train import recalibrate_batch_norm

    float_model = keras.models.load_model(train_run[0] / "float_model.keras")
    n_bn = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in float_model.layers)
    qmodel = quantize_model(float_model)
    bns = [w.layer for w in qmodel.layers if isinstance(getattr(w, "layer", None), keras.layers.BatchNormalization)]
    assert len(bns) == n_bn > 0
    for bn in bns:
        bn.moving_variance.assign(np.full(bn.moving_variance.shape, 1e4, np.float32))   # absurdly stale
    recalibrate_batch_norm(qmodel, make_dataset(data_dir, "train", 16, RES, 3, shuffle_seed=0), 4)
    assert all(float(np.max(bn.moving_variance.numpy())) < 1e3 for bn in bns)


def _lut_file(space, tmp_path, device, unit="cycles"):
    lut = fixture_lut(space, device=device)
    if unit == "us":
        lut.metadata.update(unit="us", clock_mhz=1.0)
    path = tmp_path / f"{device}.json"
    lut.save(path)
    return path


def _validate(capsys, argv):
    rc = main(["validate", *argv, "--json"])
    out = capsys.readouterr().out.strip()
    return rc, (json.loads(out.splitlines()[-1]) if out else None)


@pytest.mark.slow
def test_validate_blesses_a_model_that_fits(train_run, space, data_dir, tmp_path, capsys):
    model = train_run[0] / "model_int8.tflite"
    lut = _lut_file(space, tmp_path, "host-tflm", unit="us")
    blessing = tmp_path / "blessing.json"
    rc, doc = _validate(capsys, [str(model), "--lut", str(lut), "--latency-ms", "10000", "--sram-kb", "4096",
                                 "--flash-kb", "8192", "--min-accuracy", "0.0", "--data", str(data_dir),
                                 "--out", str(blessing)])
    assert rc == 0 and doc["blessed"] and doc["reasons"] == []
    assert set(doc["checks"]) == {"latency", "latency_measured", "sram", "flash", "accuracy"}
    assert all(c["verdict"] == "pass" for c in doc["checks"].values())
    sram = doc["checks"]["sram"]
    assert sram["figure"] == max(sram["detail"]["predicted_on_target_bytes"], sram["detail"]["host_arena_bytes"])
    flash = doc["checks"]["flash"]
    assert flash["figure"] == model.stat().st_size + flash["detail"]["runtime_bytes"]
    recorded = json.loads((train_run[0] / "metrics.json").read_text())["accuracy_int8_tflm"]
    assert doc["checks"]["accuracy"]["figure"] == pytest.approx(recorded, abs=1e-6)
    assert json.loads(blessing.read_text()) == doc


@pytest.mark.slow
def test_validate_refuses_a_model_that_does_not_fit_and_names_the_checks(train_run, space, tmp_path, capsys):
    model = train_run[0] / "model_int8.tflite"
    lut = _lut_file(space, tmp_path, "cortex-m7")
    recorded = json.loads((train_run[0] / "metrics.json").read_text())["accuracy_int8_tflm"]
    # Fits on latency and flash; 2 KiB of SRAM is far too little for a 32x32x16 activation; accuracy comes
    # from the training run's metrics.json (same model sha256) and the minimum is set just above it.
    rc, doc = _validate(capsys, [str(model), "--lut", str(lut), "--latency-ms", "10000", "--sram-kb", "2",
                                 "--flash-kb", "1024", "--min-accuracy", str(min(1.0, recorded + 0.01))])
    assert rc == 1 and not doc["blessed"]
    assert doc["checks"]["sram"]["verdict"] == "fail" and doc["checks"]["latency"]["verdict"] == "pass"
    assert doc["checks"]["flash"]["verdict"] == "pass"
    assert doc["checks"]["accuracy"]["verdict"] == "fail"
    assert "recorded by edgenas train" in doc["checks"]["accuracy"]["detail"]["source"]
    assert [r.split(":")[0] for r in doc["reasons"]] == ["sram", "accuracy"]
    assert "latency_measured" not in doc["checks"]   # measured only on host-tflm


def test_validate_corrupt_model_is_a_user_error(space, tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\xff" * 64)
    lut = _lut_file(space, tmp_path, "cortex-m7")
    rc = main(["validate", str(bad), "--lut", str(lut), "--latency-ms", "10", "--sram-kb", "64", "--flash-kb",
               "256", "--min-accuracy", "0.5"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "bad.tflite" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "validate"])
def test_missing_data_folder_is_a_user_error(command, space, tmp_path, capsys):
    missing = tmp_path / "no-such-data"
    if command == "train":
        argv = ["train", "--arch", ARCH, "--data", str(missing), "--out", str(tmp_path / "out")]
    else:
        model = tmp_path / "m.tflite"
        model.write_bytes(b"not used: the data folder is checked first")
        argv = ["validate", str(model), "--lut", str(_lut_file(space, tmp_path, "cortex-m7")), "--latency-ms", "10",
                "--sram-kb", "64", "--flash-kb", "256", "--min-accuracy", "0.5", "--data", str(missing)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "no-such-data" in err
    assert not (tmp_path / "out").exists()
