"""Budget validation of an int8 ``.tflite`` for a target device: the blessing decision before a push.

A model is *blessed* only if every check passes; the document lists each check with its figure, its budget
and its verdict, and ``reasons`` names every failing one. Checks:

- ``latency``: the sum of the device LUT's entries over the model's operators (the model is parsed from the
  flatbuffer with ``tflite_model``, so any int8 model can be priced, not only ours): those of subgraph 0, the
  one TFLM runs. For ``host-tflm`` also ``latency_measured``: the median ``invoke()`` in the TFLM runtime on
  this machine, minus the interpreter's per-call overhead (``tflm.time_invoke``). For MCU devices whose core
  is emulated (``target_footprint`` with ``instructions``) also ``latency_emulated``: the int8 model run end
  to end in QEMU on the core, its instruction count times the cycles per instruction fitted to public board
  measurements (the table's ``metadata.fit``, else the core's anchor fit) over the table's clock; a model is
  blessed only when the LUT's sum and this figure both meet the budget.
- ``sram``: the larger of the predicted on-target arena (``cost.tflite_sram_bytes`` with the device's kernel
  scratch and persistent terms, over every subgraph: TFLM allocates them all) and the arena TFLM needs on
  this host (``tflm.min_arena_bytes``, by bisection, which allocates every subgraph too). The host is
  64-bit, so its figure over-states a 32-bit MCU's persistent structs; the prediction includes CMSIS-NN
  scratch buffers the host's reference kernels do not ask for. Neither alone is an upper bound,
  the maximum is the conservative figure.
- ``flash``: the model's bytes plus the TFLM runtime's own code and constant data for the device
  (``edgenas_keras.budgets.RUNTIME_FLASH``, with sources; override with ``runtime_flash_bytes`` when a link map gives the real one).
- ``accuracy``: int8 top-1 on the eval split, run in the TFLM runtime (``tflite.evaluate.tflm_evaluate``), with the
  per-class accuracy beside it in the check's details (``per_class``: for each class in label order, the
  share of its eval images labelled correctly, and the counts) and, for more than 5 classes,
  ``top5_accuracy``. The class names are the data set's (``stats.json``); a model with another number of
  outputs is a ``UserError``. Without a data folder, the figures recorded by ``edgenas train`` in
  ``metrics.json`` next to the model are used if that file describes this very model (same sha256);
  otherwise the check fails for lack of a figure, unless the minimum is 0 (report only).

Budgets are ``edgenas_keras.budgets.Budgets``: bytes for memory (the CLI takes KiB, 1024 bytes, and converts),
milliseconds for latency, a fraction in [0, 1] for accuracy; a memory budget of None is reported and always met. ``checks`` maps each check's name to its figure, budget, unit, verdict and details.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgenas_keras._fs import atomic_write_json
from edgenas_keras.budgets import HOST_DEVICE, Budgets, runtime_footprint
from edgenas_keras.cost import estimate as cost
from edgenas_keras.errors import UserError
from edgenas_keras.lut.table import Lut
from edgenas_keras.tflite.model import read_int8_model


def _within(figure: int, budget: int | None) -> bool:
    """A memory figure meets its budget (None: no budget, always met)."""
    return budget is None or figure <= budget


def _check(checks: dict, name: str, figure, budget, unit: str, ok: bool, **detail) -> None:
    checks[name] = {"figure": figure, "budget": budget, "unit": unit, "verdict": "pass" if ok else "fail",
                    "passed": bool(ok), "detail": detail}


def recorded_accuracy(model_path: Path, sha256: str) -> tuple[float, str] | None:
    """The int8 TFLM accuracy ``edgenas train`` recorded beside this very model, if any."""
    m = _recorded_metrics(model_path, sha256)
    return (float(m["accuracy_int8_tflm"]), str(model_path.parent / "metrics.json")) if m else None


def _recorded_metrics(model_path: Path, sha256: str) -> dict | None:
    """``metrics.json`` beside the model when it describes this very model (its QAT int8 sha256), else None."""
    metrics = model_path.parent / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        m = json.loads(metrics.read_text())
    except json.JSONDecodeError:
        return None
    if isinstance(m, dict) and m.get("int8_sha256") == sha256 and "accuracy_int8_tflm" in m:
        return m
    return None


def validate_model(model_path: str | Path, lut: Lut, budgets: Budgets | dict, data_dir: str | Path | None = None,
                   eval_limit: int | None = None, runtime_flash_bytes: int | None = None,
                   measure_host_latency: bool | None = None, target_footprint: dict | None = None) -> dict:
    """Check an int8 model against ``budgets`` on ``lut``'s device; return the blessing document.

    ``budgets`` is a ``Budgets`` or a dict for ``Budgets.from_dict`` (bytes; flash = model + runtime). ``measure_host_latency`` defaults to
    "the device is host-tflm". A model the TFLM runtime cannot prepare is a ``UserError`` quoting TFLM's own
    messages (``tflm.min_arena_bytes``).

    ``target_footprint``: the model measured on the device's core in emulation
    (``deploy.emulate.measured_footprint``: ``arena_used_bytes``, ``flash_bytes`` of the linked image,
    ``runtime_flash_bytes``, ``target``, ``qemu_machine``). When given, ``sram`` is that 32-bit arena and
    ``flash`` the linked image (runtime + model) instead of the prediction/host maximum and ``RUNTIME_FLASH``
    (an explicit ``runtime_flash_bytes`` still wins for flash)."""
    from edgenas_keras.tflite import tflm  # noqa: PLC0415  (loads the TFLM runtime)

    if isinstance(budgets, dict):
        budgets = Budgets.from_dict(budgets)
    model_path = Path(model_path)
    model = read_int8_model(model_path)
    data = model_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    # the documented runtime figure only where the flash check uses it: an emulated linked image needs none
    use_linked_image = target_footprint is not None and runtime_flash_bytes is None
    footprint = None if use_linked_image else runtime_footprint(lut.device, runtime_flash_bytes)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"data folder {data_dir} does not exist or is not a directory")
    # TFLM first: a model it cannot prepare is a UserError quoting TFLM's own reason, before any pricing
    host_arena = tflm.min_arena_bytes(data, str(model_path))
    graph = model.graph()
    checks: dict[str, dict] = {}

    lat = lut.latency_ms(graph.keys)
    estimated = lut.head_estimated(graph.keys)   # an N-class head on a table built for 2 (lut module docstring)
    _check(checks, "latency", round(lat, 4), budgets.latency_ms, "ms", lat <= budgets.latency_ms,
           source=f"LUT {lut.source}", operators=len(graph.nodes),
           **({"estimated_head_keys": estimated} if estimated else {}))
    if measure_host_latency if measure_host_latency is not None else lut.device == HOST_DEVICE:
        timing = tflm.time_invoke(data)
        measured = timing.net_s * 1000
        _check(checks, "latency_measured", round(measured, 4), budgets.latency_ms, "ms",
               measured <= budgets.latency_ms, median_invoke_ms=round(timing.median_s * 1000, 4),
               interpreter_overhead_ms=round(timing.overhead_s * 1000, 4),
               source="TFLM runtime on this host (reference kernels)")

    emulated = _emulated_latency(target_footprint, lut)
    if emulated is not None:
        ms, detail = emulated
        _check(checks, "latency_emulated", round(ms, 4), budgets.latency_ms, "ms", ms <= budgets.latency_ms,
               lut_ms=round(lat, 4), **detail)

    scratch, persistent = cost.device_memory_terms(lut)
    predicted = cost.tflite_sram_bytes(model, scratch, persistent)   # every subgraph TFLM allocates
    if target_footprint is not None:
        sram = int(target_footprint["arena_used_bytes"])
        _check(checks, "sram", sram, budgets.sram_bytes, "bytes", _within(sram, budgets.sram_bytes),
               predicted_on_target_bytes=predicted, host_arena_bytes=host_arena, emulated_arena_bytes=sram,
               rule=f"arena_used_bytes() on the emulated core ({target_footprint.get('target')}, QEMU "
               f"{target_footprint.get('qemu_machine')}, TFLM built for it)")
    else:
        sram = max(predicted, host_arena)
        _check(checks, "sram", sram, budgets.sram_bytes, "bytes", _within(sram, budgets.sram_bytes),
               predicted_on_target_bytes=predicted, host_arena_bytes=host_arena,
               rule="the larger of the on-target prediction and the host arena (bisection)")

    if use_linked_image:
        flash = int(target_footprint["flash_bytes"])
        runtime = int(target_footprint["runtime_flash_bytes"])
        _check(checks, "flash", flash, budgets.flash_bytes, "bytes", _within(flash, budgets.flash_bytes),
               model_bytes=len(data), runtime_bytes=runtime,
               runtime_source=f"linked image for {target_footprint.get('target')} (text + data of the ELF "
               "`edgenas emulate` builds, without its test input): TFLM, the kernels, start-up code and libc")
    else:
        flash = len(data) + footprint.bytes
        _check(checks, "flash", flash, budgets.flash_bytes, "bytes", _within(flash, budgets.flash_bytes),
               model_bytes=len(data), runtime_bytes=footprint.bytes, runtime_source=footprint.source)

    if data_dir is not None:
        from edgenas_keras.tflite.evaluate import tflm_evaluate  # noqa: PLC0415  (TensorFlow only for this check)

        ev = tflm_evaluate(data, data_dir, eval_limit, str(model_path))
        acc = ev["accuracy"]
        top5 = {"top5_accuracy": round(ev["top5_accuracy"], 6)} if "top5_accuracy" in ev else {}
        _check(checks, "accuracy", round(acc, 6), budgets.min_accuracy, "fraction", acc >= budgets.min_accuracy,
               eval_examples=ev["examples"], data_dir=str(data_dir),
               source="int8 model run in the TFLM runtime, eval split", per_class=_rounded(ev["per_class"]), **top5)
    elif (rec := _recorded_metrics(model_path, sha)) is not None:
        acc, src = float(rec["accuracy_int8_tflm"]), str(model_path.parent / "metrics.json")
        extra = {}
        if isinstance(rec.get("per_class_int8_tflm"), list):
            extra["per_class"] = _rounded(rec["per_class_int8_tflm"])
        if isinstance(rec.get("top5_accuracy_int8_tflm"), (int, float)):
            extra["top5_accuracy"] = round(float(rec["top5_accuracy_int8_tflm"]), 6)
        _check(checks, "accuracy", round(acc, 6), budgets.min_accuracy, "fraction", acc >= budgets.min_accuracy,
               source=f"recorded by edgenas train in {src}", **extra)
    else:
        # no figure: a failed check, unless the floor is 0 (report only: there is nothing to report)
        _check(checks, "accuracy", None, budgets.min_accuracy, "fraction", budgets.min_accuracy == 0,
               source="none: pass --data DIR (no metrics.json from `edgenas train` describes this model)")

    reasons = [_reason(name, c) for name, c in checks.items() if not c["passed"]]
    return {
        "blessed": not reasons,
        "reasons": reasons,
        "checks": checks,
        "model": str(model_path),
        "model_sha256": sha,
        "model_bytes": len(data),
        "device": lut.device,
        "lut": {"source": lut.source, "sha256": lut.sha256, "method": lut.metadata.get("method"),
                "clock_mhz": lut.metadata.get("clock_mhz")},
        "budgets": budgets.as_dict(),
    }


def _rounded(per_class: list[dict]) -> list[dict]:
    return [{**row, "accuracy": None if row.get("accuracy") is None else round(float(row["accuracy"]), 6)}
            for row in per_class]


def per_class_lines(doc: dict, indent: str = "        ") -> list[str]:
    """The accuracy check's per-class figures as text lines (``class: accuracy (correct/count)``), for the
    CLI; empty when the document has none."""
    rows = ((doc.get("checks") or {}).get("accuracy") or {}).get("detail", {}).get("per_class") or []
    width = max((len(r["class"]) for r in rows), default=0)
    return [f"{indent}{r['class']:{width}}  " + ("no eval images" if r["accuracy"] is None
                                                 else f"{r['accuracy']:.4f} ({r['correct']}/{r['count']})")
            for r in rows]


def _emulated_latency(footprint: dict | None, lut: Lut) -> tuple[float, dict] | None:
    """The model's latency on ``lut``'s board from its emulated instruction count (``footprint["instructions"]``,
    the whole invoke in QEMU, and ``footprint["instructions_by_class"]``): the run's cycles under a fit
    (``lut.calibrate.fitted_cycles``: base cycles per instruction and operator-class factors) / the table's
    clock, in ms. The fit: the table's own (``metadata.fit``, emulated tables: ``deploy.lut_emulated``), else
    the core's anchor fit the caller put in ``footprint`` (``cycles_per_instruction``, ``class_factors``),
    else 1 cycle per instruction for a table in instructions. ``None`` without a footprint, an instruction
    count or a fit."""
    from edgenas_keras.lut.calibrate import fitted_cycles  # noqa: PLC0415

    if not footprint or not footprint.get("instructions"):
        return None
    fit = lut.metadata.get("fit") or {}
    if isinstance(fit.get("cycles_per_instruction"), (int, float)):
        src = f"the table's fit to {fit.get('board', 'its anchors')}"
    elif isinstance(footprint.get("cycles_per_instruction"), (int, float)):
        fit = {"cycles_per_instruction": footprint["cycles_per_instruction"],
               "class_factors": footprint.get("class_factors") or {}}
        src = footprint.get("cpi_source", "the core's anchor fit")
    elif lut.unit == "instructions":
        fit, src = {"cycles_per_instruction": 1.0}, "one instruction per cycle (a table in instructions)"
    else:
        return None
    cal = lut.metadata.get("calibration")
    if cal:   # a board-calibrated table: its class factors scale the emulated run as they scale the entries
        base = fit.get("class_factors") or {}
        fit = {**fit, "class_factors": {c: float(base.get(c, 1.0)) * float(f) for c, f in cal["factors"].items()}}
        src += f", times the board calibration's class factors ({cal.get('date', 'undated')})"
    instr = int(footprint["instructions"])
    try:
        cycles = fitted_cycles(fit, instr, footprint.get("instructions_by_class"))
    except ValueError:   # a footprint without the class split under a fit with class factors
        return None
    return cycles / (lut.clock_mhz * 1e3), {
        "instructions": instr, "cycles": round(cycles), "cycles_per_instruction": round(cycles / instr, 6),
        "class_factors": {c: round(float(f), 6) for c, f in (fit.get("class_factors") or {}).items()
                          if float(f) != 1.0},
        "clock_mhz": lut.clock_mhz,
        "source": f"the int8 model run end to end on the emulated core ({footprint.get('target')}, QEMU "
                  f"{footprint.get('qemu_machine')}): its instructions by operator class x the fit's cycles per "
                  f"instruction ({src}) / clock"}


def _reason(name: str, c: dict) -> str:
    if c["figure"] is None:
        return f"{name}: no figure ({c['detail'].get('source')})"
    rel = "below minimum" if name == "accuracy" else "over budget"
    return f"{name}: {c['figure']} {c['unit']} {rel} {c['budget']} {c['unit']}"


def write_blessing(doc: dict, path: str | Path) -> None:
    """Write the blessing document atomically."""
    atomic_write_json(path, doc, indent=2, sort_keys=True)
