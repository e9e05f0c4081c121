"""The report of a pipeline run's output folder (``edgenas report RUN_DIR``, and every ``edgenas run``).

This module knows where a run keeps its files; ``edgenas_keras.report`` renders them. A run folder is what
``edgenas run --output DIR`` writes (pipeline/runners.py): ``summary.json`` names the artifacts of the
run's latest execution of each component (``artifacts``: ``search``, ``model``, ``blessing``, ``lut``;
summaries written before it was recorded: read back from ``metadata.sqlite``), ``config.resolved.yaml``
names the LUT (a shipped table's name or a file, whose validation rows the report plots), and every model
validated in the folder (earlier configurations' too) has a ``validation.json`` beside the final one's.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from edgenas_keras.errors import UserError

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
METADATA_FILE = "metadata.sqlite"
RESOLVED_FILE = "config.resolved.yaml"


def _local(uri: str | None) -> Path | None:
    if not uri or "://" in uri:
        return None
    p = Path(uri)
    return p if p.exists() else None


def _artifacts_from_mlmd(run_dir: Path) -> dict:
    from pipeline.runners import last_run  # noqa: PLC0415  (ML Metadata: only for older summaries)

    found = {}
    wanted = {"SupernetSearch": ("architecture", "search"), "QatTrainer": ("model", "model"),
              "BudgetValidator": ("blessing", "blessing"), "LutImporter": ("lut", "lut")}
    for row in last_run(run_dir / METADATA_FILE):
        if row["component"] in wanted:
            key, name = wanted[row["component"]]
            items = row["outputs"].get(key) or []
            if items:
                found[name] = items[0].uri
    return found


def run_inputs(run_dir: str | Path, summary: dict | None = None):
    """``edgenas_keras.report.RunInputs`` for the run in ``run_dir``. ``summary``: the run's summary when
    the caller holds it (the runner, before ``summary.json`` is written); else ``summary.json`` is read.
    Raises ``UserError`` when ``run_dir`` holds no finished run."""
    from edgenas_keras.report import RunInputs, lut_validation_rows_file, read_json  # noqa: PLC0415

    run_dir = Path(run_dir)
    if summary is None:
        path = run_dir / SUMMARY_FILE
        if not path.is_file():
            raise UserError(f"{run_dir} is not a finished pipeline run (no {SUMMARY_FILE}; `edgenas run --output "
                            f"{run_dir}` writes it when the run ends) nor a benchmark result (no paper_tables.json)")
        summary = read_json(path, "run summary")
        if not isinstance(summary, dict):
            raise UserError(f"{path} is not a run summary (a JSON object)")
    artifacts = summary.get("artifacts") or {}
    if not artifacts and (run_dir / METADATA_FILE).is_file():
        artifacts = _artifacts_from_mlmd(run_dir)
    old_out = str(summary.get("output") or "")
    if old_out and Path(old_out).resolve() != run_dir.resolve():
        # a run folder copied or moved since (a CI artifact): its artifacts are under RUN_DIR now
        artifacts = {k: str(run_dir / Path(v).relative_to(old_out)) if v and Path(v).is_relative_to(old_out) else v
                     for k, v in artifacts.items()}
    search, model, blessing, lut = (_local(artifacts.get(k)) for k in ("search", "model", "blessing", "lut"))
    validation = blessing / "validation.json" if blessing and (blessing / "validation.json").is_file() else None
    # every model validated in this folder: the blessing artifacts beside this one (one per validator execution)
    validations = tuple(sorted(blessing.parent.glob("*/validation.json"))) if blessing else ()
    lut_name, lut_path = "", ""
    resolved = run_dir / RESOLVED_FILE
    if resolved.is_file():
        try:
            cfg = yaml.safe_load(resolved.read_text()) or {}
        except yaml.YAMLError:
            cfg = {}
        lut_cfg = cfg.get("lut") or {} if isinstance(cfg, dict) else {}
        lut_name, lut_path = str(lut_cfg.get("device") or ""), str(lut_cfg.get("file") or "")
    return RunInputs(
        summary=summary, search_dir=search, model_dir=model, validation=validation, validations=validations,
        lut_file=lut / "lut.json" if lut and (lut / "lut.json").is_file() else None,
        lut_rows=lut_validation_rows_file(lut_name or None, lut_path or None),
        lut_label=lut_path or lut_name, source=str(run_dir.resolve()),
    )


def write_run_report(run_dir: str | Path, out: str | Path | None = None, summary: dict | None = None) -> Path:
    """Write the report of the run in ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``); return its path."""
    from edgenas_keras.report import run_report  # noqa: PLC0415

    run_dir = Path(run_dir)
    return run_report(run_inputs(run_dir, summary)).write(Path(out) if out else run_dir / REPORT_FILE)


def write_report(source: str | Path, out: str | Path | None = None) -> tuple[Path, str]:
    """``edgenas report``: ``source`` is a run folder, a benchmark result folder (holding ``paper_tables.json``)
    or a benchmark JSON file. Returns (the report's path, ``"run"`` or ``"benchmark"``). ``UserError`` for
    anything else."""
    from edgenas_keras.report import bench_report, read_json  # noqa: PLC0415

    src = Path(source)
    if out is not None and Path(out).is_dir():
        raise UserError(f"--out {out} is a folder: give the report's file name, e.g. {Path(out) / REPORT_FILE}")
    if not src.exists():
        raise UserError(f"{src} does not exist (give a run folder `edgenas run --output` wrote, or a benchmark "
                        "result: bench/results or its paper_tables.json)")
    bench = src if src.is_file() else src / "paper_tables.json"
    if src.is_dir() and (src / SUMMARY_FILE).is_file():
        return write_run_report(src, out), "run"
    if bench.is_file():
        tables = read_json(bench, "benchmark result")
        default = bench.with_name(REPORT_FILE)
        return bench_report(tables, str(bench.resolve())).write(Path(out) if out else default), "benchmark"
    if src.is_file():
        raise UserError(f"{src} is a file: give a run folder or a benchmark result JSON")
    return write_run_report(src, out), "run"   # raises: no summary.json


def summary_artifacts(by_component: dict) -> dict:
    """The artifact folders a report reads, from ``build_summary``'s rows of the latest run (``{component:
    {"outputs": {key: [artifact]}}}``): ``{"search", "model", "blessing", "lut", "pushed"}`` -> URI."""
    wanted = {"search": ("SupernetSearch", "architecture"), "model": ("QatTrainer", "model"),
              "blessing": ("BudgetValidator", "blessing"), "lut": ("LutImporter", "lut"),
              "pushed": ("TfliteMicroPusher", "pushed_model"), "report": ("RunReport", "report")}
    out = {}
    for name, (component, key) in wanted.items():
        items = by_component.get(component, {}).get("outputs", {}).get(key, [])
        if items:
            out[name] = items[0].uri
    return out


def report_file(by_component: dict) -> str | None:
    """The path of the run's ``report.html`` (RunReport's artifact; rows as in ``summary_artifacts``), or
    None when the run wrote none."""
    uri = summary_artifacts(by_component).get("report")
    path = _local(uri) / REPORT_FILE if _local(uri) else None
    return str(path) if path is not None and path.is_file() else None
