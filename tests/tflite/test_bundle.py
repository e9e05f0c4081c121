"""The firmware bundle, on real third-party int8 models: it compiles, carries the exact model bytes, registers
exactly the model's operators, and its arena constant is enough for TFLM."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgenas_keras.tflite import tflm
from edgenas_keras.tflite.bundle import make_bundle
from edgenas_keras.errors import UserError
from edgenas_keras.tflite.model import read_model

REF = Path(__file__).resolve().parents[1] / "data" / "reference_models"
MLPERF = REF / "mlperf_tiny_vww_96_int8.tflite"
PERSON = REF / "tflm_person_detect.tflite"


@pytest.fixture(scope="module", params=[(MLPERF, "vww"), (PERSON, "person_detect")], ids=["mlperf", "person"])
def bundle(request, tmp_path_factory):
    path, name = request.param
    out = tmp_path_factory.mktemp("bundles") / name
    b = make_bundle(path, out, name, device="cortex-m7",
                    extra_manifest={"labels": ["non_person", "person"], "accuracy": {"int8_tflm": 0.8}})
    return path, b


def _model_array(cc_text: str) -> bytes:
    body = re.search(r"alignas\(16\) const unsigned char g_\w+_model_data\[\] = \{(.*?)\};", cc_text, re.S).group(1)
    return bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body))


def test_model_data_compiles_and_is_byte_identical(bundle, tmp_path):
    path, b = bundle
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    cc = b.out_dir / f"{b.name}_model_data.cc"
    obj = tmp_path / "m.o"
    subprocess.run([gxx, "-std=c++17", "-c", str(cc), "-I", str(b.out_dir), "-o", str(obj)], check=True)
    symbols = subprocess.run(["nm", str(obj)], capture_output=True, text=True).stdout
    assert f"g_{b.name}_model_data" in symbols and f"g_{b.name}_model_data_len" in symbols
    data = path.read_bytes()
    assert _model_array(cc.read_text()) == data == (b.out_dir / "model.tflite").read_bytes()
    assert f"g_{b.name}_model_data_len = {len(data)};" in cc.read_text()


def test_resolver_registers_exactly_the_models_operators(bundle):
    path, b = bundle
    text = (b.out_dir / f"{b.name}_op_resolver.h").read_text()
    have = set(re.findall(r"\b(Add[A-Za-z0-9]+)\s*\(", text))
    # TFLM's method names, written out independently of the generator's mapping.
    tflm_names = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "SOFTMAX": "AddSoftmax",
                  "AVERAGE_POOL_2D": "AddAveragePool2D", "RESHAPE": "AddReshape",
                  "FULLY_CONNECTED": "AddFullyConnected"}
    assert have == {tflm_names[op] for op in read_model(path).op_set}
    assert f"MicroMutableOpResolver<k{''.join(p.capitalize() for p in b.name.split('_'))}OpCount>" in text
    assert f"OpCount = {len(have)};" in text


def test_tflm_runs_in_exactly_the_arena_constant(bundle):
    path, b = bundle
    settings = (b.out_dir / f"{b.name}_model_settings.h").read_text()
    arena = int(re.search(r"kTensorArenaSize = (\d+);", settings).group(1))
    assert arena == b.tensor_arena_size and arena % 16 == 0
    measured = tflm.min_arena_bytes(path.read_bytes())
    assert measured == b.host_arena_bytes and measured + 2048 <= arena <= measured * 1.06 + 16
    scale = float(re.search(r"kInputScale = ([0-9.e-]+)f;", settings).group(1))
    zp = int(re.search(r"kInputZeroPoint = (-?\d+);", settings).group(1))
    [d] = read_model(path).input_details()
    assert (scale, zp) == (pytest.approx(d["scale"][0]), d["zero_point"][0])
    x = tflm.quantize(np.full(d["shape"], 0.5), scale, zp)
    [out] = tflm.run(path.read_bytes(), x, arena_size=arena)
    assert out.shape == (1, 2)


def test_manifest_hashes_every_file_and_keeps_provenance(bundle):
    path, b = bundle
    m = json.loads((b.out_dir / "manifest.json").read_text())
    files = {p.name for p in b.out_dir.iterdir()} - {"manifest.json"}
    assert set(m["files"]) == files
    for name, digest in m["files"].items():
        assert hashlib.sha256((b.out_dir / name).read_bytes()).hexdigest() == digest
    assert m["model"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m["device"] == "cortex-m7" and m["accuracy"] == {"int8_tflm": 0.8}
    assert m["labels"] == ["non_person", "person"] and m["tools"]["tflite-micro"]
    assert m["arena"]["tensor_arena_size"] == b.tensor_arena_size
    readme = (b.out_dir / "README.md").read_text()
    assert f"kTensorArenaSize = {b.tensor_arena_size}" in readme and "96 x 96 pixels" in readme


def test_rebundle_replaces_and_foreign_dir_is_refused(tmp_path):
    out = tmp_path / "b"
    make_bundle(PERSON, out, "pd")
    (out / "stale.txt").write_text("from an older bundle")
    make_bundle(PERSON, out, "pd")
    assert not (out / "stale.txt").exists() and (out / "pd_model_data.cc").exists()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        make_bundle(PERSON, foreign, "pd")
    assert (foreign / "mine.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp dirs left


def test_cli_bundle_json_and_corrupt_model_exit_2(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["bundle", str(MLPERF), "--out", str(tmp_path / "ok"), "--name", "vww", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ops"] == read_model(MLPERF).op_set and report["tensor_arena_size"] % 16 == 0
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(MLPERF.read_bytes()[:4096])
    assert main(["bundle", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "broken.tflite" in err[0]
    assert not (tmp_path / "out").exists()


def _header_constants(text: str) -> dict:
    consts = {}
    for ctype, name, value in re.findall(r"constexpr (bool|int|float) (k\w+) = ([^;]+);", text):
        consts[name] = ({"true": True, "false": False}[value] if ctype == "bool" else
                        int(value) if ctype == "int" else float(value.removesuffix("f")))
    return consts


def test_third_party_preprocessing_is_unknown_not_guessed(bundle):
    """Nobody recorded how the reference models were trained: the bundle says so and gives no pixel formula."""
    _, b = bundle
    pre = json.loads((b.out_dir / "manifest.json").read_text())["preprocessing"]
    assert pre["known"] is False and "--input-range" in pre["how_to_state"]
    consts = _header_constants((b.out_dir / f"{b.name}_model_settings.h").read_text())
    assert consts["kPreprocessingKnown"] is False
    assert not {"kPixelDivisor", "kPixelOffset", "kPixelToInputOffset"} & set(consts)
    readme = (b.out_dir / "README.md").read_text()
    assert "Pixel scaling: unknown" in readme and "--input-range LO,HI" in readme
    assert "pixel / 255" not in readme and "pixel / 127.5" not in readme


@pytest.mark.parametrize(("model", "stated", "offset"), [(MLPERF, "0,1", -128), (PERSON, "-1,1", -128),
                                                          (PERSON, "0,1", None)], ids=["mlperf", "pd", "pd-01"])
def test_stated_input_range_reaches_header_manifest_and_readme(model, stated, offset, tmp_path, capsys):
    """``--input-range`` for a third-party model: the header's constants are the manifest's, and the integer
    offset it states (when it states one) is a nearest int8 value of every pixel under the model's own input
    quantisation; where none is exact (person_detect's scale 1/127.5 for [0, 1]) it says so."""
    from pipeline.cli import main

    out = tmp_path / "b"
    assert main(["bundle", str(model), "--out", str(out), "--name", "m", f"--input-range={stated}"]) == 0
    capsys.readouterr()
    lo, hi = (float(v) for v in stated.split(","))
    pre = json.loads((out / "manifest.json").read_text())["preprocessing"]
    consts = _header_constants((out / "m_model_settings.h").read_text())
    assert pre["known"] and consts["kPreprocessingKnown"] is True
    assert pre["input_range"] == [lo, hi] == [consts["kInputRangeMin"], consts["kInputRangeMax"]]
    assert consts["kPixelDivisor"] == pre["pixel_divisor"] == pytest.approx(255 / (hi - lo))
    assert consts["kPixelOffset"] == pre["pixel_offset"] == lo
    assert pre["pixel_to_int8"]["integer_offset"] == offset and consts["kPixelToInputIsOffset"] is (offset is not None)
    assert f"--input-range {stated}" in pre["source"]
    readme = (out / "README.md").read_text()
    assert f"pixels 0..255 -> [{lo:g}, {hi:g}]" in readme and "stated by the user" in readme
    [d] = read_model(model).input_details()
    pixels = np.arange(256)
    ideal = np.clip((pixels * (hi - lo) / 255 + lo) / d["scale"][0] + d["zero_point"][0], -128, 127)
    if offset is not None:
        assert consts["kPixelToInputOffset"] == offset
        assert np.max(np.abs(np.clip(pixels + offset, -128, 127) - ideal)) <= 0.5 + 1e-3
    else:
        assert "kPixelToInputOffset" not in consts and "No single integer offset" in readme


def test_bad_input_range_exits_2(tmp_path, capsys):
    from pipeline.cli import main

    for bad in ("1,0", "0", "a,b", "0,inf"):
        assert main(["bundle", str(PERSON), "--out", str(tmp_path / "o"), f"--input-range={bad}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "input-range" in err[0].lower().replace(" ", "-"), err
        assert not (tmp_path / "o").exists()
