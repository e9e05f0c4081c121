"""``edgenas lut calibrate``: one measurement makes a board's LUT reproduce it exactly, several fit per-class
factors, a held-out model is predicted when the classes suffice; every command takes the calibrated file with
``--lut``; bad input is one line and exit 2. Also the machine identity a host-measured table records, and the
warning when it is priced on another machine (issue 13, items 2 and 4)."""

import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
from lut_fixtures import fixture_lut

from edgenas_keras import lut as lutmod
from edgenas_keras import machine
from edgenas_keras.lut import measure as lut_build
from edgenas_keras.arch.space import SearchSpace
from edgenas_keras.tflite.model import read_model
from pipeline.cli import main

REF = Path(__file__).parent.parent / "data" / "reference_models"
VWW = REF / "mlperf_tiny_vww_96_int8.tflite"
PERSON = REF / "tflm_person_detect.tflite"
# A public board figure (../shared/board_anchors.json): MLPerf Tiny v0.5 closed, reference submission,
# Nucleo-L4R5ZI (Cortex-M4F, 120 MHz), TFLM v2.3.1 + CMSIS-NN, VWW: median throughput 1.665 inf/s, i.e.
# 600.6006 ms (mlcommons/tiny_results_v0.5 @ d75aef63526d:
# closed/reference/results/Nucleo-L4R5ZI/vww/performance/results.txt).
NUCLEO_VWW_MS, NUCLEO_MHZ = 600.6006, 120
MATMUL_OPS = ("CONV_2D", "FULLY_CONNECTED")   # the first of the two class groups of a two-pair fit
# The shipped cortex-m4 table was timed on the emulated core and lists the space's and the reference models'
# keys only; a model of other shapes (conv_model, 32 px) is priced by the analytical table, kept for that.
ANY_SHAPE = "cortex-m4-analytical"


def run(capsys, *argv):
    rc = main([*map(str, argv), "--json"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out.strip().splitlines()[-1]) if rc in (0, 1) and out.out.strip() else None), out.err


def analyze(capsys, model, *argv):
    rc, r, err = run(capsys, "analyze", model, "--no-arena", *argv)
    assert rc == 0, err
    return r


def calibrate(capsys, out, *argv, device="cortex-m4"):
    return run(capsys, "lut", "calibrate", "--device", device, *argv, "--out", out)


@pytest.mark.parametrize("device", ["cortex-m4", ANY_SHAPE])
def test_one_measurement_reproduces_it_exactly_and_scales_every_operator(device, tmp_path, capsys):
    out = tmp_path / "myboard.json"
    rc, r, err = calibrate(capsys, out, "--model", VWW, "--latency-ms", NUCLEO_VWW_MS, "--clock-mhz", NUCLEO_MHZ,
                           device=device)
    assert rc == 0, err
    assert len(r["groups"]) == 1 and "fell back to 1 class group" in r["note"]
    # The calibrated table prices the measured model at exactly the measured latency, at the board's clock.
    a = analyze(capsys, VWW, "--lut", out)
    assert a["latency_ms"] == pytest.approx(NUCLEO_VWW_MS, rel=1e-6)
    assert a["clock_mhz"] == NUCLEO_MHZ and a["device"] == "cortex-m4" and a["lut_sha256"] == r["sha256"]
    # Cycles are per board, so the same table at twice the clock halves the latency.
    assert analyze(capsys, VWW, "--lut", out, "--clock-mhz", 240)["latency_ms"] == pytest.approx(
        NUCLEO_VWW_MS / 2, rel=1e-6)
    # Another model is scaled by the same factor, its operators listed in the base table or (analytical
    # table) priced by its estimator, then scaled.
    table = lutmod.load(out)
    keys = read_model(PERSON).graph().keys
    if device == ANY_SHAPE:
        assert any(k not in table.entries for k in keys)
    else:   # the emulated table lists the reference models' keys
        assert table.estimator is None and all(k in table.entries for k in keys)
    base_vww = analyze(capsys, VWW, "--device", device, "--clock-mhz", NUCLEO_MHZ)["latency_ms"]
    base_pd = analyze(capsys, PERSON, "--device", device, "--clock-mhz", NUCLEO_MHZ)["latency_ms"]
    f = NUCLEO_VWW_MS / base_vww
    assert analyze(capsys, PERSON, "--lut", out)["latency_ms"] == pytest.approx(f * base_pd, rel=1e-5)
    # The metadata records what was measured, on what, and from which table.
    cal = table.metadata["calibration"]
    assert cal["base"]["sha256"] == lutmod.manifest()["luts"][device]["sha256"]
    (p,) = cal["points"]
    assert p["model"] == VWW.name and p["model_sha256"] == hashlib.sha256(VWW.read_bytes()).hexdigest()
    assert p["latency_ms"] == NUCLEO_VWW_MS and abs(p["residual_pct"]) < 1e-9 and cal["clock_mhz"] == NUCLEO_MHZ
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cal["date"])
    assert list(cal["factors"].values()) == [pytest.approx(f, rel=1e-6)] * 5
    assert table.entries == lutmod.load_device(device).entries   # entries untouched: the factors scale
    jsonschema.validate(json.loads(out.read_text()), json.loads((lutmod.assets_dir() / "lut.schema.json").read_text()))


