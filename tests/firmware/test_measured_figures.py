"""The emulated figures in the product: ``bundle --device`` sizes kTensorArenaSize from the arena on the
device's 32-bit core (falling back to the 64-bit host bisection only without a toolchain, and saying so),
and ``validate`` checks SRAM against that arena and flash against the linked image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from firmware_support import require_target

from deploy.emulate import emulate_bundle
from edgenas_keras.tflite.bundle import arena_size

ROOT = Path(__file__).resolve().parents[2]
PERSON = ROOT / "tests" / "data" / "reference_models" / "tflm_person_detect.tflite"


def _cli(*args, env=None):
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=3600)
    return r


@pytest.mark.slow
def test_bundle_arena_comes_from_the_emulated_core_and_allocates_there(tmp_path):
    require_target("cortex-m7")
    r = _cli("bundle", str(PERSON), "--out", str(tmp_path / "b"), "--name", "person_detect", "--device",
             "cortex-m7", "--json")
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["arena_source"] == "emulated"
    assert abs(b["target_arena_bytes"] - 82_300) / 82_300 <= 0.01      # public STM32F746 figure: 82.3 KB
    assert b["tensor_arena_size"] == arena_size(b["target_arena_bytes"]) < arena_size(b["host_arena_bytes"])
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["arena"]["source"] == "emulated" and m["arena"]["target"]["qemu_machine"] == "mps2-an500"
    settings = (tmp_path / "b" / "person_detect_model_settings.h").read_text()
    assert f"kTensorArenaSize = {b['tensor_arena_size']};" in settings and "QEMU mps2-an500" in settings
    # The bundle's own kTensorArenaSize allocates on the core it was measured on.
    run = emulate_bundle(tmp_path / "b", "cortex-m7", progress=None)
    assert run.settings_arena == {"tensor_arena_size": b["tensor_arena_size"], "allocates": True}
    assert run.output_matches_host


def test_bundle_falls_back_to_the_host_arena_without_a_toolchain_and_says_why(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    r = _cli("bundle", str(PERSON), "--out", str(tmp_path / "b"), "--device", "cortex-m7", "--json", env=env)
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["arena_source"] == "host" and b["target_arena_bytes"] is None
    assert b["tensor_arena_size"] == arena_size(b["host_arena_bytes"])
    note = json.loads((tmp_path / "b" / "manifest.json").read_text())["arena"]["note"]
    assert "arm-none-eabi-gcc" in note and "apt-get install" in note


@pytest.mark.slow
def test_validate_checks_the_emulated_arena_and_the_linked_image(tmp_path):
    require_target("cortex-m7")
    r = _cli("validate", str(PERSON), "--device", "cortex-m7", "--latency-ms", "10000", "--sram-kb", "81",
             "--flash-kb", "4096", "--min-accuracy", "0", "--json")
    doc = json.loads(r.stdout)
    fp = doc["target_footprint"]
    sram, flash = doc["checks"]["sram"], doc["checks"]["flash"]
    assert sram["figure"] == fp["arena_used_bytes"] and "emulated core" in sram["detail"]["rule"]
    # 81 KiB = 82,944 B: the 32-bit arena (82.3 KB) fits where the 64-bit host's (85 KB) would not.
    assert sram["verdict"] == "pass" and sram["detail"]["host_arena_bytes"] > 81 * 1024
    assert flash["figure"] == fp["flash_bytes"] == fp["runtime_flash_bytes"] + PERSON.stat().st_size
    assert "linked image" in flash["detail"]["runtime_source"]


def test_validate_needs_no_documented_runtime_figure_when_the_linked_image_is_measured(tmp_path):
    """A board of the user's own (a table whose device has no entry in ``RUNTIME_FLASH``) validated with the
    footprint measured on an emulated core: flash is the linked image, and the missing documented runtime
    figure is not an error (it used to be, before the linked image was even read)."""
    require_target("cortex-m33")
    from deploy.emulate import measured_footprint
    from edgenas_keras import lut as lutmod
    from edgenas_keras.budgets import RUNTIME_FLASH
    from edgenas_keras.validate import validate_model

    doc = json.loads((ROOT / "lut_assets" / "cortex-m33.json").read_text())
    doc["metadata"]["device"] = "my-m33-board"
    table = tmp_path / "my-m33-board.json"
    table.write_text(json.dumps(doc))
    lut = lutmod.load(table)
    assert lut.device == "my-m33-board" and lut.device not in RUNTIME_FLASH
    fp, note = measured_footprint(PERSON, "cortex-m33", progress=None)
    assert fp is not None, note
    report = validate_model(PERSON, lut, {"latency_ms": 1e6, "sram_bytes": 1 << 20, "flash_bytes": 1 << 22,
                                          "min_accuracy": 0.0}, target_footprint=fp)
    flash = report["checks"]["flash"]
    assert flash["figure"] == fp["flash_bytes"] == fp["runtime_flash_bytes"] + PERSON.stat().st_size
    assert flash["verdict"] == "pass" and "linked image" in flash["detail"]["runtime_source"]
