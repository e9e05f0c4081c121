"""Read any ``.tflite`` flatbuffer: operators, tensors, quantisation, and our ``OpGraph`` view of it.

The analyzer, the firmware bundle and the arena measurements work on models nobody on this team trained
(the reference models in ``../shared/reference_models``), so this reads the file itself with the schema
module shipped in the tflite-micro wheel rather than trusting a TensorFlow interpreter: no TensorFlow import,
and the same parse for ours and anyone's. ``TfliteModel.graph()`` converts the operators to
``edgenas_keras.cost.graph.OpSpec``s with the same key fields ``ops.arch_graph`` produces for our blocks, so one LUT
prices both.

Shapes in ``OpSpec`` are (H, W, C): a 4-D NHWC tensor drops its batch, lower-rank tensors are padded on the
left with ones (``[1, 256]`` -> ``(1, 1, 256)``).

Every subgraph is read. TFLM's ``MicroInterpreter`` invokes subgraph 0 only, but it allocates and prepares
the tensors and operators of *every* subgraph: the bodies of IF/WHILE/CALL_ONCE, which subgraph 0 calls,
and the subgraphs of further signatures, which nothing calls. So the operator set a resolver must register
(``TfliteModel.op_set``) is the union over all subgraphs, and ``allocation_lifetimes`` reproduces how TFLM's
``AllocationInfoBuilder`` gives every subgraph's tensors a lifetime (``cost.tflite_sram_bytes`` plans them).
The top-level ``tensors``/``operators``/``inputs``/``outputs`` are subgraph 0's, the one TFLM runs.

Weights stored outside the flatbuffer (buffers with ``offset``/``size``, the converter's layout for models over
2 GB) are refused with a ``UserError``: TFLM reads constant data only from inside the flatbuffer, and runs such
a file with arena garbage for weights.

Stored shapes that disagree with what the operators compute (a Keras ``dilation_rate`` convolution converted
with an unknown batch: SPACE_TO_BATCH_ND stores batch 1 for its ``prod(block)`` tiles) parse, so pricing
can count the real work (``runtime_batches``), but ``require_int8``, which every command that bundles,
analyzes or validates a model calls, refuses them (``shape_problems``): TFLM trusts stored shapes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from edgenas_keras.errors import UserError
from edgenas_keras.cost.graph import OpGraph, OpSpec

BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
DTYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
OPTIONS_CLASSES = {v: k for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 5: "sign_bit"}
PADDINGS = {0: "same", 1: "valid"}
# Operators whose input 1 is a weight tensor and input 2 an optional bias.
WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}
ELEMENTWISE_BINARY = {"ADD", "MUL", "SUB", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM"}
# Option fields read from whichever options table an operator carries (absent fields are skipped).
_OPTION_FIELDS = ("Padding", "StrideH", "StrideW", "DilationHFactor", "DilationWFactor", "DepthMultiplier",
                  "FilterHeight", "FilterWidth", "FusedActivationFunction", "KeepNumDims", "KeepDims", "Beta")
_ITEMSIZE = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "float16": 2, "int32": 4, "float32": 4,
             "int64": 8, "float64": 8, "complex64": 8}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a .tflite subgraph: index, name, shape, dtype, quantisation (one scale and zero point per
    channel for per-channel quantisation) and the bytes of its constant data (0 for activations).
    """
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str                      # 'int8', 'int32', 'float32', ...
    scale: tuple[float, ...] = ()   # one per channel for per-channel quantisation, () if unquantised
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    constant_bytes: int = 0         # size of the tensor's data in the file (0: an activation tensor)
    is_variable: bool = False       # a variable tensor (TFLM allocates it apart from the planned buffers)
    values: tuple[int, ...] = ()    # data of small int32 constants (SPACE_TO_BATCH_ND block shapes and the like)
    shape_signature: tuple[int, ...] = ()   # the file's shape_signature (-1: unknown until run time), () if none

    @property
    def is_constant(self) -> bool:
        """True for a tensor with data in the file (weights, biases)."""
        return self.constant_bytes > 0

    @property
    def elements(self) -> int:
        """Number of elements (1 for a scalar)."""
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        """Size in bytes at its dtype (4 bytes per element for a dtype not listed)."""
        return self.elements * _ITEMSIZE.get(self.dtype, 4)

    @property
    def hwc(self) -> tuple[int, int, int]:
        """(height, width, channels) of the shape, batch dropped (``hwc``)."""
        return hwc(self.shape)

    def details(self) -> dict:
        """Interpreter-style details (what a firmware engineer or a caller feeding inputs needs)."""
        return {"index": self.index, "name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": list(self.scale), "zero_point": list(self.zero_point)}


