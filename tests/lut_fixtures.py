"""LUT fixtures for tests: synthetic tables, labelled method 'fixture', priced by a deterministic formula of
the operator's work. They exist so cost-model tests do not depend on the shipped device tables."""

from __future__ import annotations

import hashlib

from edgenas_keras.lut import Lut, LutEntry
from edgenas_keras.cost.graph import parse_key, reachable_keys


def fixture_value(key: str) -> float:
    """Cycles for ``key``: proportional to a rough work measure plus a key-dependent jitter."""
    k = parse_key(key)
    h, w, c = k["in_shape"]
    work = h * w * max(c, k["out_channels"]) * k["kernel_hw"][0] * k["kernel_hw"][1] + 500
    jitter = int(hashlib.sha256(key.encode()).hexdigest()[:4], 16) / 65535.0
    return float(work * (1.0 + 0.2 * jitter))


def fixture_lut(space, device: str = "fixture-m7", clock_mhz: float = 480.0, resolutions=None) -> Lut:
    meta = {"device": device, "core": "fixture", "clock_mhz": clock_mhz, "runtime": "tflm",
            "kernels": "reference", "method": "fixture", "unit": "cycles", "tool_version": "test",
            "date": "2026-11-26", "sources": ["tests/lut_fixtures.py (synthetic, not a device)"]}
    return Lut(meta, {k: LutEntry(fixture_value(k), 0.0, 1) for k in reachable_keys(space, resolutions)}, source="fixture")
