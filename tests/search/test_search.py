"""The constrained search end to end on a small space: the penalty and its schedule move E[LAT] under a tight
budget, impossible budgets are refused with their floors, and an interrupted search resumes to the same
architecture as an uninterrupted one (which also shows that a seed fixes the result)."""

import json

import pytest
import yaml
from search_support import BLOCKS, small_config

from edgenas_keras.budgets import Budgets
from edgenas_keras.cost.estimate import arch_cost
from edgenas_keras.search import SearchConfig, run_search
from edgenas_keras.search.derive import cheapest_indices
from edgenas_keras.arch.space import decode
from edgenas_keras.model.supernet import largest_arch
from pipeline.cli import main

pytestmark = pytest.mark.slow


def _tight_budget(space, lut):
    floor = arch_cost(space, space.from_indices(cheapest_indices(space)), lut).latency_ms
    ceil = arch_cost(space, largest_arch(space), lut).latency_ms
    return floor + 0.15 * (ceil - floor)


def test_penalty_off_stays_above_a_tight_budget_schedule_brings_it_under(space, lut, data_dir, tmp_path):
    budget = _tight_budget(space, lut)
    off = run_search(data_dir, lut, small_config(latency_ms=budget, penalty=False), tmp_path / "off", space=space)
    on = run_search(data_dir, lut, small_config(latency_ms=budget), tmp_path / "on", space=space)
    hist_off = json.loads((tmp_path / "off" / "history.json").read_text())
    hist_on = json.loads((tmp_path / "on" / "history.json").read_text())
    assert hist_off[-1]["expected_latency_ms"] > budget
    assert hist_on[-1]["expected_latency_ms"] <= budget
    assert hist_on[-1]["mu"] > hist_on[0]["mu"]  # the multiplier grew while the constraint was violated
    assert hist_off[-1]["mu"] == pytest.approx(1.0)
    for r in (off, on):  # derivation + repair: both returned architectures meet the budget exactly priced
        assert r.feasible and r.cost.latency_ms <= budget
        assert arch_cost(space, decode(r.arch), lut).latency_ms <= budget


def test_infeasible_budget_exits_2_and_states_the_floor(space, lut, tmp_path, capsys):
    lut_file = tmp_path / "lut.json"
    lut.save(lut_file)
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space.to_dict()))
    (tmp_path / "data").mkdir()
    rc = main(["search", "--data", str(tmp_path / "data"), "--lut", str(lut_file), "--space", str(space_file),
               "--latency-ms", "0.0001", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "below the floor" in err and "ms" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "result.json").exists()


def test_interrupted_search_resumes_to_the_same_architecture(space, lut, data_dir, tmp_path, capsys):
    budget = _tight_budget(space, lut) * 2
    settings = dict(epochs=3, warmup_epochs=1, steps_per_epoch=4, batch_size=8, train_resolution=None,
                    check_every=2, num_blocks=BLOCKS, seed=7)
    cfg_file = tmp_path / "search.yaml"
    cfg_file.write_text(yaml.safe_dump(settings))
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space.to_dict()))
    lut_file = tmp_path / "lut.json"
    lut.save(lut_file)
    # Uninterrupted, through the CLI.
    rc = main(["search", "--data", str(data_dir), "--lut", str(lut_file), "--space", str(space_file),
               "--latency-ms", str(budget), "--config", str(cfg_file), "--out", str(tmp_path / "a"), "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("arch", "latency_ms", "sram_bytes", "flash_bytes", "feasible"):
        assert key in printed
    assert printed["feasible"] and printed["latency_ms"] <= budget
    # Interrupted after the first epoch's checkpoint, then rerun with the same output folder.
    config = SearchConfig(budgets=Budgets(budget), **settings)

    def interrupt(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(data_dir, lut, config, tmp_path / "b", space=space, on_epoch_end=interrupt)
    assert not (tmp_path / "b" / "result.json").exists()
    resumed = run_search(data_dir, lut, config, tmp_path / "b", space=space)
    assert "resuming" in capsys.readouterr().err
    assert resumed.arch == printed["arch"]
    hist_a = json.loads((tmp_path / "a" / "history.json").read_text())
    hist_b = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["alpha"] for h in hist_a] == [h["alpha"] for h in hist_b]
