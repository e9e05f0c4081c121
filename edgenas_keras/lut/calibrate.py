"""Calibrate a latency table to one board from end-to-end measurements of whole models.

A shipped table gives the *shape* of a device's costs; a user's board (its clock tree, flash wait states,
compiler, kernel version) scales them. ``calibrate`` takes one or more (model, measured latency) pairs taken on
the board at one clock, prices each model with the base table exactly as ``edgenas analyze`` does
(``tflite.model.read_int8_model(...).graph()`` and ``Lut.op_us`` per operator key), and fits non-negative
factors per operator class so that the calibrated table's sums match the measurements:

- one pair: one global factor, ``measured / predicted``, so the model's prediction equals the measurement
  exactly;
- several pairs: per-class factors by non-negative least squares on relative residuals
  (``scipy.optimize.nnls`` on rows divided by each measurement), with as many class groups as the
  measurements can determine (``GROUPINGS``: 1 to 5 groups); with fewer pairs than groups, or when a fit is
  rank-deficient or drives a factor to zero, it falls back to fewer groups and says so in ``note``.

The result is a normal LUT file (same entries, same estimator as the base) whose ``metadata.calibration``
holds the factors, the measurements, the fit's residuals, the date and the base table's sha256;
``Lut.raw`` multiplies every value, listed or estimated, by ``factor(calibration, key)``: the one place the
factors are applied. ``metadata.clock_mhz`` of a cycle table becomes the board's clock.

Operator classes (``op_class``): ``conv1x1`` (CONV_2D with a 1x1 kernel), ``conv`` (other CONV_2D),
``depthwise`` (DEPTHWISE_CONV_2D), ``fc`` (FULLY_CONNECTED), ``other`` (elementwise, pooling, MEAN, softmax,
reshapes, quantise...).
"""

from __future__ import annotations

import copy
import datetime
import math
from dataclasses import dataclass
from pathlib import Path

from edgenas_keras._fs import sha256_file
from edgenas_keras.cost.graph import parse_key
from edgenas_keras.errors import UserError

CLASSES = ("conv1x1", "conv", "depthwise", "fc", "other")
# Groupings of the classes by number of groups: what a given number of measurements can tell apart. Two groups
# split the matrix-multiply kernels (convolutions, fully connected) from the memory-bound ones.
GROUPINGS: dict[int, tuple[tuple[str, ...], ...]] = {
    1: (CLASSES,),
    2: (("conv1x1", "conv", "fc"), ("depthwise", "other")),
    3: (("conv1x1", "conv"), ("depthwise",), ("fc", "other")),
    4: (("conv1x1",), ("conv",), ("depthwise",), ("fc", "other")),
    5: tuple((c,) for c in CLASSES),
}
FORMAT = 1


