"""Choosing the architecture by accuracy evidence: children of a trained supernet scored with inherited
weights, and an evolutionary search over them under the exact cost models (``search.strategy`` and
``search.derive``; README.md, "Search").

- **Scoring a child** (``ChildScorer``): the child's one-hot gates through the trained supernet
  (``Supernet.forward``). Its batch-norm statistics are recomputed for that child first (the supernet trains
  with batch statistics, and widths change from child to child): the moments of every batch norm are
  averaged over ``bn_batches`` training batches (mean of means; variance by the law of total variance), then
  the child is evaluated with those fixed statistics, as a deployed network would be, on ``score_batches``
  batches of the search's validation subset (carved from the training split; the eval split is never read).
  The score is top-1 accuracy on those images, ties broken by the lower mean cross-entropy.
- **Candidates**: only architectures whose latency by the LUT lies in ``[window_low * B, B]`` and that meet
  every other budget by the exact cost models (``search.Pricer``), so that the comparison is between
  networks that all use the budget: a smaller network scoring higher would be a real finding, but at equal
  budget use the proxy only has to rank like-for-like.
- **Evolution** (``evolve``): a population seeded by the caller (alpha's answers, samples from alpha, or
  uniform samples from the window), then generations of mutation (each factor of each block redrawn with
  probability ``MUTATION_PROB``, at least one change) and block-wise uniform crossover of parents drawn
  from the best half, each child kept only if it lands in the window (up to ``TRIES`` draws); the next
  population is the best ``population`` of everything scored so far. Stops after ``candidates`` children have
  been scored. Deterministic for a seed.

- **Scoring a child by training it** (``TrainedScorer``, ``fitness: trained``): no supernet; each candidate is
  built on its own (``builder.build_model``) and trained from scratch for ``fitness_steps`` Adam steps on
  the search's training subset, then scored like a supernet child on ``score_batches`` batches of the
  validation subset (``train_and_score``). Costlier per candidate (about 15-27 CPU s at 250 steps of 32
  images at 96 px, against well under 1 s with inherited weights), but it ranks: on issue 14's Table 1
  networks a 250-step training at 96 px had Spearman +0.52 with their int8 accuracy after full training,
  where inherited weights of a supernet trained for up to 1,560 steps had none (README, "Levers tried").
  Scores are appended to ``fitness.jsonl`` as they come, so an interrupted search resumes without
  retraining a child. The equal-compute random search of ``bench/paper_tables.py`` uses the same function.

Costs are priced exactly (``Pricer``: the LUT's latency; the TFLM arena and flatbuffer models when those
budgets are set).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgenas_keras.arch.space import FACTORS, Arch, SearchSpace, decode
from edgenas_keras.errors import UserError

MUTATION_PROB = 0.15   # per block and factor
TRIES = 200            # draws for one child (mutation or crossover) to land in the window


def max_len(space: SearchSpace) -> int:
    """The most choices any factor of any block has: the last axis L of ``one_hot_gates``."""
    return max(len(c[f]) for c in space.choices for f in FACTORS)


def one_hot_gates(space: SearchSpace, idx: np.ndarray) -> np.ndarray:
    """(num_blocks, 5, L) float32 one-hot gates of the architecture ``idx`` (index form), the supernet's input."""
    g = np.zeros((space.num_blocks, len(FACTORS), max_len(space)), np.float32)
    for i in range(space.num_blocks):
        for j in range(len(FACTORS)):
            g[i, j, idx[i, j]] = 1.0
    return g


def canonical_indices(space: SearchSpace, idx: np.ndarray) -> np.ndarray:
    """Index form with the factors that do not apply (skip's, dws's expansion) at 0."""
    return space.to_indices(space.from_indices(idx))


def key_of(idx: np.ndarray) -> bytes:
    """A hashable key of an index form (its int64 bytes): the scorers' and ``evolve``'s cache key. Index
    forms of one architecture differ unless canonical (``canonical_indices``)."""
    return np.asarray(idx, np.int64).tobytes()


# -- scoring with inherited weights ---------------------------------------------------------------------


