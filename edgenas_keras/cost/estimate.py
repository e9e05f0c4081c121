"""Cost models: latency (exact, vectorised, and the tables behind the supernet's expected latency), peak SRAM
and flash of the int8 model. Pure numpy: no TensorFlow (the differentiable form is in ``search.objective``).

Latency
    LAT(arch) = sum of the LUT entries of its TFLite operators (``ops.arch_graph``).

    For many architectures and for the supernet, the same sum is organised per block: ``LatencyTables`` holds,
    for block i, a table T_i[cin, op, k, e, se, c] of the block's latency for every input-channel count and
    every choice. A block's input channels are the output channels of the last non-skip block before it, so
    with independent per-factor distributions the input-channel distribution q_i is exact:
    q_0 = onehot(stem channels), q_{i+1} = P(skip_i) q_i + (1 - P(skip_i)) p_c,i, and
    E[LAT] = const + sum_i <T_i, q_i x p_op x p_k x p_e x p_se x p_c> + <head(c), q_N>, exactly.

Peak SRAM (the TFLM arena)
    Activation tensors are placed like TFLM's GreedyMemoryPlanner: buffers aligned to 16 bytes, sorted by size
    (largest first; equal sizes: the later buffer first), each put at the lowest offset that does not overlap
    a placed buffer whose lifetime (first writer to last reader) overlaps its own. Residual inputs stay alive across their block because the
    ADD reads them. Operator scratch buffers (kernel-library specific, e.g. CMSIS-NN im2col) are planned the same
    way with a one-operator lifetime, from a per-device ``scratch`` function. To that the arena adds the runtime's
    persistent allocations: ``PersistentModel`` (per tensor, per operator, per quantised output channel), whose
    defaults were fitted on this 64-bit host against bisection-measured arenas (see README "Cost models").

Flash
    The flatbuffer: int8 weights, int32 biases, per-channel quantisation parameters (float32 scale + int64
    zero point per channel, for weights and biases), plus per-tensor and per-operator overhead and a fixed
    header, with constants fitted on converted models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgenas_keras.lut.table import Lut
from edgenas_keras.cost.graph import OpGraph, OpNode, OpSpec, arch_graph, block_specs, lut_key, reachable_keys
from edgenas_keras.arch.plan import block_choices, reachable_in_channels
from edgenas_keras.arch.space import Arch, Block, SearchSpace

if TYPE_CHECKING:  # only for the annotation: cost stays free of the flatbuffer reader at import
    from edgenas_keras.tflite.model import TfliteModel

ALIGN = 16


def _align(n: int) -> int:
    return -(-int(n) // ALIGN) * ALIGN


# -- latency ---------------------------------------------------------------------------------------------

def graph_latency_ms(graph: OpGraph, lut: Lut) -> float:
    """Latency of an operator graph on ``lut``'s device, in milliseconds: the sum of its operators' LUT entries.

    Raises ``MissingLutKeysError`` (a ``UserError``) when the table lacks a key and has no analytical model.
    """
    return lut.latency_ms(graph.keys)


def arch_latency_ms(space: SearchSpace, arch: Arch, lut: Lut, resolution: int | None = None) -> float:
    """Latency of ``arch`` in milliseconds on ``lut``'s device, at ``resolution`` pixels (default: the
    space's). Raises ``MissingLutKeysError`` as ``graph_latency_ms``.
    """
    return graph_latency_ms(arch_graph(space, arch, resolution), lut)


@dataclass(frozen=True)
class LatencyTables:
    """Per-block latency tables in milliseconds (see module docstring). Axes of ``blocks[i]``:
    (channel vocabulary index of the input, op, kernel, expansion, se, channels) over the slot's choices."""

    vocab: tuple[int, ...]            # every channel count a block input can have
    const_ms: float                   # the stem
    blocks: tuple[np.ndarray, ...]
    head: np.ndarray                  # head latency by the final channel count (vocabulary index)
    cout_index: tuple[np.ndarray, ...]  # per block: vocabulary index of each channel choice
    stem_index: int

    @classmethod
    def build(cls, space: SearchSpace, cost: Callable[[list[OpSpec]], float]) -> LatencyTables:
        """``cost(specs)`` prices a list of operators in ms (a LUT sum, or a proxy such as MACs)."""
        vocab = sorted({space.stem_channels} | {c for ch in space.choices for c in ch["channels"]})
        vi = {c: i for i, c in enumerate(vocab)}
        stem = arch_graph(space, Arch(tuple(_cheapest_block(s) for s in space.slots))).specs[:1]
        tables, couts = [], []
        reach = reachable_in_channels(space)     # arch.plan: the input widths each block (and the head) can see
        for slot, reach_in in zip(space.slots, reach):
            c = slot.choices
            at = {f: {v: i for i, v in enumerate(c[f])} for f in ("op", "kernel", "expansion", "se", "channels")}
            t = np.zeros((len(vocab), len(c["op"]), len(c["kernel"]), len(c["expansion"]), len(c["se"]),
                          len(c["channels"])))
            for cin in reach_in:
                for b in block_choices(slot):     # arch.plan: the slot's legal blocks, skip costing nothing
                    if b.op == "skip":
                        continue
                    # dws has no expansion: its price fills every expansion index of the table
                    e = at["expansion"][b.expansion] if b.op == "ir" else slice(None)
                    t[vi[cin], at["op"][b.op], at["kernel"][b.kernel], e, at["se"][b.se],
                      at["channels"][b.channels]] = cost(block_specs(slot, cin, b))
            tables.append(t)
            couts.append(np.array([vi[x] for x in c["channels"]]))
        f = space.final_resolution
        head = np.zeros(len(vocab))
        for cin in reach[-1]:
            head[vi[cin]] = cost([
                OpSpec("MEAN", (f, f, cin), (1, 1, cin)),
                OpSpec("FULLY_CONNECTED", (1, 1, cin), (1, 1, space.num_classes)),
                OpSpec("SOFTMAX", (1, 1, space.num_classes), (1, 1, space.num_classes)),
            ])
        return cls(tuple(vocab), cost(stem), tuple(tables), head, tuple(couts), vi[space.stem_channels])

    @classmethod
    def from_lut(cls, space: SearchSpace, lut: Lut) -> LatencyTables:
        """The tables of ``space`` priced by ``lut`` (milliseconds per block choice and input width).

        Raises ``MissingLutKeysError`` when ``lut`` lacks any key the space can reach (``reachable_keys``).
        """
        lut.require(reachable_keys(space))
        cache: dict[str, float] = {}

        def price(specs):
            total = 0.0
            for s in specs:
                k = s.key
                if k not in cache:
                    cache[k] = lut.op_us(k) / 1000.0
                total += cache[k]
            return total

        return cls.build(space, price)

    @classmethod
    def from_macs(cls, space: SearchSpace, ms_per_mmac: float = 1.0) -> LatencyTables:
        """The MAC (FLOP) proxy ablation: 'latency' proportional to multiply-accumulates."""
        return cls.build(space, lambda specs: sum(s.macs for s in specs) / 1e6 * ms_per_mmac)

    def batch_latency_ms(self, space: SearchSpace, idx: np.ndarray) -> np.ndarray:
        """Exact latency of many architectures at once. ``idx``: (n, num_blocks, 5) index form."""
        idx = np.asarray(idx)
        n = idx.shape[0]
        cin = np.full(n, self.stem_index)
        total = np.full(n, self.const_ms)
        for i, (slot, t) in enumerate(zip(space.slots, self.blocks)):
            row = idx[:, i]
            total += t[cin, row[:, 0], row[:, 1], row[:, 2], row[:, 3], row[:, 4]]
            is_skip = np.asarray(slot.choices["op"])[row[:, 0]] == "skip"
            cin = np.where(is_skip, cin, self.cout_index[i][row[:, 4]])
        return total + self.head[cin]

    def expected_ms(self, space: SearchSpace, probs: list[list[np.ndarray]]) -> float:
        """E[LAT] for per-block, per-factor categorical probabilities (numpy reference of ``search.objective``).
        ``probs[i]`` = [p_op, p_k, p_e, p_se, p_c] for block i."""
        q = np.zeros(len(self.vocab))
        q[self.stem_index] = 1.0
        total = self.const_ms
        for i, (slot, t) in enumerate(zip(space.slots, self.blocks)):
            p_op, p_k, p_e, p_se, p_c = probs[i]
            total += float(np.einsum("aokesc,a,o,k,e,s,c->", t, q, p_op, p_k, p_e, p_se, p_c, optimize=True))
            p_skip = sum(p for o, p in zip(slot.choices["op"], p_op) if o == "skip")
            q_c = np.zeros_like(q)
            np.add.at(q_c, self.cout_index[i], p_c)
            q = p_skip * q + (1 - p_skip) * q_c
        return total + float(self.head @ q)


