"""``edgenas report``: the HTML report of a run and of a benchmark result, rendered in headless Chromium.

The run folder is built here the way a pipeline run fills it, from real library calls on a small input: a
3-block space at 32x32 with its fixture LUT (labelled cortex-m7), synthetic data, a real search
(``history.json`` with the multipliers and alpha's entropy per block), two int8 models exported untrained
(the search's architecture and the space's cheapest; training takes minutes, tests/e2e/test_run.py reports
a trained one), each validated against the budgets in the TFLM runtime; the run's table is named
``cortex-m7`` in ``config.resolved.yaml``, so the report plots that shipped table's validation rows. The report is rendered by Chromium (``--screenshot``, ``--dump-dom``): the screenshot must be a real
picture, and the numbers of every figure, read from the rendered DOM, must be the ones recomputed here from
the run's files. A folder that is not a run is one ``error:`` line, exit 2, and no report.
"""

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.cli import main

CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                    "(scripts/setup.sh installs Debian's chromium as root)")
BUDGETS = {"latency_ms": None, "sram_bytes": 1024 * 1024, "flash_bytes": 4 * 1024 * 1024, "min_accuracy": 0.0}


def chromium(html: Path, tmp: Path) -> tuple[str, Path]:
    """The DOM after rendering (``--dump-dom``) and a 1200x2400 screenshot of ``html``."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={tmp / 'chromium-profile'}"]
    dom = subprocess.run([*base, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    png = tmp / "report.png"
    subprocess.run([*base, f"--screenshot={png}", "--window-size=1200,2400", html.as_uri()], capture_output=True,
                   timeout=120, check=True)
    return dom, png


def facts(dom: str) -> dict:
    """``data-fact`` name -> text, the first occurrence of each name (later sections may repeat a name)."""
    out = {}
    for m in re.finditer(r'<dd data-fact="(\w+)">([^<]*)</dd>', dom):
        out.setdefault(m.group(1), m.group(2))
    return out


def assert_picture(png: Path) -> None:
    from PIL import Image

    im = Image.open(png).convert("RGB")
    assert im.size == (1200, 2400)
    pixels = np.asarray(im)
    colours = {tuple(c) for c in pixels[::4, ::4].reshape(-1, 3)}
    assert len(colours) > 50, "the screenshot is nearly blank"
    assert (pixels.sum(-1) < 300).mean() > 0.005   # dark pixels: text and lines were drawn
    assert (np.abs(pixels.astype(int) - pixels.mean(-1, keepdims=True)).sum(-1) > 60).mean() > 0.0005  # colour


def assert_self_contained(html: str) -> None:
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r'\s(?:src|href)="(?!#)', html), "a resource outside the file"
    assert not re.search(r"url\((?!#)", html)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder laid out as a pipeline run's, filled by real library calls on a small input."""
    from lut_fixtures import fixture_lut

    from edgenas_keras.model.builder import build_model
    from edgenas_keras.cost.estimate import arch_cost
    from edgenas_keras.data.synth import SynthSpec, write_synth
    from edgenas_keras.model.export import calibrate_untrained, random_representative, to_int8_tflite
    from edgenas_keras.budgets import Budgets
    from edgenas_keras.search import SearchConfig, run_search, space_with_blocks
    from edgenas_keras.search.derive import cheapest_indices
    from edgenas_keras.arch.space import SearchSpace, decode
    from edgenas_keras.model.supernet import largest_arch
    from edgenas_keras.validate import validate_model

    tmp = tmp_path_factory.mktemp("report")
    space = space_with_blocks(SearchSpace.load().with_resolution(32), 3)
    lut = fixture_lut(space, device="cortex-m7")
    data = tmp / "data"
    write_synth(data, SynthSpec(n=160, seed=3, resolution=32))
    floor = arch_cost(space, space.from_indices(cheapest_indices(space)), lut).latency_ms
    ceil = arch_cost(space, largest_arch(space), lut).latency_ms
    budget = round(floor + 0.4 * (ceil - floor), 3)
    run = tmp / "run"
    root = run / "root"
    lut_dir = root / "LutImporter" / "lut" / "1"
    lut_dir.mkdir(parents=True)
    lut.save(lut_dir / "lut.json")
    search = root / "SupernetSearch" / "architecture" / "6"
    result = run_search(data, lut, SearchConfig(budgets=Budgets(budget, 512 * 1024), epochs=3, warmup_epochs=1,
                                                steps_per_epoch=3, batch_size=8, check_every=1, num_blocks=3,
                                                train_resolution=None),
                        search, space=space)
    budgets = {**BUDGETS, "latency_ms": budget}
    blessings = []
    for n, arch in enumerate([space.from_indices(cheapest_indices(space)), decode(result.arch)]):
        model = root / "QatTrainer" / "model" / str(7 + 10 * n)
        # exported untrained (training takes minutes here; tests/e2e/test_run.py reports a trained one)
        net = build_model(space, arch)
        calibrate_untrained(net, (32, 32, 3), seed=n)
        model.mkdir(parents=True)
        (model / "model_int8.tflite").write_bytes(to_int8_tflite(net, random_representative((32, 32, 3), 4, n)))
        doc = validate_model(model / "model_int8.tflite", lut, budgets, data)   # accuracy: TFLM on the eval split
        blessing = root / "BudgetValidator" / "blessing" / str(8 + 10 * n)
        blessing.mkdir(parents=True)
        (blessing / "validation.json").write_text(json.dumps(doc))
        blessings.append((model, blessing, doc))
    model, blessing, doc = blessings[-1]   # the search's model is this run's final model
    checks = doc["checks"]
    summary = {"arch": result.arch, "device": "cortex-m7", "accuracy_int8": checks["accuracy"]["figure"],
               "latency_ms": checks["latency"]["figure"], "sram_bytes": checks["sram"]["figure"],
               "flash_bytes": checks["flash"]["figure"], "budgets": budgets, "blessed": doc["blessed"],
               "reasons": doc["reasons"], "bundle_dir": None, "seconds": 1.0,
               "artifacts": {"search": str(search), "model": str(model), "blessing": str(blessing),
                             "lut": str(lut_dir)}}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.resolved.yaml").write_text(yaml.safe_dump({"lut": {"device": "cortex-m7", "file": ""}}))
    return {"run": run, "lut": lut, "budget": budget, "search": search, "blessings": blessings, "data": data,
            "space": space}


