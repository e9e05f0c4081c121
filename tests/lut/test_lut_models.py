"""Analytical cycle models and the shipped LUT files: sanity a firmware engineer would check (more work costs
more, CMSIS-NN fast paths and their alignment conditions, the clock scales), the schema, the loader."""

import json
from pathlib import Path

import jsonschema
import pytest

from edgenas_keras import lut as lutmod
from edgenas_keras.lut import analytical as lut_models
from edgenas_keras.errors import UserError
from edgenas_keras.cost.graph import lut_key
from edgenas_keras.tflite.model import read_model

MLPERF = Path(__file__).parent.parent / "data" / "reference_models" / "mlperf_tiny_vww_96_int8.tflite"
CMSIS = ("cortex-m4", "cortex-m7")
ALL = tuple(lut_models.DEVICES)
EMULATED = ("cortex-m4", "cortex-m7", "riscv")   # shipped names timed on the emulated core since issue 13


def analytical(device):
    """The shipped name of a device's analytical table: the -analytical alias where the device's own name
    is the emulated table, the name itself otherwise (cortex-a53)."""
    return f"{device}-analytical" if device in EMULATED else device


def price(device, key):
    return lut_models.estimator_for({"model": lut_models.model_metadata(lut_models.DEVICES[device])})(key)


def conv(cin, cout, k=1, s=1, hw=12, act="none"):
    return lut_key("CONV_2D", (hw, hw, cin), cout, k, s, "same", act)


@pytest.mark.parametrize("device", ALL)
def test_cost_is_monotonic_in_work(device):
    for cin, cout in [(16, 16), (16, 32), (32, 32), (32, 64), (64, 128)]:
        assert price(device, conv(cin, cout)) < price(device, conv(cin * 2, cout)) < price(device, conv(cin * 2, cout * 2))
    dws = [price(device, lut_key("DEPTHWISE_CONV_2D", (24, 24, 32), 32, k, 1, "same", "relu6")) for k in (3, 5, 7)]
    assert dws == sorted(dws) and len(set(dws)) == 3
    assert price(device, conv(16, 16, hw=24)) > price(device, conv(16, 16, hw=12))


@pytest.mark.parametrize("device", CMSIS)
def test_cmsis_alignment_and_fast_paths(device):
    def per_mac(key, macs):
        return price(device, key) / macs

    # 1x1 convolution: input channels a multiple of 4 take arm_convolve_1x1_s8_fast; 22 channels do not.
    aligned, misaligned = per_mac(conv(24, 32), 144 * 24 * 32), per_mac(conv(22, 32), 144 * 22 * 32)
    assert misaligned > 1.15 * aligned
    # 3x3 depthwise fast path needs channels % 4 == 0: 30 channels fall back to the generic kernel.
    dw = lambda c, k: per_mac(lut_key("DEPTHWISE_CONV_2D", (12, 12, c), c, k, 1, "same", "relu6"), 144 * c * k * k)  # noqa: E731
    assert dw(32, 3) < dw(32, 5)
    assert dw(30, 3) > 1.3 * dw(32, 3)
    # CMSIS-NN has no broadcasting MUL: the SE gate runs TFLM's reference broadcast loop.
    plain = price(device, lut_key("MUL", (12, 12, 64), 64))
    bcast = price(device, lut_key("MUL", (12, 12, 64), 64, variant="bcast"))
    assert bcast > 4 * plain


def test_reference_kernels_have_no_alignment_effect():
    a = price("riscv", conv(24, 32)) / (24 * 32)
    b = price("riscv", conv(22, 32)) / (22 * 32)
    assert abs(a - b) / a < 0.05


def test_vww_reference_model_is_near_public_measurements():
    keys = read_model(MLPERF).graph().keys
    ms = {d: lutmod.load_device(analytical(d)).latency_ms(keys) for d in ALL}
    # MLPerf Tiny: 36.1 M cycles on a Cortex-M4 with CMSIS-NN (301 ms at 120 MHz); 18.0 M cycles on a
    # Cortex-M7 with X-CUBE-AI (64.4 ms at 280 MHz), which TFLM + CMSIS-NN does not beat.
    m4_cycles = ms["cortex-m4"] * 168e3
    assert 0.8 * 36.1e6 < m4_cycles < 1.25 * 36.1e6
    assert 18.0e6 <= ms["cortex-m7"] * 480e3 < 1.6 * 18.0e6
    assert 20 < ms["cortex-m7"] < 80
    assert ms["cortex-a53"] < ms["cortex-m7"] < ms["cortex-m4"] < ms["riscv"]


@pytest.mark.parametrize("name", ["cortex-m7", "cortex-m7-analytical"])
def test_clock_rescales_cycle_tables(name):
    t = lutmod.load_device(name)
    k = sorted(t.entries)[0]
    assert t.with_clock(t.clock_mhz / 2).op_us(k) == pytest.approx(2 * t.op_us(k))


