"""The Makefile fragment of deploy/firmware/README.md, built exactly as written (with the README's example
``main.cc``) into a bundle of the person-detection model, and run on QEMU's Cortex-M7: a firmware engineer's
build of our bundle allocates with its ``kTensorArenaSize`` and answers as the host TFLM runtime does."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from firmware_support import require_target

from deploy import tflm_build as tb
from edgenas_keras.tflite import tflm
from edgenas_keras.tflite.bundle import make_bundle

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "deploy" / "firmware" / "README.md"
PERSON = ROOT / "tests" / "data" / "reference_models" / "tflm_person_detect.tflite"


def _block(marker: str) -> str:
    text = README.read_text()
    m = re.search(re.escape(marker) + r"\s*```\w+\n(.*?)```", text, re.S)
    assert m, f"{marker} block missing from {README}"
    return m.group(1)


@pytest.mark.slow
def test_readme_fragment_builds_and_runs(tmp_path):
    t = require_target("cortex-m7")
    lib = tb.tflm_library(t, progress=None)
    src_root = Path(lib.info["source_root"])
    b = make_bundle(PERSON, tmp_path / "bundle", name="person_detect", device="cortex-m7")
    (tmp_path / "edgenas_bundle.mk").write_text(_block("<!-- edgenas-make-fragment -->"))
    (tmp_path / "main.cc").write_text(_block("<!-- edgenas-example-main -->"))
    cpu = " ".join(t.cpu_flags)
    startup = tb.PLATFORM_DIR / "cortex-m" / "startup.c"
    # The user's own Makefile around the fragment: compiler, CPU flags, start-up code and linker script of
    # their board (here QEMU's mps2-an500 from deploy/firmware/platform).
    (tmp_path / "Makefile").write_text(f"""\
CXX := arm-none-eabi-g++
CC := arm-none-eabi-gcc
CXXFLAGS := {cpu} -Os
EDGENAS_BUNDLE := {b.out_dir}
TFLM_ROOT := {src_root}
TFLM_LIB := {lib.path}
include edgenas_bundle.mk
LDFLAGS := --specs=nano.specs --specs=rdimon.specs -nostartfiles -L{tb.PLATFORM_DIR / 'mps2-an500'} \
  -T{tb.PLATFORM_DIR / 'cortex-m' / 'link.ld'} -Wl,--gc-sections
app.elf: main.o startup.o $(EDGENAS_OBJS)
\t$(CXX) $(CXXFLAGS) $(LDFLAGS) $^ $(EDGENAS_LDLIBS) -o $@
main.o: main.cc
\t$(CXX) $(CXXFLAGS) $(EDGENAS_CXXFLAGS) $(EDGENAS_CPPFLAGS) -c $< -o $@
startup.o: {startup}
\t$(CC) {cpu} -Os -I{startup.parent} -c $< -o $@
""")
    r = subprocess.run(["make", "app.elf"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "build" / "edgenas" / "person_detect_model_data.o").is_file()
    run = tb.run_qemu(t, tmp_path / "app.elf", timeout_s=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = dict(line.rsplit(" ", 1) for line in run.stdout.strip().splitlines())
    x = np.zeros((1, 96, 96, 1), np.int8)
    want = tflm.run(PERSON.read_bytes(), [x])[0].reshape(-1)
    labels = [f"class_{i}" for i in range(want.size)]
    assert [int(lines[k]) for k in labels] == want.tolist()
    assert 0 < int(lines["arena_used_bytes"]) <= b.tensor_arena_size


def test_fragment_is_the_one_the_bundle_readme_shows(tmp_path):
    """The bundle's own README.md carries the same fragment (a firmware engineer may only have the bundle)."""
    b = make_bundle(PERSON, tmp_path / "bundle", name="person_detect")
    assert _block("<!-- edgenas-make-fragment -->") in (b.out_dir / "README.md").read_text()
