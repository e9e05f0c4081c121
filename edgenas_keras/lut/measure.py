"""Measured LUTs: one full-int8 single-operator model per LUT key, timed in the TFLite Micro runtime.

Why single-operator models regenerated from the key: the key (``ops.lut_key``) is all a LUT stores, so the
model that priced it must be derivable from the key alone (``ops.parse_key``). That makes a table rebuildable,
lets the firmware profiler (``deploy/firmware/lut_profiler``) run the exact same models on a board, and lets
``single_op_model`` check, by parsing the converted flatbuffer, that the converter produced exactly the
operator the key names (no QUANTIZE inserted, the activation fused, the broadcast kept).

Timing (``measure_model``): warm-up, then the median of repeated ``invoke()`` calls, minus the interpreter's
per-invoke overhead (``invoke_overhead_s``: the Python -> C call and dispatch a microcontroller does not pay).
Times are this thread's CPU time, not wall time: the machine is shared, and CPU time does not count the
slices other processes took (``tflm.time_invoke`` uses the wall clock, right for a quiet machine). Repeats
adapt to the operator's cost (many for microsecond operators, few for the big expansions) so the whole
default space fits in the time budget on a shared 2-core machine. Dispersion is the MAD of the samples.

Progress is appended to a JSON-lines side file as each key is measured, so an interrupted build resumes
where it stopped; the table itself is written atomically at the end (``Lut.save``).
"""

from __future__ import annotations

import datetime
import functools
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgenas_keras._fs import atomic_write_bytes, read_json_lines
from edgenas_keras import lut as lutmod
from edgenas_keras import machine
from edgenas_keras.cost.graph import default_out_hw, parse_key
from edgenas_keras.errors import UserError
from edgenas_keras.tflite.model import parse as parse_tflite

TOOL_VERSION = "0.1.0"
# Per-key timing budget: enough repeats for a stable median without spending minutes on a 50 ms operator.
TIME_BUDGET_S = 0.4
MIN_REPEATS, MAX_REPEATS = 5, 200


def _representative(shapes: list[tuple[int, ...]], n: int = 4, seed: int = 0):
    """Uniform noise in [-1, 1] for every model input (the cost of int8 kernels does not depend on values)."""

    def gen():
        rng = np.random.default_rng(seed)
        for _ in range(n):
            yield [rng.uniform(-1.0, 1.0, size=(1, *s)).astype(np.float32) for s in shapes]

    return gen


def _dilated_conv_layer(keras):
    """A Keras layer calling TensorFlow's Conv2D / DepthwiseConv2dNative ops with their ``dilations``
    attribute. Keras' own Conv2D(dilation_rate=...) is traced through space-to-batch, which the int8
    converter keeps as SPACE_TO_BATCH_ND + CONV_2D + BATCH_TO_SPACE_ND + ADD; the raw ops convert to one
    dilated CONV_2D / DEPTHWISE_CONV_2D (DilationH/WFactor), the operator the key names."""
    import tensorflow as tf  # noqa: PLC0415

    class DilatedConv(keras.layers.Layer):
        def __init__(self, op, filters, kernel, stride, dilation, padding, depth_multiplier, **kw):
            super().__init__(**kw)
            self.op, self.filters, self.kernel, self.stride = op, filters, tuple(kernel), tuple(stride)
            self.dilation, self.padding, self.dm = tuple(dilation), padding.upper(), depth_multiplier

        def build(self, shape):
            c = int(shape[-1])
            last = (c, self.dm) if self.op == "DEPTHWISE_CONV_2D" else (c, self.filters)
            self.w = self.add_weight(name="w", shape=(*self.kernel, *last), initializer="glorot_uniform")
            self.b = self.add_weight(name="b", shape=(last[0] * last[1] if self.op == "DEPTHWISE_CONV_2D"
                                                      else self.filters,), initializer="zeros")

        def call(self, x):
            strides, dil = [1, *self.stride, 1], [1, *self.dilation, 1]
            if self.op == "DEPTHWISE_CONV_2D":
                y = tf.raw_ops.DepthwiseConv2dNative(input=x, filter=self.w, strides=strides, padding=self.padding,
                                                     dilations=dil)
            else:
                y = tf.nn.conv2d(x, self.w, strides, self.padding, dilations=dil)
            return tf.nn.bias_add(y, self.b)

    return DilatedConv


