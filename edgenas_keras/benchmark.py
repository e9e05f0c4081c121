"""Reusable pieces of the paper's evaluation (``bench/paper_tables.py``): baselines, equal-compute random
search, a store of trained networks reused across runs, CPU-second accounting of the search, and the
statistics the tables report. No TensorFlow at import; nothing here imports tfx, kfp or apache_beam.

Baselines, all priced by the same exact cost models as the search (``search.Pricer``: the LUT's latency, the
predicted TFLM arena and the model's flash):

- **Hand-designed networks mapped into the space** (``HAND_DESIGNED``): each published network's blocks are
  assigned to our searchable blocks by the feature-map resolution they run at (a stride-2 block takes the
  first, strided block of the published stage that halves the map there; a stride-1 block the next block of
  that stage), and each published choice is snapped to the nearest choice the space allows (ties to the
  larger): expansion 3 -> 4, 4.5 -> 4, 40 channels -> 48, kernel 3/5/7 kept, SE reduction 4 kept,
  hard-swish -> ReLU6 (the space's only activation). A published expansion of 1 (a depthwise conv followed by
  a pointwise projection) is our ``dws``. Each network's ``mapping`` says what was kept and what changed.
- **Scaled to the budget** (``scale_to_budget``): one width multiplier for every block, the published
  channel counts times the multiplier snapped to the space's choices (clamped to its smallest and largest);
  the largest multiplier on a grid of quarter-octaves from 4 down to 1/8 whose architecture meets every
  budget. When even the narrowest does not fit, the expansions go to the space's smallest; then depth is
  scaled too: stride-1 blocks become skip one at a time, highest feature-map resolution first (the
  costliest), each time with the widest multiplier that fits (``skipped_blocks``); past that, kernels,
  then SE go to the cheapest choices (``reductions``).
- **Fill** (``fill_from_cheapest``): the search's own fill step (``search.fill``) started from the space's
  cheapest architecture with no preference (all log-probabilities equal): upgrades in the space's fixed
  order, block by block, while every budget holds. The "largest that fits" without any learning.
- **Random search at equal compute** (``window_sampler`` + ``selection.train_and_score``): architectures drawn close to
  uniformly from those whose latency lies in [``lo`` B, B] and that meet every other budget (a random walk
  restricted to that window: uniform draws from the whole space almost never land in it); each one is scored by a short proxy the search could use: ``steps`` weight steps from
  scratch on the search's training subset at the search's training resolution, then top-1 on the search's
  validation subset (``search.reader_data``: the eval split is never read). The caller keeps drawing while
  the CPU seconds spent (sampling and scoring) are below the search's, then retrains the best. Against a
  search with ``fitness: trained`` the proxy is the search's own (its steps, resolution and validation
  batches), so both spend their seconds on the same kind of evidence.

Statistics: ``mean_ci`` (Student t interval, ``scipy.stats.t``) and ``paired_diff`` (the same over per-seed
differences, in accuracy points).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgenas_keras._fs import atomic_write_json
from edgenas_keras.arch.space import Arch, Block, SearchSpace, decode, encode

# -- hand-designed networks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandNet:
    """A published network mapped onto the 7 searchable blocks: per block (op, kernel, expansion, SE
    reduction, published output channels). ``expansion`` is the published ratio (snapped to the space's
    choices); ``channels`` the published width (scaled by ``scale_to_budget``)."""

    name: str
    source: str
    blocks: tuple[tuple[str, int, float | None, int, int], ...]
    mapping: str


HAND_DESIGNED: dict[str, HandNet] = {n.name: n for n in (
    HandNet(
        "mobilenet-v1", "Howard et al. 2017, Table 1 (MobileNetV1, 224 px; the same layers at 96 px)",
        (("dws", 3, None, 0, 64), ("dws", 3, None, 0, 128), ("dws", 3, None, 0, 128), ("dws", 3, None, 0, 256),
         ("dws", 3, None, 0, 256), ("dws", 3, None, 0, 512), ("dws", 3, None, 0, 512)),
        "every block dws k3 (depthwise 3x3 + pointwise), no SE; channels of the layers at the same feature-map "
        "resolution (64 @48, 128 @24, 256 @12, 512 @6); MobileNetV1's extra 512-channel layers and its 1024 "
        "stage at 3 px have no block here"),
    HandNet(
        "mobilenet-v2", "Sandler et al. 2018, Table 2 (MobileNetV2)",
        (("dws", 3, None, 0, 16), ("ir", 3, 6, 0, 24), ("ir", 3, 6, 0, 24), ("ir", 3, 6, 0, 32),
         ("ir", 3, 6, 0, 32), ("ir", 3, 6, 0, 64), ("ir", 3, 6, 0, 96)),
        "first bottleneck (t=1: depthwise + projection) as dws k3; the rest ir k3 e6, no SE; channels of the "
        "stages at the same resolution (16 @48, 24 @24, 32 @12, 64 and 96 @6); the 160/320 stages at 3 px "
        "have no block here"),
    HandNet(
        "mobilenet-v3-small", "Howard et al. 2019, Table 2 (MobileNetV3-Small)",
        (("dws", 3, None, 4, 16), ("ir", 3, 4.5, 0, 24), ("ir", 3, 88 / 24, 0, 24), ("ir", 5, 4, 4, 40),
         ("ir", 5, 6, 4, 40), ("ir", 5, 6, 4, 96), ("ir", 5, 6, 4, 96)),
        "bneck blocks in order: the first (expansion 1, SE) as dws k3 se4; expansion = exp size / input "
        "channels snapped (4.5 -> 4, 3.67 -> 4, 6); SE reduction 4 where the paper has SE; hard-swish -> "
        "ReLU6; the 48-channel stage is dropped (7 blocks for 11) and the 96 stage runs at 6 px"),
    HandNet(
        "mcunet", "MIT HAN Lab MCUNet backbone as published in their code (stage widths 16, 8, 16, 24, 40, 48, "
        "96; per-block expand and kernel lists); the mcunet-vww* JSON configs download at run time and were "
        "not available here, so this is the MCUNet backbone, not verified to be the VWW variant",
        (("dws", 3, None, 0, 8), ("ir", 7, 3, 0, 16), ("ir", 3, 5, 0, 16), ("ir", 5, 5, 0, 24),
         ("ir", 5, 5, 0, 24), ("ir", 3, 5, 0, 40), ("ir", 5, 5, 0, 48)),
        "stem ds-conv (8 channels) as dws k3; first two blocks of stage 16 (k7 e3, k3 e5), of stage 24 (k5 e5, "
        "k5 e5), the first of stage 40 (k3 e5) and of stage 48 (k5 e5); expansions snapped (3 -> 4, 5 -> 6); "
        "no SE; the 96-channel stage at 3 px has no block here"),
    HandNet(
        "proxylessnas-mobile", "Cai et al. 2019, ProxylessNAS-Mobile (block list as in pytorchcv's "
        "proxylessnas_mobile)",
        (("dws", 3, None, 0, 16), ("ir", 5, 3, 0, 32), ("ir", 3, 3, 0, 32), ("ir", 7, 3, 0, 40),
         ("ir", 3, 3, 0, 40), ("ir", 7, 6, 0, 80), ("ir", 5, 3, 0, 80)),
        "MB1 k3 as dws k3; the first two blocks of the 32 stage (MB3 k5, MB3 k3), of the 40 stage (MB3 k7, "
        "MB3 k3) and of the 80 stage (MB6 k7, MB3 k5); expansions snapped (3 -> 4, 6); no SE; the 96 stage and "
        "the 192/320 stages at 3 px have no block here"),
)}


def snap(value: float, choices) -> int:
    """The nearest of ``choices`` to ``value`` (ties to the larger)."""
    return min(choices, key=lambda c: (abs(c - value), -c))


WIDTHS = tuple(2 ** (k / 4) for k in range(8, -13, -1))   # 4.0 ... 0.125, quarter-octave steps
REDUCTIONS = ("expansion", "kernel", "se")


def skippable(space: SearchSpace) -> list[int]:
    """Blocks that may become skip (stride 1), highest feature-map resolution first (the costliest)."""
    return sorted((s.index for s in space.slots if s.skip_legal), key=lambda i: (-space.slots[i].in_res, i))


def hand_arch(space: SearchSpace, net: HandNet, width: float = 1.0, reductions: tuple[str, ...] = (),
              skips: int = 0) -> Arch:
    """``net``'s blocks in ``space`` with channels ``width`` x published (snapped, clamped), the first
    ``skips`` of ``skippable(space)`` replaced by skip, and the given ``reductions`` (factors set to the
    space's cheapest choice). ValueError when the space has another block count or forbids an operation."""
    if len(net.blocks) != space.num_blocks:
        raise ValueError(f"{net.name} maps onto {len(net.blocks)} blocks; space {space.name} has {space.num_blocks}")
    dropped = set(skippable(space)[:skips])
    blocks = []
    for slot, (op, k, e, se, c) in zip(space.slots, net.blocks):
        ch = slot.choices
        if slot.index in dropped:
            blocks.append(Block("skip"))
            continue
        if op not in slot.ops:
            raise ValueError(f"{net.name}: block {slot.index + 1} needs {op}, which space {space.name} forbids")
        kernel = min(ch["kernel"]) if "kernel" in reductions else snap(k, ch["kernel"])
        exp = None
        if op == "ir":
            exp = min(ch["expansion"]) if "expansion" in reductions else snap(e, ch["expansion"])
        nonzero = [r for r in ch["se"] if r > 0]
        if se and nonzero and ("se" not in reductions or 0 not in ch["se"]):
            red = snap(se, nonzero)
        else:
            red = 0 if 0 in ch["se"] else max(ch["se"])   # no SE, or the cheapest one the space forces
        blocks.append(Block(op, kernel, exp, red, snap(width * c, ch["channels"])))
    arch = Arch(tuple(blocks))
    space.check(arch)
    return arch


def scale_to_budget(space: SearchSpace, net: HandNet, fits: Callable[[Arch], bool]) -> tuple[Arch, dict]:
    """The widest uniform scaling of ``net`` that ``fits`` (module docstring). Levels, each with the largest
    width multiplier that fits: the published blocks; expansions at the space's smallest; then one more
    stride-1 block turned into skip at a time (highest resolution first); then kernels, then SE at the
    cheapest. Returns the architecture and ``{"width_multiplier", "skipped_blocks", "reductions", "fits"}``
    (``fits`` False: nothing fits, the cheapest variant is returned)."""
    order = skippable(space)
    levels = [((), 0)] + [(("expansion",), k) for k in range(len(order) + 1)]
    levels += [(("expansion", "kernel"), len(order)), (("expansion", "kernel", "se"), len(order))]
    seen: set[str] = set()
    for reductions, skips in levels:
        info = {"skipped_blocks": [i + 1 for i in order[:skips]], "reductions": list(reductions)}
        for w in WIDTHS:
            arch = hand_arch(space, net, w, reductions, skips)
            if str(arch) in seen:
                continue
            seen.add(str(arch))
            if fits(arch):
                return arch, {"width_multiplier": round(w, 4), **info, "fits": True}
    return arch, {"width_multiplier": round(WIDTHS[-1], 4), **info, "fits": False}


# -- fill and random search ------------------------------------------------------------------------------


def fill_from_cheapest(pricer) -> Arch:
    """The search's fill step from the space's cheapest architecture with no learned preference."""
    from edgenas_keras.search.derive import cheapest_indices, fill
    from edgenas_keras.arch.space import FACTORS

    space = pricer.space
    flat = np.zeros((space.num_blocks, len(FACTORS), max(len(v) for c in space.choices for v in c.values())))
    idx, _ = fill(pricer, cheapest_indices(space), flat)
    return space.from_indices(idx)


def fits_all(pricer, arch: Arch) -> bool:
    """Every budget of ``pricer``'s config holds for ``arch`` (exact cost models)."""
    return pricer.violation(pricer.space.to_indices(arch)) == 0


def window_sampler(pricer, lo: float, seed: int, burn_in: int = 200, thin: int = 20,
                   max_proposals: int = 2_000_000) -> Iterator[tuple[Arch, int]]:
    """Architectures with latency in [lo * B, B] that meet every budget, in a fixed order for ``seed``;
    yields (architecture, architectures priced so far).

    Uniform sampling of the space almost never lands there (on cortex-m7 at 96 px the space's 1st latency
    percentile is about 3x the main budget), so this is a random walk: start at the cheapest architecture,
    propose a change of one factor of one block (uniform over blocks, factors that apply, and other choices;
    a block leaving skip draws its other factors uniformly), accept a proposal that meets every budget and is
    in the window, or, while the walk is still below the window, is slower than the current one (or, one
    time in ten, any proposal that meets the budgets: a way out of a dead end). Inside the
    window the walk's stationary distribution is close to uniform over the window's architectures (the
    proposal is symmetric except around skip). Samples are taken every ``thin`` proposals after ``burn_in``
    proposals inside the window. ``UserError`` after ``max_proposals`` without a sample (an empty window)."""
    from edgenas_keras.errors import UserError
    from edgenas_keras.search.derive import cheapest_indices
    from edgenas_keras.arch.space import FACTORS

    space, budget = pricer.space, pricer.budgets.latency_ms
    rng = np.random.default_rng(seed)
    idx = cheapest_indices(space)
    lat = pricer.latency(idx)
    priced, inside = 0, 0

    def canonical(row, slot):
        op = slot.choices["op"][row[0]]
        if op == "skip":
            row[1:] = 0
        elif op == "dws":
            row[FACTORS.index("expansion")] = 0

    last_yield = 0
    while True:
        if priced - last_yield > max_proposals:
            raise UserError(f"no architecture of {space.name} found with latency in [{lo * budget:.4g}, "
                            f"{budget:.4g}] ms meeting every budget after {max_proposals} proposals")
        i = int(rng.integers(space.num_blocks))
        slot = space.slots[i]
        op = slot.choices["op"][idx[i, 0]]
        factors = [0] if op == "skip" else [j for j, f in enumerate(FACTORS) if not (f == "expansion" and op == "dws")]
        j = factors[int(rng.integers(len(factors)))]
        values = [n for n, v in enumerate(slot.choices[FACTORS[j]]) if n != idx[i, j] and (j or v in slot.ops)]
        if not values:
            continue
        cand = idx.copy()
        cand[i, j] = values[int(rng.integers(len(values)))]
        if j == 0 and op == "skip":       # leaving skip: draw the block's other factors
            for k in range(1, len(FACTORS)):
                cand[i, k] = int(rng.integers(len(slot.choices[FACTORS[k]])))
        canonical(cand[i], slot)
        priced += 1
        ms = pricer.latency(cand)
        in_window = lo * budget <= ms <= budget
        climbing = lat < lo * budget and ms <= budget and (ms > lat or rng.random() < 0.1)
        if (in_window or climbing) and pricer.violation(cand) == 0:
            idx, lat = cand, ms
        if lo * budget <= lat <= budget:
            inside += 1
            if inside > burn_in and (inside - burn_in) % thin == 0:
                last_yield = priced
                yield space.from_indices(idx), priced


# -- statistics ------------------------------------------------------------------------------------------


def mean_ci(values, confidence: float = 0.95) -> dict:
    """Mean and two-sided Student t interval of ``values``; the interval is None for fewer than 2 values."""
    from scipy import stats

    v = np.asarray(values, float)
    mean = float(v.mean()) if len(v) else None
    if len(v) < 2:
        return {"mean": mean, "ci95_low": None, "ci95_high": None, "n": len(v)}
    sem = float(v.std(ddof=1) / math.sqrt(len(v)))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * sem)
    return {"mean": mean, "ci95_low": mean - half, "ci95_high": mean + half, "n": len(v)}


