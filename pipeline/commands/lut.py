"""``edgenas lut list`` and ``edgenas lut show``: the shipped LUTs and their metadata. Building, validating,
profiling and collecting LUTs are registered by ``lut_tools`` into the same ``lut`` group."""

from __future__ import annotations

from pipeline.commands._util import emit


def register(sub) -> None:
    p = sub.add_parser("lut", help="latency lookup tables: list, show, build, validate, profile, collect")
    lsub = p.add_subparsers(dest="lut_command", metavar="SUBCOMMAND")
    lsub.required = True
    ls = lsub.add_parser("list", help="the shipped LUTs", description="List the LUTs shipped in lut_assets/.")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(func=cmd_list)
    sh = lsub.add_parser("show", help="one LUT's metadata and entry counts",
                         description="Show a shipped LUT (by device name) or a LUT file: metadata, checksum, "
                         "entries per operator type.")
    sh.add_argument("device", metavar="DEVICE", help="device name, or a path to a LUT file")
    sh.add_argument("--json", action="store_true", help="print one JSON object")
    sh.set_defaults(func=cmd_show)
    try:
        from pipeline.commands import lut_tools
    except ImportError:  # the build/validate/profile tools are optional at import time
        return
    lut_tools.register_lut_subcommands(lsub)


def _summary(lut) -> dict:
    from collections import Counter

    ops = Counter(k.split("|", 1)[0] for k in lut.entries)
    m = lut.metadata
    return {"device": lut.device, "file": lut.source, "sha256": lut.sha256, "method": m["method"],
            "unit": m["unit"], "clock_mhz": m["clock_mhz"], "core": m["core"], "runtime": m["runtime"],
            "kernels": m["kernels"], "entries": len(lut.entries), "ops": dict(sorted(ops.items())),
            "date": m["date"], "tool_version": m["tool_version"], "sources": m["sources"],
            "prices_any_shape": lut.estimator is not None}


def cmd_list(args) -> int:
    from edgenas_keras import lut as lutmod

    rows = [_summary(lutmod.load_device(d)) for d in lutmod.shipped_devices()]
    lines = [f"{'device':<12} {'method':<11} {'clock MHz':>9} {'runtime/kernels':<22} {'entries':>7}  sha256"]
    for r in rows:
        lines.append(f"{r['device']:<12} {r['method']:<11} {r['clock_mhz']:>9g} "
                     f"{r['runtime'] + '+' + r['kernels']:<22} {r['entries']:>7}  {r['sha256'][:12]}")
    if not rows:
        lines.append("(no LUTs shipped in lut_assets/)")
    emit(args, {"luts": rows}, "\n".join(lines))
    return 0


def cmd_show(args) -> int:
    from pathlib import Path

    from edgenas_keras import lut as lutmod

    lut = lutmod.load(args.device) if Path(args.device).suffix == ".json" else lutmod.load_device(args.device)
    r = _summary(lut)
    lines = [f"{k:<16} {v}" for k, v in r.items() if k not in ("ops", "sources")]
    lines.append("entries by operator: " + ", ".join(f"{k} {v}" for k, v in r["ops"].items()))
    lines += ["sources:"] + [f"  - {s}" for s in r["sources"]]
    emit(args, r, "\n".join(lines))
    return 0
