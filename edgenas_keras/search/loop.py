"""The differentiable latency- and memory-constrained search (paper section 3.3), as a library call.

``run_search(data_dir, lut, config, out_dir)`` trains the supernet (``edgenas_keras.model.supernet``) and returns an
architecture that meets every budget by the exact cost models.

Objective (alpha steps)::

    loss = CE + mu * max(0, E[LAT]/Tmax - 1)^2 + nu * max(0, E[MEM]/Mmax - 1)^2 [+ phi * max(0, E[FLASH]/Fmax - 1)^2]

- E[LAT]: ``search.objective.ExpectedLatency`` over ``softmax(alpha / tau)``, exact (input-channel coupling included).
  The supernet's straight-through Gumbel samples are drawn from exactly that distribution, so E[LAT] is the
  mean latency of the paths it trains; as the temperature falls the distribution concentrates on the argmax,
  and E[LAT] approaches the latency of the architecture that will be derived. (At a fixed temperature the
  two can differ by a factor of 2 or more, because latency is a product of kernel, expansion and channels:
  the mixture's mean is not the latency of its mode.) Ablation
  ``latency_proxy: macs`` swaps in MACs scaled to milliseconds (one factor fitted to the LUT on sampled
  architectures), so the same budget applies.
- E[MEM]: a differentiable surrogate of ``cost.sram_bytes`` (the TFLM arena). That arena is the greedy
  planner's peak over activation buffers plus additive persistent overhead. The overhead (per tensor, per
  operator, per quantised channel) is additive over operators, so its expectation is exact (the latency
  machinery with another per-operator price). The planner's peak is replaced by a smooth maximum (log-sum-exp,
  temperature 3% of the largest term) over the stem, every block and the head of the *expected* peak live
  bytes inside that unit: at each operator, its input(s), output, scratch buffer, and the tensors kept alive
  across it (a residual block's input, the tensor SE rescales). Per architecture that live-set maximum is a
  lower bound of the planner's peak (the planner also fragments), so the surrogate is multiplied by a factor
  fitted before training: the mean ratio exact/surrogate over sampled architectures (it is 1.0-1.1 in
  practice). The smooth maximum of expectations is not the expectation of the maximum; the exact model has
  the last word when the architecture is derived.
- E[FLASH]: ``cost.flash_bytes`` is additive over operators, so its expectation is exact.

Schedule (the paper's augmented-Lagrangian rule): every ``check_every`` alpha steps each multiplier whose
constraint is violated (expected cost above budget) is multiplied by ``growth`` (1.5); otherwise it is kept.

Alternating updates: a weight step on a training batch, then an alpha step on a validation batch carved
from the training split by a stable hash of the source id (``data.records.hash_split``, salt
``search-val``); the eval split is never read. ``warmup_epochs`` train weights only; the Gumbel temperature
decays geometrically from ``tau_start`` to ``tau_end`` over the search epochs (after warm-up).

From alpha to an architecture: most probable legal choice per factor; price exactly (``cost.arch_cost``); if
a budget is violated, *repair*: repeatedly move one factor of one block to a cheaper choice, choosing the
move that removes the most normalised violation per unit of log-probability given up (so the moves alpha
minds least go first), until every budget holds. Cheaper is a fixed order per factor (skip < dws < ir,
smaller kernel, expansion and channels, SE off < larger reduction < smaller reduction), whose bottom is the
space's cheapest architecture, so repair always ends feasible when the feasibility check passed.
Then, with ``fill`` (on by default; beyond the paper), the unused budget is spent the same way in the other
direction: the most probable upgrade that keeps every budget is taken until none does. Without it the
penalty, which is one-sided, leaves loose budgets partly unused when the accuracy signal of a short search
is weak; ``result.json`` records the architecture before and after both steps.

Operation: a checkpoint at every epoch end (weights, alpha, optimisers, multipliers, step, history); a rerun
with the same output folder and configuration resumes from it, and the Gumbel noise and data order are
functions of (seed, step) and (seed, epoch), so an interrupted search returns the same architecture as an
uninterrupted one. TF op determinism is enabled for the same reason.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgenas_keras import progress
from edgenas_keras._fs import atomic_write_json
from edgenas_keras.arch.space import FACTORS, Arch, SearchSpace
from edgenas_keras.cost.estimate import (
    ArchCost,
    LatencyTables,
)
from edgenas_keras.cost.graph import reachable_keys
from edgenas_keras.errors import UserError
from edgenas_keras.lut.table import Lut
from edgenas_keras.search.config import KB, VAL_SALT, SearchConfig, SearchResult, space_with_blocks
from edgenas_keras.search.derive import Pricer, cheapest_indices, check_feasible, fill, initial_alpha, repair

# -- the search ---------------------------------------------------------------------------------------------

@dataclass
class SearchData:
    """Batches for the search: ``train(epoch)`` (finite, the weight steps) and ``val(epoch)`` (repeating,
    the alpha steps), each a tf.data.Dataset of (images, labels) whose order depends only on the epoch."""

    train: Callable
    val: Callable


def reader_data(data_dir, config: SearchConfig, resolution: int, channels: int) -> SearchData:
    """Training and search-validation batches from an Examples folder (the project's one reader)."""
    from edgenas_keras.data.reader import Subset, make_dataset

    def ds(epoch, held_out):
        return make_dataset(data_dir, "train", config.batch_size, resolution, channels,
                            augment=not held_out, shuffle_seed=config.seed * 1000 + epoch + (500 if held_out else 0),
                            subset=Subset(config.val_fraction, VAL_SALT, held_out), repeat=held_out,
                            drop_remainder=True)

    return SearchData(lambda e: ds(e, False), lambda e: ds(e, True))


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, indent=1, sort_keys=True, default=float)


