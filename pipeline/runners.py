"""Running the pipeline on this machine: LocalDagRunner or BeamDagRunner, MLMD in SQLite, the summary.

Output folder layout (``edgenas run --output OUT``)::

    OUT/config.resolved.yaml   the configuration this run used (every default filled in)
    OUT/metadata.sqlite        ML Metadata: executions, artifacts, the cache
    OUT/root/<Component>/...   artifacts (TFX pipeline root)
    OUT/pushed/...             pushed bundles (default push.dest)
    OUT/root/RunReport/report/<id>/report.html   the run's report (``summary.json``'s ``report``)
    OUT/summary.json           written last: architecture, figures, blessing, bundle location

Caching is on: a rerun with the same configuration finds every finished component in MLMD and reuses its
outputs; a run that was interrupted resumes at the first unfinished component (and the search from its
checkpoint, see components/search.py). The summary is read back from MLMD for the latest pipeline run,
so cached and fresh executions are reported alike.

TFX and absl log at INFO to stderr by default (hundreds of lines per run). We raise the threshold to
WARNING for everything except one handler that turns the orchestrators' "component is running / finished"
records into one progress line each, so users see the pipeline's progress, not its internals.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

from edgenas_keras._fs import atomic_write_json
from edgenas_keras.errors import UserError
from edgenas_keras.lut import device_of
from pipeline.config import PipelineConfig, runtime_values, write_resolved
from pipeline.report import report_file, summary_artifacts

# gRPC (loaded by TFX) logs an INFO line for every fork (TFLM arena probes fork); it reads this at start-up.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

METADATA_FILE = "metadata.sqlite"
ROOT_DIR = "root"
SUMMARY_FILE = "summary.json"
SUMMARY_KEYS = ("arch", "device", "accuracy_int8", "latency_ms", "sram_bytes", "flash_bytes", "blessed",
                "bundle_dir")

# MLMD execution states (ml_metadata Execution.State).
_STATES = {0: "unknown", 1: "new", 2: "running", 3: "complete", 4: "failed", 5: "cached", 6: "canceled"}
_RUNNING = re.compile(r"^(?:Component|node) (\S+) is running\.$")
_FINISHED = re.compile(r"^(?:Component|node) (\S+) is finished\.$")
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")


class _ProgressHandler(logging.Handler):
    """Turns TFX's per-node INFO records into one line per component start / finish on stderr."""

    def __init__(self, stream=None):
        super().__init__(logging.INFO)
        self.stream = stream  # None: whatever sys.stderr is when a line is printed (tests swap it)
        self.started: dict[str, float] = {}
        self.cached: set[str] = set()
        self.current: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001  (a malformed third-party record must not break the run)
            return
        if m := _RUNNING.match(msg):
            self.current = m.group(1)
            self.started[self.current] = time.monotonic()
            print(f"[{time.strftime('%H:%M:%S')}] {self.current} ...", file=self.stream or sys.stderr, flush=True)
        elif _CACHED.match(msg) and self.current:
            self.cached.add(self.current)
        elif m := _FINISHED.match(msg):
            node = m.group(1)
            took = time.monotonic() - self.started.get(node, time.monotonic())
            how = "cached" if node in self.cached else "done"
            print(f"[{time.strftime('%H:%M:%S')}] {node} {how} ({took:.1f} s)", file=self.stream or sys.stderr, flush=True)


