"""Reading a host table's re-basing (``metadata.rebase``): the operator classes, their factors, validation.
Pure Python; the measuring that writes a re-basing is ``lut.host_rebase``."""

from __future__ import annotations

import functools

from edgenas_keras.cost.graph import parse_key
from edgenas_keras.errors import UserError

CLASSES = ("conv1x1-expand", "conv1x1-project", "conv", "depthwise", "fc", "add", "mul", "mean", "pool", "other")


@functools.cache
def rebase_class(key: str) -> str:
    """The re-basing class of a LUT key (``CLASSES``): the calibration classes (``lut.calibrate.op_class``)
    with the elementwise and reduction operators told apart (their speed ratios between two CPUs differ:
    0.72 MEAN, 0.74 ADD, 0.78 broadcast MUL) and 1x1 convolutions split by the length of their inner loop
    (TFLM's reference kernel loops over input channels per output): ``conv1x1-expand`` (more output than
    input channels) and ``conv1x1-project`` (the others). Measured on the EPYC family 26 against the shipped
    table: expansions 0.63-0.69, projections 0.69-0.79; one factor for both misprices every block."""
    from edgenas_keras.lut.calibrate import op_class  # noqa: PLC0415

    c = op_class(key)
    if c == "conv1x1":
        f = parse_key(key)
        return "conv1x1-expand" if f["out_channels"] > f["in_shape"][2] else "conv1x1-project"
    if c != "other":
        return c
    op = key.split("|", 1)[0]
    return {"ADD": "add", "MUL": "mul", "MEAN": "mean", "AVERAGE_POOL_2D": "pool",
            "MAX_POOL_2D": "pool"}.get(op, "other")


def factor(rebase: dict, key: str) -> float:
    """The re-basing factor of ``key`` (dimensionless; multiplies the table's value)."""
    return float(rebase["factors"][rebase_class(key)])


def check(rebase, source: str) -> None:
    """Validate ``metadata.rebase`` of a LUT file: a positive factor for every class (``UserError`` otherwise)."""
    if not isinstance(rebase, dict) or not isinstance(rebase.get("factors"), dict):
        raise UserError(f"{source}: metadata.rebase must be an object with 'factors'")
    for c in CLASSES:
        v = rebase["factors"].get(c)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v == float("inf"):
            raise UserError(f"{source}: metadata.rebase.factors.{c} must be a positive number, got {v!r}")
