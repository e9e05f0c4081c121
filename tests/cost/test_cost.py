"""Cost models on LUT fixtures: exact, vectorised and expected latency agree; LUT validation; SRAM planner."""

import json

import numpy as np
import pytest
from lut_fixtures import fixture_lut

from edgenas_keras import lut as lutmod
from edgenas_keras.cost.estimate import LatencyTables, arch_latency_ms, plan_greedy, planned_bytes
from edgenas_keras.errors import MissingLutKeysError, UserError
from edgenas_keras.cost.graph import arch_graph, reachable_keys
from edgenas_keras.arch.space import FACTORS, SearchSpace


@pytest.fixture(scope="module")
def space():
    return SearchSpace.load()


@pytest.fixture(scope="module")
def lut(space):
    return fixture_lut(space)


@pytest.fixture(scope="module")
def tables(space, lut):
    return LatencyTables.from_lut(space, lut)


def onehot_probs(space, arch):
    idx = space.to_indices(arch)
    return [[np.eye(len(s.choices[f]))[idx[i, j]] for j, f in enumerate(FACTORS)] for i, s in enumerate(space.slots)]


def test_vectorised_equals_loop(space, lut, tables):
    archs = space.sample(500, seed=11)
    vec = tables.batch_latency_ms(space, np.stack([space.to_indices(a) for a in archs]))
    loop = np.array([arch_latency_ms(space, a, lut) for a in archs])
    np.testing.assert_allclose(vec, loop, rtol=1e-9)
    assert loop.std() > 0.1 * loop.mean()  # the fixture prices architectures differently


def test_expected_latency_one_hot_is_exact(space, lut, tables):
    from edgenas_keras.search.objective import ExpectedLatency

    e_tf = ExpectedLatency(tables, space)
    for arch in space.sample(20, seed=12):
        exact = arch_latency_ms(space, arch, lut)
        probs = onehot_probs(space, arch)
        assert abs(tables.expected_ms(space, probs) - exact) / exact < 1e-9
        assert abs(float(e_tf(probs)) - exact) / exact < 1e-6


def test_expected_latency_matches_monte_carlo(space, tables):
    """Channel coupling through skips is exact: E[LAT] equals the mean over sampled architectures."""
    rng = np.random.default_rng(0)
    probs = []
    for s in space.slots:
        row = []
        for f in FACTORS:
            p = rng.dirichlet(np.ones(len(s.choices[f])))
            if f == "op" and not s.skip_legal:
                p[s.choices["op"].index("skip")] = 0
                p /= p.sum()
            row.append(p)
        probs.append(row)
    n = 40_000
    idx = np.stack([np.stack([rng.choice(len(p), size=n, p=p) for p in row], axis=1) for row in probs], axis=1)
    mc = tables.batch_latency_ms(space, idx)
    assert abs(mc.mean() - tables.expected_ms(space, probs)) < 4 * mc.std() / np.sqrt(n)


def test_missing_keys_error_lists_keys_and_command(space, lut):
    arch = space.sample(seed=5)
    keys = arch_graph(space, arch).keys
    partial = lutmod.Lut(lut.metadata, {k: v for k, v in lut.entries.items() if k != keys[1]}, source="x.json")
    with pytest.raises(MissingLutKeysError) as e:
        arch_latency_ms(space, arch, partial)
    assert keys[1] in str(e.value) and "edgenas lut build --device fixture-m7" in str(e.value)


def test_clock_rescales_cycle_tables(space, lut):
    arch = space.sample(seed=6)
    assert arch_latency_ms(space, arch, lut.with_clock(240)) == pytest.approx(2 * arch_latency_ms(space, arch, lut))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(version=2), "version 2 is not supported"),
    (lambda d: d["metadata"].pop("clock_mhz"), "lacks required field 'clock_mhz'"),
    (lambda d: d["entries"][3].update(value=-1), "entries[3]"),
    (lambda d: d["entries"][4].update(value=float("inf")), "entries[4]"),
    (lambda d: d["entries"].append(dict(d["entries"][0])), "duplicate key"),
    (lambda d: d["metadata"].update(unit="ms"), "metadata.unit"),
])
def test_lut_loader_validates(tmp_path, lut, mutate, message):
    doc = json.loads(lut.dumps())
    mutate(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(UserError) as e:
        lutmod.load(p)
    assert message in str(e.value) and str(p) in str(e.value)


def test_lut_save_load_round_trip(tmp_path, lut, space):
    sha = lut.save(tmp_path / "l.json")
    back = lutmod.load(tmp_path / "l.json")
    assert back.sha256 == sha and back.entries == lut.entries
    assert set(reachable_keys(space)) <= set(back.entries)


def test_greedy_planner_reuses_dead_buffers():
    # a (0..1) and c (2..3) never live together: c reuses a's place; b (1..2) overlaps both.
    assert plan_greedy([100, 50, 100], [(0, 1), (1, 2), (2, 3)]) == 112 + 64
    # everything alive at once stacks up
    assert plan_greedy([32, 32, 32], [(0, 2), (0, 2), (0, 2)]) == 96


def test_residual_input_stays_alive_across_its_block(space):
    from edgenas_keras.arch.space import decode

    with_res = arch_graph(space, decode("dws_k3_c16-" + "-".join(["dws_k3_c16"] * 6)))
    # block 1 (stride 1, 16 -> 16 channels) ends in ADD reading the block input: three 48x48x16 tensors live
    adds = [n for n in with_res.nodes if n.spec.op == "ADD"]
    assert adds and planned_bytes(with_res) >= 3 * 48 * 48 * 16