@dataclass(frozen=True)
class OperatorInfo:
    """One operator of a subgraph: its builtin name, input and output tensor indices (-1: omitted), raw options."""
    index: int
    op: str                         # builtin name, e.g. 'CONV_2D'
    inputs: tuple[int, ...]         # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)   # raw option fields (see _OPTION_FIELDS)


@dataclass(frozen=True)
class SubgraphInfo:
    """One subgraph of the model: its tensors and operators (indices local to it), inputs and outputs."""

    index: int
    name: str
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def op_set(self) -> list[str]:
        """Distinct operator names, sorted (what an op resolver must register)."""
        return sorted({o.op for o in self.operators})


@dataclass(frozen=True)
class SubgraphCall:
    """An operator that runs another subgraph: ``op`` (IF, WHILE, CALL_ONCE) at ``operator`` of subgraph
    ``caller`` runs subgraph ``callee`` as its ``role`` (``then``, ``else``, ``cond``, ``body``, ``init``)."""

    caller: int
    operator: int
    op: str
    role: str
    callee: int


# The options fields naming the subgraphs a control-flow operator runs, in the order TFLM's
# AllocationInfoBuilder::MarkSubgraphLifetimesIfNecessary visits them (first, then second).
_SUBGRAPH_FIELDS = {"IF": (("ThenSubgraphIndex", "then"), ("ElseSubgraphIndex", "else")),
                    "WHILE": (("CondSubgraphIndex", "cond"), ("BodySubgraphIndex", "body")),
                    "CALL_ONCE": (("InitSubgraphIndex", "init"),)}


def hwc(shape) -> tuple[int, int, int]:
    """(H, W, C) of a tensor shape: NHWC drops N; lower ranks are padded with leading ones."""
    s = [int(v) for v in shape]
    if len(s) >= 4:  # drop the batch; fold any further leading dimensions into H
        s = [int(np.prod(s[1:-2]))] + s[-2:]
    s = [1] * (3 - len(s)) + s
    return (s[0], s[1], s[2])


def work_hwc(shape) -> tuple[int, int, int]:
    """(H, W, C) for pricing an operator: ``hwc``, except that a batch N > 1 is folded into H (N*H, W, C), so
    the work on every batch element counts (the converter's SPACE_TO_BATCH_ND form of a dilated
    convolution runs the CONV_2D on N = block_h * block_w tiles)."""
    s = [int(v) for v in shape]
    if len(s) >= 4:
        s = [int(np.prod(s[:-2]))] + s[-2:]
    return hwc(s)