class ChildScorer:
    """Scores children of a trained ``Supernet`` with inherited weights (module docstring).

    ``calib``: list of image batches (float32 [B, R, R, C], training images) the BN statistics are recomputed
    on; ``held_out``: list of (images, int labels) batches the child is evaluated on. ``score(idx)`` returns
    ``{"accuracy": fraction, "ce": mean cross-entropy in nats, "images": count}``; results are cached per
    architecture and ``scored`` counts the distinct children scored."""

    def __init__(self, net, space: SearchSpace, calib: list, held_out: list):
        import tensorflow as tf

        if not calib or not held_out:
            raise ValueError("ChildScorer needs at least one calibration batch and one held-out batch")
        self.net, self.space = net, space
        self.calib = [tf.constant(x) for x in calib]
        self.held_out = [(tf.constant(x), tf.constant(np.asarray(y, np.int32))) for x, y in held_out]
        self.cache: dict[bytes, dict] = {}

        @tf.function(reduce_retracing=True)
        def moments(x, gates):
            return net.forward(x, gates)[1]

        @tf.function(reduce_retracing=True)
        def evaluate(x, y, gates, stats):
            logits = net.forward(x, gates, bn_stats=stats)[0]
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
            return tf.reduce_sum(correct), tf.reduce_sum(ce)

        self._moments, self._evaluate = moments, evaluate

    @property
    def scored(self) -> int:
        """The number of distinct children (index forms) scored so far."""
        return len(self.cache)

    def bn_stats(self, gates) -> list:
        """Per batch norm (mean, variance) of the child ``gates`` pooled over the calibration batches."""
        import tensorflow as tf

        per_batch = [self._moments(x, gates) for x in self.calib]
        stats = []
        for site in zip(*per_batch):
            means = tf.stack([m for m, _ in site])
            variances = tf.stack([v for _, v in site])
            mean = tf.reduce_mean(means, 0)
            var = tf.reduce_mean(variances, 0) + tf.reduce_mean(tf.square(means), 0) - tf.square(mean)
            stats.append((mean, tf.maximum(var, 0.0)))
        return stats

    def score(self, idx: np.ndarray) -> dict:
        """Score the child ``idx`` ((num_blocks, 5) index form) with inherited weights: BN statistics
        recomputed on the calibration batches, then evaluated on the held-out batches; cached per index form.

        Returns:
            ``{"accuracy": top-1 fraction, "ce": mean cross-entropy in nats, "images": images scored}``.
        """
        import tensorflow as tf

        k = key_of(idx)
        if k not in self.cache:
            gates = tf.constant(one_hot_gates(self.space, idx))
            stats = self.bn_stats(gates)
            correct = ce = 0.0
            n = 0
            for x, y in self.held_out:
                c, e = self._evaluate(x, y, gates, stats)
                correct += float(c)
                ce += float(e)
                n += int(y.shape[0])
            self.cache[k] = {"accuracy": correct / n, "ce": ce / n, "images": n}
        return self.cache[k]


# -- scoring by a short stand-alone training --------------------------------------------------------------