def _latency_tables(space: SearchSpace, lut: Lut, config: SearchConfig) -> tuple[LatencyTables, LatencyTables]:
    """(exact LUT tables, the tables the penalty uses: the same, or MACs scaled to ms)."""
    exact = LatencyTables.from_lut(space, lut)
    if config.latency_proxy == "lut":
        return exact, exact
    macs = LatencyTables.from_macs(space, 1.0)
    idx = np.stack([space.to_indices(a) for a in space.sample(64, seed=config.seed)])
    ms_per_mmac = exact.batch_latency_ms(space, idx).sum() / macs.batch_latency_ms(space, idx).sum()
    return exact, LatencyTables.from_macs(space, float(ms_per_mmac))


def run_search(data_dir, lut: Lut, config: SearchConfig, out_dir, space: SearchSpace | None = None,
               data: SearchData | None = None, on_epoch_end: Callable[[int], None] | None = None) -> SearchResult:
    """Search ``space`` (default: the shipped one) for ``lut``'s device under ``config``'s budgets.

    ``data`` overrides reading ``data_dir`` (tests, notebooks); ``on_epoch_end(epoch)`` runs after each
    epoch's checkpoint. Writes result.json, history.json, config.json, ckpt/ and tb/ under ``out_dir``.

    The head has as many outputs as the data set has classes (``classes.dataset_class_names(data_dir)``,
    from its ``stats.json``): the data wins over the space's ``head.num_classes``, with a warning on stderr
    when they differ (``classes.space_for_data``). Head operators a keys-only LUT lacks for that class count
    are priced by ``Lut``'s head estimate, with a warning naming them.
    """
    space = space or SearchSpace.load()
    if data_dir is not None:
        from edgenas_keras.data.classes import dataset_class_names, space_for_data

        space = space_for_data(space, dataset_class_names(data_dir), warn=progress.stderr)
    space = space_with_blocks(space, config.num_blocks)
    out = Path(out_dir)
    resolved = {"search": config.as_dict(), "space": space.to_dict(), "device": lut.device,
                "lut_sha256": lut.sha256, "lut_source": str(lut.source),
                "data_dir": str(data_dir) if data_dir is not None else None}
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        previous = json.loads(cfg_path.read_text())
        same = ("search", "space", "device", "lut_sha256")  # paths may differ between attempts
        # a folder written before a field existed holds that field's default
        defaults = {f.name: f.default for f in dataclasses.fields(SearchConfig)
                    if f.default is not dataclasses.MISSING}
        previous["search"] = {**defaults, **previous.get("search", {})}
        if any(previous.get(k) != resolved[k] for k in same):
            raise UserError(f"{out} holds a search with another configuration (see {cfg_path}); use a new --out "
                            "or delete that folder")
        if (out / "result.json").is_file():
            progress.stderr(f"search in {out} already finished; returning its result")
            return SearchResult.from_dict(json.loads((out / "result.json").read_text()))

    floor = check_feasible(space, lut, config)
    estimated = lut.head_estimated(reachable_keys(space))
    if estimated:
        progress.stderr(f"warning: LUT {lut.source} lacks the {space.num_classes}-class head's keys "
                        f"({', '.join(estimated)}); they are estimated from its other head entries "
                        "(edgenas_keras.lut, head estimate)")
    if data is None:
        from edgenas_keras.data.reader import split_files

        split_files(data_dir, "train")  # a missing or empty training split fails now, not after set-up
    exact_tables, penalty_tables = _latency_tables(space, lut, config)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(cfg_path, resolved)

    res = config.train_resolution or space.resolution
    if data is None:
        data = reader_data(data_dir, config, res, space.in_channels)
    pricer = Pricer(space, lut, config, exact_tables)
    if config.fitness == "trained":   # no supernet: every child is trained on its own (selection.TrainedScorer)
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        return _select(space, lut, config, pricer, None, None, data, out, floor, [])
    paths = None
    if config.strategy == "evolution":
        paths = _training_paths(pricer, config)
    probs, history, net = _train(space, lut, config, data, out, penalty_tables, on_epoch_end, paths)
    if config.strategy == "differentiable" and config.derive == "argmax":
        return _derive(space, lut, config, pricer, probs, out, floor, history)
    return _select(space, lut, config, pricer, probs, net, data, out, floor, history)


