"""The instruction counter of the emulated targets, checked against loops of known length (no TFLM needed).

Cortex-M: SysTick under ``-icount shift=0``: one tick is 40 instructions on mps2-an386/an500 (25 MHz) and 50
on mps2-an505 (20 MHz); the 700 M-instruction loop spans more than one 24-bit SysTick period, so the
wrap counting is exercised. RV32: ``minstret``, exact up to the fixed cost of the call and the CSR reads.
"""

from __future__ import annotations

import re

import pytest
from firmware_support import require_target

from deploy import tflm_build as tb


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cortex-m4", "cortex-m7", "cortex-m33", "riscv32"])
def test_counter_counts_guest_instructions(name, tmp_path):
    t = require_target(name)
    elf = tb.compile_and_link(t, None, [tb.FIRMWARE_DIR / "app" / "calibrate.c"], tmp_path / "calibrate.elf")
    run = tb.run_qemu(t, elf, timeout_s=300)
    assert run.returncode == 0, run.stderr
    pairs = [(int(a), int(b)) for a, b in re.findall(r"^calib (\d+) (\d+)$", run.stdout + run.stderr, re.M)]
    assert [n for n, _ in pairs] == [1000, 10000, 100000, 1000000, 10000000, 700000000]
    ipt = t.instructions_per_tick
    for n, delta in pairs:
        measured = delta * ipt
        # The loop itself, plus the call and the counter reads: within one tick and a few dozen instructions.
        assert n - ipt <= measured <= n + 60 + ipt, (n, delta)
    if t.is_arm and ipt == 40:
        assert pairs[-1][1] > 1 << 24    # more than one SysTick period: wraps were counted