GENERATED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "MEAN", "FULLY_CONNECTED", "SOFTMAX",
                 "AVERAGE_POOL_2D", "MAX_POOL_2D")


def _unbuildable(fields: dict) -> str:
    """Why the single-operator generator cannot build the operator ``fields`` (``parse_key``) describes,
    or '' if it can."""
    op, (h, w, c) = fields["op"], fields["in_shape"]
    out_c, act = fields["out_channels"], fields.get("activation", "none")
    d, dm = fields["dilation_hw"], fields["depth_multiplier"]
    if op not in GENERATED_OPS:
        return f"no single-operator model generator for operator {op!r}"
    if act not in ("none", "relu6", "relu"):
        return f"activation {act!r} is not generated"
    if d != (1, 1) and op not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return f"{op} with dilation {d[0]}x{d[1]}"
    if dm != 1 and op != "DEPTHWISE_CONV_2D":
        return f"depth multiplier {dm} applies only to DEPTHWISE_CONV_2D, not {op}"
    if op == "DEPTHWISE_CONV_2D" and out_c != c * dm:
        return f"DEPTHWISE_CONV_2D with out={out_c} != in channels {c} x depth multiplier {dm}"
    if op == "FULLY_CONNECTED" and (h, w) != (1, 1):
        return f"FULLY_CONNECTED with spatial input {h}x{w} (expected 1x1xC)"
    implied = default_out_hw(op, (h, w, c), fields["kernel_hw"], fields["stride_hw"], fields["padding"], d)
    if tuple(fields["out_shape"][:2]) != implied:
        return (f"{op} with output {fields['out_shape'][0]}x{fields['out_shape'][1]} where its input and "
                f"attributes give {implied[0]}x{implied[1]}")
    return ""


def unbuildable_reason(key: str) -> str:
    """'' if ``single_op_model`` can build ``key``, else why not (a malformed key included); no TensorFlow."""
    try:
        return _unbuildable(parse_key(key))
    except ValueError as exc:
        return str(exc)


def _keras_model(fields: dict, seed: int = 0):
    """A tf_keras model whose full-int8 conversion is the single operator ``fields`` describes."""
    import tf_keras as keras  # noqa: PLC0415  (TensorFlow only where models are built)

    L = keras.layers
    keras.utils.set_random_seed(seed)
    reason = _unbuildable(fields)
    if reason:
        raise UserError(f"cannot build a single-operator model: {reason}")
    op, (h, w, c) = fields["op"], fields["in_shape"]
    out_c, act = fields["out_channels"], fields.get("activation", "none")
    # Kernel, stride and dilation as (height, width): non-square and dilated windows are built as keyed.
    k, s, pad = fields["kernel_hw"], fields["stride_hw"], fields.get("padding", "none")
    d, dm = fields["dilation_hw"], fields["depth_multiplier"]

    def activate(x):
        if act == "relu6":
            return L.ReLU(6.0)(x)
        return L.ReLU()(x) if act == "relu" else x

    # Inputs are named in0, in1: the converter's calibrator feeds them in name order.
    x = keras.Input((h, w, c), name="in0")
    inputs = [x]
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D") and d != (1, 1):
        y = activate(_dilated_conv_layer(keras)(op, out_c, k, s, d, pad, dm)(x))
    elif op == "CONV_2D":
        y = activate(L.Conv2D(out_c, k, strides=s, padding=pad, use_bias=True)(x))
    elif op == "DEPTHWISE_CONV_2D":
        y = activate(L.DepthwiseConv2D(k, strides=s, padding=pad, depth_multiplier=dm, use_bias=True)(x))
    elif op == "ADD":
        if fields.get("variant") == "bcast":
            inputs.append(keras.Input((1, 1, c), name="in1"))
        else:
            inputs.append(keras.Input((h, w, c), name="in1"))
        y = activate(L.Add()(inputs))
    elif op == "MUL":
        gate = (1, 1, c) if fields.get("variant") == "bcast" else (h, w, c)
        inputs.append(keras.Input(gate, name="in1"))
        y = activate(L.Multiply()(inputs))
    elif op == "MEAN":
        y = L.GlobalAveragePooling2D(keepdims=True)(x)
    elif op == "FULLY_CONNECTED":
        x = keras.Input((c,), name="in0")
        inputs = [x]
        y = activate(L.Dense(out_c)(x))
    elif op == "SOFTMAX":
        x = keras.Input((c,), name="in0")
        inputs = [x]
        y = L.Softmax()(x)
    elif op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        pool = L.AveragePooling2D if op == "AVERAGE_POOL_2D" else L.MaxPooling2D
        y = activate(pool(k, strides=s, padding=pad)(x))
    else:  # pragma: no cover  (_unbuildable refuses every other operator)
        raise UserError(f"no single-operator model generator for operator {op!r}")
    return keras.Model(inputs, y), [tuple(int(d) for d in i.shape[1:]) for i in inputs]