def _train(space, lut, config, data, out, penalty_tables, on_epoch_end, paths=None):
    """Supernet training (module docstring); returns (alpha's final probabilities, history, the supernet).

    ``paths`` (strategy ``evolution``): architectures in index form; weight step n trains
    ``paths[n % len(paths)]`` instead of a Gumbel sample from alpha, and alpha is never stepped."""
    import tensorflow as tf
    import tf_keras as keras

    from edgenas_keras.model.supernet import Supernet, factor_probs
    from edgenas_keras.search import objective

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    costs = objective.ExpectedCosts(space, lut, penalty_tables, config.seed)
    net = Supernet(space)
    net.alpha.assign(initial_alpha(space, config.alpha_init_bias, net.alpha.shape))
    w_opt = keras.optimizers.Adam(config.weight_lr)
    a_opt = keras.optimizers.Adam(config.alpha_lr, beta_1=0.5)
    w_opt.build(net.weight_variables)
    a_opt.build([net.alpha])
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    alpha_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
    mults = tf.Variable([config.mu0, config.nu0, config.flash_mult0], dtype=tf.float32, trainable=False)
    ckpt = tf.train.Checkpoint(net=net, w_opt=w_opt, a_opt=a_opt, epoch=epoch_var, step=step_var,
                               alpha_steps=alpha_steps, mults=mults)
    manager = tf.train.CheckpointManager(ckpt, str(out / "ckpt"), max_to_keep=1)
    history_path = out / "history.json"
    history = []
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        done = int(epoch_var.numpy())
        history = [h for h in json.loads(history_path.read_text()) if h["epoch"] < done] if history_path.is_file() else []
        progress.stderr(f"resuming the search in {out} after epoch {done}/{config.epochs}")

    ce_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    b, model_flash = config.budgets, config.model_flash_bytes(lut.device)   # flash: the model's share
    budget = tf.constant([b.latency_ms, float(b.sram_bytes or 1), float(model_flash or 1)])
    active = tf.constant([1.0, float(b.sram_bytes is not None), float(model_flash is not None)])
    seed = config.seed

    def expected(p):
        fp = factor_probs(space, p)
        return tf.stack([costs.latency(fp), costs.memory(fp), costs.flash_bytes(fp)])

    def train_weights(x, y, gates):   # one optimiser step of the weights through the paths ``gates`` pick
        with tf.GradientTape() as tape:
            loss = ce_fn(y, net((x, gates), training=True))
        w_opt.apply_gradients(zip(tape.gradient(loss, net.weight_variables), net.weight_variables))
        return loss

    @tf.function
    def weight_step(x, y, tau):
        step_var.assign_add(1)
        gates = tf.stop_gradient(net.sample_gates(tau, tf.stack([seed, tf.cast(step_var, tf.int32)])))
        return train_weights(x, y, gates)

    @tf.function
    def path_step(x, y, gates):
        step_var.assign_add(1)
        return train_weights(x, y, gates)

    @tf.function
    def alpha_step(x, y, tau):
        step_var.assign_add(1)
        alpha_steps.assign_add(1)
        with tf.GradientTape() as tape:
            gates = net.sample_gates(tau, tf.stack([seed, tf.cast(step_var, tf.int32)]))
            ce = ce_fn(y, net((x, gates), training=True))
            e = expected(net.probs(tau))
            terms = mults * active * tf.square(tf.nn.relu(e / budget - 1.0))
            loss = ce + (tf.reduce_sum(terms) if config.penalty else 0.0)
        a_opt.apply_gradients([(tape.gradient(loss, net.alpha), net.alpha)])
        if config.schedule and config.penalty:
            check = tf.equal(alpha_steps % config.check_every, 0)
            violated = tf.cast(e > budget, tf.float32) * active
            mults.assign(tf.where(check, mults * (1.0 + (config.growth - 1.0) * violated), mults))
        return ce, terms, e

    writer = tf.summary.create_file_writer(str(out / "tb"))
    search_epochs = max(1, config.epochs - config.warmup_epochs - 1)
    t0 = time.time()
    for epoch in range(int(epoch_var.numpy()), config.epochs):
        searching = epoch >= config.warmup_epochs and paths is None
        frac = min(1.0, max(0, epoch - config.warmup_epochs) / search_epochs)
        tau = tf.constant(config.tau_start * (config.tau_end / config.tau_start) ** frac, tf.float32)
        train = data.train(epoch)
        if config.steps_per_epoch:
            train = train.take(config.steps_per_epoch)
        val_iter = iter(data.val(epoch)) if searching else None
        w_losses, ce_vals = [], []
        e = terms = None
        for n, (x, y) in enumerate(train):
            if paths is None:
                w_losses.append(float(weight_step(x, y, tau)))
            else:
                from edgenas_keras.search.selection import one_hot_gates

                path = paths[int(step_var.numpy()) % len(paths)]
                w_losses.append(float(path_step(x, y, tf.constant(one_hot_gates(space, path)))))
            if searching:
                try:
                    xv, yv = next(val_iter)
                except StopIteration:
                    raise UserError(f"the search's validation subset (val_fraction {config.val_fraction}) "
                                    f"yields no full batch of {config.batch_size}: use more data or a smaller "
                                    "batch_size") from None
                ce, terms, e = alpha_step(xv, yv, tau)
                ce_vals.append(float(ce))
                if int(alpha_steps.numpy()) % config.check_every == 0:
                    _log_scalars(writer, net, tau, int(step_var.numpy()), ce, terms, e, mults)
            if n % 10 == 9:
                progress.stderr(_progress(config, epoch, n + 1, w_losses, e, mults))
        if not w_losses:
            raise UserError("the search's training subset yields no full batch: need more training examples than "
                            f"batch_size {config.batch_size} / (1 - val_fraction {config.val_fraction})")
        p = net.probs(tau)
        e = expected(p)
        entry = {"epoch": epoch, "tau": float(tau), "train_loss": float(np.mean(w_losses)),
                 "val_ce": float(np.mean(ce_vals)) if ce_vals else None,
                 "expected_latency_ms": float(e[0]), "expected_sram_bytes": float(e[1]),
                 "expected_flash_bytes": float(e[2]), "mu": float(mults[0]), "nu": float(mults[1]),
                 "flash_mult": float(mults[2]), "alpha_entropy": block_entropy(p.numpy()),
                 "alpha": net.alpha.numpy().round(5).tolist(),
                 "probs": p.numpy().round(5).tolist(), "seconds": round(time.time() - t0, 1)}
        history.append(entry)
        _write_json(out / "history.json", history)
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
        progress.stderr(_progress(config, epoch, None, w_losses, e, mults)
                        + f" [epoch {epoch + 1}/{config.epochs} done, {time.time() - t0:.0f} s]")
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    writer.flush()
    return net.probs().numpy(), history, net


