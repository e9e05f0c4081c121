"""The EdgeNAS supernet: one tf_keras model over the whole search space, with architecture parameters alpha
and shared weights.

Design choice: a *sampled single path over superkernels* (GDAS-style straight-through Gumbel sampling on top
of Single-Path-NAS / Once-for-All style weight sharing), not the DARTS mixture.

- The naive DARTS mixed op runs every candidate and sums them: its training step costs a multiple of one
  network (DESIGN.md section 2 measured 2.07x for only 6 candidates; our blocks have up to 271 candidates).
- Here every block owns *one* set of weights sized for its largest choice, and each factor is a mask or a
  slice of it: the depthwise kernel is a 7x7 superkernel whose centred 5x5 / 3x3 windows are the smaller
  kernels; the 1x1 expansion computes the largest expansion and masks channels beyond ``cin * e``; the
  projection computes the largest channel count and masks channels beyond ``c``; SE is one squeeze-excite
  branch whose bottleneck is masked to ``max(8, C // r)`` and whose effect is gated (r = 0: identity); a
  depthwise-separable block is the same block with the expansion bypassed (the input, zero-padded, feeds the
  superkernel directly); skip is a gated identity. One step therefore costs roughly one (the largest)
  network, plus cheap elementwise masks: ``bench/supernet_step.py`` measures the ratio.
- Each step draws one hard sample per block and factor from ``softmax(alpha / tau)`` (Gumbel-max) with the
  Gumbel-softmax straight-through estimator. Lowering the temperature ``tau`` during the search concentrates
  the sampled paths, and the distribution the cost penalties see, on the most probable architecture, the one
  that will be derived:
  the forward pass uses the one-hot choice (so the trained path is a real child network, with its real
  channel counts), the backward pass uses the soft relaxation. Because the choice enters the forward pass
  multiplicatively through the masks and gates, alpha receives a gradient for every choice of a factor, not
  only for the sampled one (the mask of a 5x5 kernel still has a gradient when 3x3 was drawn).
- Masks depend on a block's *actual* input channel count, which is the output channel count of the last
  non-skip block before it; the supernet threads that count (a stop-gradient scalar) from block to block,
  and the residual ADD is applied exactly when the sampled block has stride 1 and ``cin == c``: the
  per-sample tensor form of ``edgenas_keras.arch.plan.has_residual``, which ``cost.graph.arch_graph`` and
  ``builder.build_model`` read through ``plan`` (``tests/arch/test_plan.py`` checks they agree on fixed paths).
- Batch normalisation always uses batch statistics (as DARTS does): widths change from step to step, so
  running statistics would be meaningless; the supernet is only trained and scored, never deployed (the
  found architecture is rebuilt and retrained from scratch by the trainer). To score one child with
  inherited weights, ``forward`` returns every batch norm's moments and accepts fixed ones, so the child's
  statistics can be recomputed on calibration batches and then held fixed (``edgenas_keras.search.selection``).

Gumbel noise is stateless, keyed by ``(seed, step)``, so a resumed search draws the same paths as an
uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edgenas_keras.arch.plan import se_reduced_channels
from edgenas_keras.arch.space import FACTORS, Arch, Block, SearchSpace

NEG = -1e9  # logit of an illegal choice (skip at a stride-2 block, padding beyond a factor's choices)


def max_choices(space: SearchSpace) -> int:
    """The most choices any factor of any slot has: the last axis of alpha, shape (blocks, factors, max_choices)."""
    return max(len(c[f]) for c in space.choices for f in FACTORS)


def legal_mask(space: SearchSpace) -> np.ndarray:
    """(num_blocks, 5, L) booleans: which entries of alpha are real, legal choices."""
    m = np.zeros((space.num_blocks, len(FACTORS), max_choices(space)), bool)
    for i, slot in enumerate(space.slots):
        for j, f in enumerate(FACTORS):
            vals = slot.choices[f]
            m[i, j, : len(vals)] = True
            if f == "op":
                m[i, j, : len(vals)] = [o in slot.ops for o in vals]
    return m


def block_widths(space: SearchSpace) -> list[int]:
    """Tensor width (channels) of each block's input, then the head's: the largest reachable channel count."""
    widths = [space.stem_channels]
    for slot in space.slots:
        w = max(slot.choices["channels"])
        if slot.skip_legal:
            w = max(w, widths[-1])
        widths.append(w)
    return widths


def largest_arch(space: SearchSpace) -> Arch:
    """The most expensive child: inverted residual, largest kernel, expansion and channels, SE with the widest
    bottleneck (smallest non-zero reduction) where allowed."""
    blocks = []
    for slot in space.slots:
        c = slot.choices
        op = "ir" if "ir" in slot.ops else "dws"
        se = min((r for r in c["se"] if r > 0), default=0)
        blocks.append(Block(op, max(c["kernel"]), max(c["expansion"]) if op == "ir" else None, se,
                            max(c["channels"])))
    return Arch(tuple(blocks))


def _pad_channels(x, width):
    extra = width - x.shape[-1]
    return x if extra == 0 else tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])


def _prefix_mask(count, width):
    """float [width]: 1 for the first ``count`` channels (``count`` a scalar tensor)."""
    return tf.cast(tf.range(width, dtype=tf.float32) < count, tf.float32)


class Supernet(keras.Model):
    """Call with ``(images, gates)``: ``gates[i][j]`` is block i's straight-through sample over factor j's
    choices (``sample_gates``); returns class logits."""

    def __init__(self, space: SearchSpace, name: str = "supernet"):
        super().__init__(name=name)
        self.space = space
        self.widths = block_widths(space)
        self.alpha = self.add_weight("alpha", shape=(space.num_blocks, len(FACTORS), max_choices(space)),
                                     initializer="zeros", trainable=True)
        self.legal = tf.constant(legal_mask(space))
        he = keras.initializers.HeNormal
        self.stem_w = self.add_weight("stem_w", (space.stem_kernel, space.stem_kernel, space.in_channels,
                                                 space.stem_channels), initializer=he())
        self.stem_bn = self._bn_weights("stem", space.stem_channels)
        self.blocks = []
        for slot, w_in, w_out in zip(space.slots, self.widths, self.widths[1:]):
            c = slot.choices
            n = f"b{slot.index}"
            has_ir = "ir" in slot.ops
            w_dw = w_in * max(c["expansion"]) if has_ir else w_in
            kmax = max(c["kernel"])
            b = {"slot": slot, "w_in": w_in, "w_out": w_out, "w_dw": w_dw, "kmax": kmax}
            if has_ir:
                b["exp_w"] = self.add_weight(f"{n}_exp_w", (1, 1, w_in, w_dw), initializer=he())
                b["exp_bn"] = self._bn_weights(f"{n}_exp", w_dw)
            b["dw_w"] = self.add_weight(f"{n}_dw_w", (kmax, kmax, w_dw, 1), initializer=he())
            b["dw_bn"] = self._bn_weights(f"{n}_dw", w_dw)
            ratios = [r for r in c["se"] if r > 0]
            if ratios:
                w_r = se_reduced_channels(w_dw, min(ratios))
                b["se_rw"] = self.add_weight(f"{n}_se_rw", (w_dw, w_r), initializer=he())
                b["se_rb"] = self.add_weight(f"{n}_se_rb", (w_r,), initializer="zeros")
                b["se_ew"] = self.add_weight(f"{n}_se_ew", (w_r, w_dw), initializer=he())
                b["se_eb"] = self.add_weight(f"{n}_se_eb", (w_dw,), initializer="ones")
            cmax = max(c["channels"])
            b["proj_w"] = self.add_weight(f"{n}_proj_w", (1, 1, w_dw, cmax), initializer=he())
            b["proj_bn"] = self._bn_weights(f"{n}_proj", cmax)
            # Centred k x k windows of the kmax x kmax superkernel, one per kernel choice.
            masks = []
            for k in c["kernel"]:
                m = np.zeros((kmax, kmax, 1, 1), np.float32)
                lo = (kmax - k) // 2
                m[lo:lo + k, lo:lo + k] = 1.0
                masks.append(m)
            b["kmasks"] = tf.constant(np.stack(masks))
            self.blocks.append(b)
        self.head_w = self.add_weight("head_w", (self.widths[-1], space.num_classes),
                                      initializer="glorot_uniform")
        self.head_b = self.add_weight("head_b", (space.num_classes,), initializer="zeros")

    def _bn_weights(self, name, width):
        return (self.add_weight(f"{name}_gamma", (width,), initializer="ones"),
                self.add_weight(f"{name}_beta", (width,), initializer="zeros"))

    @property
    def weight_variables(self) -> list[tf.Variable]:
        """The trainable variables other than alpha (what weight steps update)."""
        return [v for v in self.trainable_variables if v is not self.alpha]

    def logits(self) -> tf.Tensor:
        """alpha with illegal choices masked to a large negative logit."""
        return tf.where(self.legal, self.alpha, NEG)

    def probs(self, temperature=1.0) -> tf.Tensor:
        """softmax(masked alpha / temperature) per factor, shape (blocks, factors, max_choices); illegal choices 0."""
        return tf.nn.softmax(self.logits() / temperature, axis=-1)

    def sample_gates(self, temperature, seed) -> tf.Tensor:
        """Straight-through Gumbel-softmax sample from ``probs(temperature)``: forward value one-hot, gradient
        of the relaxed softmax. ``seed``: a stateless seed (2 int32s), e.g. ``(search seed, step)``."""
        u = tf.random.stateless_uniform(tf.shape(self.alpha), seed=seed, minval=1e-6, maxval=1.0 - 1e-6)
        noisy = self.logits() / temperature - tf.math.log(-tf.math.log(u))
        soft = tf.nn.softmax(noisy, axis=-1)
        hard = tf.one_hot(tf.argmax(noisy, axis=-1), tf.shape(self.alpha)[-1], dtype=soft.dtype)
        return hard + soft - tf.stop_gradient(soft)

    def call(self, inputs, training=None):
        """``inputs = (images (batch, H, W, C), gates)`` -> class probabilities (batch, classes) of the gated path."""
        images, gates = inputs
        return self.forward(images, gates)[0]

    def forward(self, images, gates, bn_stats=None):
        """Logits and the batch-norm moments of one pass: ``(logits, [(mean, variance), ...])``, one pair per
        batch norm in a fixed order (stem, then per block expansion, depthwise, projection).

        ``bn_stats=None`` normalises with the batch's own statistics (training, and the moments returned are
        the batch's); a list in the same order and shapes (e.g. averaged over calibration batches for one
        child, ``edgenas_keras.search.selection``) normalises with those instead, as a deployed network would."""
        s = self.space
        fixed = iter(bn_stats) if bn_stats is not None else None
        moments = []

        def bn(x, gamma, beta):
            if fixed is None:
                y, mean, var = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=1e-3, is_training=True)
            else:
                mean, var = next(fixed)
                y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, mean=mean, variance=var, epsilon=1e-3,
                                                          is_training=False)
            moments.append((mean, var))
            return y

        x = tf.nn.conv2d(images, self.stem_w, s.stem_stride, "SAME")
        x = tf.nn.relu6(bn(x, *self.stem_bn))
        cin = tf.constant(float(s.stem_channels))
        for i, b in enumerate(self.blocks):
            x, cin = self._block(b, x, cin, gates[i], bn)
        x = tf.reduce_mean(x, axis=[1, 2])
        return tf.matmul(x, self.head_w) + self.head_b, moments

    def _block(self, b, x, cin, g, bn):
        slot = b["slot"]
        c = slot.choices
        hard = tf.stop_gradient(g)
        ops = list(c["op"])

        def gate(name):
            return g[0, ops.index(name)] if name in slot.ops else tf.constant(0.0)

        g_ir, g_dws, g_skip = gate("ir"), gate("dws"), gate("skip")
        is_ir = tf.stop_gradient(g_ir)
        e_vals = tf.constant([float(e) for e in c["expansion"]])
        e_sel = tf.reduce_sum(hard[2, : len(e_vals)] * e_vals)
        dw_ch = is_ir * cin * e_sel + (1.0 - is_ir) * cin  # channels the depthwise conv actually has
        w_dw = b["w_dw"]

        h = g_dws * _pad_channels(x, w_dw)
        if "exp_w" in b:
            hx = tf.nn.relu6(bn(tf.nn.conv2d(x, b["exp_w"], 1, "VALID"), *b["exp_bn"]))
            e_mask = tf.add_n([g[2, j] * _prefix_mask(cin * e, w_dw) for j, e in enumerate(c["expansion"])])
            h = h + g_ir * hx * e_mask
        kmask = tf.tensordot(g[1, : len(c["kernel"])], b["kmasks"], 1)
        h = tf.nn.depthwise_conv2d(h, b["dw_w"] * kmask, [1, slot.stride, slot.stride, 1], "SAME")
        h = tf.nn.relu6(bn(h, *b["dw_bn"])) * _prefix_mask(dw_ch, w_dw)

        if "se_rw" in b:
            w_r = b["se_rw"].shape[-1]
            pooled = tf.reduce_mean(h, axis=[1, 2])
            z = tf.nn.relu6(tf.matmul(pooled, b["se_rw"]) + b["se_rb"])
            r_mask = tf.add_n([g[3, j] * _prefix_mask(tf.maximum(8.0, tf.math.floor(dw_ch / r)), w_r)
                               for j, r in enumerate(c["se"]) if r > 0])
            s_gate = tf.nn.relu6(tf.matmul(z * r_mask, b["se_ew"]) + b["se_eb"])
            g_off = tf.add_n([g[3, j] for j, r in enumerate(c["se"]) if r == 0] or [tf.constant(0.0)])
            h = h * (g_off + (1.0 - tf.stop_gradient(g_off)) * s_gate[:, None, None, :])

        c_vals = tf.constant([float(v) for v in c["channels"]])
        c_sel = tf.reduce_sum(hard[4, : len(c_vals)] * c_vals)
        cmax = max(c["channels"])
        c_mask = tf.add_n([g[4, j] * _prefix_mask(float(v), cmax) for j, v in enumerate(c["channels"])])
        y = bn(tf.nn.conv2d(h, b["proj_w"], 1, "VALID"), *b["proj_bn"]) * c_mask
        y = _pad_channels(y, b["w_out"])
        if slot.stride == 1:
            residual = tf.cast(tf.equal(cin, c_sel), tf.float32)
            y = y + residual * _pad_channels(x, b["w_out"])
        out = (g_ir + g_dws) * y
        is_skip = tf.stop_gradient(g_skip)
        if slot.skip_legal:
            out = out + g_skip * _pad_channels(x, b["w_out"])
        return out, is_skip * cin + (1.0 - is_skip) * c_sel


def derive_indices(space: SearchSpace, probs: np.ndarray) -> np.ndarray:
    """Most probable legal choice per block and factor: the index form of ``space.from_indices``."""
    idx = np.zeros((space.num_blocks, len(FACTORS)), np.int64)
    legal = legal_mask(space)
    for i in range(space.num_blocks):
        for j in range(len(FACTORS)):
            p = np.where(legal[i, j], probs[i, j], -1.0)
            idx[i, j] = int(np.argmax(p))
    return idx


def factor_probs(space: SearchSpace, probs) -> list[list]:
    """Split a (num_blocks, 5, L) probability tensor into ``probs[i] = [p_op, p_k, p_e, p_se, p_c]`` over each
    block's own choices, the form ``search.objective.ExpectedLatency`` takes."""
    return [[probs[i, j, : len(slot.choices[f])] for j, f in enumerate(FACTORS)]
            for i, slot in enumerate(space.slots)]