def single_op_model(key: str, seed: int = 0) -> bytes:
    """The full-int8 ``.tflite`` of the one operator ``key`` names, verified by parsing the result.

    Any key ``ops.lut_key`` writes for the generator's operators (CONV_2D, DEPTHWISE_CONV_2D with any depth
    multiplier, pools, ADD/MUL, MEAN, FULLY_CONNECTED, SOFTMAX), with non-square kernels and strides and
    dilated convolutions. A key it cannot build is a ``UserError``; a conversion that does not give exactly
    the keyed operator is a ``RuntimeError`` naming both keys."""
    from edgenas_keras.model.export import to_int8_tflite  # noqa: PLC0415

    try:
        fields = parse_key(key)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    model, shapes = _keras_model(fields, seed)
    data = to_int8_tflite(model, _representative(shapes, seed=seed))
    m = parse_tflite(data, f"single-op model of {key}")
    got = [m.op_spec(o).key for o in m.operators]
    if got != [key]:
        raise RuntimeError(f"converter produced {got} for LUT key {key}")
    m.require_int8()
    return data


def _cpu_invokes(invoke: Callable[[], None], n: int) -> list[float]:
    """CPU seconds of ``n`` invokes on this thread's clock: the machine is shared, and a wall clock would also
    count the time other processes held the core (a kernel's own CPU time does not depend on them)."""
    clock = time.thread_time
    times = []
    for _ in range(n):
        t0 = clock()
        invoke()
        times.append(clock() - t0)
    return times


def _prepared(model_bytes: bytes):
    from edgenas_keras.tflite import tflm  # noqa: PLC0415

    runner = tflm.Runner(model_bytes)
    rng = np.random.default_rng(0)
    for i, d in enumerate(runner.inputs):
        runner.interpreter.set_input(rng.integers(-128, 128, size=d["shape"]).astype(d["dtype"]), i)
    return runner.interpreter.invoke


@functools.cache
def invoke_overhead_s() -> float:
    """Median CPU seconds of one invoke of the cheapest model (one RESHAPE of one element): the Python -> C
    call and the interpreter's dispatch, which a microcontroller does not pay; subtracted from every timing."""
    from edgenas_keras.tflite import tflm  # noqa: PLC0415

    invoke = _prepared(tflm.trivial_model_bytes())
    _cpu_invokes(invoke, 200)
    return statistics.median(_cpu_invokes(invoke, 3000))


def measure_model(model_bytes: bytes, budget_s: float = TIME_BUDGET_S) -> dict:
    """Median net microseconds per invoke (interpreter overhead subtracted), MAD, and the number of samples.

    Repeats fit ``budget_s`` (between MIN_REPEATS and MAX_REPEATS) after a first call and a short warm-up."""
    invoke = _prepared(model_bytes)
    overhead = invoke_overhead_s()
    first = _cpu_invokes(invoke, 1)[0]   # lazy preparation, cold caches
    n = int(min(MAX_REPEATS, max(MIN_REPEATS, budget_s / max(first, 1e-6))))
    _cpu_invokes(invoke, min(3, n))
    times = _cpu_invokes(invoke, n)
    med = statistics.median(times)
    mad = statistics.median(abs(t - med) for t in times)
    return {"value": max(med - overhead, 1e-8) * 1e6, "dispersion": mad * 1e6, "samples": n}


def measure_key(key: str, budget_s: float = TIME_BUDGET_S) -> dict:
    """Time the single-operator model of ``key`` on this host (``single_op_model``, then ``measure_model``).

    Args:
        key: a LUT key (``cost.graph.lut_key``).
        budget_s: the timing budget in CPU seconds that sets the number of repeats.

    Returns:
        ``{"value": median net µs per invoke, "dispersion": MAD in µs, "samples": invokes timed}``, times
        in this thread's CPU time with the interpreter's per-invoke overhead subtracted.

    Raises:
        UserError: the generator cannot build ``key`` (malformed, or an operator it has no model for).
        RuntimeError: the converter did not produce exactly the operator ``key`` names.
    """
    return measure_model(single_op_model(key), budget_s)