def block_entropy(probs) -> list[float]:
    """Entropy of the architecture distribution per block, in nats: ``probs`` is the (blocks, factors, L)
    ``softmax(alpha / tau)`` the search samples from (illegal choices at probability 0); a block's factors
    are independent, so its entropy is the sum of its factors' entropies (0 = one choice certain; the uniform distribution over the block's
    legal choices is the maximum). Recorded per epoch in ``history.json`` as ``alpha_entropy``."""
    p = np.asarray(probs, dtype=np.float64)
    return [round(float(v), 5) for v in -(p * np.log(np.clip(p, 1e-12, 1))).sum(-1).sum(-1)]


def _entropy(probs) -> float:
    p = np.asarray(probs)
    return float(-(p * np.log(np.clip(p, 1e-12, 1))).sum(-1).mean())


def _log_scalars(writer, net, tau, step, ce, terms, e, mults):
    import tensorflow as tf

    with writer.as_default(step=step):
        tf.summary.scalar("loss/ce", ce)
        for n, name in enumerate(("latency", "sram", "flash")):
            tf.summary.scalar(f"loss/penalty_{name}", terms[n])
        tf.summary.scalar("expected/latency_ms", e[0])
        tf.summary.scalar("expected/sram_kb", e[1] / KB)
        tf.summary.scalar("expected/flash_kb", e[2] / KB)
        tf.summary.scalar("multiplier/mu", mults[0])
        tf.summary.scalar("multiplier/nu", mults[1])
        tf.summary.scalar("multiplier/flash", mults[2])
        tf.summary.scalar("alpha/entropy", _entropy(net.probs(tau).numpy()))


