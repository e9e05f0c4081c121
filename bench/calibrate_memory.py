"""Measure what the SRAM and flash models are fitted on: for sampled architectures, the TFLM arena measured by
bisection on this host, the greedy-planned activation bytes, operator/tensor counts, and the .tflite size.

    .venv/bin/python bench/calibrate_memory.py --n 12 --seed 100 --out runs/memory_calibration.json

The constants of ``cost.PersistentModel`` (HOST_PERSISTENT) and ``cost.FlashModel`` come from a least-squares fit
of these rows (printed last as JSON). Tests check the fitted models on other seeds.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import edgenas_keras  # noqa: F401
from edgenas_keras.builder import build_model
from edgenas_keras.cost import planned_bytes, tflm_reference_scratch
from edgenas_keras.export import calibrate_untrained, random_representative, to_int8_tflite
from edgenas_keras.ops import arch_graph
from edgenas_keras.space import SearchSpace
from edgenas_keras.tflm import min_arena_bytes


def measure(space, arch) -> dict:
    g = arch_graph(space, arch)
    model = build_model(space, arch)
    calibrate_untrained(model, (space.resolution,) * 2 + (space.in_channels,))
    data = to_int8_tflite(model, random_representative((space.resolution,) * 2 + (space.in_channels,), n=2))
    quant_ch = sum(n.spec.out_shape[2] for n in g.nodes if n.spec.op in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    weights = sum(s.weights + 4 * s.bias for s in g.specs if s.weights)
    chans = sum(s.quant_channels for s in g.specs if s.weights)
    return {"arch": str(arch), "arena": min_arena_bytes(data), "planned": planned_bytes(g, tflm_reference_scratch),
            "tensors": len(g.tensor_bytes), "ops": len(g.nodes), "quant_ch": quant_ch, "flash": len(data),
            "all_tensors": g.all_tensors, "weight_bytes": weights, "quant_params": chans}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--out")
    a = ap.parse_args()
    space = SearchSpace.load()
    rows = []
    for arch in space.sample(a.n, seed=a.seed):
        rows.append(measure(space, arch))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    # arena - planned = base + per_tensor*T + per_op*O + per_ch*Q   (T: all tensors, constants included)
    X = np.array([[1, r["all_tensors"], r["ops"], r["quant_ch"]] for r in rows], float)
    y = np.array([r["arena"] - r["planned"] for r in rows], float)
    sram_fit = np.linalg.lstsq(X, y, rcond=None)[0]
    # flash - weights - 24*quant = header + per_tensor*(T + const) + per_op*O
    Xf = np.array([[1, r["all_tensors"], r["ops"]] for r in rows], float)
    yf = np.array([r["flash"] - r["weight_bytes"] - 24 * r["quant_params"] for r in rows], float)
    flash_fit = np.linalg.lstsq(Xf, yf, rcond=None)[0]
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
    print(json.dumps({"n": len(rows), "sram_persistent_fit": dict(zip(["base", "per_tensor", "per_op", "per_quant_channel"],
                      sram_fit.round(2).tolist())),
                      "flash_fit": dict(zip(["header", "per_tensor", "per_op"], flash_fit.round(2).tolist()))}))


if __name__ == "__main__":
    main()
