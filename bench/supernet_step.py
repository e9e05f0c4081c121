"""Supernet training step against the largest single child network, same batch and resolution, same run.

The supernet's weight step (sample a path, forward, backward, Adam update of the shared weights) is timed
against a plain training step of ``builder.build_model(largest_arch)`` (the most expensive child: inverted
residual, 7x7, expansion 6, SE, 64 channels in every block). The architecture step (same cost plus the alpha
gradient and the expected-cost penalty) is reported too. Target (issue 5): ratio <= 1.5; the naive DARTS
mixture measured 2.07x (DESIGN.md section 2).

Usage: .venv/bin/python bench/supernet_step.py [--batch 32] [--resolution 96] [--steps 8]
Last line of output: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import edgenas_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS)
import tensorflow as tf
import tf_keras as keras

from edgenas_keras.model.builder import build_model
from edgenas_keras.arch.space import SearchSpace
from edgenas_keras.model.supernet import Supernet, largest_arch


def timed(step, n):
    step()  # trace and warm up
    step()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    keras.utils.set_random_seed(0)
    space = SearchSpace.load().with_resolution(args.resolution)
    x = tf.random.uniform((args.batch, args.resolution, args.resolution, space.in_channels), -1, 1)
    y = tf.random.uniform((args.batch,), 0, space.num_classes, tf.int32)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    child = build_model(space, largest_arch(space))
    c_opt = keras.optimizers.Adam(1e-3)

    @tf.function
    def child_step():
        with tf.GradientTape() as tape:
            loss = ce(y, tf.math.log(child(x, training=True) + 1e-9))
        c_opt.apply_gradients(zip(tape.gradient(loss, child.trainable_variables), child.trainable_variables))
        return loss

    net = Supernet(space)
    w_opt = keras.optimizers.Adam(1e-3)
    a_opt = keras.optimizers.Adam(1e-2)
    step_no = tf.Variable(0, dtype=tf.int32)

    @tf.function
    def supernet_step():
        step_no.assign_add(1)
        gates = net.sample_gates(1.0, tf.stack([0, step_no]))
        with tf.GradientTape() as tape:
            loss = ce(y, net((x, tf.stop_gradient(gates)), training=True))
        w_opt.apply_gradients(zip(tape.gradient(loss, net.weight_variables), net.weight_variables))
        return loss

    @tf.function
    def alpha_step():
        step_no.assign_add(1)
        with tf.GradientTape() as tape:
            gates = net.sample_gates(1.0, tf.stack([0, step_no]))
            loss = ce(y, net((x, gates), training=True))
        a_opt.apply_gradients([(tape.gradient(loss, net.alpha), net.alpha)])
        return loss

    # Interleave the measurements so machine load affects both alike.
    child_ms, super_ms, alpha_ms = [], [], []
    for _ in range(2):
        child_ms.append(timed(child_step, args.steps))
        super_ms.append(timed(supernet_step, args.steps))
        alpha_ms.append(timed(alpha_step, args.steps))
    c, s, a = min(child_ms), min(super_ms), min(alpha_ms)
    print(f"largest child {largest_arch(space)}: {c:.1f} ms/step; supernet weight step {s:.1f} ms; "
          f"alpha step {a:.1f} ms (batch {args.batch}, {args.resolution}x{args.resolution})")
    print(json.dumps({"supernet_ms": round(s, 2), "largest_child_ms": round(c, 2), "ratio": round(s / c, 3),
                      "alpha_step_ms": round(a, 2), "alpha_ratio": round(a / c, 3), "batch": args.batch,
                      "resolution": args.resolution, "machine": platform.machine(), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
