"""``edgenas analyze MODEL.tflite --device D``: latency, SRAM, host arena and flash of any int8 model.

Works on models nobody on this team trained: the file is parsed to an ``OpGraph``
(``edgenas_keras.tflite.model``), each operator of subgraph 0 (the one TFLM runs; the others are listed)
priced from the device's LUT (an analytical table such as ``cortex-m7-analytical`` prices any
shape; a measured or emulated table, such as the shipped ``cortex-m7``, lacking a key is an error unless
``--allow-estimate``), peak SRAM from the
foundation's planner with the device's kernel-library scratch, the arena measured on this host by
bisection (``tflm.min_arena_bytes``, done first: a model TFLM cannot prepare is refused with TFLM's own
reason), and flash as the flatbuffer's size. Where the device has an emulated core (cortex-m4, cortex-m7,
cortex-m33, riscv) and its toolchain is installed, ``emulated`` adds the model's arena on that 32-bit core and
the linked image's flash, measured in QEMU (``deploy.emulate.measured_footprint``; ``--no-arena`` skips it).
"""

from __future__ import annotations

import dataclasses
import sys

from edgenas_keras import progress
from pipeline.commands._util import JSON_OUTPUT, LUT_SOURCE, emit, existing_file, format_table


def register(sub) -> None:
    """Add ``edgenas analyze`` to the subcommand parser ``sub``."""
    p = sub.add_parser("analyze", parents=[LUT_SOURCE, JSON_OUTPUT], help="per-operator latency, SRAM, arena and flash of a .tflite model",
                       description="Analyze a full-int8 .tflite for a device: per-operator and total latency "
                       "from the device's LUT, peak SRAM on the target (TFLM greedy planner + the device's "
                       "kernel scratch + persistent overhead), the TFLM arena measured on this host by "
                       "bisection, and flash (the model file). TFLM runs subgraph 0: its operators are priced; "
                       "other subgraphs (further signatures, IF/WHILE/CALL_ONCE bodies) are listed, and their "
                       "tensors count in SRAM and the arena, since TFLM allocates them all. Weights stored "
                       "outside the flatbuffer (buffer offset/size) are refused.")
    p.add_argument("model", metavar="MODEL.tflite")
    p.add_argument("--allow-estimate", action="store_true",
                   help="price keys a measured or emulated LUT lacks with a scaled analytical estimate (with a "
                   "warning)")
    p.add_argument("--no-arena", action="store_true", help="skip the host arena bisection and the emulated "
                   "arena (the model on the device's core in QEMU, where it has one; faster)")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args) -> int:
    """Price MODEL.tflite on the device's LUT operator by operator, with peak SRAM, the host arena (and, where
    the device has an emulated core, its arena and linked flash) and flash; print the table or ``--json``.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a missing or
    non-int8 model, one TFLM cannot prepare, a LUT lacking keys without ``--allow-estimate``.
    """
    from edgenas_keras.cost import estimate as cost
    from edgenas_keras.lut import analytical as lut_models
    from edgenas_keras.tflite import tflm
    from edgenas_keras import lut as lutmod
    from edgenas_keras.tflite.model import read_int8_model

    path = existing_file(args.model, "model file")
    model = read_int8_model(path)
    data = path.read_bytes()
    # TFLM first: a model it cannot prepare is refused with TFLM's own reason, before any pricing
    host_arena = None if args.no_arena else tflm.min_arena_bytes(data, str(path))
    graph = model.graph()
    table = lutmod.resolve(args.device, args.lut, args.clock_mhz)
    missing = set(table.missing(graph.keys))
    estimate = None
    if missing:
        if not args.allow_estimate:
            table.require(graph.keys)   # raises, listing the missing keys
        # Price them through the table itself (Lut.raw), so a board calibration scales estimates too.
        estimate = dataclasses.replace(table, estimator=lut_models.scaled_estimator(table))
        print(f"warning: {len(missing)} operator key(s) are not in LUT {table.source}; their latency is an "
              "estimate (scaled analytical model)", file=sys.stderr)
    head_est = set(table.head_estimated(graph.keys))
    if head_est:
        print(f"warning: {len(head_est)} classifier-head key(s) are not in LUT {table.source}; their latency is "
              "the table's head estimate (scaled analytical model)", file=sys.stderr)
    ops = []
    for i, node in enumerate(graph.nodes):
        s = node.spec
        est = s.key in missing or s.key in head_est
        us = (estimate if est else table).op_us(s.key)
        ops.append({"index": i, "op": s.op, "key": s.key, "in_shape": list(s.in_shape),
                    "out_shape": list(s.out_shape), "macs": s.macs, "params": s.params,
                    "latency_us": round(us, 3), "estimated": est})
    scratch, persistent = cost.device_memory_terms(table)
    obj = {"model": str(path), "device": table.device, "lut_sha256": table.sha256, "clock_mhz": table.clock_mhz,
           "unit": table.unit, "latency_ms": sum(o["latency_us"] for o in ops) / 1000.0,
           "sram_bytes": cost.tflite_sram_bytes(model, scratch, persistent),
           "host_arena_bytes": host_arena,
           "flash_bytes": len(data), "macs": graph.macs, "estimated_ops": len([o for o in ops if o["estimated"]]),
           "ops": ops, **_subgraphs(model)}
    if not args.no_arena:
        # The arena and linked flash on the device's 32-bit core in QEMU, where it has one and the
        # toolchain is installed (deploy.emulate; cached per model, target and TFLM build).
        from deploy.emulate import measured_footprint

        fp, note = measured_footprint(path, table.device, progress=progress.stderr)
        obj["emulated"] = fp or {"note": note}
    run = obj["subgraph"]
    lines = [f"subgraph {run['index']}{_label(run)} runs (TFLM invokes subgraph 0); its operators are priced:"]
    lines.append(format_table(
        [[o["index"], o["op"], "x".join(map(str, o["in_shape"])), "x".join(map(str, o["out_shape"])), o["macs"],
          o["latency_us"], "(estimate)" if o["estimated"] else None] for o in ops],
        ["#", "op", "in", "out", "MACs", "us", ""], floatfmt=".1f"))
    lines.append(f"latency {obj['latency_ms']:.3f} ms on {table.device} at {table.clock_mhz:g} MHz; "
                 f"SRAM {obj['sram_bytes']} B (target); host arena "
                 f"{str(obj['host_arena_bytes']) + ' B' if obj['host_arena_bytes'] is not None else 'skipped'}; "
                 f"flash {obj['flash_bytes']} B")
    if obj.get("emulated", {}).get("arena_used_bytes") is not None:
        e = obj["emulated"]
        lines.append(f"emulated on {e['target']} (QEMU {e['qemu_machine']}, TFLM {e['kernels']}): arena "
                     f"{e['arena_used_bytes']} B (32-bit); linked flash {e['flash_bytes']} B "
                     f"(runtime {e['runtime_flash_bytes']} + model {e['model_bytes']}); "
                     f"{e['instructions']:,} instructions per invoke")
    for g in obj["other_subgraphs"]:
        how = ("run by " + ", ".join(f"{c['op']} ({c['role']}) at operator {c['operator']} of subgraph "
                                     f"{c['subgraph']}" for c in g["called_by"]) + " (its time is not in the latency)"
               if g["called_by"] else "not run by subgraph 0")
        lines.append(f"other subgraph {g['index']}{_label(g)}: {', '.join(g['op_set']) or 'no operators'}; {how}; "
                     "its tensors count in SRAM and the arena")
    emit(args, obj, "\n".join(lines))
    return 0


def _label(g: dict) -> str:
    parts = [f"'{g['name']}'"] if g["name"] else []
    if g["signature"] is not None:
        parts.append(f"signature '{g['signature']}'")
    return f" ({', '.join(parts)})" if parts else ""


def _subgraphs(model) -> dict:
    """The subgraph TFLM runs (0) and the others: index, name, signature key, operator set, and which
    control-flow operators run them (none for another signature's subgraph)."""
    calls = model.calls()

    def describe(g) -> dict:
        return {"index": g.index, "name": g.name, "signature": model.signature_of(g.index),
                "operators": len(g.operators), "op_set": g.op_set,
                "called_by": [{"subgraph": c.caller, "operator": c.operator, "op": c.op, "role": c.role}
                              for c in calls if c.callee == g.index]}

    first, *rest = model.subgraphs
    return {"subgraph": describe(first), "other_subgraphs": [describe(g) for g in rest]}
