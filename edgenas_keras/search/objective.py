"""The search's differentiable objective terms (TensorFlow): E[LAT], E[MEM] and E[FLASH] as functions of
alpha's probabilities (module docstring of ``search.loop``).

``ExpectedLatency`` is the TensorFlow twin of ``LatencyTables.expected_ms``:Differentiable expected latency for the supernet: the TensorFlow twin of ``LatencyTables.expected_ms``.

Given per-block, per-factor categorical probabilities, E[LAT] is computed exactly (module docstring of
``edgenas_keras.cost.estimate``), including the coupling of a block's input channels to the output channels of the last
non-skip block before it. With one-hot probabilities it equals the exact latency of that architecture.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from edgenas_keras.arch.space import FACTORS, SearchSpace
from edgenas_keras.cost.estimate import (
    ALIGN,
    DEFAULT_FLASH,
    LatencyTables,
    arch_cost,
    device_memory_terms,
)
from edgenas_keras.cost.graph import OpNode, OpSpec
from edgenas_keras.lut.table import Lut
from edgenas_keras.search.config import KB


class ExpectedLatency:
    """Callable: ``probs[i] = [p_op, p_k, p_e, p_se, p_c]`` (tensors) -> E[LAT] in ms (scalar tensor)."""

    def __init__(self, tables: LatencyTables, space: SearchSpace):
        self.space = space
        self.tables = [tf.constant(t, tf.float32) for t in tables.blocks]
        self.head = tf.constant(tables.head, tf.float32)
        self.const = float(tables.const_ms)
        self.vocab_size = len(tables.vocab)
        self.stem_index = tables.stem_index
        # Scatter matrices: p_c (choices of block i) -> distribution over the channel vocabulary.
        self.to_vocab = [tf.constant(np.eye(len(tables.vocab))[idx], tf.float32) for idx in tables.cout_index]
        self.skip_index = [s.choices["op"].index("skip") if "skip" in s.choices["op"] else -1 for s in space.slots]

    def __call__(self, probs) -> tf.Tensor:
        q = tf.one_hot(self.stem_index, self.vocab_size, dtype=tf.float32)
        total = tf.constant(self.const, tf.float32)
        for i, t in enumerate(self.tables):
            p_op, p_k, p_e, p_se, p_c = (tf.cast(p, tf.float32) for p in probs[i])
            total += tf.einsum("aokesc,a,o,k,e,s,c->", t, q, p_op, p_k, p_e, p_se, p_c)
            p_skip = p_op[self.skip_index[i]] if self.skip_index[i] >= 0 else tf.constant(0.0)
            q = p_skip * q + (1.0 - p_skip) * tf.linalg.matvec(self.to_vocab[i], p_c, transpose_a=True)
        return total + tf.tensordot(self.head, q, 1)


# -- differentiable costs -----------------------------------------------------------------------------------

def _persistent_price(persistent):
    def price(specs: list[OpSpec]) -> float:
        qc = sum(s.out_shape[2] for s in specs if s.op in ("CONV_2D", "DEPTHWISE_CONV_2D"))
        return len(specs) * (persistent.per_tensor + persistent.per_op) + persistent.per_quant_channel * qc
    return price


def _flash_price(specs: list[OpSpec]) -> float:
    m = DEFAULT_FLASH
    total = 0.0
    for s in specs:
        total += m.per_tensor + m.per_op
        if s.weights:
            total += s.weights + 4 * s.bias + 2 * m.per_channel * s.quant_channels + 2 * m.per_tensor
    return total


def _aligned(shape) -> int:
    return -(-math.prod(shape) // ALIGN) * ALIGN


def _peak_price(scratch):
    """Peak live bytes inside a unit (stem, block or head) whose operators are ``specs`` in order."""
    def price(specs: list[OpSpec]) -> float:
        if not specs:
            return 0.0
        block_in = _aligned(specs[0].in_shape)
        residual = specs[-1].op == "ADD"
        se_held = 0  # the tensor SE rescales stays alive from MEAN to MUL
        peak = 0
        for n, s in enumerate(specs):
            live = _aligned(s.in_shape) + _aligned(s.out_shape) + scratch(OpNode(s, (), 0))
            if s.op in ("ADD", "MUL"):
                live += _aligned(s.in_shape) if s.op == "ADD" else 0
            elif s.op == "CONV_2D" and se_held and s.in_shape[:2] == (1, 1):
                live += se_held
            if s.op == "MEAN" and n + 1 < len(specs) and specs[-1].op != "SOFTMAX":
                se_held = _aligned(s.in_shape)
            if s.op == "MUL":
                se_held = 0
            if residual and 0 < n < len(specs) - 1:
                live += block_in
            peak = max(peak, live)
        return float(peak)
    return price


class ExpectedCosts:
    """E[LAT], E[MEM] and E[FLASH] as differentiable functions of alpha's probabilities (module docstring)."""

    def __init__(self, space: SearchSpace, lut: Lut, latency_tables: LatencyTables, seed: int):
        import tensorflow as tf

        from edgenas_keras.search.objective import ExpectedLatency

        self.space = space
        self.latency = ExpectedLatency(latency_tables, space)
        scratch, persistent = device_memory_terms(lut)
        self.persist_const = persistent.base + persistent.per_tensor  # the runtime's base and the input tensor
        self.persistent = ExpectedLatency(LatencyTables.build(space, _persistent_price(persistent)), space)
        self.flash_const = DEFAULT_FLASH.header + DEFAULT_FLASH.per_tensor
        self.flash = ExpectedLatency(LatencyTables.build(space, _flash_price), space)
        peak = LatencyTables.build(space, _peak_price(scratch))
        self.peak_blocks = [tf.constant(t, tf.float32) for t in peak.blocks]
        self.peak_head = tf.constant(peak.head, tf.float32)
        self.peak_const = float(peak.const_ms)
        self.q0 = tf.one_hot(peak.stem_index, len(peak.vocab), dtype=tf.float32)
        self.to_vocab = self.latency.to_vocab
        self.skip_index = self.latency.skip_index
        self.mem_scale = 1.0
        self.mem_scale = self._fit_mem_scale(lut, seed)

    def _peak_terms(self, probs):
        import tensorflow as tf

        q = self.q0
        terms = [tf.constant(self.peak_const)]
        for i, t in enumerate(self.peak_blocks):
            p_op, p_k, p_e, p_se, p_c = probs[i]
            terms.append(tf.einsum("aokesc,a,o,k,e,s,c->", t, q, p_op, p_k, p_e, p_se, p_c))
            p_skip = p_op[self.skip_index[i]] if self.skip_index[i] >= 0 else tf.constant(0.0)
            q = p_skip * q + (1.0 - p_skip) * tf.linalg.matvec(self.to_vocab[i], p_c, transpose_a=True)
        terms.append(tf.tensordot(self.peak_head, q, 1))
        return tf.stack(terms)

    def memory(self, probs):
        """E[MEM] in bytes: expected persistent overhead + smooth max of expected peak live bytes."""
        import tensorflow as tf

        terms = self._peak_terms(probs) / KB
        t = tf.stop_gradient(0.03 * tf.reduce_max(terms))
        smooth_max = t * tf.reduce_logsumexp(terms / t)
        return self.mem_scale * (self.persist_const + self.persistent(probs) + KB * smooth_max)

    def flash_bytes(self, probs):
        """E[FLASH] in bytes (scalar tensor) for ``probs`` (as ``memory``): exact, flash is additive over operators."""
        return self.flash_const + self.flash(probs)

    def _fit_mem_scale(self, lut: Lut, seed: int) -> float:
        ratios = []
        for arch in self.space.sample(12, seed=seed):
            idx = self.space.to_indices(arch)
            probs = [[np.eye(len(slot.choices[f]), dtype=np.float32)[idx[i, j]] for j, f in enumerate(FACTORS)]
                     for i, slot in enumerate(self.space.slots)]
            exact = arch_cost(self.space, arch, lut).sram_bytes
            ratios.append(exact / float(self.memory(probs)))
        return float(np.mean(ratios))