def train_and_score(space: SearchSpace, arch: Arch, data, resolution: int, steps: int, val_batches: int,
                    seed: int, lr: float = 3e-3, lr_decay: bool = False, recalibrate_bn: int = 0) -> dict:
    """Train ``arch`` from scratch for ``steps`` Adam steps (learning rate ``lr``, constant, or with
    ``lr_decay`` cosine-decayed to 0 over the ``steps``) on the search's training subset at ``resolution`` px
    (``data``: ``search.SearchData``; the training batches repeat as needed), then score it on the first
    ``val_batches`` batches of the validation subset (which repeats: a subset smaller than ``val_batches``
    batches is scored more than once). With ``recalibrate_bn`` > 0 the batch-norm statistics are first
    recomputed on that many training batches (``train.recalibrate_batch_norm``); otherwise the score uses
    Keras' moving averages, which at momentum 0.99 trail the weights by about a hundred steps. Deterministic
    for ``seed``.

    Returns ``{"accuracy": top-1 fraction, "ce": mean cross-entropy in nats, "images": images scored,
    "batches": [[correct, summed cross-entropy, images] per validation batch]}`` (the per-batch sums give the
    score on any prefix of the batches). Raises ``UserError`` when the validation subset is empty."""
    import tensorflow as tf
    import tf_keras as keras

    from edgenas_keras.model.builder import build_model
    from edgenas_keras.train import recalibrate_batch_norm

    keras.utils.set_random_seed(seed)
    model = build_model(space, arch, resolution)
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(1, steps)) if lr_decay else lr
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=keras.losses.SparseCategoricalCrossentropy())
    model.fit(data.train(0).repeat(), steps_per_epoch=steps, epochs=1, verbose=0)
    if recalibrate_bn:
        recalibrate_batch_norm(model, data.train(1).repeat(), recalibrate_bn)
    batches = []
    for x, y in data.val(0).take(val_batches):
        p = model(x, training=False)
        y = tf.cast(y, tf.int64)
        batches.append([float(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(p, -1), y), tf.float32))),
                        float(tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, p))),
                        int(y.shape[0])])
    n = sum(b[2] for b in batches)
    if not n:
        raise UserError("scoring a candidate needs a validation subset: use more data or a larger val_fraction")
    return {"accuracy": sum(b[0] for b in batches) / n, "ce": sum(b[1] for b in batches) / n, "images": n,
            "batches": batches}


class TrainedScorer:
    """Scores architectures (index form) by ``train_and_score`` (module docstring, ``fitness: trained``).

    ``lr_decay`` and ``recalibrate_bn`` are ``train_and_score``'s (``fitness_lr_decay``, ``fitness_bn_batches``).
    ``log_path``: a JSON-lines file of the scores so far (``{"arch", "accuracy", "ce", "images", "cpu_s"}``
    per line), read at start and appended to after every child, so a rerun reuses them; a truncated last line
    (an interrupted write) is dropped from the file. ``scored`` counts the distinct architectures scored. Raises ``UserError`` when the training
    subset yields no full batch."""

    def __init__(self, space: SearchSpace, data, resolution: int, steps: int, val_batches: int, seed: int,
                 log_path: Path | None = None, log: Callable[[str], None] = lambda _m: None,
                 lr_decay: bool = False, recalibrate_bn: int = 0):
        self.space, self.data, self.resolution = space, data, resolution
        self.steps, self.val_batches, self.seed = steps, val_batches, seed
        self.lr_decay, self.recalibrate_bn = lr_decay, recalibrate_bn
        self.log_path, self.log = (Path(log_path) if log_path else None), log
        self.cache: dict[bytes, dict] = {}
        if next(iter(data.train(0).take(1)), None) is None:
            raise UserError("training a candidate needs at least one full batch of the search's training subset: "
                            "use more data or a smaller batch_size")
        if self.log_path and self.log_path.is_file():
            text = self.log_path.read_text()
            if text and not text.endswith("\n"):   # an interrupted write: drop it so appends start on a new line
                text = text[:text.rfind("\n") + 1]
                self.log_path.write_text(text)
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                idx = canonical_indices(space, space.to_indices(decode(row.pop("arch"))))
                self.cache[key_of(idx)] = row

    @property
    def scored(self) -> int:
        """The number of distinct architectures scored, those read from ``log_path`` included."""
        return len(self.cache)

    def score(self, idx: np.ndarray) -> dict:
        """Score ``idx`` ((num_blocks, 5) index form) by ``train_and_score``, or return its cached score
        (cache keyed by the canonical index form, ``canonical_indices``, so two index forms of one architecture
        are trained once). A new score is appended to ``log_path`` and logged.

        Returns:
            ``{"accuracy": top-1 fraction, "ce": mean cross-entropy in nats, "images": images scored,
            "cpu_s": CPU seconds of this process to train and score it}``.

        Raises:
            UserError: the validation subset is empty (``train_and_score``).
        """
        k = key_of(canonical_indices(self.space, idx))
        if k not in self.cache:
            arch = self.space.from_indices(idx)
            c0 = time.process_time()
            row = train_and_score(self.space, arch, self.data, self.resolution, self.steps, self.val_batches,
                                  self.seed, lr_decay=self.lr_decay, recalibrate_bn=self.recalibrate_bn)
            row.pop("batches")
            row["cpu_s"] = round(time.process_time() - c0, 3)
            self.cache[k] = row
            if self.log_path:
                with self.log_path.open("a") as f:
                    f.write(json.dumps({"arch": str(arch), **row}) + "\n")
            self.log(f"child {self.scored}: accuracy {row['accuracy']:.4f} after {self.steps} steps "
                     f"({row['cpu_s']:.0f} CPU s) {arch}")
        return self.cache[k]