def _board_truth(capsys, model, clock, matmul, other, device="cortex-m4"):
    """What a board whose conv/FC kernels run ``matmul`` times and the rest ``other`` times the table would
    measure: analyze's per-operator figures, scaled by operator type."""
    ops = analyze(capsys, model, "--device", device, "--clock-mhz", clock)["ops"]
    return sum(o["latency_us"] * (matmul if o["op"] in MATMUL_OPS else other) for o in ops) / 1000


def test_two_consistent_measurements_fit_two_classes_and_reproduce_both(tmp_path, capsys):
    t_vww = _board_truth(capsys, VWW, 150, 1.5, 0.7)
    t_pd = _board_truth(capsys, PERSON, 150, 1.5, 0.7)
    out = tmp_path / "two.json"
    rc, r, err = calibrate(capsys, out, "--model", VWW, "--latency-ms", t_vww, "--model", PERSON,
                           "--latency-ms", t_pd, "--clock-mhz", 150)
    assert rc == 0, err
    assert r["groups"] == [["conv1x1", "conv", "fc"], ["depthwise", "other"]]
    assert r["factors"]["conv"] == pytest.approx(1.5, rel=1e-5) and r["factors"]["depthwise"] == pytest.approx(
        0.7, rel=1e-5)
    assert analyze(capsys, VWW, "--lut", out)["latency_ms"] == pytest.approx(t_vww, rel=1e-6)
    assert analyze(capsys, PERSON, "--lut", out)["latency_ms"] == pytest.approx(t_pd, rel=1e-6)
    # Asked for one class only, the same two points cannot both be exact: the residuals say so.
    rc, r, _ = calibrate(capsys, tmp_path / "one.json", "--model", VWW, "--latency-ms", t_vww, "--model", PERSON,
                         "--latency-ms", t_pd, "--clock-mhz", 150, "--classes", 1)
    assert rc == 0 and max(abs(p["residual_pct"]) for p in r["points"]) > 1


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory):
    """A third int8 model with another class mix than the two MobileNets (no depthwise): 3x3 convolutions,
    a 1x1, average pooling and a dense layer."""
    import numpy as np
    import tf_keras as keras

    from edgenas_keras.model.export import to_int8_tflite

    keras.utils.set_random_seed(0)
    L = keras.layers
    x = inp = keras.Input((32, 32, 3))
    x = L.ReLU(6.0)(L.Conv2D(16, 3, strides=2, padding="same")(x))
    x = L.ReLU(6.0)(L.Conv2D(32, 3, padding="same")(x))
    x = L.ReLU(6.0)(L.Conv2D(32, 1)(x))
    x = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, x)

    def rep():
        rng = np.random.default_rng(0)
        for _ in range(4):
            yield [rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)]

    path = tmp_path_factory.mktemp("conv") / "conv_net.tflite"
    path.write_bytes(to_int8_tflite(model, rep))
    return path


def test_leave_one_out_predicts_a_held_out_model_when_the_classes_suffice(conv_model, tmp_path, capsys):
    # conv_model's 32 px shapes are in no measured table: the analytical one prices them
    truth = {m: _board_truth(capsys, m, 120, 1.6, 0.5, ANY_SHAPE) for m in (VWW, PERSON, conv_model)}
    # Calibrated on the two MobileNets with two classes, the held-out model is predicted exactly...
    two = tmp_path / "two.json"
    rc, _, err = calibrate(capsys, two, "--model", VWW, "--latency-ms", truth[VWW], "--model", PERSON,
                           "--latency-ms", truth[PERSON], "--clock-mhz", 120, device=ANY_SHAPE)
    assert rc == 0, err
    assert analyze(capsys, conv_model, "--lut", two)["latency_ms"] == pytest.approx(truth[conv_model], rel=1e-5)
    # ...while one factor from one model misses it by what the class mix implies.
    one = tmp_path / "one.json"
    rc, r, err = calibrate(capsys, one, "--model", VWW, "--latency-ms", truth[VWW], "--clock-mhz", 120,
                           device=ANY_SHAPE)
    assert rc == 0, err
    held_out = analyze(capsys, conv_model, "--lut", one)["latency_ms"] / truth[conv_model] - 1
    base = {m: analyze(capsys, m, "--device", ANY_SHAPE, "--clock-mhz", 120)["latency_ms"] for m in truth}
    expected = (truth[VWW] / base[VWW]) / (truth[conv_model] / base[conv_model]) - 1
    assert held_out == pytest.approx(expected, rel=1e-4) and abs(held_out) > 0.05