@dataclass(frozen=True)
class TfliteModel:
    """One parsed ``.tflite``. ``tensors``, ``operators``, ``inputs`` and ``outputs`` are those of subgraph 0,
    the one TFLM's ``MicroInterpreter`` invokes; ``subgraphs`` holds every subgraph (0 included),
    ``signatures`` the SignatureDefs table as (signature key, subgraph index) pairs (empty if the file has
    none). ``subgraph(k)`` is the same model viewed from subgraph k."""

    source: str                     # the file path, or a label for in-memory bytes (used in messages)
    size_bytes: int
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: tuple[SubgraphInfo, ...] = ()
    signatures: tuple[tuple[str, int], ...] = ()
    subgraph_index: int = 0         # which subgraph the top-level fields show (0 unless from ``subgraph(k)``)

    @property
    def op_types(self) -> list[str]:
        """The operators of the subgraph shown (subgraph 0: the one TFLM runs), in execution order."""
        return [o.op for o in self.operators]

    @property
    def op_set(self) -> list[str]:
        """The distinct operators of *all* subgraphs, sorted: what an op resolver must register, since TFLM
        looks up a kernel for every operator of every subgraph when it allocates the model."""
        if not self.subgraphs:
            return sorted(set(self.op_types))
        return sorted({o.op for g in self.subgraphs for o in g.operators})

    def subgraph(self, k: int) -> TfliteModel:
        """The model with subgraph ``k``'s tensors, operators, inputs and outputs as its top-level fields (so
        ``graph()`` and ``op_spec()`` work on that subgraph). Raises ``IndexError`` for a missing subgraph."""
        g = self.subgraphs[k]
        return replace(self, tensors=g.tensors, operators=g.operators, inputs=g.inputs, outputs=g.outputs,
                       subgraph_index=k)

    def signature_of(self, k: int) -> str | None:
        """The signature key whose SignatureDef points at subgraph ``k`` (None if none does)."""
        return next((key for key, idx in self.signatures if idx == k), None)

    def calls(self) -> list[SubgraphCall]:
        """Every control-flow operator (IF, WHILE, CALL_ONCE) of every subgraph and the subgraphs it runs."""
        out = []
        for g in self.subgraphs:
            for o in g.operators:
                for fld, role in _SUBGRAPH_FIELDS.get(o.op, ()):
                    if fld in o.options:
                        out.append(SubgraphCall(g.index, o.index, o.op, role, int(o.options[fld])))
        return out

    @property
    def resource_variables(self) -> int:
        """Distinct resource variables (VAR_HANDLE shared names over all subgraphs): the ``num_variables`` of
        the ``MicroResourceVariables`` TFLM needs for the model (counted as the TFLM Python runtime does)."""
        return len({o.options.get("SharedName") for g in self.subgraphs for o in g.operators
                    if o.op == "VAR_HANDLE"})

    def reachable_subgraphs(self, start: int = 0) -> list[int]:
        """Subgraph ``start`` and every subgraph its control-flow operators run, directly or not (sorted)."""
        calls = self.calls()
        seen, todo = {start}, [start]
        while todo:
            s = todo.pop()
            for c in calls:
                if c.caller == s and c.callee not in seen:
                    seen.add(c.callee)
                    todo.append(c.callee)
        return sorted(seen)

    def allocation_lifetimes(self) -> tuple[dict[tuple[int, int], tuple[int, int]],
                                            dict[tuple[int, int], tuple[int, int]]]:
        """Lifetimes TFLM gives tensors and operator scratch buffers when it plans the arena.

        A port of ``AllocationInfoBuilder::MarkAllocationLifetimes`` (tflite-micro
        ``micro_allocation_info.cc``), started, as ``MicroAllocator`` does, from subgraph 0 only: each operator
        opens an allocation scope; a control-flow operator's subgraphs are marked inside it (their scopes
        nest within the operator's), so its inputs live until its subgraphs are done. Returns two dicts keyed
        by (subgraph, tensor index) and (subgraph, operator index), each (first scope, last scope);
        (-1, -1) for the tensors and operators of subgraphs subgraph 0 never runs (another signature's): TFLM
        still allocates those tensors, all alive at once at scope -1, apart from subgraph 0's.
        """
        tensors = {(g.index, t.index): [-1, -1] for g in self.subgraphs for t in g.tensors}
        ops = {(g.index, o.index): (-1, -1) for g in self.subgraphs for o in g.operators}
        callees: dict[tuple[int, int], list[int]] = {}
        for c in self.calls():
            callees.setdefault((c.caller, c.operator), []).append(c.callee)
        scope = 0
        stack: list[int] = []

        def touch(s: int, t: int, first: bool, last: bool) -> None:
            life = tensors[(s, t)]
            if first and life[0] == -1:
                life[0] = scope
            if last:
                life[1] = scope

        def mark(s: int) -> None:
            nonlocal scope
            if s in stack:   # a subgraph running itself: TFLM would recurse forever; parse() refuses it
                return
            stack.append(s)
            g = self.subgraphs[s]
            for t in g.inputs:
                touch(s, t, True, True)
            for o in g.operators:
                scope += 1
                for t in o.outputs:
                    touch(s, t, True, False)
                start = scope
                for callee in callees.get((s, o.index), ()):
                    scope += 1
                    mark(callee)
                for t in o.inputs:
                    if t >= 0:
                        touch(s, t, False, True)
                for t in o.outputs:
                    touch(s, t, False, True)
                ops[(s, o.index)] = (start, scope)
            for t in g.outputs:
                touch(s, t, True, True)
            stack.pop()

        if self.subgraphs:
            mark(0)
        return {k: (v[0], v[1]) for k, v in tensors.items()}, ops

    @property
    def constant_bytes(self) -> int:
        """Bytes of constant data (weights, biases) in this subgraph."""
        return sum(t.constant_bytes for t in self.tensors)

    def input_details(self) -> list[dict]:
        """The inputs' ``TensorInfo.details`` (index, name, shape, dtype, scale, zero point), interpreter style."""
        return [self.tensors[i].details() for i in self.inputs]

    def output_details(self) -> list[dict]:
        """The outputs' ``TensorInfo.details``, interpreter style."""
        return [self.tensors[i].details() for i in self.outputs]

    def int8_problems(self) -> list[str]:
        """Why this is not a full-int8 model (empty if it is): int8 inputs and outputs (of subgraph 0, what
        the application feeds and reads), and int8 weights and no float activations in every subgraph
        (TFLM prepares them all)."""
        problems = []
        for kind, idx in (("input", self.inputs), ("output", self.outputs)):
            for i in idx:
                t = self.tensors[i]
                if t.dtype != "int8":
                    problems.append(f"{kind} tensor {t.name!r} is {t.dtype}, not int8")
                elif not t.scale:
                    problems.append(f"{kind} tensor {t.name!r} has no quantisation parameters")
        graphs = self.subgraphs or (SubgraphInfo(0, "", self.tensors, self.operators, self.inputs, self.outputs),)
        for g in graphs:
            where = f" of subgraph {g.index}" if g.index else ""
            for o in g.operators:
                if o.op in WEIGHTED_OPS and len(o.inputs) > 1 and o.inputs[1] >= 0:
                    w = g.tensors[o.inputs[1]]
                    if w.dtype != "int8":
                        problems.append(f"operator {o.index}{where} ({o.op}) has {w.dtype} weights, not int8")
        floats = [t.name + (f" (subgraph {g.index})" if g.index else "") for g in graphs for t in g.tensors
                  if not t.is_constant and t.dtype in ("float32", "float16")]
        if floats:
            problems.append(f"{len(floats)} float activation tensor(s), e.g. {floats[0]!r}")
        return problems

    @property
    def is_int8(self) -> bool:
        """True for a full-int8 model (no ``int8_problems``)."""
        return not self.int8_problems()

    def require_int8(self) -> TfliteModel:
        """This model, if it is full-int8 (``int8_problems``) and TFLM computes it with the shapes the file
        stores (``require_tflm_shapes``); otherwise a ``UserError`` saying why and how to re-export. Every
        command that runs, prices or bundles a model for TFLM (``analyze``, ``bundle``, ``validate``, ``lut``
        calibration and builds) reads it through here."""
        problems = self.int8_problems()
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise UserError(f"{self.source} is not a full-int8 model: {problems[0]}{more}; convert it with "
                            "full-integer quantisation (TFLITE_BUILTINS_INT8, int8 input and output)")
        return self.require_tflm_shapes()

    def shape_problems(self) -> list[str]:
        """Where the file's stored tensor shapes disagree with what the operators compute (empty if nowhere).

        TFLM sizes every tensor from the shape stored in the file and never resizes; TensorFlow Lite resizes
        at run time. Several TFLM kernels take the stored output shape on trust (their Prepare checks only
        ranks and types: tflite-micro ``space_to_batch_nd.cc``, ``batch_to_space_nd.cc``; ``reshape_common.cc``
        checks only the element count), so where the file is wrong TFLM silently computes wrong results or
        writes past a buffer sized for the stored shape. Checked in every subgraph (TFLM prepares them all):

        - SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND: output computed from the stored input, the block shape and
          the paddings/crops. The converter's form of a Keras ``dilation_rate`` convolution with an unknown
          batch stores batch 1 where the operator makes ``prod(block)`` tiles.
        - RESHAPE with a constant shape: the shape (its -1 resolved from the input) against the stored output,
          when both hold the same number of elements (a different count TFLM refuses itself, in its words).
        - A subgraph input or an operator output (not RESHAPE's, which TFLM checks) whose ``shape_signature``
          has an unknown (-1) dimension after the first: the stored size is the converter's placeholder.
        An unknown first dimension is the batch, which is 1 when the model is fed one input at a time.
        Each problem is a sentence naming the operator index, the operator, stored and computed shapes.
        """
        problems = []
        graphs = self.subgraphs or (SubgraphInfo(0, "", self.tensors, self.operators, self.inputs, self.outputs),)
        for g in graphs:
            where = f" of subgraph {g.index}" if g.index else ""
            for o in g.operators:
                computed = _computed_shape(g.tensors, o)
                stored = g.tensors[o.outputs[0]].shape if o.outputs else None
                if computed is not None and computed != stored:
                    x = list(g.tensors[o.inputs[0]].shape)
                    what = (f"computes {list(computed)} from its input {x}" if computed[0] else
                            f"cannot split its stored input {x}'s batch into {int(np.prod(g.tensors[o.inputs[1]].values))} tiles")
                    problems.append(f"operator {o.index}{where} ({o.op}) stores output shape {list(stored)} but {what}")
            producer = {t: o for o in g.operators for t in o.outputs}
            for t in g.tensors:
                if t.is_constant or not any(d < 0 for d in t.shape_signature[1:]):
                    continue
                o = producer.get(t.index)
                if o is not None and o.op == "RESHAPE":
                    continue
                if o is None and t.index not in g.inputs:
                    continue
                by = f"operator {o.index}{where} ({o.op}) output" if o else f"input{where}"
                problems.append(f"{by} {t.name!r} has unknown dimensions {list(t.shape_signature)} (stored as "
                                f"{list(t.shape)}, a placeholder)")
        return problems

    def require_tflm_shapes(self) -> TfliteModel:
        """This model, if ``shape_problems`` finds nothing; otherwise a ``UserError`` (one line: the first
        problem, how many more, why TFLM cannot run it and how to re-export it)."""
        problems = self.shape_problems()
        if not problems:
            return self
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        if any("SPACE_TO_BATCH_ND" in p or "BATCH_TO_SPACE_ND" in p for p in problems):
            how = ("the converter's form of a dilated convolution (Keras dilation_rate) with an unknown batch; "
                   "re-export with a fixed batch of 1 (keras.Input(shape, batch_size=1), or from_concrete_functions "
                   "with tf.TensorSpec([1, H, W, C])) so the converter writes a native dilated CONV_2D")
        else:
            how = ("re-export with every input size fixed and a batch of 1 (keras.Input(shape, batch_size=1), or "
                   "from_concrete_functions with tf.TensorSpec([1, H, W, C])) so every stored shape is the real one")
        raise UserError(f"{self.source}: {problems[0]}{more}; TFLM uses the stored shapes without resizing, so it "
                        f"would compute wrong results or overrun its buffers; {how}")

    @functools.cached_property
    def runtime_batches(self) -> dict[int, int]:
        """Batch sizes 4-D activation tensors have at run time where the file's shape says otherwise.

        The converter stores batch 1 for every tensor, but SPACE_TO_BATCH_ND (Keras' ``dilation_rate``
        converts to SPACE_TO_BATCH_ND + CONV_2D + BATCH_TO_SPACE_ND) multiplies the batch by its block size
        and BATCH_TO_SPACE_ND divides it again; operators in between keep it (the shapes the TFLite
        interpreter allocates; the TFLM build here keeps the file's shapes and computes wrong outputs for
        such a model). {tensor index: batch}."""
        batch: dict[int, int] = {}
        keep = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "PAD", "PADV2",
                "QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU"}
        keep |= ELEMENTWISE_BINARY
        for o in self.operators:
            if not o.outputs or len(self.tensors[o.outputs[0]].shape) != 4:
                continue
            acts = [i for i in o.inputs if i >= 0 and not self.tensors[i].is_constant]
            if not acts or len(self.tensors[acts[0]].shape) != 4:
                continue
            b_in = batch.get(acts[0], self.tensors[acts[0]].shape[0])
            block = int(np.prod(self.tensors[o.inputs[1]].values or (1,))) if len(o.inputs) > 1 else 1
            if o.op == "SPACE_TO_BATCH_ND":
                b_out = b_in * block
            elif o.op == "BATCH_TO_SPACE_ND":
                b_out = max(1, b_in // block)
            elif o.op in keep:
                b_out = b_in
            else:
                continue
            if b_out != self.tensors[o.outputs[0]].shape[0]:
                batch[o.outputs[0]] = b_out
        return batch

    def work_shape(self, i: int) -> tuple[int, int, int]:
        """``work_hwc`` of tensor ``i`` with its run-time batch (``runtime_batches``) folded into H."""
        shape = self.tensors[i].shape
        if i in self.runtime_batches:
            shape = (self.runtime_batches[i], *shape[1:])
        return work_hwc(shape)

    def op_spec(self, o: OperatorInfo) -> OpSpec:
        """The ``OpSpec`` of one operator, with the key fields ``ops`` uses for our blocks: the real input and
        output (H, W, C), kernel height and width (weights, or the pool's FilterHeight/FilterWidth), stride
        (StrideH/StrideW), dilation (DilationH/WFactor) and the depthwise channel multiplier."""
        acts = [self.tensors[i] for i in o.inputs if i >= 0 and not self.tensors[i].is_constant]
        out = self.work_shape(o.outputs[0]) if o.outputs else (1, 1, 1)
        first = self.work_shape(acts[0].index) if acts else out
        opts = o.options
        kw: dict = {}
        if o.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
            # CONV_2D weights are [O, KH, KW, I], DEPTHWISE_CONV_2D [1, KH, KW, O]: KH is shape[1] in both.
            w = self.tensors[o.inputs[1]]
            kh, kw_ = int(w.shape[1]), int(w.shape[2])
            # Dilation along a side with a one-tap kernel changes nothing: key it as 1 (canonical keys).
            dh = (opts.get("DilationHFactor") or 1) if kh > 1 else 1
            dw = (opts.get("DilationWFactor") or 1) if kw_ > 1 else 1
            kw.update(kernel_hw=(kh, kw_), stride_hw=(opts.get("StrideH") or 1, opts.get("StrideW") or 1),
                      dilation_hw=(dh, dw))
            # A 1x1 kernel pads nothing under either scheme (same output size): key it as 'same', like ops.
            kw["padding"] = "same" if (kh, kw_) == (1, 1) else PADDINGS.get(opts.get("Padding", 0), "same")
            if o.op == "DEPTHWISE_CONV_2D" and first[2] > 0 and out[2] % first[2] == 0:
                # Output channels = input channels x multiplier: read from the shapes, which fix the work.
                kw["depth_multiplier"] = out[2] // first[2]
        elif o.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
            kw["kernel_hw"] = (opts.get("FilterHeight") or 1, opts.get("FilterWidth") or 1)
            kw["stride_hw"] = (opts.get("StrideH") or 1, opts.get("StrideW") or 1)
            kw["padding"] = PADDINGS.get(opts.get("Padding", 0), "same")
        if "FusedActivationFunction" in opts:
            kw["activation"] = ACTIVATIONS.get(opts["FusedActivationFunction"], "none")
        if o.op in ELEMENTWISE_BINARY and len(acts) == 2:
            a, b = (self.work_shape(t.index) for t in acts)
            big, small = (a, b) if a[0] * a[1] * a[2] >= b[0] * b[1] * b[2] else (b, a)
            first = big
            if small != big and small[0] * small[1] == 1 and big[0] * big[1] > 1:
                kw["variant"] = "bcast"
        if o.op in WEIGHTED_OPS:
            w = self.tensors[o.inputs[1]]
            kw["weights"] = w.elements
            kw["quant_channels"] = len(w.scale)
            if len(o.inputs) > 2 and o.inputs[2] >= 0:
                kw["bias"] = self.tensors[o.inputs[2]].elements
        return OpSpec(o.op, first, out, **kw)

    def graph(self) -> OpGraph:
        """The operators in execution order over the activation tensors (sizes in bytes).

        An operator with several outputs is recorded with its first; the others become tensors with no
        producer (a cost model then keeps them alive from the start: conservative). An operator with no
        output (CALL_ONCE, ASSIGN_VARIABLE) gets a 0-byte placeholder output. Only the subgraph shown
        (subgraph 0 unless from ``subgraph(k)``) is in the graph: ``cost.tflite_sram_bytes`` plans them all.
        """
        g = OpGraph()
        ids: dict[int, int] = {}

        def tensor_id(i: int) -> int:
            if i not in ids:
                g.tensor_bytes.append(self.tensors[i].nbytes)
                ids[i] = len(g.tensor_bytes) - 1
            return ids[i]

        for i in self.inputs:
            tensor_id(i)
        g.input_id = ids[self.inputs[0]] if self.inputs else 0
        for o in self.operators:
            ins = tuple(tensor_id(i) for i in o.inputs if i >= 0 and not self.tensors[i].is_constant)
            spec = self.op_spec(o)
            # OpGraph.add sizes its output from the spec's (H, W, C); record the real byte size instead.
            out = g.add(spec, ins)
            if not o.outputs:
                g.tensor_bytes[out] = 0
                continue
            g.tensor_bytes[out] = self.tensors[o.outputs[0]].nbytes
            ids[o.outputs[0]] = out
            for extra in o.outputs[1:]:
                tensor_id(extra)
        if self.outputs and self.outputs[0] in ids:
            g.output_id = ids[self.outputs[0]]
        g.n_constants = sum(1 for t in self.tensors if t.is_constant)
        return g


def _computed_shape(tensors, o: OperatorInfo) -> tuple[int, ...] | None:
    """The output shape operator ``o`` computes from its stored input shape and constant operands, for the
    operators whose TFLM kernels trust the stored output (see ``TfliteModel.shape_problems``); None where it
    is not checked (another operator, operands known only at run time, a RESHAPE whose element count differs,
    which TFLM's Prepare refuses itself)."""
    if not o.outputs or not o.inputs or o.inputs[0] < 0:
        return None
    x = tensors[o.inputs[0]].shape
    if o.op in ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND") and len(o.inputs) == 3 and min(o.inputs) >= 0:
        block, pads = tensors[o.inputs[1]].values, tensors[o.inputs[2]].values
        m = len(block)
        if not m or len(pads) != 2 * m or len(x) < m + 1 or min(block) < 1:
            return None
        n = int(np.prod(block))
        if o.op == "SPACE_TO_BATCH_ND":
            space = [(x[1 + i] + pads[2 * i] + pads[2 * i + 1]) // block[i] for i in range(m)]
            return (x[0] * n, *space, *x[1 + m:])
        space = [x[1 + i] * block[i] - pads[2 * i] - pads[2 * i + 1] for i in range(m)]
        return (x[0] // n if x[0] % n == 0 else 0, *space, *x[1 + m:])   # 0: the batch does not split
    if o.op == "RESHAPE" and len(o.inputs) > 1 and o.inputs[1] >= 0:
        st = tensors[o.inputs[1]]
        new = list(st.values)
        if not st.is_constant or not new or len(new) != st.elements or 0 in new or new.count(-1) > 1:
            return None
        known = int(np.prod([v for v in new if v != -1]))
        elements = int(np.prod(x)) if x else 1
        if -1 in new:
            if known <= 0 or elements % known:
                return None
            new[new.index(-1)] = elements // known
        out = tensors[o.outputs[0]]
        return tuple(new) if int(np.prod(new)) == out.elements == elements else None
    return None


def _options(op) -> dict:
    kind = op.BuiltinOptionsType()
    cls = getattr(schema, OPTIONS_CLASSES.get(kind, ""), None) if kind else None
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return {}
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    fields = _OPTION_FIELDS + tuple(f for pairs in _SUBGRAPH_FIELDS.values() for f, _ in pairs) + ("SharedName",)
    return {f: getattr(obj, f)() for f in fields if hasattr(obj, f)}


def _tensor(model, graph, i: int) -> TensorInfo:
    t = graph.Tensors(i)
    q = t.Quantization()
    scale, zp, qdim = (), (), 0
    if q is not None and q.ScaleLength():
        scale = tuple(float(v) for v in q.ScaleAsNumpy())
        zp = tuple(int(v) for v in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,) * len(scale)
        qdim = q.QuantizedDimension()
    size = 0
    if t.Buffer() > 0:
        # (buffers kept outside the flatbuffer, with offset and size, are refused before this is read)
        size = model.Buffers(t.Buffer()).DataLength()
    shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    dtype = DTYPE_NAMES.get(t.Type(), str(t.Type()))
    values: tuple[int, ...] = ()
    if dtype == "int32" and t.Buffer() > 0 and 0 < model.Buffers(t.Buffer()).DataLength() <= 64:
        # shape operands (block shapes, paddings), read by op_spec
        values = tuple(int(v) for v in model.Buffers(t.Buffer()).DataAsNumpy().view("<i4"))
    signature = tuple(int(v) for v in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else ()
    return TensorInfo(i, t.Name().decode("utf-8", "replace"), shape, dtype,
                      scale, zp, qdim, int(size), bool(t.IsVariable()), values, signature)


def _subgraph(model, k: int, codes: list[str]) -> SubgraphInfo:
    g = model.Subgraphs(k)
    tensors = tuple(_tensor(model, g, i) for i in range(g.TensorsLength()))
    operators = []
    for j in range(g.OperatorsLength()):
        op = g.Operators(j)
        ins = tuple(int(v) for v in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(v) for v in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        # An operator may have no output (CALL_ONCE, ASSIGN_VARIABLE): the converter writes them for variables.
        if any(i >= len(tensors) or i < -1 for i in ins) or any(not 0 <= i < len(tensors) for i in outs):
            raise ValueError(f"operator {j} of subgraph {k} refers to a missing tensor")
        operators.append(OperatorInfo(j, codes[op.OpcodeIndex()], ins, outs, _options(op)))
    inputs = tuple(int(v) for v in g.InputsAsNumpy()) if g.InputsLength() else ()
    outputs = tuple(int(v) for v in g.OutputsAsNumpy()) if g.OutputsLength() else ()
    if any(not 0 <= i < len(tensors) for i in inputs + outputs):
        raise ValueError(f"an input or output of subgraph {k} refers to a missing tensor")
    name = g.Name().decode("utf-8", "replace") if g.Name() else ""
    return SubgraphInfo(k, name, tensors, tuple(operators), inputs, outputs)


def _refuse_external_buffers(model, source: str) -> None:
    """Refuse a model whose buffers keep their data outside the flatbuffer (``offset`` > 1, ``size``).

    The converter writes that layout for models over 2 GB (or when ``_experimental_use_buffer_offset`` is
    set): the data follows the flatbuffer in the file. TFLM's allocator reads constant data only from
    ``Buffer.data``; for such a buffer it sees no data, plans the weight as an arena tensor and runs the model
    with whatever the arena holds.
    """
    outside = [i for i in range(model.BuffersLength()) if model.Buffers(i).Offset() > 1]
    if outside:
        total = sum(model.Buffers(i).Size() for i in outside)
        raise UserError(f"{source} stores {len(outside)} buffer(s) ({total:,} bytes) outside the "
                        "flatbuffer (buffer offset/size, the converter's layout for models over 2 GB or with "
                        "_experimental_use_buffer_offset), which TFLM does not read: it would run with garbage "
                        "weights; re-export it with tf.lite.TFLiteConverter without "
                        "_experimental_use_buffer_offset so the weights are inside the flatbuffer")


def parse(data: bytes, source: str = "<bytes>") -> TfliteModel:
    """Parse a ``.tflite`` flatbuffer. A file that is not one (or is truncated) is a ``UserError``."""
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise UserError(f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier); give a .tflite model file")
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        _refuse_external_buffers(model, source)
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            name = BUILTIN_NAMES[code]
            codes.append(f"CUSTOM:{oc.CustomCode().decode()}" if name == "CUSTOM" and oc.CustomCode() else name)
        subgraphs = tuple(_subgraph(model, k, codes) for k in range(model.SubgraphsLength()))
        signatures = []
        for i in range(model.SignatureDefsLength()):
            sd = model.SignatureDefs(i)
            key = sd.SignatureKey().decode("utf-8", "replace") if sd.SignatureKey() else ""
            signatures.append((key, int(sd.SubgraphIndex())))
        result = TfliteModel(source, len(data), subgraphs[0].tensors, subgraphs[0].operators,
                             subgraphs[0].inputs, subgraphs[0].outputs, subgraphs, tuple(signatures))
        calls = result.calls()
        for c in calls:
            if not 0 <= c.callee < len(subgraphs):
                raise ValueError(f"operator {c.operator} ({c.op}) of subgraph {c.caller} runs subgraph "
                                 f"{c.callee}, which does not exist")
        for k in {c.callee for c in calls}:
            reach = set(result.reachable_subgraphs(k))
            if any(c.callee == k and c.caller in reach for c in calls):
                raise ValueError(f"subgraph {k} runs itself (TFLM would recurse without end)")
    except UserError:
        raise
    except Exception as exc:  # a damaged flatbuffer fails anywhere inside the generated accessors
        raise UserError(f"{source} is a damaged TFLite flatbuffer ({type(exc).__name__}: {exc}); "
                        "re-export the model") from exc
    return result


def read_model(path: str | Path) -> TfliteModel:
    """Read and parse a ``.tflite`` file (a missing file is a ``UserError`` naming it)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model file {p} does not exist or is not a file")
    return parse(p.read_bytes(), str(p))


def read_int8_model(path: str | Path) -> TfliteModel:
    """``read_model`` that also refuses a model that is not full-int8."""
    return read_model(path).require_int8()
