"""Models with more than one subgraph (issue 11, item 2), converted here: two signatures (the second one's
TANH is in no operator of subgraph 0), a full-int8 model with a variable (CALL_ONCE runs an init subgraph)
and a WHILE loop (its condition and body are subgraphs 1 and 2).

TFLM invokes subgraph 0 but allocates and prepares every subgraph: the bundle's resolver must register the
union of operators (checked against TensorFlow's own flatbuffer schema and against the kernels the compiled
header asks the linker for), ``analyze`` names the subgraph it prices and lists the others, and the SRAM
prediction and the host arena cover every subgraph's tensors (checked against TFLM itself).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgenas_keras.cost import estimate as cost
from edgenas_keras.tflite import tflm
from edgenas_keras import lut as lutmod
from edgenas_keras.tflite.bundle import make_bundle
from edgenas_keras.tflite.model import read_model
from edgenas_keras.validate import validate_model
from model_fixtures import IMAGE, full_int8, random_images, small_classifier_class
from pipeline.cli import main

pytestmark = pytest.mark.slow

FEATURES = 4096   # the second signature's input: its tensors, alone, outweigh subgraph 0's peak


def _two_signatures() -> bytes:
    """``classify`` (CONV_2D, MEAN, FULLY_CONNECTED) and ``embed`` (FULLY_CONNECTED, TANH), full int8."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class TwoHeads(small_classifier_class()):
        def __init__(self):
            super().__init__(rng)
            self.e = tf.constant(rng.normal(size=(FEATURES, 16)).astype("float32") * 0.05)

        @tf.function(input_signature=[tf.TensorSpec([1, FEATURES], tf.float32, name="features")])
        def embed(self, features):
            return {"embedding": tf.tanh(tf.matmul(features, self.e))}

    m = TwoHeads()
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [m.classify.get_concrete_function(), m.embed.get_concrete_function()], m)

    def representative():   # one sample per signature per step, keyed by signature
        for _ in range(8):
            yield "classify", {"image": rng.uniform(-1, 1, IMAGE).astype("float32")}
            yield "embed", {"features": rng.uniform(-1, 1, (1, FEATURES)).astype("float32")}

    return full_int8(conv, representative)


def _call_once() -> bytes:
    """A full-int8 classifier that also counts its calls in an int32 variable: the converter initialises
    the variable in a subgraph run once by CALL_ONCE, and reads/updates it with VAR_HANDLE, READ_VARIABLE,
    ADD, ASSIGN_VARIABLE."""
    import tensorflow as tf

    rng = np.random.default_rng(1)

    class Counting(small_classifier_class()):
        def __init__(self):
            super().__init__(rng)
            self.calls = tf.Variable(0, dtype=tf.int32)

        @tf.function(input_signature=[tf.TensorSpec(IMAGE, tf.float32, name="image")])
        def classify(self, image):
            self.calls.assign_add(1)
            return {"logits": self.logits(image)}

    m = Counting()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.classify.get_concrete_function()], m)
    conv.experimental_enable_resource_variables = True
    return full_int8(conv, lambda: random_images(rng))


