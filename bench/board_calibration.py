"""Shipped device tables against public board measurements: raw errors, and leave-one-out after calibration.

For every row of ``board_anchors.json`` (public measurements of public int8 models on real boards, each with
its source), the board's table (``cortex-m4`` for a Cortex-M4, ``cortex-m7``, ``cortex-m33`` when shipped else
``cortex-m4`` as the anchors file notes, ``riscv`` for RV32: the shipped tables, timed on the emulated cores;
``--analytical``: the ``<device>-analytical`` cycle models, with ``cortex-m4-analytical`` for the Cortex-M33 as
before issue 13) prices the model at the board's clock: the *raw* error. Then, per board with two or more anchors, the table is calibrated on one anchor
(``lut_calibrate.calibrate``, the code of ``edgenas lut calibrate``: one measurement, one factor) and
predicts each other anchor of that board: the *leave-one-out* error, which measures the table's shape (what
one model costs against another), since one factor fixes its scale. Pricing is ``cost.graph_latency_ms`` on
``tflite_model.read_int8_model(...).graph()``, as ``edgenas analyze`` does.

Prints a table on stderr and one JSON object (figures, tables' sha256, date, machine, load) on stdout:

    .venv/bin/python bench/board_calibration.py [--anchors ../shared/board_anchors.json] [--analytical]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import edgenas_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgenas_keras import lut as lutmod
from edgenas_keras import machine
from edgenas_keras.lut import calibrate as lut_calibrate
from edgenas_keras.cost.estimate import graph_latency_ms
from edgenas_keras.tflite.model import read_int8_model

DEFAULT_ANCHORS = Path(__file__).resolve().parent.parent.parent / "shared" / "board_anchors.json"


def device_for(core: str, analytical: bool = False) -> str:
    """The shipped table a board's core is priced with (the mapping of ``../shared/checks/board-calibration``,
    with cortex-m33 falling back to cortex-m4 where no cortex-m33 table is shipped); ``analytical``: the
    device's analytical alias (``cortex-m4-analytical``...), cortex-m4's for the M33, which has none."""
    c = core.lower()
    shipped = lutmod.shipped_devices()
    if "risc" in c or "rv32" in c:
        dev = "riscv"
    elif "m7" in c:
        dev = "cortex-m7"
    elif "m33" in c:
        dev = "cortex-m33" if "cortex-m33" in shipped and not analytical else "cortex-m4"
    else:
        dev = "cortex-m4"
    return f"{dev}-analytical" if analytical and f"{dev}-analytical" in shipped else dev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchors", default=str(DEFAULT_ANCHORS), help="board_anchors.json (default: %(default)s)")
    ap.add_argument("--analytical", action="store_true", help="price with the analytical tables (<device>-"
                    "analytical), the shipped ones before issue 13, instead of the emulated ones")
    args = ap.parse_args()
    anchors_path = Path(args.anchors)
    rows = json.loads(anchors_path.read_text())["rows"]
    tables = {}
    graphs = {}
    raw = []
    for r in rows:
        dev = device_for(r["core"], args.analytical)
        tables.setdefault(dev, lutmod.load_device(dev))
        model = anchors_path.parent / r["model"]
        graphs.setdefault(r["model"], read_int8_model(model).graph())
        pred = graph_latency_ms(graphs[r["model"]], tables[dev].with_clock(float(r["clock_mhz"])))
        raw.append({"board": r["board"], "benchmark": r["benchmark"], "device": dev, "clock_mhz": r["clock_mhz"],
                    "measured_ms": r["latency_ms"], "predicted_ms": round(pred, 3),
                    "error_pct": round(100 * (pred / r["latency_ms"] - 1), 2), "source": r["source"]})
    loo = []
    boards: dict[str, list[dict]] = {}
    for r in rows:
        boards.setdefault(r["board"], []).append(r)
    for board, rs in boards.items():
        if len(rs) < 2:
            continue
        dev = device_for(rs[0]["core"], args.analytical)
        for cal in rs:
            table, rep = lut_calibrate.calibrate(
                tables[dev], [lut_calibrate.Measurement(anchors_path.parent / cal["model"], cal["latency_ms"])],
                float(cal["clock_mhz"]))
            for o in rs:
                if o is cal:
                    continue
                pred = graph_latency_ms(graphs[o["model"]], table)
                loo.append({"board": board, "device": dev, "calibrated_on": cal["benchmark"],
                            "predicted": o["benchmark"], "factor": round(rep["factors"]["conv"], 4),
                            "measured_ms": o["latency_ms"], "predicted_ms": round(pred, 3),
                            "error_pct": round(100 * (pred / o["latency_ms"] - 1), 2)})

    def summary(items):
        errs = [x["error_pct"] for x in items]
        return {"n": len(errs), "mean_abs_pct": round(sum(abs(e) for e in errs) / len(errs), 2),
                "min_pct": min(errs), "max_pct": max(errs), "worst_abs_pct": max(abs(e) for e in errs)}

    print(f"{'board':<32} {'benchmark':<16} {'table':<20} {'MHz':>4} {'measured':>9} {'raw pred':>9} {'raw err':>8}",
          file=sys.stderr)
    for x in raw:
        print(f"{x['board'][:32]:<32} {x['benchmark'][:16]:<16} {x['device']:<20} {x['clock_mhz']:>4} "
              f"{x['measured_ms']:>9.1f} {x['predicted_ms']:>9.1f} {x['error_pct']:>+7.1f}%", file=sys.stderr)
    print("leave-one-out (calibrated on one anchor, predicting the board's other):", file=sys.stderr)
    for x in loo:
        print(f"  {x['board'][:32]:<32} on {x['calibrated_on']:<16} -> {x['predicted']:<16} "
              f"{x['measured_ms']:>8.1f} vs {x['predicted_ms']:>8.1f} ms {x['error_pct']:>+7.1f}%", file=sys.stderr)
    print(json.dumps({
        "command": "python bench/board_calibration.py" + (" --analytical" if args.analytical else ""), "anchors": str(anchors_path),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tables": {d: {"sha256": t.sha256, "method": t.metadata.get("method")} for d, t in sorted(tables.items())},
        "raw": raw, "raw_summary": summary(raw), "leave_one_out": loo, "leave_one_out_summary": summary(loo),
        "machine": {"cpu": machine.describe(machine.identity()), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()]}},
        sort_keys=True))


if __name__ == "__main__":
    main()