def _progress(config, epoch, step, losses, e, mults) -> str:
    where = f"epoch {epoch + 1}/{config.epochs}" + (f" step {step}" if step else "")
    msg = f"{where}: loss {np.mean(losses[-10:]):.3f}"
    if e is None:
        return msg + " (warm-up: weights only)"
    b = config.budgets
    msg += f", E[LAT] {float(e[0]):.3f} ms / budget {b.latency_ms:g} ms"
    if b.sram_bytes is not None:
        msg += f", E[MEM] {float(e[1]) / KB:.1f} kB / {b.sram_bytes / KB:g} kB"
    if b.flash_bytes is not None:
        msg += f", E[FLASH] model {float(e[2]) / KB:.1f} kB (budget {b.flash_bytes / KB:g} kB with the runtime)"
    return msg + f", mu {float(mults[0]):.3g} nu {float(mults[1]):.3g}"


def _training_paths(pricer: Pricer, config: SearchConfig, n: int = 512) -> list[np.ndarray]:
    """Strategy ``evolution``: the paths the supernet trains, ``n`` architectures drawn uniformly from the space
    and kept when their LUT latency lies in the window ``[window_low * B, B]`` (the children the evolution
    will score; memory budgets are checked on the candidates, not here), in a fixed order for the seed."""
    from edgenas_keras.search.selection import Window

    rng = np.random.default_rng([config.seed, 7001])
    paths = Window(pricer, config.window_low).sample(n, rng, check_memory=False)
    if not paths:
        raise UserError(f"no architecture of the space has a latency in [{config.window_low:g} x "
                        f"{config.budgets.latency_ms:g}, {config.budgets.latency_ms:g}] ms: lower search.window_low")
    return paths


def _argmax_answer(space, config, pricer: Pricer, probs):
    """alpha's answer: argmax, repaired, filled (when ``fill``). Returns (derived, final, repairs, fills,
    repaired latency)."""
    from edgenas_keras.model.supernet import derive_indices

    logp = np.log(np.clip(probs, 1e-12, 1.0))
    derived = derive_indices(space, probs)
    idx, repairs = repair(pricer, derived, logp)
    repaired_latency = pricer.latency(idx)
    fills = 0
    if config.fill:
        idx, fills = fill(pricer, idx, logp)
    return derived, idx, repairs, fills, repaired_latency


def _scoring_batches(data: SearchData, config: SearchConfig):
    """(calibration image batches from the training subset, held-out (images, labels) batches)."""
    calib = [x.numpy() for x, _ in data.train(0).take(config.bn_batches)]
    held = [(x.numpy(), y.numpy()) for x, y in data.val(0).take(config.score_batches)]
    if len(calib) < 1 or len(held) < 1:
        raise UserError("scoring children needs at least one full training and one full validation batch of "
                        f"{config.batch_size}: use more data or a smaller batch_size")
    return calib, held


