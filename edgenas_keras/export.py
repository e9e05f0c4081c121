"""Full-integer TFLite conversion (int8 weights, activations, input and output), the form TFLM runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf


def random_representative(shape: tuple[int, ...], n: int = 8, seed: int = 0, low: float = -1.0,
                          high: float = 1.0) -> Callable[[], Iterable[list[np.ndarray]]]:
    """A representative data set of uniform noise in the model's input range (for cost-model checks only;
    real exports draw from the training split)."""

    def gen():
        rng = np.random.default_rng(seed)
        for _ in range(n):
            yield [rng.uniform(low, high, size=(1, *shape)).astype(np.float32)]

    return gen


def to_int8_tflite(model, representative: Callable[[], Iterable[list[np.ndarray]]]) -> bytes:
    """Convert a tf_keras model (float or QAT) to a full-int8 flatbuffer with int8 input and output."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()