def _cheapest_block(slot) -> Block:
    c = slot.choices
    if slot.skip_legal:
        return Block("skip")
    op = "dws" if "dws" in c["op"] else "ir"
    return Block(op, min(c["kernel"]), min(c["expansion"]) if op == "ir" else None, 0, min(c["channels"]))


# -- SRAM --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PersistentModel:
    """TFLM's persistent arena use beyond the planned buffers (bytes).

    Host defaults were fitted on TFLM's own allocation report (``print_allocations``) for 9 models, the two
    reference models among them: persistent = 828 + 81.4 per tensor (activations and constants: TfLiteEvalTensor
    and TfLiteTensor bookkeeping) + 8 per quantised output channel (the int32 output multiplier and shift of
    conv/depthwise), max error 4 bytes. A 32-bit MCU's structs are about 40% smaller (pointers and size_t are
    4 bytes): the MCU figures scale the pointer-sized parts accordingly (an estimate, not a measurement).
    """

    base: float = 828.0
    per_tensor: float = 81.4
    per_op: float = 0.0
    per_quant_channel: float = 8.0


HOST_PERSISTENT = PersistentModel()
MCU_PERSISTENT = PersistentModel(base=560.0, per_tensor=48.0, per_op=0.0, per_quant_channel=8.0)