# -- the resumable build ----------------------------------------------------------------------------------

def _read_progress(path: Path) -> dict[str, dict]:
    # a line cut short by a kill is skipped: that key is measured again
    return {rec["key"]: rec for rec in read_json_lines(path)
            if isinstance(rec, dict) and "key" in rec and rec.get("value", 0) > 0}


def host_metadata(device: str, sources: list[str]) -> dict:
    """The ``metadata`` of a table measured on this host: ``device``, the CPU model as ``core``, the nominal
    ``clock_mhz`` (``host_clock_mhz``, informational: the unit is ``us``), runtime ``tflm-python`` with
    ``tflm-reference`` kernels, method ``measured``, today's date, ``sources``, and ``host`` (the CPU model
    and ``machine.identity()``, what ``machine.check_lut`` compares a later machine with)."""
    return {"device": device, "core": _cpu_model(),
            "clock_mhz": host_clock_mhz(), "runtime": "tflm-python", "kernels": "tflm-reference",
            "method": "measured", "unit": "us", "tool_version": TOOL_VERSION,
            "date": datetime.date.today().isoformat(), "sources": sources,
            "host": {"cpu": _cpu_model(), **machine.identity()}}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_clock_mhz() -> float:
    """The host's nominal clock (MHz): the 'cpu MHz' in /proc/cpuinfo, else 1000 (documented as nominal)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return round(float(line.split(":", 1)[1]), 1)
    except (OSError, ValueError):
        pass
    return 1000.0


def build_measured_lut(keys: list[str], out_path: Path, device: str = "host-tflm",
                       measure: Callable[[str], dict] = measure_key, progress: bool = True,
                       update_manifest: bool = True, keep: dict[str, lutmod.LutEntry] | None = None) -> lutmod.Lut:
    """Measure every key (resuming from ``<out>.progress.jsonl``), then write the LUT atomically.

    ``keep``: entries of an existing table of the same device to carry over unmeasured (``edgenas lut build
    --model`` adds a model's keys to a table this way); the table holds ``keys`` and the kept keys."""
    from tqdm import tqdm  # noqa: PLC0415

    out_path = Path(out_path)
    side = out_path.with_name(out_path.name + ".progress.jsonl")
    done = _read_progress(side)
    for k, e in (keep or {}).items():
        done.setdefault(k, {"key": k, "value": e.value, "dispersion": e.dispersion, "samples": e.samples})
    keys = list(dict.fromkeys([*keys, *(keep or {})]))
    todo = [k for k in keys if k not in done]
    bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc=f"lut build {device}", unit="key",
               disable=not progress, dynamic_ncols=True)
    with open(side, "a") as f:
        for key in todo:
            rec = {"key": key, **measure(key)}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
            done[key] = rec
            bar.update(1)
    bar.close()
    entries = {k: lutmod.LutEntry(float(done[k]["value"]), float(done[k]["dispersion"]), int(done[k]["samples"]))
               for k in keys}
    meta = host_metadata(device, [
        "measured on this host: single-operator int8 models in the tflite_micro Python runtime "
        "(edgenas_keras.lut.measure), median of repeated invokes minus the per-invoke interpreter overhead"])
    table = lutmod.Lut(meta, entries)
    sha = table.save(out_path)
    if update_manifest:
        lutmod.update_manifest(device, out_path, sha)
    side.unlink(missing_ok=True)
    return lutmod.load(out_path)


# -- the accuracy report ----------------------------------------------------------------------------------

def arch_int8_model(space, arch, seed: int = 0) -> bytes:
    """``arch`` built untrained, its BatchNorm statistics calibrated (``export.calibrate_untrained``: TFLM
    aborts on the vanishing scales of a fresh network), converted to full int8."""
    from edgenas_keras.model.builder import build_model  # noqa: PLC0415
    from edgenas_keras.model.export import calibrate_untrained, random_representative, to_int8_tflite  # noqa: PLC0415

    model = build_model(space, arch)
    shape = tuple(int(d) for d in model.input.shape[1:])
    calibrate_untrained(model, shape, seed=seed)
    return to_int8_tflite(model, random_representative(shape, seed=seed))


