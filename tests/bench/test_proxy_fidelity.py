"""bench/proxy_fidelity.py on a small input the test builds: a paper_tables-shaped result with three networks
(one trained with a single seed), the smoke scale's synthetic data, 2-step proxies.

Checked: the rank correlations it reports are those of the scores it reports against the result's seed means,
the proxy's best is the network with the best score, --min-seeds drops the single-seed network, a rerun trains
nothing (the kept scores), and a bad --variants or --seeds is one error line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
ARCHS = {"skip-dws_k3_c16-skip-dws_k3_c16-skip-dws_k3_c16-skip": [0.80, 0.82],
         "dws_k3_c16-dws_k3_c16-dws_k3_c16-dws_k3_c32-dws_k3_c32-dws_k3_c64-dws_k3_c64": [0.90, 0.88],
         "skip-ir_k3_e2_c16-skip-ir_k5_e2_c16-skip-dws_k3_c24-skip": [0.85]}


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "bench" / "proxy_fidelity.py"), "--scale", "smoke", "--work",
           str(tmp_path / "work"), "--result", str(tmp_path / "result.json"), "--steps", "2",
           "--val-batches", "1,2", "--out", str(tmp_path / "out.json"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.slow
def test_reported_correlations_are_those_of_the_reported_scores(tmp_path):
    nets = [{"name": f"n{i}", "per_seed": [{"arch": a, "accuracy_int8": x} for x in acc]}
            for i, (a, acc) in enumerate(ARCHS.items())]
    (tmp_path / "result.json").write_text(json.dumps({"table1": {"networks": nets}}))
    variant = "cosine-lr/recomputed-bn"
    p = _run(tmp_path, "--variants", variant)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((tmp_path / "out.json").read_text())
    truth = {a: sum(v) / len(v) for a, v in ARCHS.items()}
    assert doc["truth"] == {a: round(t, 4) for a, t in truth.items()} and doc["networks"] == 3
    scores = doc["scores"][variant]
    archs = list(doc["truth"])
    s = [scores[a][0]["accuracy"] for a in archs]
    assert all(scores[a][0]["images"] == 2 * 16 for a in archs)   # two batches of the smoke scale's 16
    m = doc["variants"][variant]["accuracy@2b"]
    expected = stats.spearmanr(s, [truth[a] for a in archs]).statistic   # NaN when every score ties
    assert m["spearman"] == pytest.approx(expected, abs=1e-3, nan_ok=True)
    assert m["truth_of_proxy_best"] == round(truth[archs[s.index(max(s))]], 4)
    kept = sorted(p.name for p in (tmp_path / "work" / "fidelity").iterdir())
    assert len(kept) == 3
    # --min-seeds 2 keeps the two networks trained with two seeds; nothing is trained again
    p = _run(tmp_path, "--variants", variant, "--min-seeds", "2")
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((tmp_path / "out.json").read_text())
    assert set(doc["truth"]) == {a for a, v in ARCHS.items() if len(v) >= 2}
    assert sorted(p.name for p in (tmp_path / "work" / "fidelity").iterdir()) == kept


@pytest.mark.parametrize("args,message", [
    (("--variants", "cosine-lr"), "error: --variants: unknown cosine-lr"),
    (("--seeds", "0,x"), "error: --seeds and --val-batches take comma-separated integers"),
])
def test_bad_input_is_one_error_line(tmp_path, args, message):
    (tmp_path / "result.json").write_text("{}")
    p = _run(tmp_path, *args)
    last = p.stderr.strip().splitlines()[-1]   # the lines before it are TensorFlow's import-time warnings
    assert p.returncode == 2 and last.startswith(message)
    assert "Traceback" not in p.stderr and not (tmp_path / "out.json").exists()