def _select(space, lut, config, pricer: Pricer, probs, net, data, out: Path, floor: ArchCost,
            history) -> SearchResult:
    """Derivation by accuracy evidence (``derive: proxy`` or ``strategy: evolution``): children in the budget
    window scored with inherited weights, BN recomputed per child, or (``fitness: trained``, ``net`` None)
    each trained from scratch for ``fitness_steps`` steps (``edgenas_keras.search.selection``); the best scored one
    is returned, or with ``finalists`` > 0 the best of the top ``finalists`` after each is trained again for
    ``finalist_steps`` steps (``finalists.jsonl``, resumable like ``fitness.jsonl``). Writes ``candidates.json``
    (every scored child, best by the fitness first, with ``finalist_accuracy``/``finalist_ce`` for finalists)."""
    from edgenas_keras.model.supernet import legal_mask
    from edgenas_keras.search.selection import (
        ChildScorer,
        TrainedScorer,
        Window,
        canonical_indices,
        evolve,
        key_of,
        max_len,
        rank_key,
    )

    t0 = time.time()
    rng = np.random.default_rng([config.seed, 7002])
    window = Window(pricer, config.window_low)
    seeds = []
    derived = alpha_answer = None
    extra = {}
    if config.strategy == "differentiable":
        derived, alpha_answer, repairs, fills, repaired_latency = _argmax_answer(space, config, pricer, probs)
        logp = np.log(np.clip(probs, 1e-12, 1.0))
        seeds.append((alpha_answer, "alpha-argmax-fill"))
        repaired, _ = repair(pricer, derived, logp)
        for _ in range(4):   # fill orders perturbed around alpha's
            noisy = logp + rng.gumbel(size=logp.shape)
            seeds.append((fill(pricer, repaired, noisy)[0], "alpha-fill-variant"))
        legal = legal_mask(space)
        for _ in range(config.population):   # samples from alpha, walked into the window (Window.walk)
            sample = np.zeros(derived.shape, np.int64)
            for i in range(space.num_blocks):
                for j in range(derived.shape[1]):
                    p = np.where(legal[i, j], probs[i, j], 0.0)
                    sample[i, j] = rng.choice(len(p), p=p / p.sum())
            walked = window.walk(sample, rng)
            if walked is not None:
                seeds.append((walked, "alpha-sample"))
        extra.update({"repair_moves": repairs, "fill_moves": fills, "repaired_latency_ms": repaired_latency,
                      "alpha_arch": str(space.from_indices(alpha_answer))})
    else:
        # the largest that fits: fill from the cheapest, no preference
        flat = np.zeros((space.num_blocks, len(FACTORS), max_len(space)))
        seeds.append((fill(pricer, cheapest_indices(space), flat)[0], "fill-from-cheapest"))
    if config.fitness == "trained":
        scorer = TrainedScorer(space, data, config.train_resolution or space.resolution, config.fitness_steps,
                               config.score_batches, config.seed, out / "fitness.jsonl", progress.stderr,
                               lr_decay=config.fitness_lr_decay, recalibrate_bn=config.fitness_bn_batches)
        how = f"trained {config.fitness_steps} steps each"
    else:
        calib, held = _scoring_batches(data, config)
        scorer = ChildScorer(net, space, calib, held)
        how = "scored with inherited weights"
    scored = evolve(window, scorer.score, seeds, config.candidates, config.population, rng, progress.stderr)
    if not scored:   # nothing in the window (a tight memory budget): fall back to alpha's answer / the fill
        progress.stderr(f"no candidate in the window [{config.window_low:g} B, B] meets every budget; "
                        "returning the cost-order answer")
        fallback = alpha_answer if alpha_answer is not None else seeds[0][0]
        scored = [{"idx": fallback, "score": scorer.score(fallback), "origin": "fallback", "generation": 0}]
    best = scored[0]
    if config.finalists:   # the best few trained again, longer: the longer training decides
        final = TrainedScorer(space, data, config.train_resolution or space.resolution, config.finalist_steps,
                              config.score_batches, config.seed, out / "finalists.jsonl", progress.stderr,
                              lr_decay=config.fitness_lr_decay, recalibrate_bn=config.fitness_bn_batches)
        for r in scored[:config.finalists]:
            r["finalist"] = final.score(r["idx"])
        best = min(scored[:config.finalists], key=lambda r: rank_key(r["finalist"]))
        extra.update({"finalists": min(config.finalists, len(scored)), "finalist_steps": config.finalist_steps,
                      "finalist_accuracy": best["finalist"]["accuracy"], "finalist_ce": best["finalist"]["ce"],
                      "fitness_rank_of_pick": next(n for n, r in enumerate(scored) if r is best)})
    idx = best["idx"]
    rows = []
    for r in scored:
        c = pricer.cost(r["idx"])
        fin = {f"finalist_{k}": r["finalist"][k] for k in ("accuracy", "ce")} if "finalist" in r else {}
        rows.append({"arch": str(space.from_indices(r["idx"])), **r["score"], **fin, "origin": r["origin"],
                     "generation": r["generation"], "latency_ms": round(c.latency_ms, 4),
                     "sram_bytes": c.sram_bytes, "flash_bytes": c.flash_bytes})
    _write_json(out / "candidates.json", rows)
    if alpha_answer is not None:
        alpha_answer = canonical_indices(space, alpha_answer)
        a_score = scorer.score(alpha_answer)
        extra.update({"alpha_arch_accuracy": a_score["accuracy"], "alpha_arch_ce": a_score["ce"],
                      "alpha_arch_in_window": window.contains(alpha_answer),
                      "alpha_arch_rank": next((n for n, r in enumerate(scored) if key_of(r["idx"]) ==
                                               key_of(alpha_answer)), None)})
    arch: Arch = space.from_indices(idx)
    cost = pricer.cost(idx)
    first = derived if derived is not None else idx
    extra.update({"strategy": config.strategy, "derive": "proxy", "fitness": config.fitness,
                  "proxy_accuracy": best["score"]["accuracy"],
                  "proxy_ce": best["score"]["ce"], "proxy_images": best["score"]["images"],
                  "origin": best["origin"], "candidates_scored": scorer.scored,
                  "selection_seconds": round(time.time() - t0, 1), "floor_latency_ms": floor.latency_ms,
                  "model_flash_budget_bytes": pricer.model_flash_bytes,
                  "expected_latency_ms": history[-1]["expected_latency_ms"] if history else None,
                  "space": space.name, "seed": config.seed})
    result = SearchResult(
        arch=str(arch), cost=cost, budgets=config.budgets.as_dict(), device=lut.device, lut_sha256=lut.sha256,
        feasible=pricer.violation(idx) == 0, repaired=extra.get("repair_moves", 0) > 0,
        filled=extra.get("fill_moves", 0) > 0, derived_arch=str(space.from_indices(first)),
        derived_latency_ms=pricer.latency(first), out_dir=str(out), extra=extra)
    _write_json(out / "result.json", result.as_dict())
    progress.stderr(f"found {arch}: {cost.latency_ms:.3f} ms (budget {config.budgets.latency_ms:g}), SRAM "
                    f"{cost.sram_bytes / KB:.1f} kB, flash {cost.flash_bytes / KB:.1f} kB; proxy accuracy "
                    f"{best['score']['accuracy']:.4f} (best of {scorer.scored} children {how})")
    return result


