"""``create_pipeline(config, ...)``: the EdgeNAS TFX pipeline, wiring only.

    VwwExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator --+
          |                                                           v
          +------------------------------------------------> SupernetSearch <- LutImporter
          +------------------------------------------------> QatTrainer <------ (architecture)
          +------------------------------------------------> BudgetValidator <- (model, LUT)
                                                              TfliteMicroPusher <- (blessing, model, ...)
                                                              RunReport <- (search, model, blessing, LUT, push)

The same object runs under LocalDagRunner and BeamDagRunner and compiles with KubeflowV2DagRunner, so it
holds no Resolver nodes (they do not run on Kubeflow) and no FileBasedExampleGen (its driver does not
either). Everything a component needs travels as a parameter (JSON strings for the config sections), so a
compiled spec is self-contained. The schema is inferred from the train split only, so ExampleValidator
checks eval against what training saw; SupernetSearch refuses anomalous examples.

The knobs a scheduled run changes (``config.RUNTIME_PARAMETERS``: the four budgets, the seed, the data
paths, the push destination) are wired as TFX ``RuntimeParameter``s, one per knob, into separate component
parameters (not inside the JSON sections), so KubeflowV2DagRunner compiles them to root input parameters
of the spec and each component reads the value the run was submitted with. Their defaults are the
configuration's values; the local runners bind them to those values explicitly (pipeline/runners.py),
because TFX drops a falsy RuntimeParameter default (0, 0.0, "") when it compiles the pipeline.
"""

from __future__ import annotations

from tfx import v1 as tfx

from components.example_gen import VwwExampleGen
from components.lut_importer import LutImporter
from components.pusher import TfliteMicroPusher
from components.report import RunReport
from components.search import SupernetSearch
from components.trainer import QatTrainer
from components.validator import BudgetValidator
from edgenas_keras.lut import device_of
from pipeline.config import RUNTIME_PARAMETERS, PipelineConfig, runtime_values, to_json


def space_dict(config: PipelineConfig) -> dict:
    """The search space the config selects, at the config's model resolution, as a plain dict."""
    from edgenas_keras.errors import UserError
    from edgenas_keras.arch.space import SearchSpace

    try:
        space = SearchSpace.load(config.space.file or None)
        if config.space.resolution:
            space = space.with_resolution(config.space.resolution)
    except (OSError, ValueError) as exc:
        raise UserError(f"{config.source}: space: {exc}") from None
    return space.to_dict()


def runtime_parameters(config: PipelineConfig) -> dict:
    """``{name: tfx RuntimeParameter}`` for ``config.RUNTIME_PARAMETERS``, defaulting to ``config``'s values."""
    values = runtime_values(config)
    return {
        name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=ptype, default=values[name])
        for name, (_dotted, ptype) in RUNTIME_PARAMETERS.items()
    }


def create_pipeline(
    config: PipelineConfig,
    pipeline_root: str,
    metadata_path: str | None = None,
    beam_args: list[str] | tuple[str, ...] = (),
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
    """The pipeline for ``config``; ``metadata_path`` is the MLMD SQLite file (None on Kubeflow)."""
    rp = runtime_parameters(config)
    search_budgets = {"latency_ms": rp["budgets_latency_ms"], "sram_bytes": rp["budgets_sram_bytes"],
                      "flash_bytes": rp["budgets_flash_bytes"]}
    budgets = {**search_budgets, "min_accuracy": rp["budgets_min_accuracy"]}
    data = {k: v for k, v in config.to_dict()["data"].items() if k not in ("images", "annotations", "minival_ids")}
    # the multi-class fields only when set: VWW configs keep their parameters (and cache keys) as before
    data = {k: v for k, v in data.items() if not (k in ("classes", "num_classes") and not v)}

    example_gen = VwwExampleGen(
        data_config=to_json(data),
        images=rp["data_images"],
        annotations=rp["data_annotations"],
        minival_ids=rp["data_minival_ids"],
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False, exclude_splits=["eval"]
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    lut_importer = LutImporter(
        device=config.lut.device, lut_file=config.lut.file, clock_mhz=float(config.lut.clock_mhz)
    )
    search = SupernetSearch(
        examples=example_gen.outputs["examples"],
        anomalies=example_validator.outputs["anomalies"],
        lut=lut_importer.outputs["lut"],
        space_config=to_json(space_dict(config)),
        search_config=to_json(config.search),
        seed=rp["seed"],
        **search_budgets,
    )
    trainer = QatTrainer(
        examples=example_gen.outputs["examples"],
        architecture=search.outputs["architecture"],
        train_config=to_json(config.train),
        seed=rp["seed"],
    )
    validator = BudgetValidator(
        model=trainer.outputs["model"],
        lut=lut_importer.outputs["lut"],
        examples=example_gen.outputs["examples"],
        **budgets,
    )
    pusher = TfliteMicroPusher(
        model=trainer.outputs["model"],
        blessing=validator.outputs["blessing"],
        lut=lut_importer.outputs["lut"],
        architecture=search.outputs["architecture"],
        examples=example_gen.outputs["examples"],
        dest=rp["push_dest"],
        model_name=config.push.model_name,
        device=device_of(config.lut.device),   # a LUT alias (cortex-m7-analytical) pushes under its device
        **budgets,
    )
    report = RunReport(
        architecture=search.outputs["architecture"],
        model=trainer.outputs["model"],
        blessing=validator.outputs["blessing"],
        lut=lut_importer.outputs["lut"],
        pushed_model=pusher.outputs["pushed_model"],
        lut_file=config.lut.file,
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            lut_importer,
            search,
            trainer,
            validator,
            pusher,
            report,
        ],
        enable_cache=enable_cache,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path) if metadata_path else None
        ),
        beam_pipeline_args=list(beam_args),
    )
