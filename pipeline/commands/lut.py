"""``edgenas lut list``, ``edgenas lut show`` (the shipped LUTs and their metadata) and ``edgenas lut calibrate``
(a LUT scaled to the user's board from end-to-end measurements, ``edgenas_keras.lut.calibrate``). Building,
validating, profiling and collecting LUTs are registered by ``lut_tools`` into the same ``lut`` group."""

from __future__ import annotations

from pipeline.commands._util import JSON_OUTPUT, LUT_SOURCE_NO_CLOCK, emit, format_table


def register(sub) -> None:
    """Add ``edgenas lut`` (``list``, ``show``, ``calibrate``, and ``lut_tools``' ``build``, ``validate``,
    ``profile-set``, ``collect``, ``qemu-board``) to the subcommand parser ``sub``."""
    p = sub.add_parser("lut", help="latency lookup tables: list, show, calibrate, build, validate, profile-set, collect, qemu-board")
    lsub = p.add_subparsers(dest="lut_command", metavar="SUBCOMMAND")
    lsub.required = True
    ls = lsub.add_parser("list", parents=[JSON_OUTPUT], help="the shipped LUTs", description="List the LUTs shipped in lut_assets/.")
    ls.set_defaults(func=cmd_list)
    sh = lsub.add_parser("show", parents=[JSON_OUTPUT], help="one LUT's metadata and entry counts",
                         description="Show a shipped LUT (by device name) or a LUT file: metadata, checksum, "
                         "entries per operator type.")
    sh.add_argument("device", metavar="DEVICE", help="device name, or a path to a LUT file")
    sh.set_defaults(func=cmd_show)
    _register_calibrate(lsub)
    # lut_tools imports nothing optional at module level (its heavy imports are inside the commands), so an
    # ImportError here is a bug: it must fail loudly, not drop build/validate/profile-set/collect/qemu-board
    from pipeline.commands import lut_tools

    lut_tools.register_lut_subcommands(lsub)


def _summary(lut) -> dict:
    from collections import Counter

    ops = Counter(k.split("|", 1)[0] for k in lut.entries)
    m = lut.metadata
    return {"device": lut.device, "file": lut.source, "sha256": lut.sha256, "method": m["method"],
            "unit": m["unit"], "clock_mhz": m["clock_mhz"], "core": m["core"], "runtime": m["runtime"],
            "kernels": m["kernels"], "entries": len(lut.entries), "ops": dict(sorted(ops.items())),
            "date": m["date"], "tool_version": m["tool_version"], "sources": m["sources"],
            "prices_any_shape": lut.estimator is not None,
            "calibration": ({k: cal[k] for k in ("factors", "clock_mhz", "date", "base") if k in cal}
                            if (cal := m.get("calibration")) else None)}


def cmd_list(args) -> int:
    """Print the shipped LUTs: name, device, method, clock (MHz), runtime and kernels, entries, sha256.

    Returns the exit status, 0.
    """
    from edgenas_keras import lut as lutmod

    # "name" is what --device / lut.device take; "device" is the core the table is for (an alias such as
    # cortex-m7-analytical names another table of the same device; cortex-m7-emulated the same file as cortex-m7).
    rows = [{"name": d, **_summary(lutmod.load_device(d))} for d in lutmod.shipped_devices()]
    table = [[r["name"], r["device"], r["method"], float(r["clock_mhz"]), f"{r['runtime']}+{r['kernels']}",
              r["entries"], r["sha256"][:12]] for r in rows]
    lines = [format_table(table, ["name", "device", "method", "clock MHz", "runtime/kernels", "entries", "sha256"])]
    if not rows:
        lines.append("(no LUTs shipped in lut_assets/)")
    emit(args, {"luts": rows}, "\n".join(lines))
    return 0


def cmd_show(args) -> int:
    """Print one LUT's metadata, checksum and entries per operator type; DEVICE is a shipped name, or a path
    ending in ``.json``.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): an unknown
    name, a modified shipped table, an unreadable file.
    """
    from pathlib import Path

    from edgenas_keras import lut as lutmod

    lut = lutmod.load(args.device) if Path(args.device).suffix == ".json" else lutmod.load_device(args.device)
    r = _summary(lut)
    lines = [f"{k:<16} {v}" for k, v in r.items() if k not in ("ops", "sources", "calibration")]
    if r["calibration"]:
        c = r["calibration"]
        lines.append(f"{'calibration':<16} {c['date']} at {c['clock_mhz']:g} MHz on base {c['base']['device']} "
                     f"({c['base']['sha256'][:12]}...): " + ", ".join(f"{k} x{v:.4f}" for k, v in c["factors"].items()))
    lines.append("entries by operator: " + ", ".join(f"{k} {v}" for k, v in r["ops"].items()))
    lines += ["sources:"] + [f"  - {s}" for s in r["sources"]]
    emit(args, r, "\n".join(lines))
    return 0