def test_analytical_tables_price_keys_they_do_not_list():
    t = lutmod.load_device("cortex-m4-analytical")
    k = lut_key("CONV_2D", (224, 224, 3), 32, 3, 2, "same", "relu6")
    assert k not in t.entries and t.op_us(k) > t.op_us(lut_key("CONV_2D", (96, 96, 3), 16, 3, 2, "same", "relu6"))
    assert t.missing([k]) == []
    # the shipped cortex-m4 table was timed on the emulated core: it prices only the keys it lists
    assert lutmod.load_device("cortex-m4").missing([k]) == [k]
    for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "PAD", "QUANTIZE", "DEQUANTIZE", "SOFTMAX"):
        assert t.op_us(lut_key(op, (6, 6, 32), 32, 2, 2, "valid")) > 0
    with pytest.raises(UserError, match="no rule for operator 'GATHER_ND'"):
        t.op_us(lut_key("GATHER_ND", (6, 6, 32), 32))


def test_shipped_luts_match_schema_and_manifest():
    schema = json.loads((lutmod.assets_dir() / "lut.schema.json").read_text())
    for device in lutmod.shipped_devices():
        path = lutmod.assets_dir() / lutmod.manifest()["luts"][device]["file"]
        jsonschema.validate(json.loads(path.read_text()), schema)
        # checksum verified against the manifest; an alias (cortex-m7-emulated) names the device its table is for
        assert lutmod.load_device(device).device == lutmod.manifest()["luts"][device].get("device", device)
    assert {"cortex-m4", "cortex-m7", "riscv", "cortex-a53"} <= set(lutmod.shipped_devices())


@pytest.mark.parametrize("device", EMULATED)
def test_shipped_mcu_names_are_the_emulated_tables(device):
    """Issue 13: cortex-m4, cortex-m7 and riscv are the tables timed on the emulated core (method emulated, the
    fit and its sources in the metadata); the analytical ones stay as <device>-analytical, and the older
    <device>-emulated names are the same file."""
    luts = lutmod.manifest()["luts"]
    t = lutmod.load_device(device)
    assert (t.device, t.metadata["method"], luts[device]["file"]) == (device, "emulated", f"{device}.json")
    assert t.metadata["fit"]["anchors"] and t.metadata["emulation"]["qemu_machine"]   # the fit, its anchors
    assert any("QEMU" in s for s in t.metadata["sources"]) and any("metadata.fit" in s for s in t.metadata["sources"])
    assert t.estimator is None   # measured on the core: a key it lacks is an error, not a guess
    assert luts[f"{device}-emulated"] == {**luts[device], "device": device}
    a = lutmod.load_device(f"{device}-analytical")
    assert (a.device, a.metadata["method"]) == (device, "analytical") and a.estimator is not None
    assert luts[f"{device}-analytical"]["file"] == f"analytical/{device}.json"
    assert (lutmod.assets_dir() / f"{device}-validation.jsonl").is_file()


def test_every_table_in_lut_assets_is_in_the_manifest():
    # a table written beside the shipped ones but not recorded (an old emulated/ copy, say) is never loaded
    root = lutmod.assets_dir()
    files = {p.relative_to(root).as_posix() for p in root.rglob("*.json")} - {"manifest.json", "lut.schema.json"}
    assert files == {e["file"] for e in lutmod.manifest()["luts"].values()}