def _while_loop() -> bytes:
    """tf.while_loop -> WHILE (cond: LESS; body: ADD, FULLY_CONNECTED, TANH). The converter leaves the
    WHILE operands float32 (QUANTIZE/DEQUANTIZE around them) even with TFLITE_BUILTINS_INT8: not full int8."""
    import tensorflow as tf

    rng = np.random.default_rng(2)

    class Loop(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.constant(rng.normal(size=(8, 8)).astype("float32") * 0.3)

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
        def f(self, x):
            _, y = tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, tf.tanh(tf.matmul(v, self.w))),
                                 [tf.constant(0), x])
            return {"y": y}

    m = Loop()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m)
    return full_int8(conv, lambda: ([rng.uniform(-1, 1, (1, 8)).astype("float32")] for _ in range(8)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("subgraph_models")
    out = {}
    for name, make in (("two_signatures", _two_signatures), ("call_once", _call_once), ("while_loop", _while_loop)):
        p = d / f"{name}.tflite"
        p.write_bytes(make())
        out[name] = p
    return out


def _tf_schema_view(data: bytes):
    """Per subgraph, the builtin names its operators use, and the signature -> subgraph table, read with
    TensorFlow's own flatbuffer schema (independent of the parser under test)."""
    from tensorflow.lite.python import schema_py_generated as tfs

    m = tfs.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k for k, v in vars(tfs.BuiltinOperator).items() if not k.startswith("_")}
    per_subgraph = []
    for g in m.subgraphs:
        codes = {names[max(m.operatorCodes[op.opcodeIndex].builtinCode,
                           m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)] for op in g.operators or []}
        per_subgraph.append(codes)
    sigs = {sd.signatureKey.decode(): sd.subgraphIndex for sd in m.signatureDefs or []}
    return per_subgraph, sigs


# TFLM's MicroMutableOpResolver method names, written out independently of the generator's mapping.
TFLM_ADD = {"CONV_2D": "AddConv2D", "MEAN": "AddMean", "FULLY_CONNECTED": "AddFullyConnected", "TANH": "AddTanh",
            "ADD": "AddAdd", "CALL_ONCE": "AddCallOnce", "VAR_HANDLE": "AddVarHandle",
            "READ_VARIABLE": "AddReadVariable", "ASSIGN_VARIABLE": "AddAssignVariable", "WHILE": "AddWhile",
            "LESS": "AddLess", "QUANTIZE": "AddQuantize", "DEQUANTIZE": "AddDequantize"}


def _registered(header: str) -> set[str]:
    return set(re.findall(r"resolver\.(Add[A-Za-z0-9]+)\(\)", header))


def test_every_subgraph_is_parsed_and_op_set_is_the_union(models):
    for name, path in models.items():
        data = path.read_bytes()
        per_subgraph, sigs = _tf_schema_view(data)
        m = read_model(path)
        assert len(per_subgraph) > 1, name
        assert [set(g.op_set) for g in m.subgraphs] == per_subgraph, name
        assert set(m.op_set) == set().union(*per_subgraph), name
        assert dict(m.signatures) == sigs, name
    two = read_model(models["two_signatures"])
    per_subgraph, sigs = _tf_schema_view(models["two_signatures"].read_bytes())
    assert sigs == {"classify": 0, "embed": 1} and "TANH" in two.op_set and "TANH" not in per_subgraph[0]
    loop = read_model(models["while_loop"])
    [while_op] = [o for o in loop.operators if o.op == "WHILE"]
    assert {(c.role, c.callee) for c in loop.calls()} == {("cond", while_op.options["CondSubgraphIndex"]),
                                                         ("body", while_op.options["BodySubgraphIndex"])}
    only_in_loop = set(loop.op_set) - _tf_schema_view(models["while_loop"].read_bytes())[0][0]
    assert {"LESS", "TANH", "FULLY_CONNECTED"} <= only_in_loop


def test_tflm_runs_both_models_like_tensorflow(models):
    """The TFLM runtime (which registers every kernel) runs the two-signature model's subgraph 0 and the
    CALL_ONCE model, within one int8 step of TensorFlow Lite."""
    import tensorflow as tf

    for name in ("two_signatures", "call_once"):
        data = models[name].read_bytes()
        runs = next(key for key, idx in _tf_schema_view(data)[1].items() if idx == 0)
        runner = tf.lite.Interpreter(model_content=data).get_signature_runner(runs)
        x = np.random.default_rng(3).integers(-128, 128, (1, 16, 16, 3)).astype(np.int8)
        [want] = runner(image=x).values()
        for _ in range(2):   # twice: the CALL_ONCE init runs on the first invoke only
            [got] = tflm.run(data, x)
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, name


@pytest.fixture(scope="module")
def tflm_tree():
    """A tflite-micro source tree for its headers: the one the firmware builds use (``deploy.tflm_build``:
    $EDGENAS_TFLM_SOURCES, the offline mirror, or the copy an earlier run unpacked into the cache)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    from deploy import tflm_build
    from edgenas_keras.errors import UserError

    try:
        return tflm_build.tflm_sources(progress=None).root
    except UserError as exc:
        pytest.skip(f"no TFLM sources: {exc}")


def _compile_kernels(header_dir: Path, header: str, cls: str, tree: Path, out: Path) -> set[str]:
    """Compile a unit that registers the model's operators with the generated header against TFLM's own
    headers; return the TFLM kernels (``tflite::Register_X()``) the object needs from the linker."""
    src = out / "use_resolver.cc"
    src.write_text(f'#include "{header}"\n'
                   f"TfLiteStatus RegisterAll({cls}OpResolver& r) {{ return Register{cls}Ops(r); }}\n")
    dl = tree / "tensorflow/lite/micro/tools/make/downloads"
    subprocess.run(["g++", "-std=c++17", "-DTF_LITE_STATIC_MEMORY", "-c", str(src), "-o", str(out / "u.o"),
                    "-I", str(header_dir), "-I", str(tree), "-I", str(dl / "flatbuffers/include"),
                    "-I", str(dl / "gemmlowp"), "-I", str(dl / "ruy")], check=True, capture_output=True)
    syms = subprocess.run(["nm", "-C", "-u", str(out / "u.o")], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"tflite::Register_([A-Z0-9_]+)\(\)", syms))


def test_bundle_resolver_registers_the_union_and_compiles(models, tflm_tree, tmp_path):
    for name in ("two_signatures", "call_once"):
        data = models[name].read_bytes()
        union = set().union(*_tf_schema_view(data)[0])
        b = make_bundle(models[name], tmp_path / name, name)
        header = (b.out_dir / f"{name}_op_resolver.h").read_text()
        cls = "".join(p.capitalize() for p in name.split("_"))
        assert _registered(header) == {TFLM_ADD[op] for op in union}, name
        assert f"k{cls}OpCount = {len(union)};" in header and set(b.ops) == union
        assert json.loads((b.out_dir / "manifest.json").read_text())["model"]["op_set"] == sorted(union)
        # TFLM's headers resolve every Add...() to the kernel of that very operator: the firmware links them.
        assert _compile_kernels(b.out_dir, f"{name}_op_resolver.h", cls, tflm_tree, tmp_path) == union, name
        # and TFLM, given the bundle's arena constant, allocates and runs the model
        arena = int(re.search(r"kTensorArenaSize = (\d+);",
                              (b.out_dir / f"{name}_model_settings.h").read_text()).group(1))
        x = np.zeros((1, 16, 16, 3), np.int8)
        assert tflm.run(data, x, arena_size=arena)[0].shape == (1, 2)
    variables = (tmp_path / "call_once" / "call_once_op_resolver.h").read_text()
    assert "kCallOnceResourceVariableCount = 1;" in variables and "MicroResourceVariables::Create" in variables
    assert "MicroResourceVariables::Create(allocator, kCallOnceResourceVariableCount)" in (
        tmp_path / "call_once" / "README.md").read_text()
    readme = (tmp_path / "two_signatures" / "README.md").read_text()
    assert "3 operators in subgraph 0, which TFLM runs, and 2 in 1 other subgraph(s)" in readme
    assert "(CONV_2D, FULLY_CONNECTED, MEAN, TANH)" in readme


def test_control_flow_resolver_header_compiles_with_the_loop_kernels(models, tflm_tree, tmp_path):
    """The WHILE model is not full int8 (the converter keeps its loop variables float), so ``bundle``
    refuses it; the resolver it would need still lists LESS, ADD, TANH ... of the loop's subgraphs."""
    from edgenas_keras.tflite.bundle import _op_resolver_h

    path = models["while_loop"]
    union = set().union(*_tf_schema_view(path.read_bytes())[0])
    header = _op_resolver_h("loop", read_model(path))
    (tmp_path / "loop_op_resolver.h").write_text(header)
    assert _registered(header) == {TFLM_ADD[op] for op in union}
    assert _compile_kernels(tmp_path, "loop_op_resolver.h", "Loop", tflm_tree, tmp_path) == union
    assert main(["bundle", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_arena_and_sram_prediction_cover_every_subgraph(models):
    """The second signature's tensors (4 KiB of input) outweigh subgraph 0's peak: TFLM's arena holds them,
    and so must the prediction."""
    path = models["two_signatures"]
    m = read_model(path)
    measured = tflm.min_arena_bytes(path.read_bytes())
    assert measured > FEATURES    # TFLM allocates the embed signature's input although it runs classify
    predicted = cost.tflite_sram_bytes(m, cost.tflm_reference_scratch, cost.HOST_PERSISTENT)
    assert abs(predicted - measured) <= 0.03 * measured, (predicted, measured)


def test_analyze_names_the_running_subgraph_and_lists_the_others(models, capsys):
    # these small models' shapes are in no measured table: the analytical one (any shape) prices them
    path = models["two_signatures"]
    assert main(["analyze", str(path), "--device", "cortex-m7-analytical", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["subgraph"]["index"] == 0 and r["subgraph"]["signature"] == "classify"
    assert [o["op"] for o in r["ops"]] == ["CONV_2D", "MEAN", "FULLY_CONNECTED"]   # subgraph 0 is priced
    [other] = r["other_subgraphs"]
    assert (other["index"], other["signature"], other["op_set"], other["called_by"]) == (
        1, "embed", ["FULLY_CONNECTED", "TANH"], [])
    assert r["host_arena_bytes"] == tflm.min_arena_bytes(path.read_bytes())
    assert r["sram_bytes"] > FEATURES
    assert main(["analyze", str(path), "--device", "cortex-m7-analytical", "--no-arena"]) == 0
    text = capsys.readouterr().out
    assert "subgraph 0 ('classify', signature 'classify') runs" in text
    assert "other subgraph 1 ('embed', signature 'embed'): FULLY_CONNECTED, TANH; not run by subgraph 0" in text

    assert main(["analyze", str(models["call_once"]), "--device", "cortex-m7-analytical", "--no-arena", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    [init] = r["other_subgraphs"]
    assert init["op_set"] == ["ASSIGN_VARIABLE", "VAR_HANDLE"]
    assert init["called_by"] == [{"subgraph": 0, "operator": 0, "op": "CALL_ONCE", "role": "init"}]


def test_validate_sram_covers_the_second_signature(models):
    path = models["two_signatures"]
    doc = validate_model(path, lutmod.resolve("cortex-m7-analytical", None, None),
                         {"latency_ms": 100, "sram_bytes": 1 << 20, "flash_bytes": 1 << 22})
    sram = doc["checks"]["sram"]
    measured = tflm.min_arena_bytes(path.read_bytes())
    assert sram["detail"]["host_arena_bytes"] == measured and sram["figure"] >= measured > FEATURES
    assert sram["detail"]["predicted_on_target_bytes"] > FEATURES
    assert doc["checks"]["latency"]["detail"]["operators"] == 3


def test_damaged_subgraph_references_are_clear_errors(models, tmp_path, capsys):
    """A WHILE whose body is subgraph 0 itself (TFLM would recurse without end) or a missing subgraph: one
    line naming the file, exit 2."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    for body, reason in ((0, "subgraph 0 runs itself"), (7, "runs subgraph 7, which does not exist")):
        m = s.ModelT.InitFromPackedBuf(models["while_loop"].read_bytes(), 0)
        [op] = [o for o in m.subgraphs[0].operators if isinstance(o.builtinOptions, s.WhileOptionsT)]
        op.builtinOptions.bodySubgraphIndex = body
        builder = flatbuffers.Builder(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        bad = tmp_path / f"body_{body}.tflite"
        bad.write_bytes(bytes(builder.Output()))
        assert main(["analyze", str(bad), "--device", "cortex-m7"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0] and reason in err[0], err


def test_bundle_runs_on_an_emulated_cortex_m7_and_needs_the_union(models, tmp_path):
    """The firmware, not only the Python runtime (which registers every kernel): the two-signature bundle,
    linked with TFLM + CMSIS-NN and run in QEMU, allocates and answers byte for byte like the host; the same
    bundle with a resolver of subgraph 0's operators only (the old behaviour) fails in AllocateTensors."""
    from deploy import tflm_build as tb
    from deploy.emulate import emulate_bundle

    try:
        tb.check_tools(tb.get_target("cortex-m7"))
    except tb.ToolchainMissing as exc:
        pytest.skip(f"toolchain for cortex-m7 absent: {exc}")
    b = make_bundle(models["two_signatures"], tmp_path / "two", "two")
    x = np.random.default_rng(4).integers(-128, 128, (1, 16, 16, 3)).astype(np.int8)
    r = emulate_bundle(b.out_dir, "cortex-m7", x, progress=None)
    assert r.output_matches_host and r.settings_arena["allocates"]

    old = tmp_path / "subgraph0_only"
    shutil.copytree(b.out_dir, old)
    header = old / "two_op_resolver.h"
    text = header.read_text().replace("  TF_LITE_ENSURE_STATUS(resolver.AddTanh());  // TANH\n", "")
    header.write_text(text.replace("kTwoOpCount = 4;", "kTwoOpCount = 3;"))
    with pytest.raises(tb.EmulationError, match="AllocateTensors failed"):
        emulate_bundle(old, "cortex-m7", x, progress=None)