def paired_diff(a: dict, b: dict) -> dict:
    """``a - b`` in accuracy points over the seeds both have (``a``, ``b``: seed -> fraction): mean and 95%
    t interval of the per-seed differences."""
    seeds = sorted(set(a) & set(b))
    s = mean_ci([100 * (a[k] - b[k]) for k in seeds])
    return {"mean_diff_points": s["mean"], "ci95_low": s["ci95_low"], "ci95_high": s["ci95_high"],
            "seeds": seeds}


# -- the store of trained networks -----------------------------------------------------------------------


def digest(obj) -> str:
    """The first 16 hex digits of the SHA-256 of ``obj`` as sorted JSON: the store key of a benchmark result."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, indent=1, sort_keys=True, default=float)


@dataclass
class Store:
    """Work folder of a benchmark: every trained network in ``nets/<key>`` (key: space, architecture, data
    fingerprint and training config, seed included), searches in ``searches/<key>``, random-search logs in
    ``random/<key>.json``. A rerun reuses what is finished; ``counts`` says how much was reused."""

    root: Path
    counts: dict = field(default_factory=lambda: {"networks_trained": 0, "networks_reused": 0,
                                                  "searches_run": 0, "searches_reused": 0,
                                                  "proxy_scored": 0, "proxy_reused": 0})
    progress: Callable[[str], None] = lambda _m: None

    def train(self, space: SearchSpace, arch: Arch | str, data_dir, data_fp: str, config) -> dict:
        """Train ``arch`` (``train.train_and_export``) unless this exact network is in the store; returns its
        ``metrics.json`` plus ``cpu_s`` (process CPU seconds of the training), ``out_dir`` and ``reused``."""
        from edgenas_keras.train import train_and_export

        arch = decode(arch) if isinstance(arch, str) else arch
        key = {"space": space.to_dict(), "arch": encode(arch), "data": data_fp, "train": config.to_dict()}
        out = self.root / "nets" / digest(key)
        done = out / "bench.json"
        if done.is_file() and (out / "metrics.json").is_file():
            self.counts["networks_reused"] += 1
            return {**json.loads((out / "metrics.json").read_text()), **json.loads(done.read_text()),
                    "out_dir": str(out), "reused": True}
        self.progress(f"training {encode(arch)} (seed {config.seed})")
        c0, w0 = time.process_time(), time.perf_counter()
        result = train_and_export(space, arch, data_dir, out, config)
        extra = {"cpu_s": round(time.process_time() - c0, 2), "wall_s": round(time.perf_counter() - w0, 2),
                 "key": key}
        _write_json(done, extra)
        self.counts["networks_trained"] += 1
        return {**result.metrics, **extra, "out_dir": str(out), "reused": False}

    def search(self, data_dir, lut, config, space: SearchSpace, data_fp: str):
        """``search.run_search`` in a folder keyed by its inputs, timed in CPU seconds: (result, cost) with
        cost ``{"supernet_cpu_s"`` (set-up and the weight-only warm-up epochs), ``"alpha_cpu_s"`` (the search
        epochs: alternating weight and alpha steps), ``"derivation_cpu_s"`` (argmax, repair, fill, exact
        pricing; with ``fitness: trained`` the whole search, every candidate's training included, since no
        supernet trains), ``"total_cpu_s"``, ``"alpha_steps"`` (0 unless ``strategy: differentiable``),
        ``"complete"`` (False when the search resumed from a checkpoint, so the figures cover only the resumed
        part)}."""
        from edgenas_keras.search import run_search

        key = {"search": config.as_dict(), "space": space.to_dict(), "lut": lut.sha256, "data": data_fp}
        out = self.root / "searches" / digest(key)
        cost_path = out / "cost.json"
        # alpha is stepped only by the differentiable strategy (evolution trains paths or no supernet at all)
        alpha_steps = ((config.steps_per_epoch or 0) * (config.epochs - config.warmup_epochs)
                       if config.strategy == "differentiable" else 0)
        if cost_path.is_file() and (out / "result.json").is_file():
            self.counts["searches_reused"] += 1
            cost = {**json.loads(cost_path.read_text()), "alpha_steps": alpha_steps}
            return run_search(data_dir, lut, config, out, space=space), cost
        resumed = (out / "ckpt").is_dir()
        marks: list[tuple[int, float]] = []
        self.progress(f"searching (seed {config.seed}, {out.name})")
        c0 = time.process_time()
        result = run_search(data_dir, lut, config, out, space=space,
                            on_epoch_end=lambda e: marks.append((e, time.process_time())))
        c_end = time.process_time()
        warm = [t for e, t in marks if e < config.warmup_epochs]
        last = marks[-1][1] if marks else c0
        supernet_end = warm[-1] if warm else (marks[0][1] if marks and config.warmup_epochs else c0)
        cost = {"supernet_cpu_s": round(supernet_end - c0, 2), "alpha_cpu_s": round(last - supernet_end, 2),
                "derivation_cpu_s": round(c_end - last, 2), "total_cpu_s": round(c_end - c0, 2),
                "alpha_steps": alpha_steps, "complete": not resumed}
        _write_json(cost_path, cost)
        self.counts["searches_run"] += 1
        return result, cost

    def random_search(self, pricer, data, resolution: int, key: dict, cpu_budget_s: float, lo: float,
                      steps: int, val_batches: int, seed: int, max_candidates: int = 500, lr_decay: bool = False,
                      recalibrate_bn: int = 0) -> dict:
        """Equal-compute random search (module docstring), logged candidate by candidate in
        ``random/<key>.json`` so an interrupted run continues; ``steps``, ``val_batches``, ``lr_decay`` and
        ``recalibrate_bn`` are ``selection.train_and_score``'s. Returns ``{"best", "best_score", "candidates",
        "cpu_s", "priced", "cpu_budget_s"}``."""
        path = self.root / "random" / f"{digest(key)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        log = json.loads(path.read_text()) if path.is_file() else {"key": key, "candidates": [], "priced": 0}
        spent = sum(c["cpu_s"] for c in log["candidates"])
        reused = len(log["candidates"])
        self.counts["proxy_reused"] += reused
        sampler = window_sampler(pricer, lo, seed)
        from edgenas_keras.search.selection import train_and_score

        for _ in range(reused):
            next(sampler)                         # the fixed order: skip what was scored already
        while (spent < cpu_budget_s or not log["candidates"]) and len(log["candidates"]) < max_candidates:
            c0 = time.process_time()
            arch, priced = next(sampler)
            score = train_and_score(pricer.space, arch, data, resolution, steps, val_batches, seed,
                                    lr_decay=lr_decay, recalibrate_bn=recalibrate_bn)["accuracy"]
            dt = time.process_time() - c0
            spent += dt
            log["candidates"].append({"arch": str(arch), "score": score, "cpu_s": round(dt, 3),
                                      "latency_ms": round(pricer.latency(pricer.space.to_indices(arch)), 4)})
            log["priced"] = priced
            self.counts["proxy_scored"] += 1
            _write_json(path, log)
            self.progress(f"random search seed {seed}: {len(log['candidates'])} scored, {spent:.0f}/"
                          f"{cpu_budget_s:.0f} CPU s")
        best = max(log["candidates"], key=lambda c: c["score"])
        return {"best": best["arch"], "best_score": best["score"], "candidates": len(log["candidates"]),
                "cpu_s": round(spent, 2), "priced": log["priced"], "cpu_budget_s": round(cpu_budget_s, 2)}


def load_average() -> list[float]:
    """``os.getloadavg()`` rounded (1, 5 and 15 minutes)."""
    return [round(x, 2) for x in os.getloadavg()]


__all__ = ["HAND_DESIGNED", "HandNet", "Store", "fill_from_cheapest", "fits_all", "hand_arch", "load_average",
           "mean_ci", "paired_diff", "scale_to_budget", "snap", "window_sampler"]