def test_bad_model_metadata_is_a_user_error(tmp_path):
    doc = json.loads((lutmod.assets_dir() / "analytical" / "cortex-m7.json").read_text())
    doc["metadata"]["model"]["name"] = "someone-elses-model"
    with pytest.raises(UserError, match="someone-elses-model"):
        lutmod.parse(doc, "edited.json")
    del doc["metadata"]["unit"]
    schema = json.loads((lutmod.assets_dir() / "lut.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    with pytest.raises(UserError, match="lacks required field 'unit'"):
        lutmod.parse(doc, "edited.json")


def test_build_writes_the_shipped_file_of_its_method_and_every_name_of_it(tmp_path, monkeypatch, capsys):
    """``lut build`` without --out: the analytical Cortex-M7 table goes to analytical/cortex-m7.json (the
    cortex-m7-analytical name), not over the emulated cortex-m7.json; a file two names share (cortex-m7 and
    cortex-m7-emulated) gets its new checksum under both. Run on a copy of lut_assets/."""
    import shutil

    from pipeline.cli import main
    from pipeline.commands.lut_tools import _default_method

    root = tmp_path / "lut_assets"
    shutil.copytree(lutmod.assets_dir(), root, ignore=shutil.ignore_patterns("*.png", "*.jsonl", "*.md"))
    from edgenas_keras.lut import table

    monkeypatch.setattr(table, "assets_dir", lambda: root)   # every reader of lut_assets/ goes through it
    before = lutmod.manifest()["luts"]
    assert main(["lut", "build", "--device", "cortex-m7", "--method", "analytical", "--limit", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["file"] == str(root / "analytical" / "cortex-m7.json") and r["entries"] == 3
    after = lutmod.manifest()["luts"]
    assert after.pop("cortex-m7-analytical") == {"device": "cortex-m7", "file": "analytical/cortex-m7.json",
                                                 "sha256": r["sha256"]}
    before.pop("cortex-m7-analytical")
    assert after == before   # the emulated cortex-m7 and every other name untouched
    assert len(lutmod.load_device("cortex-m7-analytical").entries) == 3
    assert lutmod.load_device("cortex-m7").metadata["method"] == "emulated"
    # the alias names the device and the method: the same file again
    assert main(["lut", "build", "--device", "cortex-m7-analytical", "--limit", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["device"], r["method"], r["file"]) == ("cortex-m7", "analytical", str(root / "analytical" / "cortex-m7.json"))
    assert lutmod.manifest()["luts"]["cortex-m7-analytical"]["sha256"] == r["sha256"]
    assert main(["lut", "build", "--device", "cortex-m7-analytical", "--method", "emulated"]) == 2
    assert "give --device cortex-m7 --method emulated" in capsys.readouterr().err
    # without --method: the emulated core's method and its shipped file
    assert (_default_method("cortex-m7"), _default_method("riscv"), _default_method("cortex-a53"),
            _default_method("host-tflm")) == ("emulated", "emulated", "analytical", "measured")
    assert lutmod.shipped_file("cortex-m7", "emulated") == root / "cortex-m7.json"
    assert lutmod.shipped_file("cortex-a53", "analytical") == root / "cortex-a53.json"
    lutmod.update_manifest("cortex-m7", root / "cortex-m7.json", "0" * 64)
    luts = lutmod.manifest()["luts"]
    assert luts["cortex-m7"]["sha256"] == luts["cortex-m7-emulated"]["sha256"] == "0" * 64
    with pytest.raises(UserError, match="not under"):
        lutmod.update_manifest("cortex-m7", tmp_path / "elsewhere.json", "0" * 64)


def test_an_alias_is_its_device_everywhere():
    """cortex-m7, cortex-m7-emulated and cortex-m7-analytical are one device: one runtime footprint, one
    emulated core; names not in the manifest are themselves."""
    from deploy.emulate import target_for_device
    from edgenas_keras.budgets import runtime_footprint

    for name in ("cortex-m7", "cortex-m7-emulated", "cortex-m7-analytical"):
        assert lutmod.device_of(name) == "cortex-m7" and target_for_device(name) == "cortex-m7"
        assert runtime_footprint(name) == runtime_footprint("cortex-m7")
    assert lutmod.device_of("riscv-analytical") == "riscv" and target_for_device("riscv-analytical") == "riscv32"
    assert lutmod.device_of("myboard") == "myboard" and target_for_device("cortex-a53") is None


def test_an_alias_bundles_and_pushes_as_its_device(tmp_path, capsys):
    """``bundle --device`` and ``push --device`` take a LUT name too: the manifest and the push folder say the
    device, so a model priced with cortex-m7-emulated lands where one priced with cortex-m7 does."""
    from pipeline.cli import main

    person = MLPERF.parent / "tflm_person_detect.tflite"
    out = tmp_path / "b"
    assert main(["bundle", str(person), "--out", str(out), "--device", "cortex-m7-emulated", "--host-arena",
                 "--json"]) == 0
    capsys.readouterr()
    assert json.loads((out / "manifest.json").read_text())["device"] == "cortex-m7"
    assert main(["push", str(out), "--dest", str(tmp_path / "dest"), "--model-name", "pd", "--device",
                 "cortex-m7-analytical", "--json"]) == 0
    capsys.readouterr()
    assert [p.name for p in (tmp_path / "dest" / "pd").iterdir()] == ["cortex-m7"]


def test_every_shipped_device_has_a_runtime_flash_figure():
    """Every device with a shipped table (cortex-m33 included: it has an emulated table and core) prices model +
    runtime flash: the pipeline's model budget, `edgenas search` and `validate` all need the figure (before this
    the benchmark's Table 2 stopped on cortex-m33 with "no documented TFLM runtime flash footprint")."""
    from edgenas_keras.budgets import runtime_footprint

    devices = lutmod.shipped_devices()
    assert "cortex-m33" in devices
    for name in devices:
        fp = runtime_footprint(name)
        assert fp.bytes > 0 and fp.source, name
    assert runtime_footprint("cortex-m33") == runtime_footprint("cortex-m4")   # same Thumb-2 CMSIS-NN code