def spearman(a, b) -> float:
    """Spearman rank correlation (``scipy.stats.spearmanr``: average ranks for ties); NaN, without scipy's
    warning, for fewer than 2 values or a constant input."""
    from scipy.stats import spearmanr  # noqa: PLC0415

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def accuracy(predicted_ms, measured_ms) -> dict:
    """The paper's table: MAE (ms), MAPE (%), Spearman rho of predicted against measured latency."""
    p, m = np.asarray(predicted_ms, float), np.asarray(measured_ms, float)
    return {"n": int(len(p)), "mae_ms": float(np.mean(np.abs(p - m))),
            "mape_pct": float(100 * np.mean(np.abs(p - m) / m)), "spearman": spearman(p, m)}


def read_validation_rows(rows_path: Path | str | None) -> dict[str, dict]:
    """The rows an interrupted ``lut validate --rows FILE`` already measured (JSON lines keyed by ``arch``), so a
    rerun resumes; an unreadable line (a write cut short) is skipped and measured again. Empty without a file."""
    done: dict[str, dict] = {}
    for rec in read_json_lines(rows_path) if rows_path is not None else ():
        try:
            done[rec["arch"]] = rec
        except (KeyError, TypeError):
            continue
    return done


def validate_host(space, table: lutmod.Lut, n: int, seed: int, progress: bool = True,
                  rows_path: Path | None = None) -> tuple[dict, list[dict]]:
    """Sample ``n`` architectures, measure each end to end in TFLM on this host, and price it from ``table``.

    With ``rows_path``, each row is appended as it is measured and a rerun with the same arguments resumes
    (200 architectures take hours on a loaded 2-core machine: conversion dominates)."""
    from tqdm import tqdm  # noqa: PLC0415

    from edgenas_keras.arch.space import encode  # noqa: PLC0415
    from edgenas_keras.cost.graph import arch_graph  # noqa: PLC0415

    archs = space.sample(n, seed=seed)
    table.require(k for a in archs for k in arch_graph(space, a).keys)
    done = read_validation_rows(rows_path)
    rows = []
    sink = open(rows_path, "a") if rows_path is not None else None  # noqa: SIM115
    try:
        for i, arch in enumerate(tqdm(archs, desc=f"lut validate {table.device}", unit="arch",
                                      disable=not progress)):
            name = encode(arch)
            if name not in done:
                measured = measure_model(arch_int8_model(space, arch, seed=seed + i))
                done[name] = {"arch": name, "predicted_ms": table.latency_ms(arch_graph(space, arch).keys),
                              "measured_ms": measured["value"] / 1000.0}
                if sink is not None:
                    sink.write(json.dumps(done[name]) + "\n")
                    sink.flush()
            rows.append(done[name])
    finally:
        if sink is not None:
            sink.close()
    return accuracy([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]), rows


def validate_against_table(space, table: lutmod.Lut, measured: lutmod.Lut, n: int, seed: int) -> tuple[dict, list]:
    """Price ``n`` sampled architectures with an analytical table and with a measured LUT of the same device
    (``edgenas lut collect`` output): the accuracy of the model where only per-operator measurements exist."""
    from edgenas_keras.arch.space import encode  # noqa: PLC0415
    from edgenas_keras.cost.graph import arch_graph  # noqa: PLC0415

    archs = space.sample(n, seed=seed)
    measured.require(k for a in archs for k in arch_graph(space, a).keys)
    rows = [{"arch": encode(a), "predicted_ms": table.latency_ms(arch_graph(space, a).keys),
             "measured_ms": measured.latency_ms(arch_graph(space, a).keys)} for a in archs]
    return accuracy([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]), rows


def scatter_plot(rows: list[dict], path: Path, title: str) -> None:
    """Predicted against measured latency, with the y = x line (PNG, written atomically)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    m = [r["measured_ms"] for r in rows]
    p = [r["predicted_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(m, p, s=10, alpha=0.7)
    lo, hi = min(m + p) * 0.95, max(m + p) * 1.05
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="predicted = measured")
    ax.set_xlabel("measured end-to-end latency (ms)")
    ax.set_ylabel("LUT-predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())


__all__ = ["accuracy", "arch_int8_model", "build_measured_lut", "measure_key", "measure_model", "scatter_plot",
           "single_op_model", "spearman", "validate_against_table", "validate_host"]
