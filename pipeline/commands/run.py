"""``edgenas run`` (the whole pipeline on this machine) and ``edgenas compile`` (a Kubeflow Pipelines spec).

``run``: LocalDagRunner by default, BeamDagRunner with ``--runner beam`` (a multi-process DirectRunner for
the Beam components, or any Beam runner through ``--beam-arg=--runner=...`` or Beam options after a
literal ``--``); MLMD, artifacts, the resolved configuration and ``summary.json`` under ``--out`` (also
spelled ``--output``, the flag's older name). A rerun of the same configuration into the same
folder reuses every finished component from the cache.

``compile``: KubeflowV2DagRunner to one YAML document with ``schemaVersion: 2.1.0`` (the only schema open
source Kubeflow Pipelines 2.x accepts; a ``.json`` output would be a Vertex PipelineJob instead). The
spec's root parameters are the pipeline's run-time parameters (``pipeline.config.RUNTIME_PARAMETERS``);
TFX declares only their types, so their defaults, the configuration's values, are added here
(``defaultValue`` and ``isOptional``, as the kfp compiler writes them): a run submitted without
``--param`` runs the configuration as compiled.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from edgenas_keras.errors import UserError
from pipeline.commands._util import BEAM_OPTIONS_EPILOG, JSON_OUTPUT, PIPELINE_CONFIG, emit
from pipeline.config import runtime_values

DEFAULT_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"


def register(subparsers) -> None:
    """Add ``edgenas run`` and ``edgenas compile`` to the subcommand parser ``subparsers``."""
    p = subparsers.add_parser(
        "run",
        parents=[JSON_OUTPUT, PIPELINE_CONFIG],
        epilog=BEAM_OPTIONS_EPILOG.format(example="edgenas run --runner beam -- --direct_num_workers=4"),
        help="run the whole pipeline on this machine (data -> search -> QAT -> validation -> push)",
        description="Run the EdgeNAS pipeline locally. Without --config, the embedded default "
        "(synthetic data, cortex-m7, about 10 minutes on 2 cores). A rerun into the same --out reuses "
        "finished components from ML Metadata's cache. The configuration is checked whole first: a mistake in any "
        "section is one error line naming the dotted field (exit 2), before anything runs.",
    )
    p.add_argument("--out", "--output", dest="output", default="runs/default", metavar="DIR",
                   help="output folder: artifacts (the run's report.html among them), metadata.sqlite, summary.json "
                   "(default runs/default); --output is the same flag under its older name, still accepted")
    p.add_argument("--runner", choices=["local", "beam"], default="local",
                   help="local: LocalDagRunner (default); beam: BeamDagRunner, multi-process DirectRunner")
    p.add_argument("--beam-arg", action="append", default=[], metavar="=--OPTION=VALUE",
                   help="pass-through Beam option for the Beam components, e.g. --beam-arg=--runner=FlinkRunner "
                   "(repeatable; or give them after a literal --, see below)")
    p.set_defaults(func=cmd_run)

    c = subparsers.add_parser(
        "compile",
        parents=[JSON_OUTPUT, PIPELINE_CONFIG],
        help="compile the pipeline to a Kubeflow Pipelines spec (YAML, schema 2.1.0)",
        description="Compile the pipeline with KubeflowV2DagRunner for open-source Kubeflow Pipelines 2.x. "
        "The configuration is checked whole first (a mistake in any section: exit 2, nothing written). The "
        "budgets, the seed, the data paths and the push destination become run-time parameters of the spec "
        "(budgets_latency_ms, ..., push_dest; defaults: this configuration's values), set per run with "
        "`edgenas submit --param NAME=VALUE`.",
    )
    c.add_argument("--out", required=True, metavar="FILE.yaml", help="where to write the pipeline spec")
    c.add_argument("--image", required=True, help="container image holding this project (see Dockerfile)")
    c.add_argument("--pipeline-root", default=DEFAULT_PIPELINE_ROOT, metavar="URI",
                   help=f"artifact root, e.g. gs://bucket/edgenas (default {DEFAULT_PIPELINE_ROOT})")
    c.set_defaults(func=cmd_compile)


def _load(path: str | None):
    from pipeline import config as cfg

    return cfg.load(path)


def cmd_run(args) -> int:
    """Run the whole pipeline of ``--config`` (default: the embedded default.yaml) into ``--out`` with the
    chosen runner and print the summary.

    Returns the exit status, 0 once the pipeline has run (the summary carries the budgets' verdict); bad input
    raises ``UserError`` (exit 2 in ``pipeline.cli.main``), a configuration mistake or a component's
    ``UserError`` included.
    """
    from pipeline.runners import run, summary_table

    config = _load(args.config)
    print(f"edgenas run: {config.name} ({config.source}) -> {args.output} [{args.runner}]", file=sys.stderr,
          flush=True)
    summary = run(config, args.output, runner=args.runner, beam_args=args.beam_arg)
    emit(args, summary, summary_table(summary))
    return 0


def compile_pipeline(config, out: str | Path, image: str, pipeline_root: str = DEFAULT_PIPELINE_ROOT) -> Path:
    """Write the KFP spec of ``config`` to ``out`` (.yaml) through a temporary file; return its path."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise UserError(f"--out {out} must end in .yaml: Kubeflow Pipelines 2.x takes a YAML spec")
    if not image:
        raise UserError("--image must name the container image")
    out.parent.mkdir(parents=True, exist_ok=True)
    config = config.with_output(pipeline_root.rstrip("/"))
    pipeline = create_pipeline(config, pipeline_root, beam_args=list(config.beam_args))
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image, use_pipeline_spec_2_1=True),
    )
    job = runner.run(pipeline, write_out=False)
    declare_defaults(job["pipelineSpec"], runtime_values(config))
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        # TFX's own YAML writer (header comments listing the inputs, one document, sorted keys); it is
        # what runner.run(write_out=True) calls, after the defaults are in.
        from tfx import version
        from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

        kubeflow_v2_dag_runner._write_pipeline_spec_to_file(
            job, f"This is converted from TFX pipeline from tfx-{version.__version__}.", str(Path(tmp, out.name))
        )
        Path(tmp, out.name).replace(out)
    return out


def declare_defaults(spec: dict, values: dict) -> dict:
    """Give each root input parameter of ``spec`` (a pipeline spec dict) its default from ``values``.

    Raises RuntimeError if the spec and ``values`` do not declare the same parameters (a wiring mistake)."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    if set(declared) != set(values):
        raise RuntimeError(f"compiled root parameters {sorted(declared)} != run-time parameters {sorted(values)}")
    for name, definition in declared.items():
        definition["defaultValue"] = values[name]
        definition["isOptional"] = True
    return spec


def cmd_compile(args) -> int:
    """Compile the pipeline of ``--config`` to a Kubeflow Pipelines spec at ``--out`` (YAML, schema 2.1.0, the
    run-time parameters defaulting to the configuration's values) and print its path and parameters.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a
    configuration mistake, ``--out`` not ending in .yaml, an empty ``--image``.
    """
    import logging

    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    config = _load(args.config)
    path = compile_pipeline(config, args.out, args.image, args.pipeline_root)
    params = runtime_values(config.with_output(args.pipeline_root.rstrip("/")))
    emit(args, {"pipeline_spec": str(path), "pipeline_name": config.name, "image": args.image,
                "pipeline_root": args.pipeline_root, "parameters": params},
         f"wrote {path} (pipeline {config.name}, schema 2.1.0, image {args.image})\n"
         f"run-time parameters (edgenas submit --param NAME=VALUE): {', '.join(params)}")
    return 0
