"""bench/paper_tables.py at the smoke scale (240 synthetic images, 1+1 training epochs at 32 px, two seeds, one
device, one hand-designed network, one ablation), run twice on the same work folder.

Checked: the result file has the issue's fields ("The result file") with sane values, the paired comparison
is the one computed from the per-seed figures, the networks that claim to fit are within the budgets, and
the rerun trains nothing (the store's counters and the work folder's files). Not checked: which network is
more accurate, which needs the full schedule (the benchmark itself reports that).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(work: Path, out: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "paper_tables.py"), "--scale", "smoke", "--work", str(work),
           "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-4000:]
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == doc            # --out holds what was printed
    return doc


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def _check_network(n: dict, budget: dict, seeds: list[int]) -> None:
    assert n["seeds"] == seeds and len(n["accuracy_int8"]) == len(seeds)
    assert all(0.0 <= a <= 1.0 for a in n["accuracy_int8"])
    assert n["accuracy_int8_mean"] == pytest.approx(sum(n["accuracy_int8"]) / len(seeds))
    low, high = n["accuracy_int8_ci95"]
    assert low <= n["accuracy_int8_mean"] <= high
    assert n["latency_ms"] > 0 and n["sram_bytes"] > 0 and n["flash_bytes"] > 0
    if n["fits"]:
        assert n["latency_ms"] <= budget["budget_ms"]
        assert n["sram_bytes"] <= budget["sram_budget_bytes"]
        assert n["flash_bytes"] <= budget["flash_budget_bytes"]


def test_smoke_run_has_the_tables_and_a_rerun_trains_nothing(tmp_path):
    work, out = tmp_path / "work", tmp_path / "paper_tables.json"
    doc = _run(work, out)

    for key in ("command", "date", "machine", "load", "schedule", "data", "table1", "table2", "table3", "table4"):
        assert key in doc, key
    assert "paper_tables.py" in doc["command"] and "--scale smoke" in doc["command"]
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert len(doc["load"]["start"]) == 3 and len(doc["load"]["end"]) == 3
    assert doc["schedule"]["scale"] == "smoke" and doc["schedule"]["train"]["epochs"] == 1
    data = doc["data"]
    assert 0.5 <= data["majority_class_rate"] <= 1.0
    assert data["eval_images"] + data["train_images"] == 240
    assert isinstance(data["yardstick"]["spread_points"], float)

    t1 = doc["table1"]
    seeds = doc["schedule"]["seeds"]
    assert t1["device"] == "cortex-m7" and t1["budget_ms"] == 45.0 and t1["seeds"] == seeds == [0, 1]
    assert t1["eval_images"] == data["eval_images"]
    kinds = {n["kind"]: n for n in t1["networks"]}
    assert set(kinds) == {"edgenas", "random-search", "fill", "hand"}
    for n in t1["networks"]:
        _check_network(n, t1, seeds)
    for kind in ("edgenas", "random-search", "fill"):       # these are built to fit: they must
        assert kinds[kind]["fits"], kinds[kind]
    hand = kinds["hand"]
    assert hand["name"] == "mobilenet-v2" and hand["mapping"] and hand["scaling"]["width_multiplier"] > 0
    rs = kinds["random-search"]["random_search"]["per_seed"]
    assert all(r["candidates"] >= 1 and r["priced"] >= r["candidates"] for r in rs)
    # EdgeNAS minus random search, paired by seed, in points
    diffs = [100 * (a - b) for a, b in zip(kinds["edgenas"]["accuracy_int8"], kinds["random-search"]["accuracy_int8"])]
    vs = t1["edgenas_vs_random"]
    assert vs["mean_diff_points"] == pytest.approx(sum(diffs) / 2)
    assert vs["ci95_low"] <= vs["mean_diff_points"] <= vs["ci95_high"]

    t2 = doc["table2"]["devices"]
    assert [d["device"] for d in t2] == ["cortex-m7"] and t2[0]["budget_ms"] == 45.0
    t3 = doc["table3"]
    for row in t3["per_seed"]:
        assert row["search_cpu_s"] > 0 and row["retraining_cpu_s"] > 0
        assert row["search_cpu_s"] == pytest.approx(row["supernet_cpu_s"] + row["alpha_cpu_s"]
                                                    + row["derivation_cpu_s"], abs=0.05)
    assert t3["hil_equivalent"]["hil_s_per_arch"] > t3["hil_equivalent"]["lut_s_per_arch"] > 0
    ab = doc["table4"]["ablations"]
    assert [a["name"] for a in ab] == ["no-latency-penalty"] and ab[0]["override"] == {"penalty": False}
    assert set(ab[0]["full_minus_ablation"]) >= {"mean_diff_points", "ci95_low", "ci95_high"}
    _check_network(ab[0], t1, seeds)

    trained = doc["reuse"]["networks_trained"]
    assert trained >= 10                                   # 4 kinds x 2 seeds + yardstick + ablation
    before = _files(work / "nets")

    again = _run(work, out)
    assert again["reuse"]["networks_trained"] == 0
    assert again["reuse"]["networks_reused"] == trained + doc["reuse"]["networks_reused"]
    assert again["reuse"]["searches_run"] == 0 and again["reuse"]["proxy_scored"] == 0
    assert _files(work / "nets") == before                  # nothing retrained, rewritten or added
    same = ("name", "arch", "accuracy_int8", "latency_ms", "sram_bytes", "flash_bytes")
    assert [{k: n[k] for k in same} for n in again["table1"]["networks"]] == \
        [{k: n[k] for k in same} for n in doc["table1"]["networks"]]
    assert all(r["reused"] for n in again["table1"]["networks"] for r in n["per_seed"])

    # --markdown: the README's tables, rendered from the result file (no run)
    md = subprocess.run([sys.executable, str(ROOT / "bench" / "paper_tables.py"), "--markdown", str(out)],
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert md.returncode == 0, md.stderr[-2000:]
    text = md.stdout
    for title in ("Table 1:", "Table 2:", "Table 3:", "Table 4:"):
        assert title in text
    yard = doc["data"]["yardstick"]
    assert (f"largest `{yard['largest']['arch']}`" in text
            and f"spread {yard['spread_points']:.1f} points" in text)
    en_row = next(line for line in text.splitlines() if line.startswith("| edgenas "))
    assert f"{100 * kinds['edgenas']['accuracy_int8_mean']:.2f}" in en_row
    rs_row = next(line for line in text.splitlines() if line.startswith("| random-search "))
    assert f"{vs['mean_diff_points']:+.2f} ({vs['ci95_low']:+.2f}..{vs['ci95_high']:+.2f})" in rs_row
    assert "| no-latency-penalty " in text
    skipped = tmp_path / "no-yardstick.json"    # a run with --yardstick-seeds 0 renders too
    skipped.write_text(json.dumps({**doc, "data": {**doc["data"], "yardstick": {"skipped": "--yardstick-seeds 0"}}}))
    md0 = subprocess.run([sys.executable, str(ROOT / "bench" / "paper_tables.py"), "--markdown", str(skipped)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert md0.returncode == 0, md0.stderr[-2000:]
    assert "Yardstick not run (--yardstick-seeds 0)." in md0.stdout and "Table 1:" in md0.stdout
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "paper_tables.py"), "--markdown", str(broken)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith(f"error: {broken} is not a readable")


@pytest.mark.parametrize("setting, message", [
    ("strategy", "--search-set takes KEY=VALUE"),
    ("bogus=1", "--search-set: unknown field(s) bogus"),
    ("fitness=trained", "fitness 'trained' needs strategy 'evolution'"),
    ("fitness_steps=0", "fitness_steps must be an integer >= 1"),
])
def test_a_bad_search_setting_is_one_error_line_before_any_work(tmp_path, setting, message):
    work = tmp_path / "work"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "paper_tables.py"), "--work", str(work),
                        "--search-set", setting], capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-1]
    assert not work.exists()
