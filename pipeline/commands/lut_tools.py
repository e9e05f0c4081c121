"""``edgenas lut build | validate | profile-set | collect | qemu-board``: making LUTs and checking them.

Registered into the ``lut`` group of ``pipeline/commands/lut.py`` (``lut list`` / ``lut show`` live there).
The work is in the library (``edgenas_keras.lut.measure``, ``edgenas_keras.lut.analytical``) and in
``deploy.lut_profiler`` (the board side); these functions only parse arguments and print.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

from edgenas_keras import progress
from edgenas_keras.errors import UserError
from pipeline.commands._util import JSON_OUTPUT, LUT_SOURCE_NO_CLOCK, SPACE_FILE, emit, load_space

HOST_DEVICE = "host-tflm"


def register_lut_subcommands(lsub) -> None:
    """Add ``lut build``, ``validate``, ``profile-set``, ``collect`` and ``qemu-board`` to the ``edgenas lut``
    subcommand parser ``lsub``."""
    b = lsub.add_parser("build", parents=[SPACE_FILE, JSON_OUTPUT], help="build a device's LUT (measured on this host, timed on an emulated core, or analytical)",
                        description="Build lut_assets/<device>.json for every LUT key reachable from the search "
                        "space and record it in lut_assets/manifest.json. host-tflm is measured here (single-"
                        "operator int8 models timed in the TFLM runtime; resumable, about 45 min on 2 shared "
                        "cores); cortex-m4, cortex-m7, cortex-m33 and riscv are timed on the emulated core "
                        "(--method emulated, their default): the same single-operator models run by the LUT "
                        "profiler firmware with TFLM's kernels for the core in QEMU, many keys per run, "
                        "instruction counts turned into cycles with the core's cycles per instruction fitted "
                        "to public board measurements (recorded in metadata.fit; deploy/lut_emulated.py). "
                        "Measured here: 681 keys in 5 to 8 min on Cortex-M, 23 min on RV32, plus 2 to 10 s "
                        "per key for a model not yet converted (cached in ~/.cache/edgenas/lut_models). "
                        "--method analytical writes the cycle model that prices any shape (cortex-a53's only "
                        "table; for the other MCU devices lut_assets/analytical/<device>.json, shipped as "
                        "<device>-analytical).")
    b.add_argument("--device", required=True,
                   help="host-tflm | cortex-m4 | cortex-m7 | cortex-m33 | riscv | cortex-a53 (or a shipped alias: "
                   "cortex-m7-analytical is --device cortex-m7 --method analytical)")
    b.add_argument("--method", choices=("measured", "analytical", "emulated"),
                   help="default: with --model and an existing --out, that table's method; else measured for "
                   "host-tflm, emulated for cortex-m4, cortex-m7, cortex-m33 and riscv, analytical for "
                   "cortex-a53")
    b.add_argument("--keys-from", metavar="LUT.json", help="the keys of this LUT file (e.g. a shipped table) "
                   "instead of the space's (with --model: and the models' keys)")
    b.add_argument("--limit", type=int, metavar="N", help="only the first N keys (a quick table; smoke tests)")
    b.add_argument("--resolution", type=int, action="append",
                   help="input resolution(s) to cover (repeatable; default: the space's)")
    b.add_argument("--out", metavar="FILE", help="write here instead of the shipped table of that device "
                   "and method (lut_assets/<device>.json; analytical MCU tables lut_assets/analytical/"
                   "<device>.json), which is updated in lut_assets/manifest.json with every name that points at "
                   "it; with --out the manifest is left alone")
    b.add_argument("--model", metavar="FILE.tflite", action="append",
                   help="add the operator keys of this int8 model (repeatable; any kernel, stride, dilation, "
                   "depth multiplier) to the table instead of the space's: entries already in the output "
                   "table are kept, only the missing keys are measured; keys the single-operator generator "
                   "cannot build are skipped and listed")
    b.add_argument("--refit", action="store_true", help="emulated tables: convert the existing table's cycles "
                   "to the current fit to the public anchors (deploy/lut_emulated.py ANCHORS; the anchors run "
                   "in QEMU, cached) without timing any key again")
    b.set_defaults(func=cmd_build)

    v = lsub.add_parser("validate", parents=[LUT_SOURCE_NO_CLOCK, SPACE_FILE, JSON_OUTPUT], help="accuracy of a LUT against end-to-end measurements",
                        description="Sample architectures, price each from the LUT and compare with measured "
                        "end-to-end latency: MAE (ms), MAPE (%), Spearman rho, and a scatter plot. host-tflm "
                        "is measured here in the TFLM runtime. MCU devices with an emulated core take "
                        "--emulated (each architecture converted and run end to end in QEMU: 30 to 60 s each here); others need "
                        "--measured FILE (a measured LUT of that device, from `edgenas lut collect`); without "
                        "either the command exits with status 2.")
    v.add_argument("--samples", type=int, default=200, help="number of architectures (default 200)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--measured", metavar="FILE", help="measured LUT of the same device to compare against")
    v.add_argument("--emulated", action="store_true", help="run each sampled architecture's int8 model end to "
                   "end on the device's emulated core (QEMU, `edgenas emulate`) and compare its instructions x "
                   "the table's fit (cycles per instruction, operator-class factors) with the LUT's sum "
                   "(emulated tables)")
    v.add_argument("--jobs", type=int, default=1, metavar="N", help="with --emulated: convert and run N "
                   "architectures at once (worker processes; default 1)")
    v.add_argument("--plot", metavar="PNG", help="scatter plot path (default: runs/<device>-validation.png)")
    v.add_argument("--rows", metavar="FILE", help="per-architecture rows (JSON lines), appended as they are "
                   "measured; a rerun with the same arguments resumes from them")
    v.add_argument("--no-rebase", action="store_true", help="price a host table measured on another machine as "
                   "measured (by default it is re-based to this machine from a probe of its keys timed here, "
                   "cached per table and machine in ~/.cache/edgenas/host-rebase; same as EDGENAS_HOST_REBASE=0)")
    v.set_defaults(func=cmd_validate)

    p = lsub.add_parser("profile-set", parents=[SPACE_FILE, JSON_OUTPUT], help="single-operator models for on-board profiling",
                        description="Write one full-int8 single-operator model per LUT key, manifest.json and "
                        "profile_set.cc (the models as C arrays) for deploy/firmware/lut_profiler.")
    p.add_argument("--device", required=True, help="the board's name (recorded in the manifest)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--shard", default="0/1", metavar="K/N",
                   help="only keys K, K+N, K+2N... (a board's flash rarely holds every model at once)")
    p.add_argument("--limit", type=int, help="at most this many keys (smoke tests)")
    p.add_argument("--model", metavar="FILE.tflite", action="append",
                   help="profile this int8 model's operator keys instead of the space's (repeatable; keys "
                   "the single-operator generator cannot build are skipped and listed)")
    p.set_defaults(func=cmd_profile_set)

    c = lsub.add_parser("collect", parents=[JSON_OUTPUT], help="read on-board measurements over a serial port into a LUT",
                        description="Drive deploy/firmware/lut_profiler over a serial port (line protocol in "
                        "deploy/lut_profiler.py), validate every line, write a LUT: measured cycles from a board, "
                        "emulated instructions from the firmware in QEMU (`edgenas lut qemu-board`; the board's "
                        "header says which). Resumable across board resets and reruns (progress in "
                        "<out>.progress.jsonl).")
    c.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyACM0 (a board) or /dev/pts/N "
                   "(QEMU's pseudo-terminal)")
    c.add_argument("--device", required=True, help="the board's name (must match the firmware's header)")
    c.add_argument("--profile-set", required=True, metavar="DIR", help="the profile-set directory")
    c.add_argument("--out", metavar="FILE", help="LUT file to write (default: <device>.json here)")
    c.add_argument("--baud", type=int, default=115200)
    c.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    c.set_defaults(func=cmd_collect)

    q = lsub.add_parser("qemu-board", parents=[JSON_OUTPUT], help="run the profiler firmware in QEMU, its UART on a pseudo-terminal",
                        description="Build deploy/firmware/lut_profiler for a profile set and an emulated core "
                        "(cortex-m4: mps2-an386, cortex-m7: mps2-an500, cortex-m33: mps2-an505, riscv32: virt; "
                        "the TFLM library is built once per target, about 8 min), run it in QEMU with "
                        "-icount shift=0 and its UART on a pseudo-terminal, print the port and wait until "
                        "interrupted. `edgenas lut collect --port <port>` then collects from it as from a board; "
                        "QEMU counts instructions, not cycles, so that LUT is of method emulated in instructions.")
    q.add_argument("--target", required=True, choices=("cortex-m4", "cortex-m7", "cortex-m33", "riscv32"))
    q.add_argument("--profile-set", required=True, metavar="DIR", help="the profile-set directory")
    q.add_argument("--qmp", metavar="SOCKET", help="QMP Unix socket to create, for resets from outside "
                   "(send qmp_capabilities, then system_reset); default: a temporary one")
    q.add_argument("--counter", choices=("instructions", "dwt"), default="instructions",
                   help="dwt: build the DWT cycle-counter variant a real Cortex-M board uses (QEMU has no DWT: "
                   "the firmware answers every RUN with ERROR)")
    q.set_defaults(func=cmd_qemu_board)


def _keys(space_path, resolutions=None) -> list[str]:
    from edgenas_keras.cost.graph import reachable_keys

    return reachable_keys(load_space(space_path), resolutions)


def _model_keys(paths: list[str]) -> tuple[list[str], dict[str, str]]:
    """The operator keys of int8 models that the single-operator generator can build, in model order, and
    the others with the reason."""
    from edgenas_keras.lut.measure import unbuildable_reason
    from edgenas_keras.tflite.model import read_int8_model

    from pipeline.commands._util import existing_file

    keys: dict[str, None] = {}
    skipped: dict[str, str] = {}
    for p in paths:
        for k in read_int8_model(existing_file(p, "model file")).graph().keys:
            why = unbuildable_reason(k)
            if why:
                skipped[k] = why
            else:
                keys[k] = None
    for k, why in skipped.items():
        print(f"warning: skipping {k}: {why}", file=sys.stderr)
    return list(keys), skipped


def _default_method(device: str) -> str:
    """``lut build``'s method without ``--method``: measured for the host, emulated for a device with an
    emulated core (the shipped Cortex-M and RV32 tables), analytical otherwise (cortex-a53)."""
    from deploy.tflm_build import DEVICE_TARGETS

    if device == HOST_DEVICE:
        return "measured"
    return "emulated" if device in DEVICE_TARGETS else "analytical"


def cmd_build(args) -> int:
    """Build a device's LUT (measured on this host, timed on the emulated core, or analytical) into ``--out``
    or the shipped table (then also recorded in ``lut_assets/manifest.json``), and print what was written.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a shipped
    alias with another ``--method``, ``--refit`` without an emulated table, ``--limit`` below 1,
    ``--method measured`` for a board.
    """
    from edgenas_keras import lut as lutmod
    from edgenas_keras.lut import measure as lut_build

    name, args.device = args.device, lutmod.device_of(args.device)
    if name != args.device:   # a shipped alias (cortex-m7-analytical): its device, and its table's method
        alias_method = lutmod.load_device(name).metadata["method"]
        if args.method and args.method != alias_method:
            raise UserError(f"{name} is the {alias_method} table of {args.device}; for its {args.method} table "
                            f"give --device {args.device} --method {args.method}")
        args.method = alias_method
    method = args.method or (lutmod.load(args.out).metadata.get("method")
                             if args.model and args.out and Path(args.out).is_file() else None) \
        or _default_method(args.device)
    # the shipped file of that device and method: lut_assets/cortex-m7.json (emulated) or
    # lut_assets/analytical/cortex-m7.json (the cortex-m7-analytical alias)
    out = Path(args.out) if args.out else lutmod.shipped_file(args.device, method)
    out.parent.mkdir(parents=True, exist_ok=True)
    keep: dict = {}
    keep_metadata = None
    skipped: dict[str, str] = {}
    if args.refit:
        if method != "emulated" or not out.is_file():
            raise UserError(f"--refit converts an existing emulated table: {out} is "
                            + ("missing" if not out.is_file() else f"built by method {method}"))
        old = lutmod.load(out)
        if old.metadata.get("method") != "emulated" or not old.metadata.get("fit"):
            raise UserError(f"--refit: {out} is not an emulated table with a fit (metadata.fit)")
        keys, keep, keep_metadata = [], dict(old.entries), old.metadata
    elif args.model:
        keys, skipped = _model_keys(args.model)
        if method == "emulated":   # RESHAPE: entered at one counter tick (deploy/lut_emulated.py)
            keys += [k for k in skipped if k.startswith("RESHAPE|")]
            skipped = {k: why for k, why in skipped.items() if not k.startswith("RESHAPE|")}
        if args.keys_from:   # both: the table's keys and the models'
            keys = list(dict.fromkeys([*sorted(lutmod.load(args.keys_from).entries), *keys]))
        if out.is_file():   # add to the existing table: its entries are kept, not measured again
            old = lutmod.load(out)
            if old.device != args.device or old.metadata.get("method") != method:
                raise UserError(f"{out} is the {old.metadata.get('method')} table of {old.device}, not the "
                                f"{method} table of {args.device}: give another --out")
            keep, keep_metadata = dict(old.entries), old.metadata
    elif args.keys_from:
        keys = sorted(lutmod.load(args.keys_from).entries)
    else:
        keys = _keys(args.space, args.resolution)
    if args.limit is not None:
        if args.limit < 1:
            raise UserError(f"--limit must be at least 1, got {args.limit}")
        keys = keys[: args.limit]
    report = None
    if method == "emulated":
        from deploy.lut_emulated import build_emulated_lut

        table, report = build_emulated_lut(args.device, keys, out, update_manifest=not args.out, keep=keep,
                                           keep_metadata=keep_metadata,
                                           progress=None if args.json else progress.stderr)
    elif method == "measured":
        if args.device != HOST_DEVICE:
            raise UserError(f"--method measured builds {HOST_DEVICE} on this host; for a board use "
                            "`edgenas lut profile-set` and `edgenas lut collect`")
        table = lut_build.build_measured_lut(keys, out, args.device, update_manifest=not args.out, keep=keep,
                                             progress=not args.json)
    else:
        table = lutmod.build_analytical_lut(args.device, list(dict.fromkeys([*keys, *keep])),
                                                datetime.date.today().isoformat(), lut_build.TOOL_VERSION)
        sha = table.save(out)
        if not args.out:
            lutmod.update_manifest(args.device, out, sha)
        table = lutmod.load(out)
    obj = {"device": args.device, "method": method, "file": str(out), "entries": len(table.entries),
           "sha256": table.sha256, "skipped": skipped}
    human = (f"wrote {out}: {len(table.entries)} entries ({method}), sha256 {table.sha256[:12]}..."
             + (f"; {len(skipped)} key(s) skipped (no single-operator generator)" if skipped else ""))
    if report is not None:
        fit = report["fit"]
        obj.update(unit=table.unit, clock_mhz=table.clock_mhz, fit=fit, chunks=report["chunks"],
                   keys_measured=report["keys_measured"], seconds=report["seconds"],
                   keys_per_minute=report["keys_per_minute"])
        factors = ", ".join(f"x {f:.3f} for {c}" for c, f in fit["class_factors"].items() if f != 1.0)
        human += (f"\ncycles per instruction {fit['cycles_per_instruction']:.4f}"
                  + (f" ({factors})" if factors else "") + f" fitted to {fit['board']} at "
                  f"{fit['clock_mhz']:g} MHz: " + ", ".join(f"{a['model']} {a['latency_ms']:g} ms (residual "
                                                             f"{a['residual_pct']:+.1f}%)" for a in fit["anchors"])
                  + f"\n{report['keys_measured']} key(s) timed in {report['chunks']} QEMU run(s)")
    emit(args, obj, human)
    return 0


def cmd_validate(args) -> int:
    """Compare the LUT's prices of ``--samples`` sampled architectures with end-to-end figures
    (``--emulated``, ``--measured FILE``, or TFLM runs on this host for a host table); print MAE (ms), MAPE
    (%) and Spearman rho and write the scatter plot.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``):
    ``--samples`` below 2, both ``--emulated`` and ``--measured``, a device with nothing to compare against.
    """
    from edgenas_keras import lut as lutmod
    from edgenas_keras.lut import measure as lut_build

    if args.samples < 2:
        raise UserError("--samples must be at least 2 (Spearman needs two points)")
    space = load_space(args.space)
    # a host table measured on another machine is re-based here (or, with --no-rebase, only warned about)
    table = lutmod.resolve(args.device, args.lut, rebase=False if args.no_rebase else None)
    args.device = table.device
    if args.emulated and args.measured:
        raise UserError("give --emulated or --measured FILE, not both")
    if args.emulated:
        from deploy.lut_emulated import validate_emulated

        stats, rows = validate_emulated(space, table, args.samples, args.seed, jobs=args.jobs,
                                        rows_path=Path(args.rows) if args.rows else None,
                                        progress=None if args.json else progress.stderr)
        against = (f"end-to-end runs on the emulated core (QEMU), instructions x {stats['cycles_per_instruction']:.4f} "
                   "cycles per instruction x the fit's operator-class factors")
    elif args.measured:
        other = lutmod.load(args.measured)
        stats, rows = lut_build.validate_against_table(space, table, other, args.samples, args.seed)
        against = f"measured LUT {args.measured}"
    elif args.device == HOST_DEVICE or table.metadata.get("runtime") == "tflm-python":
        stats, rows = lut_build.validate_host(space, table, args.samples, args.seed, progress=not args.json,
                                              rows_path=Path(args.rows) if args.rows else None)
        against = "end-to-end TFLM runs on this host"
    else:
        from deploy.tflm_build import DEVICE_TARGETS

        emu = (" or --emulated (each architecture run end to end on the emulated core)"
               if args.device in DEVICE_TARGETS else "")
        raise UserError(f"device {args.device} has no hardware here: validation needs measured data; pass "
                        f"--measured FILE (a measured LUT of that board from `edgenas lut collect`){emu}")
    plot = Path(args.plot or f"runs/{args.device}-validation.png")
    lut_build.scatter_plot(rows, plot, f"{args.device}: {stats['n']} archs, MAPE {stats['mape_pct']:.2f}%, "
                           f"rho {stats['spearman']:.4f}")
    if args.rows and args.measured:
        Path(args.rows).write_text("".join(json.dumps(r) + "\n" for r in rows))
    obj = {"device": args.device, **stats, "seed": args.seed, "against": against, "plot": str(plot)}
    human = (f"| device | archs | MAE (ms) | MAPE (%) | Spearman rho |\n|---|---|---|---|---|\n"
             f"| {args.device} | {stats['n']} | {stats['mae_ms']:.3f} | {stats['mape_pct']:.2f} | "
             f"{stats['spearman']:.4f} |\n(against {against}; plot {plot})")
    emit(args, obj, human)
    return 0


def cmd_profile_set(args) -> int:
    """Write the single-operator models of shard K/N of the space's (or ``--model``'s) keys, ``manifest.json``
    and ``profile_set.cc`` to ``--out``.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a malformed
    ``--shard``, ``--limit`` below 1.
    """
    from deploy.lut_profiler import write_profile_set

    try:
        k, n = (int(v) for v in args.shard.split("/"))
        if not (n >= 1 and 0 <= k < n):
            raise ValueError
    except ValueError:
        raise UserError(f"--shard must be K/N with 0 <= K < N, got {args.shard!r}") from None
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    keys = (_model_keys(args.model)[0] if args.model else _keys(args.space))[k::n]
    if args.limit is not None:
        keys = keys[: args.limit]
    m = write_profile_set(keys, Path(args.out), args.device, progress=not args.json)
    emit(args, {"device": args.device, "out": args.out, "keys": len(m["keys"]), "set": m["set"]},
         f"wrote {len(m['keys'])} single-operator models, manifest.json and profile_set.cc to {args.out} "
         f"(set {m['set']})")
    return 0


def cmd_collect(args) -> int:
    """Drive the profiler firmware on ``--port`` (a board, or QEMU's pseudo-terminal) through the profile set
    and write the LUT it measures to ``--out`` (default ``<device>.json``).

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a bad
    profile set, pyserial missing, a port that does not open.
    """
    from deploy.lut_profiler import collect, read_manifest

    manifest = read_manifest(Path(args.profile_set))
    try:
        import serial  # pyserial: a declared dependency (pyproject.toml), but only this command needs it
    except ImportError:  # an install without it (e.g. a trimmed container) gets one line saying what to install
        raise UserError("pyserial is not installed: pip install pyserial") from None
    try:
        port = serial.serial_for_url(args.port, baudrate=args.baud, timeout=1.0)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise UserError(f"cannot open serial port {args.port}: {exc}") from None
    out = Path(args.out or f"{args.device}.json")
    try:
        table = collect(port, manifest, args.device, out, timeout_s=args.timeout,
                        log=progress.stderr)
    finally:
        port.close()
    emit(args, {"device": args.device, "file": str(out), "entries": len(table.entries), "sha256": table.sha256,
                "method": table.metadata["method"], "unit": table.unit, "clock_mhz": table.clock_mhz},
         f"wrote {out}: {len(table.entries)} {table.metadata['method']} entries ({table.unit} at "
         f"{table.clock_mhz:g} MHz)")
    return 0


def cmd_qemu_board(args) -> int:
    """Build the profiler firmware for ``--profile-set`` and ``--target``, run it in QEMU, print its
    pseudo-terminal port and wait until interrupted (QEMU is stopped on the way out).

    Returns the exit status, 0 on Ctrl-C (SIGTERM exits with 0 too); bad input raises ``UserError`` (exit 2 in
    ``pipeline.cli.main``), and QEMU exiting by itself raises ``EmulationError`` (a ``UserError``).
    """
    import signal
    import time

    from deploy.lut_profiler import read_manifest
    from deploy.lut_profiler_qemu import QemuBoard, build_profiler, describe
    from deploy.tflm_build import EmulationError

    device = read_manifest(Path(args.profile_set))["device"]
    elf = build_profiler(args.target, Path(args.profile_set), counter=args.counter, progress=progress.stderr)
    board = QemuBoard(args.target, elf, qmp_path=args.qmp)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # `kill` stops QEMU too
    try:
        board.start()
        info = dict(describe(board), device=device)
        emit(args, info, f"{args.target} profiler firmware running in QEMU {info['qemu_machine']}: serial port "
             f"{board.port} (QMP {info['qmp']})\ncollect with: edgenas lut collect --port {board.port} "
             f"--device {device} --profile-set {args.profile_set}\nCtrl-C stops it.")
        sys.stdout.flush()
        while board.alive():
            time.sleep(0.5)
        raise EmulationError(f"QEMU exited (status {board.proc.returncode}): "
                             f"{' | '.join(board.output[-3:]) or 'no output'}")
    except KeyboardInterrupt:
        return 0
    finally:
        board.stop()
        signal.signal(signal.SIGTERM, previous)
