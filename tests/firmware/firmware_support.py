"""Helpers for the firmware tests (test modules import this module, not ``conftest``: several folders have a
``conftest.py``, and which one the bare name means depends on collection order)."""

from __future__ import annotations

import pytest

from deploy import tflm_build as tb


def require_target(name: str) -> tb.Target:
    """The target, or a skip naming what to install when its toolchain or QEMU is missing."""
    t = tb.get_target(name)
    try:
        tb.check_tools(t)
    except tb.ToolchainMissing as exc:
        pytest.skip(f"toolchain for {name} absent: {exc}")
    return t
