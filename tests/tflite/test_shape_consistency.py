"""Models whose stored tensor shapes disagree with what their operators compute: TFLM sizes tensors from the
stored shapes and never resizes, so it would compute wrong results or overrun buffers. ``bundle``,
``analyze`` and ``validate`` refuse them with one line naming the operator, stored and computed shapes and
how to re-export.

The models are converted here. A Keras ``dilation_rate`` convolution with an unknown batch converts (TF 2.16,
full int8) to SPACE_TO_BATCH_ND + CONV_2D + BATCH_TO_SPACE_ND with batch 1 stored where the operators make
4 tiles; the same layer exported with a fixed batch of 1 (``keras.Input(shape, batch_size=1)``) converts to
one native dilated CONV_2D, which TFLM runs like TensorFlow Lite. A RESHAPE whose constant shape disagrees
with its stored output (same element count) and an input of unknown height and width are refused too.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgenas_keras.tflite import tflm
from edgenas_keras.errors import UserError
from edgenas_keras.tflite.model import parse
from model_fixtures import REFUSING_COMMANDS, cli_refusal, tflite_output
from pipeline.cli import main

pytestmark = pytest.mark.slow

SHAPE = (12, 12, 4)
RECIPE = "keras.Input(shape, batch_size=1)"


def _convert(build, shape=SHAPE, batch=None, seed=0) -> bytes:
    import tf_keras as keras

    from edgenas_keras.model.export import random_representative, to_int8_tflite

    keras.utils.set_random_seed(seed)
    i = keras.Input(shape, batch_size=batch)
    return to_int8_tflite(keras.Model(i, build(keras.layers, i)),
                          random_representative(tuple(d or 8 for d in shape), n=4, seed=seed))


def _dilated(L, x):
    return L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu")(x)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    (d / "dilated.tflite").write_bytes(_convert(_dilated))             # batch unknown: space-to-batch form
    (d / "fixed.tflite").write_bytes(_convert(_dilated, batch=1))      # the re-export recipe
    return d / "dilated.tflite", d / "fixed.tflite"


def _input(seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (1, *SHAPE)).astype(np.int8)


def test_why_it_is_refused_tflm_runs_the_space_to_batch_form_wrong(files):
    """Kept honest: the TFLM runtime, given the file directly, answers far from TensorFlow Lite."""
    from tflite_micro import runtime

    data = files[0].read_bytes()
    x = _input()
    with tflm.quiet_c_stderr():
        it = runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
        it.set_input(x, 0)
        it.invoke()
    diff = np.abs(it.get_output(0).astype(int) - tflite_output(data, x).astype(int))
    assert diff.max() > 20


def test_the_fixed_batch_recipe_is_a_native_dilated_conv_tflm_runs_right(files):
    dilated, fixed = (parse(p.read_bytes(), str(p)) for p in files)
    assert dilated.op_types[:3] == ["SPACE_TO_BATCH_ND", "CONV_2D", "BATCH_TO_SPACE_ND"]
    assert fixed.op_types == ["CONV_2D"]
    o = fixed.operators[0]
    assert (o.options["DilationHFactor"], o.options["DilationWFactor"]) == (2, 2)
    assert fixed.require_int8() is fixed and fixed.shape_problems() == []
    data = files[1].read_bytes()
    for seed in (1, 2, 3):
        x = _input(seed)
        (out,) = tflm.run(data, x)
        assert out.shape == (1, 12, 12, 8)
        assert np.abs(out.astype(int) - tflite_output(data, x).astype(int)).max() <= 1


def test_library_names_operator_stored_and_computed_shapes(files):
    m = parse(files[0].read_bytes(), str(files[0]))
    problems = m.shape_problems()
    # (12 + 2 + 2) / 2 = 8 per side, 2x2 = 4 tiles in the batch; the file says 1.
    assert problems[0] == ("operator 0 (SPACE_TO_BATCH_ND) stores output shape [1, 8, 8, 4] but computes "
                           "[4, 8, 8, 4] from its input [1, 12, 12, 4]")
    assert any("operator 2 (BATCH_TO_SPACE_ND)" in p for p in problems)
    with pytest.raises(UserError, match=r"operator 0 \(SPACE_TO_BATCH_ND\)") as e:
        m.require_int8()
    assert RECIPE in str(e.value) and "native dilated CONV_2D" in str(e.value)
    # The pricing view still reads it (the CONV_2D's work on its 4 tiles), for tools that only measure.
    assert m.runtime_batches and m.graph().macs > 0


@pytest.mark.parametrize("command", REFUSING_COMMANDS)
def test_cli_refuses_with_one_line_and_writes_nothing(files, command, tmp_path, capsys):
    err = cli_refusal(command, files[0], tmp_path / "out", capsys)
    assert "operator 0 (SPACE_TO_BATCH_ND) stores output shape [1, 8, 8, 4] but computes [4, 8, 8, 4]" in err
    assert "TFLM" in err and RECIPE in err


def test_cli_accepts_the_re_exported_model(files, tmp_path, capsys):
    fixed = files[1]
    assert main(["analyze", str(fixed), "--device", "cortex-m7-analytical", "--json"]) == 0   # any shape
    assert main(["bundle", str(fixed), "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert (tmp_path / "b" / "manifest.json").is_file()


def _with_reshape_shape(data: bytes, k: int, new_shape: list[int]) -> bytes:
    """The model with operator k's (a RESHAPE's) constant shape operand rewritten (stored output shape kept)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(data, 0)
    g = m.subgraphs[0]
    op = g.operators[k]
    assert m.operatorCodes[op.opcodeIndex].builtinCode == s.BuiltinOperator.RESHAPE
    t = g.tensors[op.inputs[1]]
    m.buffers[t.buffer].data = np.frombuffer(np.asarray(new_shape, "<i4").tobytes(), np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_reshape_whose_shape_disagrees_with_its_stored_output_is_refused(tmp_path, capsys):
    data = _convert(lambda L, x: L.Dense(3)(L.Reshape((2, 16))(x)), (4, 4, 2), batch=1)
    ok = parse(data)
    assert "RESHAPE" in ok.op_types and ok.shape_problems() == []
    i = ok.op_types.index("RESHAPE")
    stored = list(ok.tensors[ok.operators[i].outputs[0]].shape)
    assert np.prod(stored) == 32 and len(set(stored)) > 1          # e.g. [2, 16] (the converter drops the batch)
    bad = tmp_path / "reshape.tflite"
    bad.write_bytes(_with_reshape_shape(data, i, stored[::-1]))       # same 32 elements: TFLM's Prepare passes
    assert parse(bad.read_bytes()).shape_problems() == [
        f"operator {i} (RESHAPE) stores output shape {stored} but computes {stored[::-1]} from its input [1, 4, 4, 2]"]
    assert main(["analyze", str(bad), "--device", "cortex-m7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"operator {i} (RESHAPE)" in err[0] and "batch_size=1" in err[0]


def test_input_of_unknown_size_is_refused(tmp_path, capsys):
    data = _convert(lambda L, x: L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(x))), (None, None, 3),
                    batch=1)
    path = tmp_path / "any_size.tflite"
    path.write_bytes(data)
    problems = parse(data).shape_problems()
    assert problems and problems[0].startswith("input ") and "[1, -1, -1, 3]" in problems[0]
    assert main(["bundle", str(path), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown dimensions [1, -1, -1, 3]" in err[0] and not (tmp_path / "b").exists()
