"""``edgenas emulate``: bundles built into Cortex-M / RV32 firmware and run in QEMU, against the host TFLM
runtime (real cross compilers, TFLM's own Makefile, QEMU; nothing mocked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from firmware_support import require_target

from deploy.emulate import emulate_bundle
from edgenas_keras.tflite import tflm
from edgenas_keras.tflite.bundle import make_bundle
from edgenas_keras.tflite.model import parse

ROOT = Path(__file__).resolve().parents[2]
EDGENAS = [sys.executable, "-m", "pipeline.cli"]
PERSON = ROOT / "tests" / "data" / "reference_models" / "tflm_person_detect.tflite"
KEYS = {"target", "qemu_machine", "toolchain", "output_matches_host", "arena_used_bytes", "instructions", "per_op",
        "image_text_bytes", "model_bytes"}


def _cli(*args, env=None):
    return subprocess.run([*EDGENAS, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=3600)


@pytest.mark.slow
def test_cli_reports_a_bit_exact_run_with_per_operator_counts(small_int8_model, tmp_path):
    require_target("cortex-m7")
    data = small_int8_model.read_bytes()
    model = parse(data)
    inp = model.tensors[model.inputs[0]]
    # A float input in the model's range: the CLI quantises it with the input's scale and zero point.
    x = np.random.default_rng(3).uniform(-1, 1, size=inp.shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = _cli("emulate", str(small_int8_model), "--target", "cortex-m7", "--input", str(tmp_path / "x.npy"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert KEYS <= set(d)
    assert d["target"] == "cortex-m7" and d["qemu_machine"] == "mps2-an500"
    assert "arm-none-eabi-gcc" in d["toolchain"]
    assert d["output_matches_host"] is True
    want = tflm.run(data, [tflm.quantize(x, inp.scale[0], inp.zero_point[0])])[0]
    assert bytes.fromhex(d["outputs"][0]) == want.tobytes()
    # One entry per operator, in order, with the LUT key of the parsed model.
    assert [o["op"] for o in d["per_op"]] == [o.op for o in model.operators]
    assert [o["lut_key"] for o in d["per_op"]] == model.graph().keys
    assert all(o["instructions"] > 0 for o in d["per_op"])
    total = sum(o["instructions"] for o in d["per_op"])
    assert 0.8 * d["instructions"] <= total <= d["instructions"]
    # The model array is the model file, byte for byte in size; the image's text holds it.
    assert d["model_bytes"] == len(data) and d["image_text_bytes"] > d["model_bytes"]
    assert d["settings_arena"]["allocates"] is True
    assert 0 < d["arena_used_bytes"] <= d["settings_arena"]["tensor_arena_size"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cortex-m4", "cortex-m7", "riscv32", "cortex-m33"])
def test_output_matches_host_and_settings_arena_allocates(name, small_int8_model, tmp_path):
    require_target(name)
    b = make_bundle(small_int8_model, tmp_path / "bundle", device=name)
    r = emulate_bundle(b.out_dir, name, progress=None)
    assert r.output_matches_host
    assert r.outputs == r.host_outputs
    assert r.settings_arena == {"tensor_arena_size": b.tensor_arena_size, "allocates": True}
    assert r.instructions > 10_000 and len(r.per_op) == len(parse(small_int8_model.read_bytes()).operators)
    if name == "riscv32":
        assert r.counter["instructions_per_tick"] == 1 and r.counter["method"] == "minstret CSR"


@pytest.mark.slow
def test_person_detection_reference_on_cortex_m7(tmp_path):
    require_target("cortex-m7")
    r = _cli("emulate", str(PERSON), "--target", "cortex-m7", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["output_matches_host"] is True
    # The public STM32F746 figure is 82.3 KB (TFLM + CMSIS-NN on a Cortex-M7); the 64-bit host needs more.
    assert abs(d["arena_used_bytes"] - 82_300) / 82_300 <= 0.01
    assert d["arena_used_bytes"] < tflm.min_arena_bytes(PERSON.read_bytes())
    assert d["model_bytes"] == PERSON.stat().st_size
    # 22.7 M instructions per invoke measured by hand (DESIGN 2b); the F746 board takes 23.3 M cycles.
    assert 20e6 < d["instructions"] < 26e6
    assert d["settings_arena"]["allocates"] is True


def test_missing_toolchain_is_one_error_line_and_exit_2(small_int8_model, tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))   # no cross compiler, no QEMU on the PATH
    r = _cli("emulate", str(small_int8_model), "--target", "cortex-m4", "--json", env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "arm-none-eabi-gcc" in lines[0] and "apt-get install gcc-arm-none-eabi" in lines[0]
    assert r.stdout == ""