def test_every_command_that_takes_a_device_takes_the_calibrated_lut(tmp_path, capsys):
    out = tmp_path / "myboard.json"
    assert calibrate(capsys, out, "--model", VWW, "--latency-ms", NUCLEO_VWW_MS, "--clock-mhz", NUCLEO_MHZ)[0] == 0
    base = tmp_path / "base120.json"   # the uncalibrated table at the board's clock
    lutmod.load_device("cortex-m4").with_clock(NUCLEO_MHZ).save(base)
    f = lutmod.load(out).metadata["calibration"]["factors"]["conv"]
    rc, shown, err = run(capsys, "lut", "show", out)
    assert rc == 0 and shown["calibration"]["factors"]["depthwise"] == f and shown["clock_mhz"] == NUCLEO_MHZ
    arch = "ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c32-dws_k3_c32-ir_k5_e2_c48-skip"
    # arch check
    rc, cal, err = run(capsys, "arch", "check", arch, "--lut", out)
    assert rc == 0, err
    rc, ref, _ = run(capsys, "arch", "check", arch, "--lut", base)
    assert cal["latency_ms"] == pytest.approx(f * ref["latency_ms"], rel=1e-9) and cal["device"] == "cortex-m4"
    # validate (the blessing check): its latency figure is the calibrated one
    rc, doc, err = run(capsys, "validate", VWW, "--lut", out, "--latency-ms", 601, "--sram-kb", 512, "--flash-kb",
                       4096, "--min-accuracy", 0)
    assert doc is not None, err
    assert doc["checks"]["latency"]["figure"] == pytest.approx(NUCLEO_VWW_MS, rel=1e-6)
    assert doc["checks"]["latency"]["verdict"] == "pass"
    # search: an impossible budget is refused with the floor priced by the calibrated table
    (tmp_path / "data").mkdir()
    floors = []
    for lut_file in (out, base):
        rc, _, err = run(capsys, "search", "--data", tmp_path / "data", "--lut", lut_file, "--latency-ms", 0.001,
                         "--out", tmp_path / "s")
        assert rc == 2
        floors.append(float(re.search(r"below the floor ([0-9.e+]+) ms", err).group(1)))
    assert floors[0] == pytest.approx(f * floors[1], rel=1e-3)
    # lut validate against another table
    rc, v, err = run(capsys, "lut", "validate", "--lut", out, "--measured", base, "--samples", 4, "--plot",
                     tmp_path / "v.png")
    assert rc == 0, err
    assert v["mape_pct"] == pytest.approx(100 * (f - 1), rel=1e-6) and v["spearman"] == pytest.approx(1.0)


@pytest.mark.slow
def test_the_pipeline_lut_file_carries_the_calibration(tmp_path, capsys):
    """``lut.file`` in a pipeline config: the LutImporter component copies the file into its artifact, and the
    table later steps load from it prices the measured model at the measurement."""
    from components import LatencyTable
    from components.lut_importer import LUT_FILE, LutImporter
    from edgenas_keras.cost.estimate import graph_latency_ms

    out = tmp_path / "myboard.json"
    assert calibrate(capsys, out, "--model", VWW, "--latency-ms", NUCLEO_VWW_MS, "--clock-mhz", NUCLEO_MHZ)[0] == 0
    artifact = LatencyTable()
    artifact.uri = str(tmp_path / "artifact")
    LutImporter.EXECUTOR_SPEC.executor_class._FUNCTION(lut=artifact, device="cortex-m4", lut_file=str(out),
                                                       clock_mhz=0.0)
    table = lutmod.load(Path(artifact.uri) / LUT_FILE)
    assert artifact.get_string_custom_property("sha256") == table.sha256 == lutmod.load(out).sha256
    assert graph_latency_ms(read_model(VWW).graph(), table) == pytest.approx(NUCLEO_VWW_MS, rel=1e-9)


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    import tensorflow as tf
    import tf_keras as keras

    m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    path = tmp_path_factory.mktemp("float") / "float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    return path