def rank_key(score: dict) -> tuple:
    """Sort key, best first: higher accuracy, then lower cross-entropy."""
    return (-score["accuracy"], score["ce"])


# -- the window and its sampling ------------------------------------------------------------------------


@dataclass
class Window:
    """Architectures with latency in [low * B, B] that meet every budget (``pricer``: ``search.Pricer``)."""

    pricer: object
    low: float

    @property
    def space(self) -> SearchSpace:
        """The search space of the pricer."""
        return self.pricer.space

    def bounds(self) -> tuple[float, float]:
        """The latency window ``(low * B, B)`` in ms, B the search's latency budget
        (``pricer.budgets.latency_ms``)."""
        b = self.pricer.budgets.latency_ms
        return self.low * b, b

    def contains(self, idx: np.ndarray) -> bool:
        """True when ``idx`` (index form) has a latency in ``bounds()`` (ms, from the pricer's latency tables)
        and meets every other budget (``pricer.violation(idx) == 0``: SRAM and flash by the exact models)."""
        lo, hi = self.bounds()
        lat = self.pricer.latency(idx)
        return lo <= lat <= hi and self.pricer.violation(idx) == 0

    def sample(self, n: int, rng: np.random.Generator, check_memory: bool = True, max_draws: int = 100_000) -> list:
        """``n`` architectures of the window: each starts from a uniform draw of the space
        (``SearchSpace.sample``) and, when it lies outside the window, walks there by random one-factor moves
        (cheaper ones while above the budget, costlier ones that stay under it while below ``low * B``);
        kept when it reaches the window and, with ``check_memory``, meets every other budget. (Uniform
        rejection sampling is hopeless at tight budgets: on the main job's 45 ms of a space reaching 1 s,
        about one draw in 10^4 lands in [0.9 B, B].) Fewer than ``n`` when ``max_draws`` starts run out."""
        space = self.space
        out: list = []
        for _ in range(max_draws):
            if len(out) >= n:
                break
            idx = self.walk(space.to_indices(space.sample(seed=int(rng.integers(2**31)))), rng, check_memory)
            if idx is not None:
                out.append(idx)
        return out

    def walk(self, idx: np.ndarray, rng: np.random.Generator, check_memory: bool = True) -> np.ndarray | None:
        """``idx`` moved into the window by random one-factor moves (``sample``); None when it gets stuck
        outside or (``check_memory``) breaks another budget."""
        from edgenas_keras.search.derive import _moves

        space, pricer = self.space, self.pricer
        lo, hi = self.bounds()
        idx = canonical_indices(space, idx)
        lat = pricer.latency(idx)
        while lat > hi:
            moves = list(_moves(space, idx, cheaper=True))
            if not moves:
                break
            i, j, v = moves[rng.integers(len(moves))]
            idx = idx.copy()
            idx[i, j] = v
            idx = canonical_indices(space, idx)
            lat = pricer.latency(idx)
        while lat < lo:
            moves = list(_moves(space, idx, cheaper=False))
            rng.shuffle(moves)
            for i, j, v in moves:
                cand = idx.copy()
                cand[i, j] = v
                cand = canonical_indices(space, cand)
                c_lat = pricer.latency(cand)
                if c_lat <= hi:
                    idx, lat = cand, c_lat
                    break
            else:
                break
        if lo <= lat <= hi and (not check_memory or pricer.violation(idx) == 0):
            return idx
        return None