def no_scratch(node: OpNode) -> int:
    """Scratch model of a kernel library that requests none: 0 bytes for every operator."""
    return 0


def tflm_reference_scratch(node: OpNode) -> int:
    """Scratch TFLM's reference kernels request: MEAN (int8) keeps int32 partial sums per output element."""
    if node.spec.op == "MEAN":
        return 4 * node.spec.out_shape[2]
    return 0


def plan_greedy(sizes: list[int], lifetimes: list[tuple[int, int]]) -> int:
    """Peak bytes of TFLM's greedy placement of buffers with (first, last) operator lifetimes.

    Buffers are placed largest first; among equal sizes the one added *later* goes first. That tie order is
    what this TFLM build does (it reproduces the measured head of both reference models exactly, where the
    stable order undershoots MLPerf's by 9,216 bytes), and it matters for chains of equal-size tensors.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], -i))
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    peak = 0
    for i in order:
        size, (first, last) = _align(sizes[i]), lifetimes[i]
        if size == 0:
            continue
        live = sorted((o, e) for o, e, f, la in placed if not (la < first or f > last))
        offset = 0
        for o, e in live:
            if offset + size <= o:
                break
            offset = max(offset, e)
        placed.append((offset, offset + size, first, last))
        peak = max(peak, offset + size)
    return peak


def planned_bytes(graph: OpGraph, scratch: Callable[[OpNode], int] = no_scratch) -> int:
    """Activation (and scratch) bytes as the greedy planner lays them out."""
    n_t = len(graph.tensor_bytes)
    first = [None] * n_t
    last = [0] * n_t
    first[graph.input_id] = 0
    for j, node in enumerate(graph.nodes):
        for t in node.inputs:
            last[t] = max(last[t], j)
            if first[t] is None:
                first[t] = j
        first[node.output] = j
        last[node.output] = max(last[node.output], j)
    last[graph.output_id] = len(graph.nodes) - 1
    sizes, lifes = [], []
    for t in range(n_t):
        if first[t] is None:
            continue
        sizes.append(graph.tensor_bytes[t])
        lifes.append((first[t], last[t]))
    for j, node in enumerate(graph.nodes):
        s = scratch(node)
        if s:
            sizes.append(s)
            lifes.append((j, j))
    return plan_greedy(sizes, lifes)


def sram_bytes(graph: OpGraph, scratch: Callable[[OpNode], int] = tflm_reference_scratch,
               persistent: PersistentModel = HOST_PERSISTENT) -> int:
    """Predicted TFLM arena for the int8 model of ``graph``."""
    quant_ch = sum(n.spec.out_shape[2] for n in graph.nodes if n.spec.op in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    over = (persistent.base + persistent.per_tensor * graph.all_tensors + persistent.per_op * len(graph.nodes)
            + persistent.per_quant_channel * quant_ch)
    return _align(planned_bytes(graph, scratch) + int(round(over)))


def tflite_sram_bytes(model: TfliteModel, scratch: Callable[[OpNode], int] = tflm_reference_scratch,
                      persistent: PersistentModel = HOST_PERSISTENT) -> int:
    """Predicted TFLM arena (bytes) of a parsed ``.tflite`` (``tflite.model.TfliteModel``), every subgraph in.

    TFLM allocates the tensors of *all* subgraphs, not only of subgraph 0 which it runs. Lifetimes are TFLM's
    (``TfliteModel.allocation_lifetimes``): the tensors of a subgraph run by IF/WHILE/CALL_ONCE live inside
    the calling operator's scope; those of a subgraph nothing runs (another signature's) are all alive at
    one scope before subgraph 0's, so they share no space among themselves but may share subgraph 0's. The
    buffers are then placed by ``plan_greedy`` in the flatbuffer's tensor order (TFLM's). Scratch comes from
    ``scratch`` per operator of every subgraph, with the operator's scope. Persistent terms are
    ``persistent``'s, counted over every subgraph's tensors and operators; variable tensors are allocated
    whole outside the plan. For a one-subgraph model this is ``sram_bytes(model.graph())`` (up to tensors no
    operator uses). Not counted: the buffers resource variables (VAR_HANDLE) get when first assigned (a few
    bytes for the converter's counters; the host bisection measures them).
    """
    tensor_life, op_life = model.allocation_lifetimes()
    sizes: list[int] = []
    lifes: list[tuple[int, int]] = []
    n_tensors = n_ops = quant_ch = variables = 0
    for g in model.subgraphs:
        view = model.subgraph(g.index)
        for t in g.tensors:
            n_tensors += 1
            if t.is_variable:
                variables += _align(t.nbytes)
            elif not t.is_constant and t.nbytes > 0:
                sizes.append(t.nbytes)
                lifes.append(tensor_life[(g.index, t.index)])
        scratch_sizes, scratch_lifes = [], []
        for o in g.operators:
            n_ops += 1
            spec = view.op_spec(o)
            if spec.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                quant_ch += spec.out_shape[2]
            s = scratch(OpNode(spec, (), -1))
            if s:
                scratch_sizes.append(s)
                scratch_lifes.append(op_life[(g.index, o.index)])
        sizes += scratch_sizes
        lifes += scratch_lifes
    over = (persistent.base + persistent.per_tensor * n_tensors + persistent.per_op * n_ops
            + persistent.per_quant_channel * quant_ch)
    return _align(plan_greedy(sizes, lifes) + variables + int(round(over)))


# -- flash -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlashModel:
    """Bytes of the .tflite flatbuffer (constants fitted on converted models; README "Cost models")."""

    header: int = 3400
    per_tensor: int = 100         # shape, name, buffer entry, per-tensor quantisation of activations
    per_op: int = 48              # operator table entry, its inputs/outputs vectors and options
    per_channel: int = 12         # float32 scale + int64 zero point, weight and bias tensors each


DEFAULT_FLASH = FlashModel()


def flash_bytes(graph: OpGraph, model: FlashModel = DEFAULT_FLASH) -> int:
    """Predicted size in bytes of the int8 .tflite flatbuffer of ``graph`` (the model only, not the runtime).

    Weights 1 byte each, biases 4 bytes, per-channel quantisation parameters ``2 * per_channel`` bytes per
    output channel, plus ``model``'s header, per-tensor and per-operator bytes (fitted on converted models,
    ``bench/calibrate_memory.py``).
    """
    data = sum(s.weights + 4 * s.bias + 2 * model.per_channel * s.quant_channels for s in graph.specs if s.weights)
    return int(model.header + data + model.per_tensor * graph.all_tensors + model.per_op * len(graph.nodes))


# -- one call for reports ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArchCost:
    """What an architecture costs. ``sram_bytes`` is the figure budgets are checked against: the larger of
    the on-target prediction (device kernel scratch, 32-bit persistent structs) and the prediction for this
    64-bit host's TFLM (larger persistent structs), the same conservative rule ``validate`` applies to the
    int8 model with the host arena measured by bisection. Both parts are kept."""

    latency_ms: float
    sram_bytes: int
    flash_bytes: int
    macs: int
    params: int
    sram_target_bytes: int = 0
    sram_host_bytes: int = 0

    def as_dict(self) -> dict:
        """The figures as a JSON-ready dict (ms, bytes, counts)."""
        return {"latency_ms": self.latency_ms, "sram_bytes": self.sram_bytes, "flash_bytes": self.flash_bytes,
                "macs": self.macs, "params": self.params, "sram_target_bytes": self.sram_target_bytes,
                "sram_host_bytes": self.sram_host_bytes}


def arch_cost(space: SearchSpace, arch: Arch, lut: Lut, resolution: int | None = None) -> ArchCost:
    """Latency (ms), SRAM (bytes, the larger of the on-target and 64-bit-host TFLM arena predictions), flash
    (bytes, model only), MACs and parameters of ``arch`` on ``lut``'s device at ``resolution`` pixels.

    Raises ``MissingLutKeysError`` when ``lut`` cannot price an operator; ``ValueError`` when ``arch`` does
    not fit ``space``.
    """
    g = arch_graph(space, arch, resolution)
    scratch, persistent = device_memory_terms(lut)
    target = sram_bytes(g, scratch, persistent)
    host = sram_bytes(g, tflm_reference_scratch, HOST_PERSISTENT)
    return ArchCost(graph_latency_ms(g, lut), max(target, host), flash_bytes(g), g.macs, g.keras_params,
                    target, host)


def device_memory_terms(lut: Lut) -> tuple[Callable[[OpNode], int], PersistentModel]:
    """The kernel-library scratch and persistent model for the LUT's device."""
    kernels = str(lut.metadata.get("kernels", ""))
    if "cmsis" in kernels:
        return cmsis_nn_scratch, MCU_PERSISTENT
    host = lut.metadata.get("unit") == "us"
    return tflm_reference_scratch, (HOST_PERSISTENT if host else MCU_PERSISTENT)


