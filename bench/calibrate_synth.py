"""Calibrate the synthetic VWW difficulty: does the architecture matter on it?

Trains an MLPerf-Tiny-like MobileNetV1 (alpha 0.25, the MLPerf Tiny VWW reference model, built here in
tf_keras) and a clearly smaller CNN on the same synthetic data, with the same budget, and reports eval
accuracy of both. The target (issue 3): MobileNetV1 between 75% and 92%, the small net clearly worse.

    .venv/bin/python bench/calibrate_synth.py --n 10000 --resolution 96 --epochs 10 --seed 0

Last line of output: JSON with both accuracies, their gap, data and timing figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import edgenas_keras  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from edgenas_keras.data.reader import make_dataset  # noqa: E402
from edgenas_keras.data.records import STATS_FILE  # noqa: E402
from edgenas_keras.data.synth import SynthSpec, write_synth  # noqa: E402

# Keras' default BN momentum (0.99) leaves the moving statistics far from the batch statistics after a few
# hundred steps, and the model then predicts one class at eval time; 0.9 converges within a short run.
BN_MOMENTUM = 0.9


def mobilenet_v1(resolution: int, channels: int, alpha: float = 0.25):
    """The MLPerf Tiny VWW reference: MobileNetV1 with a width multiplier, 2-way softmax."""
    import tf_keras as keras
    from tf_keras import layers

    def conv_bn(x, filters, kernel, stride):
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
        return layers.ReLU(6.0)(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))

    def dw_sep(x, filters, stride):
        x = layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False)(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))
        return conv_bn(x, filters, 1, 1)

    inp = keras.Input((resolution, resolution, channels))
    x = conv_bn(inp, int(32 * alpha), 3, 2)
    for filters, stride in (
        [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
        + [(512, 1)] * 5
        + [
            (1024, 2),
            (1024, 1),
        ]
    ):
        x = dw_sep(x, int(filters * alpha), stride)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(2, activation="softmax")(x), name="mobilenet_v1_025")


def small_cnn(resolution: int, channels: int):
    """A clearly smaller network: three strided convolutions of 4-8 channels (about 1% of the MACs)."""
    import tf_keras as keras
    from tf_keras import layers

    inp = keras.Input((resolution, resolution, channels))
    x = inp
    for filters in (4, 8, 8):
        x = layers.Conv2D(filters, 3, 2, padding="same", use_bias=False)(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=BN_MOMENTUM)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(2, activation="softmax")(x), name="small_cnn")


def train_eval(model, data_dir, args, steps_per_epoch):
    import tf_keras as keras

    schedule = keras.optimizers.schedules.CosineDecay(args.lr, steps_per_epoch * args.epochs)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = make_dataset(data_dir, "train", args.batch, args.resolution, augment=True, shuffle_seed=args.seed)
    evald = make_dataset(data_dir, "eval", 256, args.resolution)
    t0 = time.time()
    model.fit(train, epochs=args.epochs, verbose=2)
    seconds = time.time() - t0
    _, acc = model.evaluate(evald, verbose=0)
    return float(acc), seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--resolution", type=int, default=96)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--models", default="mobilenet_v1_025,small_cnn", help="comma-separated subset to train")
    p.add_argument("--data", help="data directory (kept; default a temporary one)")
    args = p.parse_args()

    import tensorflow as tf

    tf.keras.utils.set_random_seed(args.seed)
    data_dir = args.data or tempfile.mkdtemp(prefix="calib-")
    t0 = time.time()
    spec = SynthSpec(args.n, args.seed, args.resolution, eval_fraction=args.eval_fraction)
    if os.path.exists(os.path.join(data_dir, STATS_FILE)):
        stats = json.load(open(os.path.join(data_dir, STATS_FILE)))
    else:
        stats = write_synth(data_dir, spec)
    gen_s = time.time() - t0
    print(f"data: {stats['written']} labels {stats['labels']} in {gen_s:.1f}s", file=sys.stderr)
    steps = -(-stats["written"]["train"] // args.batch)
    results = {}
    for name, build in (("mobilenet_v1_025", mobilenet_v1), ("small_cnn", small_cnn)):
        if name not in args.models.split(","):
            continue
        tf.keras.utils.set_random_seed(args.seed)
        model = build(args.resolution, 3)
        acc, secs = train_eval(model, data_dir, args, steps)
        results[name] = {
            "eval_accuracy": round(acc, 4),
            "params": int(model.count_params()),
            "train_s": round(secs, 1),
        }
        print(f"{name}: eval accuracy {acc:.4f} ({secs:.0f}s)", file=sys.stderr)
    majority = max(stats["labels_per_split"]["eval"].values()) / stats["written"]["eval"]
    accs = {f"{name}_acc": r["eval_accuracy"] for name, r in results.items()}
    if len(accs) == 2:
        accs["gap"] = round(accs["mobilenet_v1_025_acc"] - accs["small_cnn_acc"], 4)
    data = {"n": args.n, "resolution": args.resolution, "seed": args.seed, "written": stats["written"]}
    data.update(labels=stats["labels"], generate_s=round(gen_s, 1))
    machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
    print(
        json.dumps(
            {
                **accs,
                "majority_class_acc": round(majority, 4),
                "models": results,
                "data": data,
                "epochs": args.epochs,
                "machine": machine,
            }
        )
    )


if __name__ == "__main__":
    main()
