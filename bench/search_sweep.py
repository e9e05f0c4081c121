"""Budget sweep of the constrained search: do the found architectures meet their budgets, and use them?

For each device, 8 latency budgets spread evenly between the space's floor (its cheapest architecture) and
ceiling (its largest), exclusive, and each seed: a short search on synthetic data; every returned
architecture is priced again with the exact LUT cost. Reported per run: the budget, the returned latency,
its use of the budget, the latency of alpha's argmax (before repair and fill) and after repair (before
fill). The baseline in the same run is the space's cheapest architecture (what a search that ignored
accuracy and only met the budget would return): its use of each budget is reported alongside.

Usage: .venv/bin/python bench/search_sweep.py [--devices cortex-m7,cortex-m4] [--seeds 0,1] [--budgets 8] [--out DIR]
Runs are resumable and finished ones are reused: several processes (say one per device or seed) can share
one ``--out``, and a last run over everything prints the whole table.
A device without a shipped LUT falls back to the synthetic test fixture LUT (said so in the output).
Last line of output: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import edgenas_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS)
from edgenas_keras import lut as lutmod
from edgenas_keras.budgets import Budgets
from edgenas_keras.cost.estimate import arch_cost
from edgenas_keras.search import SearchConfig, run_search
from edgenas_keras.search.derive import cheapest_indices
from edgenas_keras.arch.space import SearchSpace, decode
from edgenas_keras.model.supernet import largest_arch

ROOT = Path(__file__).resolve().parent.parent


def device_lut(name: str, space: SearchSpace):
    if name in lutmod.shipped_devices():
        return lutmod.load_device(name), "shipped"
    sys.path.insert(0, str(ROOT / "tests"))
    from lut_fixtures import fixture_lut

    clock = {"cortex-m4": 168.0, "riscv": 320.0}.get(name, 480.0)
    return fixture_lut(space, device=f"fixture({name})", clock_mhz=clock), "fixture"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cortex-m7,cortex-m4")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--budgets", type=int, default=8)
    ap.add_argument("--data", help="Examples folder (default: 400 synthetic images at 32x32, drawn here)")
    ap.add_argument("--out", help="keep the search folders here (default: a temporary folder)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--report-only", action="store_true", help="tabulate the finished runs in --out, run nothing")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="edgenas-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        from edgenas_keras.data.synth import SynthSpec, write_synth

        data = work / "data"
        if not (data / "stats.json").exists():
            write_synth(data, SynthSpec(n=400, seed=3, resolution=32))
    space = SearchSpace.load()
    rows, sources = [], {}
    t0 = time.time()
    for device in args.devices.split(","):
        lut, source = device_lut(device, space)
        sources[device] = source
        cheapest = space.from_indices(cheapest_indices(space))
        floor = arch_cost(space, cheapest, lut).latency_ms
        ceil = arch_cost(space, largest_arch(space), lut).latency_ms
        n = args.budgets
        for k in range(1, n + 1):
            budget = floor + (ceil - floor) * k / (n + 1)
            for seed in (int(s) for s in args.seeds.split(",")):
                cfg = SearchConfig(budgets=Budgets(budget), epochs=args.epochs, warmup_epochs=1, steps_per_epoch=args.steps,
                                   batch_size=16, train_resolution=32, seed=seed)
                run_dir = work / f"{device}-b{k}-s{seed}"
                if args.report_only and not (run_dir / "result.json").is_file():
                    continue
                r = run_search(data, lut, cfg, run_dir, space=space)  # a finished folder returns its result
                history = json.loads((run_dir / "history.json").read_text())
                exact = arch_cost(space, decode(r.arch), lut)
                rows.append({"device": device, "lut": source, "seed": seed, "budget_ms": budget,
                             "latency_ms": exact.latency_ms, "use": exact.latency_ms / budget,
                             "meets": exact.latency_ms <= budget, "argmax_ms": r.derived_latency_ms,
                             "after_repair_ms": r.extra["repaired_latency_ms"],
                             "use_before_fill": r.extra["repaired_latency_ms"] / budget,
                             "cheapest_use": floor / budget, "arch": r.arch, "seconds": history[-1]["seconds"]})
                row = rows[-1]
                print(f"{device:<10} seed {seed} budget {budget:8.3f} ms -> {row['latency_ms']:8.3f} ms "
                      f"({100 * row['use']:.0f}%; argmax {row['argmax_ms']:.3f}, after repair "
                      f"{row['after_repair_ms']:.3f}) training {row['seconds']} s", flush=True)
    print("\n| device | LUT | budget ms | seed | found ms | use | argmax ms | after repair ms | cheapest use |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['lut']} | {r['budget_ms']:.3f} | {r['seed']} | {r['latency_ms']:.3f} | "
              f"{100 * r['use']:.0f}% | {r['argmax_ms']:.3f} | {r['after_repair_ms']:.3f} | "
              f"{100 * r['cheapest_use']:.0f}% |")
    mean = sum(r["use"] for r in rows) / len(rows)
    summary = {
        "runs": len(rows), "all_meet_budget": all(r["meets"] for r in rows), "mean_use": round(mean, 4),
        "mean_use_before_fill": round(sum(r["use_before_fill"] for r in rows) / len(rows), 4),
        "mean_use_cheapest_baseline": round(sum(r["cheapest_use"] for r in rows) / len(rows), 4),
        "min_use": round(min(r["use"] for r in rows), 4), "luts": sources,
        "mean_training_s": round(sum(r["seconds"] for r in rows) / len(rows), 1),
        "total_s": round(time.time() - t0, 1), "machine": platform.machine(), "cpus": os.cpu_count(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
