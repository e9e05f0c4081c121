"""When the TFLM runtime cannot prepare a model, ``analyze``, ``bundle`` and ``validate`` say why in TFLM's own
words: one ``error:`` line quoting what TFLM printed, exit status 2, no traceback, nothing written.

Two full-int8 models are converted here, each a kind TFLM refuses while preparing:
- an operator this TFLM build has no kernel for (GELU: TFLite has an int8 kernel, TFLM none);
- a RESHAPE whose shape is computed at run time: the converter writes the output tensor with unknown (1)
  dimensions, and TFLM's Reshape, which sizes outputs when preparing, finds 144 elements in and 1 out.
"""

from __future__ import annotations

import pytest

from edgenas_keras.errors import UserError
from pipeline.cli import main

pytestmark = pytest.mark.slow


def _gelu_model():
    import tf_keras as keras

    i = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3)(i)
    x = keras.layers.Activation("gelu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(i, keras.layers.Dense(2)(x))


def _runtime_reshape_model():
    import tensorflow as tf
    import tf_keras as keras

    def reshape_at_run_time(t):
        # zero, but only known once the input is seen: the converter cannot fold the target shape
        z = tf.minimum(tf.reduce_max(tf.argmax(t, axis=-1, output_type=tf.int32)), 0)
        y = tf.reshape(t, tf.stack([1, 36 + z, 4 + z]))
        return tf.reshape(tf.reduce_mean(y, axis=[1, 2]), [1, 1])

    i = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3)(i)
    x = keras.layers.Lambda(reshape_at_run_time, output_shape=(1,))(x)
    return keras.Model(i, keras.layers.Dense(2)(x))


# model builder, what TFLM prints about it (its own words, as the runtime logs them)
CASES = {
    "gelu": (_gelu_model, ["Didn't find op for builtin opcode 'GELU'",
                           "Failed to get registration from op code GELU"]),
    "runtime_reshape": (_runtime_reshape_model, ["num_input_elements != num_output_elements (144 != 1)",
                                                 "Node RESHAPE (number 7) failed to prepare"]),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from edgenas_keras.model.export import random_representative, to_int8_tflite
    from edgenas_keras.tflite.model import parse

    folder = tmp_path_factory.mktemp("unpreparable")
    paths = {}
    for name, (build, _) in CASES.items():
        data = to_int8_tflite(build(), random_representative((8, 8, 3), n=4))
        assert parse(data).is_int8
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


@pytest.mark.parametrize("name", sorted(CASES))
def test_tflm_reason_reaches_the_library_caller(models, name):
    from edgenas_keras.tflite import tflm

    for check in (tflm.min_arena_bytes, tflm.require_prepares):
        with pytest.raises(UserError) as info:
            check(models[name].read_bytes(), models[name].name)
        assert str(info.value).startswith(f"TFLM cannot prepare {name}.tflite: ")
        for text in CASES[name][1]:
            assert text in str(info.value)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("command", ["analyze", "bundle", "bundle-m7", "validate", "validate-a53"])
def test_cli_error_line_quotes_tflm(models, name, command, tmp_path, capsys):
    path = str(models[name])
    out = tmp_path / "out"
    argv = {
        "analyze": ["analyze", path, "--device", "cortex-m7"],
        "bundle": ["bundle", path, "--out", str(out)],
        # a device whose core can be emulated: TFLM is asked before any emulator build
        "bundle-m7": ["bundle", path, "--out", str(out), "--device", "cortex-m7"],
        "validate": ["validate", path, "--device", "cortex-m7", "--latency-ms", "100", "--sram-kb", "512",
                     "--flash-kb", "2048", "--min-accuracy", "0", "--out", str(out)],
        "validate-a53": ["validate", path, "--device", "cortex-a53", "--latency-ms", "100", "--sram-kb", "512",
                         "--flash-kb", "2048", "--min-accuracy", "0", "--out", str(out)],
    }[command]
    rc = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 2 and captured.out == ""
    assert len(err) == 1, err   # one line: no traceback, no TFLM log spilled
    assert err[0].startswith(f"error: TFLM cannot prepare {path}: ")
    for text in CASES[name][1]:
        assert text in err[0]
    assert not out.exists()
