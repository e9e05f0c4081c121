"""Differentiable expected latency for the supernet: the TensorFlow twin of ``LatencyTables.expected_ms``.

Given per-block, per-factor categorical probabilities, E[LAT] is computed exactly (module docstring of
``edgenas_keras.cost``), including the coupling of a block's input channels to the output channels of the last
non-skip block before it. With one-hot probabilities it equals the exact latency of that architecture.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from edgenas_keras.cost import LatencyTables
from edgenas_keras.space import SearchSpace


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