def mutate(space: SearchSpace, idx: np.ndarray, rng: np.random.Generator, prob: float = MUTATION_PROB) -> np.ndarray:
    """A copy of ``idx`` with each factor of each block redrawn with probability ``prob`` (at least one
    factor changes); a block whose operation changes draws all its factors anew."""
    while True:
        out = idx.copy()
        for i, slot in enumerate(space.slots):
            if rng.random() < prob:
                op = slot.ops[rng.integers(len(slot.ops))]
                out[i, 0] = slot.choices["op"].index(op)
                if out[i, 0] != idx[i, 0]:
                    for j, f in enumerate(FACTORS[1:], 1):
                        out[i, j] = rng.integers(len(slot.choices[f]))
                    continue
            for j, f in enumerate(FACTORS[1:], 1):
                if rng.random() < prob:
                    out[i, j] = rng.integers(len(slot.choices[f]))
        out = canonical_indices(space, out)
        if not np.array_equal(out, idx):
            return out


def crossover(space: SearchSpace, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each block taken whole from ``a`` or ``b`` with equal probability."""
    pick = rng.random(space.num_blocks) < 0.5
    return canonical_indices(space, np.where(pick[:, None], a, b))


def evolve(window: Window, score: Callable[[np.ndarray], dict], seeds: list, candidates: int, population: int,
           rng: np.random.Generator, log: Callable[[str], None] = lambda _m: None) -> list[dict]:
    """Evolutionary search in ``window`` (module docstring). ``seeds``: starting architectures (index form;
    those outside the window are dropped, and uniform window samples top the population up). Returns every
    scored architecture as ``{"idx", "score", "origin", "generation"}``, best first."""
    space = window.space
    seen: dict[bytes, dict] = {}

    def add(idx, origin, gen):
        k = key_of(idx)
        if k in seen or len(seen) >= candidates:
            return
        seen[k] = {"idx": idx, "score": score(idx), "origin": origin, "generation": gen}

    for idx, origin in seeds:
        if window.contains(idx):
            add(canonical_indices(space, idx), origin, 0)
    missing = max(0, min(population, candidates) - len(seen))
    for idx in window.sample(missing + 4, rng):
        if len(seen) >= min(population, candidates):
            break
        add(idx, "window-sample", 0)
    gen = 0
    while len(seen) < candidates:
        gen += 1
        ranked = sorted(seen.values(), key=lambda r: rank_key(r["score"]))
        parents = [r["idx"] for r in ranked[:max(2, population // 2)]]
        before = len(seen)
        for n in range(population):
            for _ in range(TRIES):
                if n % 2 == 0 or len(parents) < 2:
                    child = mutate(space, parents[rng.integers(len(parents))], rng)
                    origin = "mutation"
                else:
                    a, b = rng.choice(len(parents), 2, replace=False)
                    child = crossover(space, parents[a], parents[b], rng)
                    origin = "crossover"
                if key_of(child) not in seen and window.contains(child):
                    add(child, origin, gen)
                    break
            if len(seen) >= candidates:
                break
        best = min(seen.values(), key=lambda r: rank_key(r["score"]))
        log(f"evolution generation {gen}: {len(seen)}/{candidates} scored, best accuracy "
            f"{best['score']['accuracy']:.4f} ({space.from_indices(best['idx'])})")
        if len(seen) == before:   # no new child lands in the window: the neighbourhood is exhausted
            extra = window.sample(1, rng)
            if not extra or key_of(extra[0]) in seen:
                break
            add(extra[0], "window-sample", gen)
    return sorted(seen.values(), key=lambda r: rank_key(r["score"]))


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for fewer than 2 values or constant input."""
    from scipy import stats

    if len(a) < 2:
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def kendall(a, b) -> float:
    """Kendall's tau-b; NaN for fewer than 2 values or constant input."""
    from scipy import stats

    if len(a) < 2:
        return math.nan
    return float(stats.kendalltau(a, b).statistic)
