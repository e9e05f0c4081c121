"""Accuracy evidence in the search (edgenas_keras.search.selection): the window sampler and the evolution keep every
candidate inside [window_low * B, B] and every budget and find the best child of a crafted score; a child's
recomputed BN statistics are those of its calibration images; a proxy search returns the child whose
inherited weights score best (re-scored here independently from the checkpoint); the evolution strategy
returns an architecture in the window; a bad strategy is refused."""

import json

import numpy as np
import pytest
from search_support import small_config

from edgenas_keras.cost.estimate import arch_cost
from edgenas_keras.errors import UserError
from edgenas_keras.budgets import Budgets
from edgenas_keras.search.derive import Pricer
from edgenas_keras.search import SearchConfig, run_search
from edgenas_keras.search.loop import _latency_tables, reader_data
from edgenas_keras.search.selection import ChildScorer, Window, evolve, one_hot_gates
from edgenas_keras.arch.space import decode


def _pricer(space, lut, budget, sram_bytes=None, **kw):
    cfg = SearchConfig(budgets=Budgets(budget, sram_bytes), **kw)
    return Pricer(space, lut, cfg, _latency_tables(space, lut, cfg)[0])


def _mid_budget(space, lut):
    """A budget a third of the way up the latencies of 2,000 uniform samples of the space."""
    pricer_all = _pricer(space, lut, 1e9)
    lats = np.sort([pricer_all.latency(space.to_indices(a)) for a in space.sample(2000, seed=4)])
    return float(lats[len(lats) // 3])


def _window_search(space, lut, data_dir, out, **config):
    """A search at a mid budget B with the window [0.7 B, B] (``config``: the rest of ``small_config``'s
    fields); its architecture is checked feasible and in the window. (result, B, the configuration)."""
    budget = _mid_budget(space, lut)
    cfg = small_config(latency_ms=budget, window_low=0.7, **config)
    r = run_search(data_dir, lut, cfg, out, space=space)
    lat = arch_cost(space, decode(r.arch), lut).latency_ms
    assert r.feasible and 0.7 * budget <= lat <= budget
    return r, budget, cfg


def test_window_sampler_and_evolution_stay_in_the_window_and_find_better_children(space, lut):
    budget = _mid_budget(space, lut)
    sram = int(np.median([arch_cost(space, a, lut).sram_bytes for a in space.sample(40, seed=3)]))
    pricer = _pricer(space, lut, budget, sram_bytes=sram)   # a memory budget that binds about half the time
    window = Window(pricer, 0.8)
    uniform = [space.to_indices(a) for a in space.sample(400, seed=6)]
    inside = sum(window.contains(i) for i in uniform)
    assert inside < 0.3 * len(uniform)   # the window is a real restriction

    rng = np.random.default_rng(0)
    samples = window.sample(200, rng)
    assert len(samples) == 200
    for s in samples[:30]:
        c = arch_cost(space, space.from_indices(s), lut)
        assert 0.8 * budget <= c.latency_ms <= budget and c.sram_bytes <= sram

    # A crafted score: the wider the last convolution and the more 5x5+ kernels, the better.
    def crafted(idx):
        a = space.from_indices(idx)
        convs = [b for b in a.blocks if b.op != "skip"]
        value = (convs[-1].channels if convs else 0) + 4 * sum(b.kernel >= 5 for b in convs)
        return {"accuracy": value / 1000.0, "ce": -value, "images": 1}

    sampled = sorted(crafted(i)["accuracy"] for i in samples)
    scored = evolve(window, crafted, [], candidates=60, population=8, rng=rng)
    assert len(scored) == 60
    assert all(window.contains(r["idx"]) for r in scored)
    assert len({r["idx"].tobytes() for r in scored}) == len(scored)
    assert scored[0]["score"]["accuracy"] == max(r["score"]["accuracy"] for r in scored)
    assert scored[0]["score"]["accuracy"] >= sampled[int(0.95 * len(sampled))]   # top 5% of 200 window samples
    assert sum(r["generation"] > 0 for r in scored) >= 40   # most candidates bred, not drawn


def test_recomputed_bn_statistics_are_those_of_the_calibration_images(space):
    from edgenas_keras.model.supernet import Supernet

    net = Supernet(space)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 32, 32, 3)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int32)
    idx = space.to_indices(space.sample(seed=11))
    gates = one_hot_gates(space, idx)
    scorer = ChildScorer(net, space, [x[:8], x[8:]], [(x, y)])
    pooled = scorer.bn_stats(gates)
    whole = net.forward(x, gates)[1]              # batch statistics of all 16 images at once
    assert len(pooled) == len(whole) == 1 + sum(2 + ("ir" in s.ops) for s in space.slots)
    # The stem's input is the images themselves: pooled moments equal those of all 16 at once. Deeper inputs
    # were normalised per half batch while pooling, so they agree closely, not exactly.
    np.testing.assert_allclose(pooled[0][0].numpy(), whole[0][0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pooled[0][1].numpy(), whole[0][1].numpy(), rtol=0.1, atol=1e-4)
    for (m, v), (m2, v2) in zip(pooled, whole):
        np.testing.assert_allclose(m.numpy(), m2.numpy(), rtol=0.05, atol=0.01)
        np.testing.assert_allclose(v.numpy(), v2.numpy(), rtol=0.15, atol=0.01)
    # Scored on its own calibration batch, the child's logits equal those with batch statistics.
    fixed = net.forward(x, gates, bn_stats=ChildScorer(net, space, [x], [(x, y)]).bn_stats(gates))[0]
    np.testing.assert_allclose(fixed.numpy(), net.forward(x, gates)[0].numpy(), rtol=0.05, atol=0.05)
    s = scorer.score(idx)
    assert s["images"] == 16 and 0 <= s["accuracy"] <= 1 and s["ce"] > 0


def _restored_net(space, out):
    import tensorflow as tf

    from edgenas_keras.model.supernet import Supernet

    net = Supernet(space)
    tf.train.Checkpoint(net=net).restore(tf.train.latest_checkpoint(str(out / "ckpt"))).expect_partial()
    return net


@pytest.mark.slow
def test_proxy_derivation_returns_the_child_whose_inherited_weights_score_best(space, lut, data_dir, tmp_path):
    r, budget, cfg = _window_search(space, lut, data_dir, tmp_path / "s", derive="proxy", candidates=10,
                                    population=4, bn_batches=1, score_batches=2)
    assert r.cost.latency_ms <= budget and r.cost.latency_ms >= 0.7 * budget
    rows = json.loads((tmp_path / "s" / "candidates.json").read_text())
    assert 2 <= len(rows) <= 11 and rows[0]["arch"] == r.arch
    assert all(0.7 * budget <= row["latency_ms"] <= budget for row in rows)
    assert r.extra["alpha_arch"] and "alpha_arch_accuracy" in r.extra
    # Re-score every candidate from the checkpoint, independently of the search's scorer.
    net = _restored_net(space, tmp_path / "s")
    data = reader_data(data_dir, cfg, space.resolution, space.in_channels)
    calib = [x for x, _ in data.train(0).take(1)]
    held = list(data.val(0).take(2))
    scores = {}
    for row in rows:
        gates = one_hot_gates(space, space.to_indices(decode(row["arch"])))
        per = [net.forward(x, gates)[1] for x in calib]
        stats = [(m, v) for (m, v) in per[0]]
        correct = n = 0
        for x, y in held:
            logits = net.forward(x, gates, bn_stats=stats)[0].numpy()
            correct += int((logits.argmax(-1) == y.numpy()).sum())
            n += len(y)
        scores[row["arch"]] = correct / n
        assert row["accuracy"] == pytest.approx(correct / n, abs=1e-6)
    assert scores[r.arch] == max(scores.values())


@pytest.mark.slow
def test_evolution_strategy_returns_an_architecture_in_the_window(space, lut, data_dir, tmp_path):
    r, _, _ = _window_search(space, lut, data_dir, tmp_path / "e", strategy="evolution", candidates=8,
                             population=4, bn_batches=1, score_batches=1)
    hist = json.loads((tmp_path / "e" / "history.json").read_text())
    assert all(h["val_ce"] is None for h in hist)   # no alpha steps: the supernet trained window paths only
    assert r.extra["strategy"] == "evolution" and r.extra["candidates_scored"] == 8


def test_bad_strategy_and_window_are_refused():
    with pytest.raises(UserError, match="strategy must be one of"):
        SearchConfig(budgets=Budgets(10.0), strategy="random")
    with pytest.raises(UserError, match="derive must be one of"):
        SearchConfig(budgets=Budgets(10.0), derive="best")
    with pytest.raises(UserError, match="window_low"):
        SearchConfig(budgets=Budgets(10.0), window_low=1.5)


def test_pipeline_config_validates_the_strategy_fields():
    from pipeline.config import default_text, loads

    def with_search(extra):   # the default job with these search: fields set (replacing the default's)
        import yaml

        doc = yaml.safe_load(default_text())
        doc["search"].update(yaml.safe_load(extra))
        return loads(yaml.safe_dump(doc), "job.yaml")

    assert with_search("  strategy: evolution\n  candidates: 32\n").search["strategy"] == "evolution"
    with pytest.raises(UserError, match=r"job.yaml: search.strategy must be one of"):
        with_search("  strategy: bogus\n")
    with pytest.raises(UserError, match=r"job.yaml: search.window_low must be a number in \[0, 1\)"):
        with_search("  window_low: 1.2\n")
    with pytest.raises(UserError, match=r"search.population must be an integer >= 2"):
        with_search("  population: 1\n")


@pytest.mark.slow
def test_trained_fitness_evolution_returns_the_best_trained_child_and_resumes(space, lut, data_dir, tmp_path):
    from edgenas_keras.search.selection import train_and_score

    out = tmp_path / "t"
    r, budget, cfg = _window_search(space, lut, data_dir, out, strategy="evolution", fitness="trained",
                                    fitness_steps=3, candidates=5, population=3, score_batches=2)
    assert r.extra["fitness"] == "trained" and r.extra["candidates_scored"] == 5
    assert not (out / "ckpt").exists() and not (out / "history.json").exists()   # no supernet was trained
    rows = json.loads((out / "candidates.json").read_text())
    assert len(rows) == 5 and rows[0]["arch"] == r.arch
    assert rows[0]["accuracy"] == max(row["accuracy"] for row in rows)
    assert all(0.7 * budget <= row["latency_ms"] <= budget and row["images"] == 2 * 8 for row in rows)
    # The pick's score is a short stand-alone training: retrained here from the same seed, it scores the same.
    data = reader_data(data_dir, cfg, space.resolution, space.in_channels)
    again = train_and_score(space, decode(r.arch), data, space.resolution, 3, 2, cfg.seed)
    assert again["accuracy"] == pytest.approx(rows[0]["accuracy"]) and again["ce"] == pytest.approx(rows[0]["ce"])
    # Interrupted after scoring (no result yet, a half-written last line): the rerun retrains nothing.
    log = out / "fitness.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) == 5
    (out / "result.json").unlink()
    with log.open("a") as f:
        f.write('{"arch": "skip-dws_k3')
    r2 = run_search(data_dir, lut, cfg, out, space=space)
    assert r2.arch == r.arch and log.read_text().splitlines() == lines   # nothing retrained; the stub dropped


@pytest.mark.slow
def test_finalists_are_trained_longer_and_the_longer_training_decides(space, lut, data_dir, tmp_path):
    """With ``finalists: 2`` the two best by the fitness are trained again for ``finalist_steps`` (cosine decay,
    BN recomputed, as the fitness switches say) and the pick is the better of those two scores, each of which
    a stand-alone ``train_and_score`` reproduces; the rerun trains nothing."""
    from edgenas_keras.search.selection import train_and_score

    out = tmp_path / "f"
    r, budget, cfg = _window_search(space, lut, data_dir, out, strategy="evolution", fitness="trained",
                                    fitness_steps=2, candidates=4, population=2, score_batches=2, finalists=2,
                                    finalist_steps=5, fitness_lr_decay=True, fitness_bn_batches=2)
    rows = json.loads((out / "candidates.json").read_text())
    finalists = [row for row in rows if "finalist_accuracy" in row]
    assert [row["arch"] for row in finalists] == [row["arch"] for row in rows[:2]]
    best = min(finalists, key=lambda row: (-row["finalist_accuracy"], row["finalist_ce"]))
    assert r.arch == best["arch"] and r.extra["finalists"] == 2 and r.extra["finalist_steps"] == 5
    assert r.extra["fitness_rank_of_pick"] == rows.index(best)
    data = reader_data(data_dir, cfg, space.resolution, space.in_channels)
    for row in finalists:
        again = train_and_score(space, decode(row["arch"]), data, space.resolution, 5, 2, cfg.seed,
                                lr_decay=True, recalibrate_bn=2)
        assert again["accuracy"] == pytest.approx(row["finalist_accuracy"])
        assert again["ce"] == pytest.approx(row["finalist_ce"])
    lines = (out / "finalists.jsonl").read_text().splitlines()
    assert len(lines) == 2
    (out / "result.json").unlink()
    assert run_search(data_dir, lut, cfg, out, space=space).arch == r.arch
    assert (out / "finalists.jsonl").read_text().splitlines() == lines   # nothing retrained


def test_trained_fitness_needs_the_evolution_strategy():
    with pytest.raises(UserError, match="fitness 'trained' needs strategy 'evolution'"):
        SearchConfig(budgets=Budgets(10.0), fitness="trained")
    with pytest.raises(UserError, match="fitness must be one of"):
        SearchConfig(budgets=Budgets(10.0), strategy="evolution", fitness="supernet")
    with pytest.raises(UserError, match="fitness_steps must be an integer >= 1"):
        SearchConfig(budgets=Budgets(10.0), strategy="evolution", fitness="trained", fitness_steps=0)
    with pytest.raises(UserError, match="fitness_lr_decay must be true or false, got 'yes'"):
        SearchConfig(budgets=Budgets(10.0), strategy="evolution", fitness="trained", fitness_lr_decay="yes")
    for name in ("fitness_bn_batches", "finalists"):
        for bad in (-1, 1.5, True):
            with pytest.raises(UserError, match=f"{name} must be an integer >= 0"):
                SearchConfig(budgets=Budgets(10.0), strategy="evolution", fitness="trained", **{name: bad})
    with pytest.raises(UserError, match="finalist_steps must be an integer >= 1"):
        SearchConfig(budgets=Budgets(10.0), strategy="evolution", finalists=2, finalist_steps=0)
    with pytest.raises(UserError, match="finalists need strategy 'evolution' or derive 'proxy'"):
        SearchConfig(budgets=Budgets(10.0), finalists=2)


def test_train_and_score_recomputes_bn_statistics_and_decays_the_learning_rate(space, lut, data_dir):
    """With ``recalibrate_bn`` the score is taken with BN statistics recomputed on training batches (the
    moving averages of a few steps at momentum 0.99 are mostly their initial 0/1), so it differs from the
    moving-average score of the same training; with ``lr_decay`` the same seed trains to other weights; the
    per-batch sums add up to the totals."""
    from edgenas_keras.search.selection import train_and_score

    cfg = small_config(latency_ms=_mid_budget(space, lut))
    data = reader_data(data_dir, cfg, space.resolution, space.in_channels)
    arch = space.sample(1, seed=2)[0]
    moving = train_and_score(space, arch, data, space.resolution, 4, 2, 0)
    recomputed = train_and_score(space, arch, data, space.resolution, 4, 2, 0, recalibrate_bn=2)
    decayed = train_and_score(space, arch, data, space.resolution, 4, 2, 0, lr_decay=True)
    assert recomputed["ce"] != pytest.approx(moving["ce"], abs=1e-6)
    assert decayed["ce"] != pytest.approx(moving["ce"], abs=1e-6)
    for r in (moving, recomputed, decayed):
        assert len(r["batches"]) == 2 and sum(b[2] for b in r["batches"]) == r["images"]
        assert sum(b[0] for b in r["batches"]) / r["images"] == pytest.approx(r["accuracy"])


def test_trained_fitness_without_a_full_training_batch_is_a_user_error(space, lut, data_dir, tmp_path):
    cfg = small_config(latency_ms=_mid_budget(space, lut), strategy="evolution", fitness="trained",
                       fitness_steps=1, candidates=2, population=2, window_low=0.7, batch_size=512)
    with pytest.raises(UserError, match="at least one full batch of the search's training subset"):
        run_search(data_dir, lut, cfg, tmp_path / "t", space=space)


def test_trained_scorer_trains_one_architecture_once_whatever_its_index_form(space, lut, data_dir, tmp_path):
    """Two index forms of one architecture (a skip block's unused factors set or not) share one score: the
    cache is keyed by the canonical form, so the second is not trained again (one log line)."""
    from edgenas_keras.arch.space import FACTORS
    from edgenas_keras.search.selection import TrainedScorer, canonical_indices

    cfg = small_config(latency_ms=1e6)
    data = reader_data(data_dir, cfg, space.resolution, space.in_channels)
    scorer = TrainedScorer(space, data, space.resolution, 1, 1, 0, log_path=tmp_path / "fitness.jsonl")
    skip_slot = next(i for i, s in enumerate(space.slots) if "skip" in s.ops)
    idx = space.to_indices(space.sample(1, seed=2)[0])
    idx[skip_slot, 0] = space.slots[skip_slot].choices["op"].index("skip")
    canonical = canonical_indices(space, idx)
    other = canonical.copy()
    other[skip_slot, 1:] = [len(space.slots[skip_slot].choices[f]) - 1 for f in FACTORS[1:]]
    assert not np.array_equal(other, canonical) and space.from_indices(other) == space.from_indices(canonical)
    first = scorer.score(canonical)
    assert scorer.score(other) is first and scorer.scored == 1
    assert len((tmp_path / "fitness.jsonl").read_text().splitlines()) == 1