def _register_calibrate(lsub) -> None:
    c = lsub.add_parser(
        "calibrate", parents=[LUT_SOURCE_NO_CLOCK, JSON_OUTPUT], help="scale a LUT to your board from measured end-to-end latencies",
        description="Write a LUT for your board: the base table (--device or --lut) scaled so that the "
        "latency it predicts for each --model (the sum over the model's operators, as `edgenas analyze` "
        "prices it) matches what you measured on the board (--latency-ms, at --clock-mhz). One pair: one "
        "global factor, and that model's prediction equals the measurement exactly. Several pairs (repeat "
        "--model/--latency-ms, paired in order): non-negative least-squares factors per operator class "
        "(conv 1x1, conv KxK, depthwise, fully connected, other), with as many class groups as the "
        "measurements determine. The factors, the measurements, the residuals, the date and the base LUT's "
        "sha256 are recorded in metadata.calibration; use the file with --lut (analyze, arch check, search, "
        "validate) or lut.file in a pipeline config.")
    c.add_argument("--model", action="append", required=True, metavar="M.tflite",
                   help="a full-int8 model you measured on the board (repeatable)")
    c.add_argument("--latency-ms", action="append", required=True, metavar="T",
                   help="its measured latency per inference in ms (repeatable, one per --model, in order)")
    c.add_argument("--clock-mhz", metavar="F", help="the board's clock during the measurements (required for "
                   "cycle tables; it becomes the calibrated table's clock; not for us tables)")
    c.add_argument("--classes", metavar="N", help="number of operator-class groups to fit, 1 to 5 (default: "
                   "as many as the measurements determine; 1 = one global factor)")
    c.add_argument("--out", required=True, metavar="FILE", help="the calibrated LUT file to write")
    c.set_defaults(func=cmd_calibrate)


def _number(text: str, flag: str, kind=float):
    import math

    from edgenas_keras.errors import UserError

    try:
        v = kind(text)
    except (TypeError, ValueError):
        v = None
    if v is None or not math.isfinite(v) or v <= 0:
        raise UserError(f"{flag} must be a positive number, got {text!r}")
    return v


def cmd_calibrate(args) -> int:
    """Scale the base LUT (``--device``/``--lut``) so that its predictions match the ``--latency-ms`` measured
    for each ``--model``, write it to ``--out`` and print the fit and residuals.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): unpaired
    ``--model``/``--latency-ms``, a number that is not positive, a missing model or ``--out`` folder.
    """
    from pathlib import Path

    from edgenas_keras import lut as lutmod
    from edgenas_keras.lut import calibrate as lut_calibrate
    from edgenas_keras.errors import UserError
    from pipeline.commands._util import existing_file

    if len(args.model) != len(args.latency_ms):
        raise UserError(f"give one --latency-ms per --model (paired in order): got {len(args.model)} model(s) "
                        f"and {len(args.latency_ms)} latency value(s)")
    lat = [_number(t, "--latency-ms") for t in args.latency_ms]
    clock = _number(args.clock_mhz, "--clock-mhz") if args.clock_mhz is not None else None
    classes = _number(args.classes, "--classes", int) if args.classes is not None else None
    models = [existing_file(m, "model file") for m in args.model]
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    base = lutmod.resolve(args.device, args.lut)
    table, rep = lut_calibrate.calibrate(base, [lut_calibrate.Measurement(m, t) for m, t in zip(models, lat)],
                                         clock, classes)
    sha = table.save(out)
    obj = {"out": str(out), "sha256": sha, "device": table.device, "unit": table.unit,
           "clock_mhz": table.clock_mhz, **{k: rep[k] for k in ("factors", "groups", "points", "note", "base")}}
    lines = [format_table([[p["model"], *(float(p[k]) for k in ("latency_ms", "base_ms", "calibrated_ms")),
                            f"{p['residual_pct']:+.2f}%"]
                           for p in rep["points"]],
                          ["model", "measured ms", "base ms", "calibrated", "residual"], floatfmt=".3f",
                          colalign=[None, None, None, None, "right"])]
    lines.append("factors: " + ", ".join(f"{c} {rep['factors'][c]:.4f}" for c in lut_calibrate.CLASSES)
                 + f" ({len(rep['groups'])} class group(s))")
    if rep["note"]:
        lines.append(f"note: {rep['note']}")
    lines.append(f"wrote {out} ({table.device} calibrated at {table.clock_mhz:g} MHz), sha256 {sha[:12]}...; "
                 f"use it with --lut {out}")
    emit(args, obj, "\n".join(lines))
    return 0