def cmsis_nn_scratch(node: OpNode) -> int:
    """CMSIS-NN scratch (bytes), from the operator's real kernel height and width:

    - CONV_2D other than 1x1: the im2col buffer, 2 columns of KH*KW*C_in int16 (``2 * 2 * KH*KW*C_in``);
    - DEPTHWISE_CONV_2D with multiplier 1 and no dilation, unless 3x3 with channels % 4 == 0 (the 3x3
      kernel needs none): ``arm_depthwise_conv_s8_opt``'s KH*KW*C int16 buffer; with a multiplier or a
      dilation CMSIS-NN takes the generic ``arm_depthwise_conv_s8``, which needs none
      (``arm_depthwise_conv_wrapper_s8_get_buffer_size``);
    - MEAN's int32 partial sums (``tflm_reference_scratch``).
    """
    s = node.spec
    if s.op == "CONV_2D" and s.taps > 1:
        return 2 * 2 * s.taps * s.in_shape[2]
    if s.op == "DEPTHWISE_CONV_2D":
        if s.depth_multiplier != 1 or s.dilation_hw != (1, 1):
            return 0
        if not (s.kernel_hw == (3, 3) and s.in_shape[2] % 4 == 0):
            return 2 * s.taps * s.in_shape[2]
        return 0
    return tflm_reference_scratch(node)


__all__ = ["ArchCost", "LatencyTables", "arch_cost", "arch_latency_ms", "flash_bytes", "lut_key", "sram_bytes"]