def _derive(space, lut, config, pricer: Pricer, probs, out: Path, floor: ArchCost, history) -> SearchResult:
    derived, idx, repairs, fills, repaired_latency = _argmax_answer(space, config, pricer, probs)
    arch: Arch = space.from_indices(idx)
    cost = pricer.cost(idx)
    feasible = pricer.violation(idx) == 0
    result = SearchResult(
        arch=str(arch), cost=cost, budgets=config.budgets.as_dict(), device=lut.device, lut_sha256=lut.sha256,
        feasible=feasible, repaired=repairs > 0, filled=fills > 0,
        derived_arch=str(space.from_indices(derived)), derived_latency_ms=pricer.latency(derived),
        out_dir=str(out),
        extra={"repair_moves": repairs, "fill_moves": fills, "repaired_latency_ms": repaired_latency,
               "floor_latency_ms": floor.latency_ms, "model_flash_budget_bytes": pricer.model_flash_bytes,
               "expected_latency_ms": history[-1]["expected_latency_ms"] if history else None,
               "space": space.name, "seed": config.seed})
    _write_json(out / "result.json", result.as_dict())
    progress.stderr(f"found {arch}: {cost.latency_ms:.3f} ms (budget {config.budgets.latency_ms:g}), SRAM "
                    f"{cost.sram_bytes / KB:.1f} kB, flash {cost.flash_bytes / KB:.1f} kB"
                    + (f", repaired in {repairs} move(s)" if repairs else "")
                    + (f", filled in {fills} move(s)" if fills else ""))
    return result