def quiet_logging(stream=None) -> _ProgressHandler:
    """Silence absl/TFX/Beam INFO noise; keep warnings and our one-line-per-component progress."""
    import warnings

    import absl.logging

    # Keras / TFLite converter advice, not ours; other libraries' UserWarnings stay visible (tfmot's
    # "... will not be quantized" names a layer that stays float in the int8 model)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(tf_keras|keras|tensorflow)(\.|$)")
    absl.logging.set_verbosity(absl.logging.INFO)  # the records must reach our handler ...
    absl_handler = absl.logging.get_absl_handler()
    absl_handler.setLevel(logging.ERROR)  # ... but absl's own stderr handler shows only errors
    root = logging.getLogger()
    for h in list(root.handlers):
        if not isinstance(h, _ProgressHandler):
            h.setLevel(max(h.level, logging.ERROR))
    absl_logger = logging.getLogger("absl")
    for h in list(absl_logger.handlers):
        if isinstance(h, _ProgressHandler):  # a second run in the same process (tests)
            absl_logger.removeHandler(h)
    progress = _ProgressHandler(stream)
    absl_logger.addHandler(progress)
    logging.getLogger("absl").propagate = False
    for name in ("apache_beam", "tensorflow", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return progress


def default_beam_args(runner: str, beam_args: tuple[str, ...] | list[str]) -> list[str]:
    """Beam options for the Beam components: pass-through ones win; ``beam`` runs a 2-process DirectRunner."""
    args = list(beam_args)
    if runner == "beam" and not any(a.startswith("--runner") or a.startswith("--direct_running_mode") for a in args):
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
        args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={max(2, workers)}", *args]
    return args


def run(config: PipelineConfig, output: str | os.PathLike, runner: str = "local",
        beam_args: tuple[str, ...] | list[str] = (), progress: bool = True) -> dict:
    """Run the pipeline into ``output`` and return the summary (also written to ``OUT/summary.json``)."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    out = Path(output).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = config.with_output(out)
    args = default_beam_args(runner, (*config.beam_args, *beam_args))
    config = dataclasses.replace(config, beam_args=tuple(args))
    write_resolved(config, out)
    summary_path = out / SUMMARY_FILE
    if summary_path.exists():
        summary_path.unlink()  # a stale summary must not outlive a failed rerun
    if progress:
        quiet_logging()
    p = create_pipeline(config, str(out / ROOT_DIR), str(out / METADATA_FILE), beam_args=args)
    started = time.monotonic()
    if runner == "local":
        orchestrator = tfx.orchestration.LocalDagRunner()
    elif runner == "beam":
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

        orchestrator = BeamDagRunner()
    else:
        raise UserError(f"runner {runner!r} is not one of local, beam")
    try:
        orchestrator.run_with_ir(bind_runtime_parameters(p, runtime_values(config)))
    except Exception as exc:  # noqa: BLE001  (Beam wraps executor errors; surface a user's error as such)
        user = _find_user_error(exc)
        if user is not None:
            raise user from None
        raise
    summary = build_summary(config, out, time.monotonic() - started)
    atomic_write_json(summary_path, summary, indent=2, sort_keys=True)
    return summary


def bind_runtime_parameters(pipeline, values: dict):
    """The pipeline compiled to TFX IR with its RuntimeParameters set to ``values`` (the configuration's).

    LocalDagRunner and BeamDagRunner bind only the run id; any other RuntimeParameter falls back to its
    default, and TFX's compiler drops falsy defaults (a seed of 0, an empty path), which would leave those
    parameters unresolved. Binding every one explicitly makes a local run read exactly the configuration.
    Raises RuntimeError naming a parameter the pipeline declares that ``values`` lacks."""
    from tfx.dsl.compiler import compiler, constants
    from tfx.orchestration.portable import runtime_parameter_utils

    ir = compiler.Compiler().compile(pipeline)
    resolved = runtime_parameter_utils.substitute_runtime_parameter(ir, values)
    resolved.pop(constants.PIPELINE_RUN_ID_PARAMETER_NAME, None)  # the runner binds it
    missing = sorted(name for name, value in resolved.items() if value is None)
    if missing:
        raise RuntimeError(f"runtime parameter(s) without a value for a local run: {', '.join(missing)}")
    return ir


_BEAM_STEP = re.compile(r"\s\[while running '.*'\]\s*$")


def _find_user_error(exc: BaseException) -> UserError | None:
    """The ``UserError`` behind an exception a runner raised (Beam re-raises it retyped, or as a
    RuntimeError naming the class in its text), without Beam's step annotation; None if there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, UserError):
            # Beam re-raises an exception of the same type with its step appended: "... [while running 'X']"
            text = str(exc)
            stripped = _BEAM_STEP.sub("", text)
            if stripped == text:
                return exc
            try:
                return type(exc)(stripped)   # the same error class, when it is built from its message
            except TypeError:
                return UserError(stripped)
        m = re.search(r"(?:edgenas_keras\.errors\.)?(?:UserError|MissingLutKeysError): (.+?)(?:\s\[while running.*)?$",
                      str(exc).strip().splitlines()[-1] if str(exc).strip() else "")
        if m:
            return UserError(m.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


# ---- reading the run back from ML Metadata ----------------------------------------------------------


def last_run(metadata_path: str | os.PathLike) -> list[dict]:
    """The executions of the latest pipeline run: ``[{"component", "state", "outputs": {key: [artifact]}}]``."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = str(metadata_path)
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return []
    latest = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = store.get_executions_by_context(latest.id)
    types = {t.id: t.name for t in store.get_execution_types()}
    events = store.get_events_by_execution_ids([e.id for e in executions])
    artifacts = {a.id: a for a in store.get_artifacts_by_id([ev.artifact_id for ev in events])}
    rows = []
    for e in sorted(executions, key=lambda e: e.id):
        outputs: dict[str, list] = {}
        for ev in events:
            if ev.execution_id == e.id and ev.type == metadata_store_pb2.Event.OUTPUT:
                key = ev.path.steps[0].key if ev.path.steps else "output"
                outputs.setdefault(key, []).append(artifacts[ev.artifact_id])
        rows.append({
            "component": types.get(e.type_id, "?").rsplit(".", 1)[-1],
            "state": _STATES.get(e.last_known_state, str(e.last_known_state)),
            "outputs": outputs,
        })
    return rows


def _prop(artifact, name: str):
    for props in (artifact.custom_properties, artifact.properties):
        if name in props:
            v = props[name]
            kind = v.WhichOneof("value")
            if kind == "struct_value":
                from google.protobuf.json_format import MessageToDict

                return MessageToDict(v.struct_value)
            return getattr(v, kind)
    return None


def build_summary(config: PipelineConfig, out: Path, seconds: float) -> dict:
    """The figures a user wants from a run, read from the artifacts of the latest run in MLMD."""
    rows = last_run(out / METADATA_FILE)
    by_component = {r["component"]: r for r in rows}

    def artifact(component: str, key: str):
        items = by_component.get(component, {}).get("outputs", {}).get(key, [])
        return items[0] if items else None

    blessing = artifact("BudgetValidator", "blessing")
    pushed = artifact("TfliteMicroPusher", "pushed_model")
    model = artifact("QatTrainer", "model")
    validation = json.loads(Path(blessing.uri, "validation.json").read_text()) if blessing else {}
    metrics = json.loads(Path(model.uri, "metrics.json").read_text()) if model else {}
    checks = validation.get("checks", {})
    failed = [name for name, c in checks.items() if not c.get("passed", False)]

    def figure(name):
        return checks.get(name, {}).get("figure")

    arch_artifact = artifact("SupernetSearch", "architecture")
    summary = {
        "arch": _prop(arch_artifact, "arch") if arch_artifact else None,
        "device": device_of(config.lut.device),   # the bundle's and push folder's device, not a LUT alias
        "accuracy_int8": figure("accuracy"),
        "accuracy_float": metrics.get("accuracy_float"),
        "latency_ms": figure("latency"),
        "sram_bytes": figure("sram"),
        "flash_bytes": figure("flash"),
        "budgets": config.budgets_dict(),
        "blessed": bool(_prop(blessing, "blessed")) if blessing else False,
        "failed_budgets": failed,
        "reasons": validation.get("reasons", []),
        "bundle_dir": _prop(pushed, "pushed_destination") if pushed and _prop(pushed, "pushed") == 1 else None,
        "components": [{"component": r["component"], "state": r["state"]} for r in rows],
        "artifacts": summary_artifacts(by_component),   # the folders `edgenas report` reads
        "report": report_file(by_component),            # RunReport's report.html
        "seconds": round(seconds, 1),
        "output": str(out),
    }
    return summary


def summary_table(summary: dict) -> str:
    """The human summary printed at the end of ``edgenas run``."""
    b = summary.get("budgets", {})

    def fig(key, unit, budget_key):
        v = summary.get(key)
        lim = b.get(budget_key)
        if v is None:
            return "-"
        return f"{v:,.2f} {unit} (budget {lim:,.2f})" if unit == "ms" else f"{v:,} {unit} (budget {lim:,})"

    acc = summary.get("accuracy_int8")
    verdict = "yes" if summary["blessed"] else f"NO ({'; '.join(summary.get('reasons') or ['not validated'])})"
    states = ", ".join(f"{c['component']} {c['state']}" for c in summary.get("components", []))
    lines = [
        ("architecture", summary.get("arch") or "-"),
        ("device", summary["device"]),
        ("int8 accuracy", f"{acc:.4f}" if acc is not None else "-"),
        ("latency", fig("latency_ms", "ms", "latency_ms")),
        ("SRAM", fig("sram_bytes", "B", "sram_bytes")),
        ("flash", fig("flash_bytes", "B", "flash_bytes")),
        ("blessed", verdict),
        ("bundle", summary.get("bundle_dir") or "not pushed"),
        ("report", summary.get("report") or "-"),
        ("components", states),
        ("wall time", f"{summary['seconds']:.0f} s"),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)
