"""Full-integer TFLite conversion (int8 weights, activations, input and output), the form TFLM runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf

from edgenas_keras.tflite.tflm import quiet_native_output


def random_representative(shape: tuple[int, ...], n: int = 8, seed: int = 0, low: float = -1.0,
                          high: float = 1.0) -> Callable[[], Iterable[list[np.ndarray]]]:
    """A representative data set of uniform noise in the model's input range (for cost-model checks only;
    real exports draw from the training split)."""

    def gen():
        rng = np.random.default_rng(seed)
        for _ in range(n):
            yield [rng.uniform(low, high, size=(1, *shape)).astype(np.float32)]

    return gen


def calibrate_untrained(model, shape: tuple[int, ...], seed: int = 0, batch: int = 8, low: float = -1.0,
                       high: float = 1.0) -> None:
    """Give an untrained model realistic activation ranges before it is converted for measurement.

    With fresh BatchNorm statistics (mean 0, variance 1) activations shrink block after block, and by the SE
    multiply their int8 scales reach 1e-9; TFLM then aborts the process while preparing the operator (its
    quantised-multiplier computation cannot represent the rescale). Setting each BN's moving statistics to
    the statistics of one batch (momentum 0 for one training-mode pass) normalises every layer's output, like
    a trained network's. Used for cost-model measurements of architectures that are never trained.
    """
    bns = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
           or type(layer).__name__ == "BatchNormalization"]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    x = np.random.default_rng(seed).uniform(low, high, size=(batch, *shape)).astype(np.float32)
    model(x, training=True)
    for bn, m in zip(bns, saved):
        bn.momentum = m


def to_int8_tflite(model, representative: Callable[[], Iterable[list[np.ndarray]]]) -> bytes:
    """Convert a tf_keras model (float or QAT) to a full-int8 flatbuffer with int8 input and output."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with quiet_native_output():   # the converter's C++ logging is not for users (kept under --debug)
        return conv.convert()
