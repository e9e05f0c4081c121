"""RV32 links at every placement: nothing we build for riscv32 carries a ``%pcrel_lo`` with an addend.

With ``-mcmodel=medany -mexplicit-relocs`` (TFLM's riscv32_generic flags) GCC loads the two words of a
``double`` or ``long long`` as ``%pcrel_lo(.LA)`` and ``%pcrel_lo(.LA+4)`` off one ``auipc``; compressed code
puts that ``auipc`` on any 2-byte boundary, so for about one placement in a thousand per pair the second word
sits across the 12-bit boundary and GNU ld stops with "dangerous relocation: %pcrel_lo overflow with an
addend" (riscv-non-isa/riscv-elf-psabi-doc issue 184). The old library had 89 such pairs and one
architecture in 56 of ``lut validate --device riscv --emulated`` failed to link. The target now uses medlow
(on RV32 its ``lui``/``%lo`` pairs reach every address and fold offsets safely)."""

from __future__ import annotations

import re
import subprocess

from firmware_support import require_target

from deploy import tflm_build as tb

# A relocation line of `objdump -r`: OFFSET TYPE SYMBOL[+ADDEND]
RISKY = re.compile(r"R_RISCV_PCREL_LO12_[IS]\s+\S+\+0x[0-9a-f]+")

SNIPPET = """
long long counter = 5;
double scale(double x) { return x * 1.2345678; }
long long next(void) { return ++counter; }
"""


def _risky_relocations(target: tb.Target, obj) -> list[str]:
    out = subprocess.run([target.prefix + "objdump", "-r", str(obj)], capture_output=True, text=True, check=True)
    return RISKY.findall(out.stdout)


def _compile(target: tb.Target, flags, tmp_path, name):
    src = tmp_path / "snippet.c"
    src.write_text(SNIPPET)
    obj = tmp_path / f"{name}.o"
    subprocess.run([target.prefix + "gcc", *flags, "-c", str(src), "-o", str(obj)], check=True,
                   capture_output=True)
    return obj


def test_library_and_app_code_have_no_pcrel_lo_addends(tmp_path):
    target = require_target("riscv32")
    lib = tb.tflm_library(target, progress=None)
    assert "-mcmodel=medlow" in lib.ccflags and "-mcmodel=medlow" in lib.cxxflags
    # The whole TFLM library as built for the emulated core.
    assert _risky_relocations(target, lib.path) == []
    # Application code compiled with the library's flags (what compile_and_link does for main.cc etc.).
    assert _risky_relocations(target, _compile(target, lib.ccflags, tmp_path, "ours")) == []
    # The same code with TFLM's riscv32_generic code model has the hazard: the check above can fail.
    medany = [f if not f.startswith("-mcmodel=") else "-mcmodel=medany" for f in lib.ccflags]
    assert len(_risky_relocations(target, _compile(target, medany, tmp_path, "medany"))) >= 1
