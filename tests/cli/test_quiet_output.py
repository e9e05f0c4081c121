"""The int8 converter's C++ log (``fully_quantize: 0, inference_type: 6, ...``, absl's ``Ignored
output_format``) is silenced at the file descriptors, and visible again under ``edgenas --debug``
(``EDGENAS_DEBUG``). The whole output of ``edgenas run`` is checked in tests/e2e/test_run.py."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _convert() -> bytes:
    import tf_keras as keras

    from edgenas_keras.model.export import random_representative, to_int8_tflite

    i = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(i))
    return to_int8_tflite(keras.Model(i, keras.layers.Dense(2)(x)), random_representative((8, 8, 3), n=2))


def test_converter_log_is_silent_by_default_and_shown_with_debug(capfd, monkeypatch):
    from edgenas_keras.tflite.model import parse
    from edgenas_keras.tflite.tflm import DEBUG_ENV

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert parse(_convert()).is_int8
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""

    monkeypatch.setenv(DEBUG_ENV, "1")
    assert parse(_convert()).is_int8
    loud = capfd.readouterr()
    assert "fully_quantize: 0, inference_type: 6" in loud.out + loud.err


def test_cli_debug_flag_turns_native_logging_back_on(monkeypatch):
    import os

    from pipeline.cli import main

    # recorded by monkeypatch, so whatever main() sets is undone after the test
    monkeypatch.setenv("EDGENAS_DEBUG", "")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    assert main(["--debug", "space", "show"]) == 0
    assert os.environ["EDGENAS_DEBUG"] == "1"
