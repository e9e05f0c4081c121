"""Firmware tests: skip a target only where its cross toolchain or QEMU is truly absent (CI installs them
with scripts/setup.sh). The TFLM libraries are built on first use into ${EDGENAS_CACHE:-~/.cache/edgenas}
(about 8 minutes per target on 2 cores; cached afterwards)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_int8_model(tmp_path_factory):
    """A small int8 network of our blocks' operators (conv, depthwise, SE multiply, add, mean, dense,
    softmax), converted in the test."""
    import tf_keras as keras

    from edgenas_keras.model.export import random_representative, to_int8_tflite

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((24, 24, 3))
    x = L.ReLU(6.0)(L.Conv2D(16, 3, strides=2, padding="same")(inp))
    y = L.ReLU(6.0)(L.DepthwiseConv2D(3, padding="same")(x))
    s = L.GlobalAveragePooling2D(keepdims=True)(y)
    s = L.ReLU(6.0)(L.Conv2D(8, 1)(s))
    s = L.ReLU(6.0)(L.Conv2D(16, 1)(s))
    y = L.Multiply()([y, s])
    y = L.Conv2D(16, 1)(y)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    out = L.Softmax()(L.Dense(3)(x))
    model = keras.Model(inp, out)
    data = to_int8_tflite(model, random_representative((24, 24, 3), n=4, seed=0))
    path = tmp_path_factory.mktemp("fw_model") / "small_net.tflite"
    path.write_bytes(data)
    return path
