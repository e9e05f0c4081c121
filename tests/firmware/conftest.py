"""Firmware tests: skip a target only where its cross toolchain or QEMU is truly absent (CI installs them
with scripts/setup.sh). The TFLM libraries are built on first use into ${EDGENAS_CACHE:-~/.cache/edgenas}
(about 8 minutes per target on 2 cores; cached afterwards)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_int8_model(tmp_path_factory):
    """A small int8 network of our blocks' operators (conv, depthwise, SE multiply, add, mean, dense,
    softmax), converted in the test."""
    from edgenas_keras.model.export import random_representative, to_int8_tflite
    from model_fixtures import small_block_net

    model = small_block_net(24, 3)
    data = to_int8_tflite(model, random_representative((24, 24, 3), n=4, seed=0))
    path = tmp_path_factory.mktemp("fw_model") / "small_net.tflite"
    path.write_bytes(data)
    return path