@pytest.mark.parametrize("argv, message", [
    (["--model", VWW, "--latency-ms", "fast", "--clock-mhz", 120], "--latency-ms must be a positive number"),
    (["--model", VWW, "--latency-ms", -3, "--clock-mhz", 120], "--latency-ms must be a positive number"),
    (["--model", VWW, "--latency-ms", 5, "--clock-mhz", "nan"], "--clock-mhz must be a positive number"),
    (["--model", VWW, "--latency-ms", 5, "--latency-ms", 6, "--clock-mhz", 120], "one --latency-ms per --model"),
    (["--model", VWW, "--latency-ms", 5], "--clock-mhz is required"),
    (["--model", VWW, "--latency-ms", 5, "--clock-mhz", 120, "--classes", 9], "--classes must be one of"),
    (["--model", "FLOAT", "--latency-ms", 5, "--clock-mhz", 120], "not a full-int8 model"),
    (["--model", REF / "missing.tflite", "--latency-ms", 5, "--clock-mhz", 120], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(argv, message, float_model, tmp_path, capsys):
    argv = [float_model if a == "FLOAT" else a for a in argv]
    out = tmp_path / "cal.json"
    rc, _, err = calibrate(capsys, out, *argv)
    assert rc == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_microsecond_table_takes_no_clock_and_a_calibrated_table_is_not_recalibrated(tmp_path, capsys):
    rc, _, err = calibrate(capsys, tmp_path / "h.json", "--model", VWW, "--latency-ms", 5, "--clock-mhz", 100,
                           device="host-tflm")
    assert rc == 2 and "does not apply" in err
    out = tmp_path / "cal.json"
    assert calibrate(capsys, out, "--model", VWW, "--latency-ms", 500, "--clock-mhz", 100)[0] == 0
    rc, _, err = run(capsys, "lut", "calibrate", "--lut", out, "--model", VWW, "--latency-ms", 400, "--clock-mhz",
                     100, "--out", tmp_path / "again.json")
    assert rc == 2 and "already calibrated" in err
    # A hand-edited factor is refused by the loader, naming the file and the class.
    doc = json.loads(out.read_text())
    doc["metadata"]["calibration"]["factors"]["depthwise"] = 0
    out.write_text(json.dumps(doc))
    rc, _, err = run(capsys, "analyze", VWW, "--lut", out, "--no-arena")
    assert rc == 2 and "calibration.factors.depthwise" in err and str(out) in err


# -- item 4: the machine a host-measured table was timed on ------------------------------------------------

def test_a_measured_host_table_records_this_machine():
    ident = lut_build.host_metadata("host-tflm", [])["host"]
    info = Path("/proc/cpuinfo").read_text()
    first = dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in info.split("\n\n")[0].splitlines()))
    assert ident["vendor"] == first["vendor_id"] and ident["model_name"] == first["model name"]
    assert (ident["family"], ident["model"], ident["stepping"]) == (
        int(first["cpu family"]), int(first["model"]), int(first["stepping"]))
    l3 = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
    if l3.exists():
        assert ident["caches"]["L3"] == l3.read_text().strip()
    from importlib.metadata import version

    assert ident["runtime"] == f"tflite-micro {version('tflite-micro')}" and ident["cores"] >= 1


def _host_table(tmp_path, host):
    lut = fixture_lut(SearchSpace.load(), device="host-tflm")
    lut.metadata.update(unit="us", clock_mhz=1.0, method="measured")
    if host is not None:
        lut.metadata["host"] = host
    path = tmp_path / "host.json"
    lut.save(path)
    return path


@pytest.mark.parametrize("case", ["same", "other-cpu", "unknown"])
def test_pricing_with_a_host_table_from_another_machine_warns_once(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(machine, "_warned", set())
    here = machine.identity()
    # an "other" CPU that differs from this machine's in family and model, whatever this machine is
    other = {"family": (here.get("family") or 0) + 1, "model": (here.get("model") or 0) + 1}
    host = {"same": here, "other-cpu": {**here, **other}, "unknown": {"cpu": "AMD EPYC"}}[case]
    path = _host_table(tmp_path, host)
    arch = "ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c32-dws_k3_c32-ir_k5_e2_c48-skip"
    for i in range(2):
        rc, r, err = run(capsys, "arch", "check", arch, "--lut", path)
        assert rc == 0 and r["latency_ms"] > 0
        warnings = [ln for ln in err.splitlines() if ln.startswith("warning: LUT host-tflm was measured on")]
        if case == "same" or i:
            assert warnings == []
            continue
        assert len(warnings) == 1 and f"this machine is {machine.describe(here)}" in warnings[0]
        if case == "other-cpu":
            assert f"family {other['family']} model {other['model']}" in warnings[0]
            assert "family, model differ" in warnings[0]
        else:
            assert "an unknown machine" in warnings[0] and "'AMD EPYC'" in warnings[0]
