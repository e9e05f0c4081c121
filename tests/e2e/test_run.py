"""The whole pipeline on a tiny configuration (tests/e2e/conftest.py), through the ``edgenas run`` CLI.

- LocalDagRunner: ends with a blessed model pushed (a complete version and LATEST under push.dest), whose
  bundle states the training reader's preprocessing (``x = pixel / 127.5 - 1``); the whole output of the
  first run, captured at the file descriptors, holds only EdgeNAS's own lines (no TensorFlow or converter
  C++ log);
  a rerun into the same folder reuses every component from the MLMD cache (states read back from MLMD);
  raising the accuracy floor re-runs only validation and push, the model is not blessed, the summary names
  the failed budget and nothing new is pushed.
- BeamDagRunner (2-process DirectRunner for the Beam components): ends with a blessed model pushed.
"""

import json
import re
from pathlib import Path

import pytest
from tiny_pipeline import write_config

from pipeline.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPONENTS = {"VwwExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "LutImporter",
              "SupernetSearch", "QatTrainer", "BudgetValidator", "TfliteMicroPusher", "RunReport"}


# The forms of EdgeNAS's own progress lines on stderr: the run header, a component starting or done, a
# component's log (components/_io.log), and the library's progress (ingest, search epochs, the result).
_NAMES = "|".join(sorted(COMPONENTS))
EDGENAS_LINE = re.compile(rf"^(edgenas run: |\[\d\d:\d\d:\d\d\] ({_NAMES})\b|  ({_NAMES}): |ingest: |epoch \d+/\d+: |found "
                          r"|warning: )")


def run_cli(capsys, config: str, out: Path, *extra: str, only_edgenas_lines: bool = False) -> dict:
    """``edgenas run --json``; with ``only_edgenas_lines`` (give pytest's ``capfd``, which captures the file
    descriptors C++ writes to) every stderr line must be one of EdgeNAS's and stdout the summary alone."""
    rc = main(["run", "--config", config, "--output", str(out), "--json", *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary == json.loads((out / "summary.json").read_text())
    if only_edgenas_lines:
        assert captured.out.strip().splitlines() == [json.dumps(summary, sort_keys=True, default=str)]
        foreign = [line for line in captured.err.splitlines() if line.strip() and not EDGENAS_LINE.match(line)]
        assert not foreign, "\n".join(foreign[:20])
    return summary


def states(summary: dict) -> dict:
    return {c["component"]: c["state"] for c in summary["components"]}


def assert_pushed(summary: dict, out: Path, model_name: str = "vww-tiny") -> Path:
    assert summary["blessed"] is True, summary.get("reasons")
    for key in ("arch", "device", "accuracy_int8", "latency_ms", "sram_bytes", "flash_bytes", "bundle_dir"):
        assert summary[key] is not None, key
    assert summary["latency_ms"] <= summary["budgets"]["latency_ms"]
    bundle = Path(summary["bundle_dir"])
    assert (bundle / "PUSHED.json").is_file() and (bundle / "model.tflite").is_file()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["architecture"] == summary["arch"] and manifest["device"] == "cortex-m7"
    latest = json.loads((out / "pushed" / model_name / "cortex-m7" / "LATEST").read_text())
    assert latest["uri"] == str(bundle)
    return bundle


def test_local_run_pushes_then_caches_then_refuses(tmp_path, capfd):
    capsys = capfd   # file-descriptor capture: the converter's C++ log would be seen
    out = tmp_path / "run"
    config = write_config(tmp_path)
    first = run_cli(capsys, config, out, only_edgenas_lines=True)
    assert set(states(first)) == COMPONENTS and set(states(first).values()) == {"complete"}
    bundle = assert_pushed(first, out)
    assert (out / "config.resolved.yaml").is_file()
    report = Path(first["report"])   # RunReport's artifact (tests/test_report.py renders a report in Chromium)
    assert report.name == "report.html" and report.is_relative_to(out / "root" / "RunReport")
    assert first["artifacts"]["report"] == str(report.parent)
    html = report.read_text()
    assert first["arch"] in html and f"{first['latency_ms']:,.3f} ms" in html and "<script" not in html
    pre = json.loads((bundle / "manifest.json").read_text())["preprocessing"]
    assert pre["known"] and pre["formula"] == "x = pixel / 127.5 - 1" and pre["labels"] == ["no_person", "person"]
    assert "`x = pixel / 127.5 - 1`" in (bundle / "README.md").read_text()
    settings = next(bundle.glob("*_model_settings.h")).read_text()
    assert "kPixelDivisor = 127.5f;" in settings and "kPixelOffset = -1.0f;" in settings

    again = run_cli(capsys, config, out)
    assert states(again) == {c: "cached" for c in COMPONENTS}
    assert again["bundle_dir"] == first["bundle_dir"] and again["arch"] == first["arch"]

    strict = write_config(tmp_path, budgets={"min_accuracy": 0.999})
    refused = run_cli(capsys, strict, out)
    s = states(refused)
    assert s.pop("BudgetValidator") == "complete" and s.pop("TfliteMicroPusher") == "complete"
    assert s.pop("RunReport") == "complete"
    assert set(s.values()) == {"cached"}, s  # the accuracy floor does not re-run search or training
    assert refused["blessed"] is False and refused["failed_budgets"] == ["accuracy"]
    assert refused["bundle_dir"] is None
    assert refused["report"] != first["report"] and "not blessed" in Path(refused["report"]).read_text()
    assert again["report"] == first["report"]   # cached: the same report
    versions = [p for p in bundle.parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert versions == [bundle]  # nothing new pushed; LATEST still points at the blessed one
    assert json.loads((bundle.parent / "LATEST").read_text())["uri"] == str(bundle)


def test_beam_runner_pushes(tmp_path, capsys):
    out = tmp_path / "run"
    summary = run_cli(capsys, write_config(tmp_path), out, "--runner", "beam")
    assert set(states(summary).values()) == {"complete"}
    assert_pushed(summary, out)