def op_class(key: str) -> str:
    """The calibration class of a LUT key (``CLASSES``); a malformed key raises ``ValueError``."""
    op = key.split("|", 1)[0]
    if op == "CONV_2D":
        f = parse_key(key)
        k = f.get("kernel_hw", f.get("kernel", 1))
        return "conv1x1" if tuple(k if isinstance(k, (tuple, list)) else (k, k)) == (1, 1) else "conv"
    return {"DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "fc"}.get(op, "other")


def factor(calibration: dict, key: str) -> float:
    """The calibration factor of ``key`` (dimensionless; multiplies the base table's value)."""
    return float(calibration["factors"][op_class(key)])


def instructions_by_class(per_op: list[dict], total: int) -> dict[str, int]:
    """An emulated invoke's instructions split by operator class (``CLASSES``).

    ``per_op``: ``deploy.emulate`` rows (``op``, ``lut_key`` or None, ``instructions``); ``total``: the whole
    invoke's count. What the operators do not account for (the interpreter's own work between them) goes to
    ``other``. An operator without a key is classed by its name (a CONV_2D of unknown kernel as ``conv``)."""
    by = dict.fromkeys(CLASSES, 0)
    for p in per_op:
        key = p.get("lut_key")
        cls = op_class(key) if key else {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise",
                                          "FULLY_CONNECTED": "fc"}.get(p.get("op", ""), "other")
        by[cls] += int(p["instructions"])
    by["other"] += max(int(total) - sum(by.values()), 0)
    return by


def fitted_cycles(fit: dict, instructions: int, by_class: dict[str, int] | None = None) -> float:
    """Cycles of an emulated run under an emulated table's fit (``metadata.fit``, ``deploy.lut_emulated``):
    ``cycles_per_instruction x (instructions + sum over classes of (class factor - 1) x the class's
    instructions)``. ``by_class`` (``instructions_by_class``) is needed when the fit has class factors other
    than 1; without it a ``ValueError`` is raised rather than a silently unweighted figure."""
    cpi = float(fit["cycles_per_instruction"])
    extra = {c: float(f) - 1.0 for c, f in (fit.get("class_factors") or {}).items() if float(f) != 1.0}
    if not extra:
        return cpi * instructions
    if by_class is None:
        raise ValueError("the fit has per-class factors: the run's instructions by operator class are needed")
    return cpi * (instructions + sum(e * by_class.get(c, 0) for c, e in extra.items()))


def check(calibration, source: str) -> None:
    """Validate ``metadata.calibration`` of a LUT file: a factor > 0 for every class (``UserError`` naming
    the file otherwise)."""
    if not isinstance(calibration, dict) or not isinstance(calibration.get("factors"), dict):
        raise UserError(f"{source}: metadata.calibration must be an object with 'factors'")
    for c in CLASSES:
        v = calibration["factors"].get(c)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise UserError(f"{source}: metadata.calibration.factors.{c} must be a positive number, got {v!r}")


@dataclass(frozen=True)
class Measurement:
    """One end-to-end measurement on the board: an int8 model and its latency (ms) at the board's clock."""

    model: Path
    latency_ms: float


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _class_sums_ms(table, keys: list[str]) -> dict[str, float]:
    """Per-class sums (ms) of the table's prices of ``keys``: the terms of ``cost.graph_latency_ms``."""
    table.require(keys)
    sums = dict.fromkeys(CLASSES, 0.0)
    for k in keys:
        sums[op_class(k)] += table.op_us(k) / 1000.0
    return sums


def _fit(rows: list[dict[str, float]], targets: list[float], groups: tuple[tuple[str, ...], ...]):
    """Non-negative least squares on relative residuals: returns ({group: factor} for the groups some model
    uses, or None when their columns are not independent; those groups)."""
    import numpy as np  # noqa: PLC0415
    from scipy.optimize import nnls  # noqa: PLC0415

    cols = [g for g in groups if any(sum(r[c] for c in g) > 0 for r in rows)]
    if not cols:
        return {}, cols
    a = np.array([[sum(r[c] for c in g) / t for g in cols] for r, t in zip(rows, targets)])
    b = np.ones(len(rows))
    if int(np.linalg.matrix_rank(a)) < len(cols):
        return None, cols
    x, _ = nnls(a, b)
    return dict(zip(cols, (float(v) for v in x))), cols


def fit_factors(rows: list[dict[str, float]], targets: list[float], classes: int | None = None):
    """Per-class factors for measured ``targets`` (ms) given per-class base sums ``rows`` (ms).

    ``classes``: the number of class groups (``GROUPINGS``); None takes the most the measurements support.
    Returns ``(factors by class, groups fitted, note)``. Classes no measured model uses get the one-factor
    fit's value. Raises ``UserError`` when the measured models have no priced operators.
    """
    n = len(rows)
    if classes is not None and classes not in GROUPINGS:
        raise UserError(f"--classes must be one of {', '.join(map(str, GROUPINGS))}, got {classes}")
    want = classes if classes is not None else max(GROUPINGS)
    notes = []
    start = min(want, n)
    if start < want and classes is not None:
        notes.append(f"{n} measurement(s) cannot determine {want} class groups")
    glob, _ = _fit(rows, targets, GROUPINGS[1])
    if not glob:
        raise UserError("the measured models have no operators priced by the table")
    g = next(iter(glob.values()))
    for size in range(start, 0, -1):
        fitted, cols = _fit(rows, targets, GROUPINGS[size])
        if fitted is None:
            notes.append(f"{size} groups: the models' class mixes are not independent")
            continue
        if any(v <= 0 for v in fitted.values()):
            zero = [",".join(c) for c, v in fitted.items() if v <= 0]
            notes.append(f"{size} groups: the fit drives {'; '.join(zero)} to zero")
            continue
        factors = {}
        for grp in GROUPINGS[size]:
            for c in grp:
                factors[c] = fitted.get(grp, g)
        unused = [c for grp in GROUPINGS[size] if grp not in fitted for c in grp]
        if size < want:
            notes.append(f"fell back to {size} class group(s) for {n} measurement(s)")
        if unused:
            notes.append(f"classes {', '.join(unused)} occur in no measured model: they take the one-factor "
                         f"fit ({g:.4f})")
        return factors, [list(grp) for grp in GROUPINGS[size]], "; ".join(notes)
    raise AssertionError("the one-group fit always succeeds")  # pragma: no cover


def calibrate(base, measurements: list[Measurement], clock_mhz: float | None = None, classes: int | None = None,
              date: str | None = None):
    """The board's LUT: ``base`` (a ``Lut``) scaled so that its sums match ``measurements``.

    ``clock_mhz``: the board's clock during the measurements; required for cycle tables (it becomes the
    calibrated table's clock), refused for microsecond tables (measured at a fixed clock). Returns
    ``(lut, report)``: ``lut`` carries ``metadata.calibration``; ``report`` is that dict. Raises
    ``UserError`` for non-positive or non-finite numbers, a model that is not full-int8 or has operators the
    base table cannot price, and a base table that is already calibrated.
    """
    from edgenas_keras.lut.table import Lut  # noqa: PLC0415  (lut.table imports this module lazily)
    from edgenas_keras.tflite.model import read_int8_model  # noqa: PLC0415

    if not measurements:
        raise UserError("give at least one --model with its --latency-ms")
    if base.metadata.get("calibration"):
        raise UserError(f"LUT {base.source} is already calibrated; calibrate its base table "
                        f"(--device {base.device}) with all your measurements instead")
    if base.unit != "us":   # cycles (or emulated instructions): priced at a clock
        if clock_mhz is None:
            raise UserError(f"--clock-mhz is required: LUT {base.source} is in {base.unit}; give the clock the "
                            "board ran at during the measurements")
        if not _positive(clock_mhz):
            raise UserError(f"--clock-mhz must be a positive number, got {clock_mhz}")
    elif clock_mhz is not None:
        raise UserError(f"LUT {base.source} is in {base.unit}, measured at a fixed clock: --clock-mhz does not "
                        "apply to it")
    priced = base.with_clock(clock_mhz)
    rows, targets, points = [], [], []
    for m in measurements:
        if not _positive(m.latency_ms):
            raise UserError(f"--latency-ms must be a positive number, got {m.latency_ms} (for {m.model})")
        graph = read_int8_model(m.model).graph()
        rows.append(_class_sums_ms(priced, graph.keys))
        targets.append(float(m.latency_ms))
        points.append({"model": Path(m.model).name, "model_sha256": sha256_file(m.model),
                       "latency_ms": float(m.latency_ms), "base_ms": sum(rows[-1].values())})
    factors, groups, note = fit_factors(rows, targets, classes)
    for p, r in zip(points, rows):
        p["calibrated_ms"] = sum(r[c] * factors[c] for c in CLASSES)
        p["residual_pct"] = 100.0 * (p["calibrated_ms"] / p["latency_ms"] - 1.0)
        p["base_error_pct"] = 100.0 * (p["base_ms"] / p["latency_ms"] - 1.0)
    report = {"format": FORMAT, "factors": factors, "groups": groups, "fit": "scipy.optimize.nnls on residuals "
              "relative to each measurement" if len(groups) > 1 else "one factor: least squares on relative "
              "residuals", "points": points, "clock_mhz": priced.clock_mhz,
              "date": date or datetime.date.today().isoformat(),
              "base": {"device": base.device, "file": base.source, "sha256": base.sha256,
                       "method": base.metadata.get("method")}, "note": note}
    meta = copy.deepcopy(priced.metadata)
    meta["calibration"] = report
    meta["sources"] = list(meta.get("sources", [])) + [
        f"calibrated on {report['date']} to {len(points)} end-to-end measurement(s) on the user's board at "
        f"{priced.clock_mhz:g} MHz ({', '.join(p['model'] for p in points)}); base LUT sha256 {base.sha256}"]
    lut = Lut(meta, dict(base.entries), "", "<calibrated>", base.estimator)
    return lut, report


__all__ = ["CLASSES", "GROUPINGS", "Measurement", "calibrate", "check", "factor", "fit_factors", "fitted_cycles",
           "instructions_by_class", "op_class"]