@needs_chromium
@pytest.mark.slow
def test_run_report_renders_every_figure_with_the_runs_numbers(run_dir, tmp_path, capsys):
    from edgenas_keras.cost.estimate import graph_latency_ms
    from edgenas_keras.report import pareto_front
    from edgenas_keras.tflite.model import read_int8_model

    out = tmp_path / "report.html"
    assert main(["report", str(run_dir["run"]), "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"report": str(out), "kind": "run"}
    html = out.read_text()
    assert_self_contained(html)
    dom, png = chromium(out, tmp_path)
    assert_picture(png)
    f = facts(dom)
    assert dom.count("<svg") == 4   # accuracy-latency, search history, per operator, LUT scatter

    # verdict and accuracy against latency: both validated models; the final one is the search's
    (model, _, doc), (_, _, doc0) = run_dir["blessings"][-1], run_dir["blessings"][0]
    lat = graph_latency_ms(read_int8_model(model / "model_int8.tflite").graph(), run_dir["lut"])
    assert f["final_latency_ms"] == f"{lat:,.3f} ms" == f["latency_ms"]
    assert f["final_accuracy"] == f"{doc['checks']['accuracy']['figure']:.4f}"
    assert f["budget_ms"] == f"{run_dir['budget']:,.3f} ms"
    assert f["networks"] == "2"
    archs = [f"model {d['model_sha256'][:12]}" for d in (doc0, doc)]   # no metrics.json: named by sha256
    points = [(d["checks"]["latency"]["figure"], d["checks"]["accuracy"]["figure"]) for d in (doc0, doc)]
    assert f["pareto_front"] == ", ".join(archs[i] for i in pareto_front(points))

    # search history: the epochs, the last E[LAT] and multipliers, alpha's entropy per block from its probs
    history = json.loads((run_dir["search"] / "history.json").read_text())
    last = history[-1]
    assert f["epochs"] == "3"
    assert f["final_expected_latency_ms"] == f"{last['expected_latency_ms']:,.3f} ms"
    assert f["search_latency_budget_ms"] == f"{run_dir['budget']:,.3f} ms"
    assert f["search_sram_budget_bytes"] == "524,288 B"
    assert f["final_mu"] == f"{last['mu']:,.4f}" and f["final_nu"] == f"{last['nu']:,.4f}"
    p = np.asarray(last["probs"])
    entropy = [-(q[q > 0] * np.log(q[q > 0])).sum() for q in p.reshape(p.shape[0], -1)]
    assert len(last["alpha_entropy"]) == 3
    shown = [float(v) for v in f["final_alpha_entropy"].split(", ")]
    assert np.allclose(shown, entropy, atol=2e-3)   # the history's probs are rounded to 1e-5

    # the final model's latency per operator sums to the validator's LUT figure
    graph = read_int8_model(model / "model_int8.tflite").graph()
    assert f["operators"] == str(len(graph.nodes))
    assert f["lut_total_ms"] == f"{doc['checks']['latency']['figure']:,.3f} ms"
    costliest = max(graph.nodes, key=lambda n: run_dir["lut"].op_us(n.spec.key))
    assert f"{run_dir['lut'].op_us(costliest.spec.key):,.1f} us" in dom

    # the LUT's predicted-against-measured rows: the shipped cortex-m7 table's
    from edgenas_keras.lut import assets_dir

    rows = [json.loads(line) for line in (assets_dir() / "cortex-m7-validation.jsonl").read_text().splitlines()]
    mape = np.mean([abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] * 100 for r in rows])
    assert f["rows"] == str(len(rows)) and f["mape_pct"] == f"{mape:.2f}%"
    assert "data-missing" not in dom


@needs_chromium
@pytest.mark.slow
def test_benchmark_report_draws_each_table_with_its_front_and_budget(tmp_path, capsys):
    from lut_fixtures import fixture_lut

    from edgenas_keras.cost.estimate import arch_cost
    from edgenas_keras.report import pareto_front
    from edgenas_keras.arch.space import SearchSpace

    space = SearchSpace.load().with_resolution(32)
    lut = fixture_lut(space, device="cortex-m7")
    archs = space.sample(5, seed=1)
    # five networks: latency from the fixture table, accuracy rising with MACs except the third's
    nets = []
    for i, a in enumerate(archs):
        c = arch_cost(space, a, lut)
        acc = [round(0.6 + 0.3 * math.tanh(c.macs / 5e6) - (0.05 if i == 2 else 0) + 0.01 * s, 4) for s in (0, 1)]
        nets.append({"name": f"net{i}", "kind": "edgenas" if i == 0 else "random-search", "arch": str(a),
                     "latency_ms": c.latency_ms, "sram_bytes": c.sram_bytes, "flash_bytes": c.flash_bytes,
                     "accuracy_int8": acc, "accuracy_int8_mean": sum(acc) / 2})
    budget = sorted(n["latency_ms"] for n in nets)[3]
    doc = {"command": "bench/paper_tables.py --test", "date": "2026-11-30", "machine": {"cores": 2},
           "table1": {"device": "cortex-m7", "budget_ms": budget, "networks": nets,
                      "edgenas_vs_random": {"mean_diff_points": 1.5, "ci95_low": 0.2, "ci95_high": 2.8}},
           "table2": {"devices": [{"device": "cortex-m4", "budget_ms": budget * 2, "networks": nets[:2]}]},
           "table4": {"device": "cortex-m7", "budget_ms": budget, "full": {k: nets[0][k] for k in (
               "arch", "latency_ms", "accuracy_int8", "accuracy_int8_mean")},
               "ablations": [{**n, "name": f"ablation-{n['name']}", "kind": "ablation"} for n in nets[3:]]}}
    bench = tmp_path / "results"
    bench.mkdir()
    (bench / "paper_tables.json").write_text(json.dumps(doc))
    assert main(["report", str(bench)]) == 0
    out = bench / "report.html"
    assert capsys.readouterr().out.strip() == f"wrote {out} (benchmark report)"
    assert_self_contained(out.read_text())
    dom, png = chromium(out, tmp_path)
    assert_picture(png)
    f = facts(dom)
    assert dom.count("<svg") == 3   # table1, table2's one device, table4 (the full search and its ablations)
    assert "ablation-net3" in dom and "ablation-net4" in dom
    assert f["budget_ms"] == f"{budget:,.3f} ms"
    pts = [(n["latency_ms"], n["accuracy_int8_mean"]) for n in nets]
    front = [nets[i]["name"] for i in pareto_front(pts)]
    assert f["pareto_front"] == ", ".join(front)
    assert f["edgenas_vs_random"] == "1.50 (95% CI 0.20 .. 2.80)"
    assert f["command"] == "bench/paper_tables.py --test"
    for n in nets:
        assert f"{n['latency_ms']:,.3f} ms" in dom


def test_a_folder_that_is_not_a_run_is_one_error_line_and_no_report(tmp_path, capsys):
    not_run = tmp_path / "not-a-run"
    not_run.mkdir()
    (not_run / "notes.txt").write_text("hello")
    out = tmp_path / "r" / "report.html"
    assert main(["report", str(not_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not a finished pipeline run" in err[0]
    assert str(not_run) in err[0]
    assert not out.exists() and not out.parent.exists()

    (not_run / "summary.json").write_text("{not json")
    assert main(["report", str(not_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run summary ") and "not valid JSON" in err[0]
    assert not out.exists()

    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and not out.exists()


@pytest.mark.slow
def test_a_run_folder_moved_elsewhere_still_reports_its_artifacts(run_dir, tmp_path):
    """A run folder copied away (a CI artifact): the summary's absolute artifact paths are re-rooted."""
    moved = tmp_path / "copied-run"
    shutil.copytree(run_dir["run"], moved)
    summary = json.loads((moved / "summary.json").read_text())
    gone = "/nonexistent/ci-workspace/run"   # where the run was written, no longer there
    summary["output"] = gone
    summary["artifacts"] = {k: v.replace(str(run_dir["run"]), gone) for k, v in summary["artifacts"].items()}
    (moved / "summary.json").write_text(json.dumps(summary))
    assert main(["report", str(moved)]) == 0
    html = (moved / "report.html").read_text()
    assert "data-missing" not in html and html.count("<svg") == 4
    assert 'data-fact="epochs">3<' in html


@needs_chromium
@pytest.mark.slow
def test_an_evolution_searchs_report_shows_its_scored_candidates(run_dir, tmp_path):
    """A run whose search trained no alpha (``strategy: evolution``, ``fitness: trained``): the search section
    plots the scored candidates instead of saying the history is missing."""
    from edgenas_keras.budgets import Budgets
    from edgenas_keras.search import SearchConfig, run_search

    run = tmp_path / "evolution-run"
    shutil.copytree(run_dir["run"], run)
    summary = json.loads((run / "summary.json").read_text())
    summary["artifacts"] = {k: v.replace(str(run_dir["run"]), str(run)) for k, v in summary["artifacts"].items()}
    (run / "summary.json").write_text(json.dumps(summary))
    search = Path(summary["artifacts"]["search"])
    shutil.rmtree(search)
    cfg = SearchConfig(budgets=Budgets(run_dir["budget"]), strategy="evolution", fitness="trained", fitness_steps=2,
                       candidates=4, population=2, window_low=0.5, batch_size=8, score_batches=1,
                       num_blocks=3, train_resolution=None)
    result = run_search(run_dir["data"], run_dir["lut"], cfg, search, space=run_dir["space"])
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    dom, png = chromium(out, tmp_path)
    assert_picture(png)
    f = facts(dom)
    rows = json.loads((search / "candidates.json").read_text())
    assert f["candidates_scored"] == str(len(rows)) == "4"
    assert f["returned_arch"] == result.arch == rows[0]["arch"]
    assert f["best_proxy_accuracy"] == f"{rows[0]['accuracy']:.4f}"
    assert f["strategy"] == "evolution, fitness trained"
    assert "no search history" not in dom and dom.count("<svg") == 4
