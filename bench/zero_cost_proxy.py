"""Does a training-free score rank this space's networks? (issue 14, item 2: a lever measured, not adopted)

    .venv/bin/python bench/zero_cost_proxy.py --work ~/.cache/edgenas/paper_tables --window 200

Scores at initialisation, on one batch of 64 training images at the space's resolution, every network the
benchmark store under --work has trained (``bench/paper_tables.py``: their int8 accuracy in TFLM, mean over
the seeds trained), then reports the Spearman correlation of each score with that accuracy, and the
--window best-scoring of as many architectures drawn from Table 1's window ([0.9 B, B] at the main budget,
every budget met; ``selection.Window.sample``). Scores (averaged over two weight initialisations):

- ``naswot``: Mellor et al., "Neural Architecture Search without Training", ICML 2021: log|K| with
  K = C C^T + (1 - C)(1 - C)^T over the binary codes C (images x units) of every ReLU6 unit of the network
  (SE gates excluded);
- ``naswot_layer_sum``: the same log-determinant per ReLU6 layer, summed (every layer counts, not only the
  widest, high-resolution ones);
- ``grad_norm``: sum of the L2 norms of the loss gradients of every weight tensor (Abdelfattah et al.,
  "Zero-Cost Proxies for Lightweight NAS", ICLR 2021).

Prints one JSON object: the scored networks, the correlations and the window's best architectures (which a
reader trains with ``bench/paper_tables.py``'s store to check them; README "Levers tried" has the result).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

import paper_tables as pt  # noqa: E402
from edgenas_keras.model.builder import build_model  # noqa: E402
from edgenas_keras.data import reader  # noqa: E402
from edgenas_keras.search.selection import Window, spearman  # noqa: E402
from edgenas_keras.arch.space import decode  # noqa: E402

BATCH = 64
INITS = (0, 1)


def scores(space, arch: str, images, labels) -> dict:
    """The three scores of ``arch`` (module docstring), each the mean over ``INITS``."""
    import tensorflow as tf
    import tf_keras as keras

    out = defaultdict(list)
    for init in INITS:
        keras.utils.set_random_seed(init)
        model = build_model(space, decode(arch), space.resolution)
        relus = [layer.output for layer in model.layers if "relu" in layer.name and "serelu" not in layer.name]
        acts = keras.Model(model.input, relus)(images, training=False)
        codes = [(a.numpy().reshape(len(images), -1) > 0).astype(np.float64) for a in acts]

        def logdet(c):
            return float(np.linalg.slogdet(c @ c.T + (1 - c) @ (1 - c).T)[1])

        out["naswot"].append(logdet(np.concatenate(codes, 1)))
        out["naswot_layer_sum"].append(sum(logdet(c) for c in codes))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, model(images, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        out["grad_norm"].append(float(sum(tf.norm(g) for g in grads if g is not None)))
        keras.backend.clear_session()
    return {k: float(np.mean(v)) for k, v in out.items()}


def trained(work: Path) -> dict[str, list[float]]:
    """arch -> int8 TFLM accuracies of every network stored under ``work/nets`` (one per seed)."""
    acc: dict[str, list[float]] = defaultdict(list)
    for d in sorted((work / "nets").glob("*")):
        try:
            cfg = json.loads((d / "config.json").read_text())
            m = json.loads((d / "metrics.json").read_text())
        except (OSError, ValueError):
            continue   # a network still training
        acc[cfg["arch"]].append(m["accuracy_int8_tflm"])
    return acc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="bench/paper_tables.py's --work folder (full scale)")
    ap.add_argument("--window", type=int, default=200, help="architectures drawn from the window and scored")
    ap.add_argument("--seed", type=int, default=1, help="seed of the window draw")
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args(argv)
    b = pt.Bench(json.loads(json.dumps(pt.SCALES["full"])), Path(args.work).expanduser())
    images, labels = next(iter(reader.make_dataset(b.data_dir, "train", BATCH, b.space.resolution,
                                                   b.space.in_channels)))
    rows = []
    for arch, acc in trained(b.work).items():
        rows.append({"arch": arch, "accuracy_int8_mean": float(np.mean(acc)), "seeds": len(acc),
                     **scores(b.space, arch, images, labels)})
        print(f"[zero_cost] {rows[-1]}", file=sys.stderr, flush=True)
    acc = [r["accuracy_int8_mean"] for r in rows]
    corr = {k: spearman(acc, [r[k] for r in rows]) for k in ("naswot", "naswot_layer_sum", "grad_norm")}
    lut = b.lut(pt.MAIN_DEVICE)
    pricer = b.pricer(b.space, lut, b.search_config(pt.MAIN_DEVICE, pt.MAIN["budgets"]["latency_ms"], 0))
    window = Window(pricer, pt.RANDOM_WINDOW).sample(args.window, np.random.default_rng(args.seed))
    drawn = []
    for idx in window:
        arch = str(b.space.from_indices(idx))
        drawn.append({"arch": arch, "latency_ms": round(pricer.latency(idx), 3),
                      **scores(b.space, arch, images, labels)})
    best = {k: sorted(drawn, key=lambda r, k=k: -r[k])[: args.top] for k in ("naswot", "naswot_layer_sum")}
    print(json.dumps({"trained": rows, "spearman_vs_int8_accuracy": corr, "window_drawn": len(drawn),
                      "window_best": best, "batch": BATCH, "inits": list(INITS)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
