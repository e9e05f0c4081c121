"""Does a short stand-alone training rank networks like their full training does? (issue 14, item 2)

The search's ``fitness: trained`` scores each candidate by a short training from scratch
(``selection.train_and_score``). This benchmark trains every network of a finished paper-tables result
(``bench/results/paper_tables.json``, Table 1: the hand-designed networks, fill, and every seed's EdgeNAS and
random-search pick) with each proxy variant and prints, as JSON, the rank correlation (Spearman, Kendall)
between the proxy score and the network's int8 accuracy after full training in that result (the mean over its
seeds), plus how far down the proxy puts the best network. Variants differ in the learning-rate schedule of the
short training (constant, or cosine decay to 0) and in the batch-norm statistics the score is taken with
(Keras' moving averages, which trail the weights by about a hundred steps at momentum 0.99, or recomputed on
training batches after training: ``train.recalibrate_batch_norm``).

    .venv/bin/python bench/proxy_fidelity.py --work ~/.cache/edgenas/paper_tables --out /tmp/fidelity.json

Each (architecture, variant, seed) score is kept in ``--work``/fidelity and reused on a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_tables import SCALES, Bench  # noqa: E402

from edgenas_keras import benchmark as bm  # noqa: E402
from edgenas_keras.arch.space import decode  # noqa: E402
from edgenas_keras.search.loop import reader_data  # noqa: E402
from edgenas_keras.search.selection import kendall, spearman, train_and_score  # noqa: E402

VARIANTS = {   # name: keyword arguments of train_and_score beyond the search's own
    "constant-lr/moving-bn": {"lr_decay": False, "recalibrate_bn": 0},   # the kept fitness
    "constant-lr/recomputed-bn": {"lr_decay": False, "recalibrate_bn": 8},
    "cosine-lr/moving-bn": {"lr_decay": True, "recalibrate_bn": 0},
    "cosine-lr/recomputed-bn": {"lr_decay": True, "recalibrate_bn": 8},
}


def ground_truth(result: dict, min_seeds: int = 1) -> dict[str, float]:
    """Architecture -> mean int8 accuracy (fraction) over every seed it was trained with in Table 1, for the
    architectures trained with at least ``min_seeds`` seeds."""
    acc: dict[str, list[float]] = {}
    for net in result["table1"]["networks"]:
        for row in net.get("per_seed", []):
            acc.setdefault(row["arch"], []).append(row["accuracy_int8"])
    return {a: sum(v) / len(v) for a, v in acc.items() if len(v) >= min_seeds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--result", default="bench/results/paper_tables.json")
    p.add_argument("--work", default="runs/paper_tables")
    p.add_argument("--scale", choices=sorted(SCALES), default="full", help="paper_tables.py's data scale the "
                   "result was measured at (its synthetic images are drawn into --work, or reused)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--val-batches", default="10,24", help="comma-separated: score on the first N validation "
                   "batches for each N (one training, the largest N evaluated)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--min-seeds", type=int, default=1, help="only networks Table 1 trained with at least this "
                   "many seeds (3: the hand-designed networks, fill and the differentiable search's pick)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        seeds = [int(v) for v in args.seeds.split(",")]
        val_batches = [int(v) for v in args.val_batches.split(",")]
    except ValueError:
        print(f"error: --seeds and --val-batches take comma-separated integers, got {args.seeds!r} and "
              f"{args.val_batches!r}", file=sys.stderr)
        return 2
    names = [v for v in args.variants.split(",") if v]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        print(f"error: --variants: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    try:
        truth = ground_truth(json.loads(Path(args.result).read_text()), args.min_seeds)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: --result {args.result}: not a paper_tables result with a table1 ({e})", file=sys.stderr)
        return 2
    if len(truth) < 2:
        print(f"error: --result {args.result}: fewer than 2 networks trained with >= {args.min_seeds} seeds",
              file=sys.stderr)
        return 2
    bench = Bench(json.loads(json.dumps(SCALES[args.scale])), Path(args.work).expanduser())
    cfg = bench.search_config("cortex-m7", 45.0, 0)
    data = reader_data(bench.data_dir, cfg, bench.space.resolution, bench.space.in_channels)
    store = Path(args.work).expanduser() / "fidelity"
    store.mkdir(parents=True, exist_ok=True)
    archs = sorted(truth, key=truth.get, reverse=True)   # best first: rank_of_best is the rank of archs[0]
    scores: dict = {}
    for arch in archs:
        for name in names:
            for seed in seeds:
                key = {"arch": arch, "variant": VARIANTS[name], "steps": args.steps, "seed": seed,
                       "val_batches": max(val_batches), "data": bench.data_fp}
                path = store / f"{bm.digest(key)}.json"
                if path.is_file():
                    row = json.loads(path.read_text())
                else:
                    c0 = time.process_time()
                    row = train_and_score(bench.space, decode(arch), data, bench.space.resolution, args.steps,
                                          max(val_batches), seed, **VARIANTS[name])
                    row["cpu_s"] = round(time.process_time() - c0, 2)
                    path.write_text(json.dumps(row))
                scores.setdefault(name, {}).setdefault(arch, []).append(row)
                print(f"{name} seed {seed} {arch}: accuracy {row['accuracy']:.4f} ce {row['ce']:.4f} "
                      f"({row['cpu_s']} CPU s)", file=sys.stderr, flush=True)
    out = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "load": bm.load_average(), "networks": len(archs), "min_seeds": args.min_seeds, "steps": args.steps,
           "seeds": seeds, "truth": {a: round(truth[a], 4) for a in archs}, "variants": {}}
    for name in names:
        per = {}
        t = [truth[a] for a in archs]
        for nb in val_batches:
            for metric in ("accuracy", "ce"):
                s = []
                for a in archs:
                    vals = []
                    for r in scores[name][a]:
                        b = r["batches"][:nb]
                        n = sum(x[2] for x in b)
                        vals.append(sum(x[0] for x in b) / n if metric == "accuracy" else -sum(x[1] for x in b) / n)
                    s.append(sum(vals) / len(vals))
                pick = max(range(len(s)), key=s.__getitem__)
                per[f"{metric}@{nb}b"] = {
                    "spearman": round(spearman(s, t), 3), "kendall": round(kendall(s, t), 3),
                    "rank_of_best": 1 + sorted(s, reverse=True).index(s[0]),
                    "truth_of_proxy_best": round(t[pick], 4), "proxy_best": archs[pick]}
        out["variants"][name] = per
        out.setdefault("scores", {})[name] = {
            a: [{"accuracy": r["accuracy"], "ce": r["ce"], "images": r["images"]} for r in scores[name][a]]
            for a in archs}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out["variants"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
