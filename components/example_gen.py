"""VwwExampleGen: the VWW ingest (or the synthetic generator) as a Beam component emitting ``Examples``.

Why our own component rather than TFX's ``ImportExampleGen``: the FileBasedExampleGen driver does not run
on Kubeflow Pipelines v2 (DESIGN.md section 2), and the data must be labelled, resized and sharded by the
library's rules anyway. The work is ``components.vww_ingest`` (run_ingest / run_synth); this adapter maps
the ``data`` section of the pipeline config onto it, passes the pipeline's Beam options through, and sets
the ``Examples`` properties StatisticsGen and friends read (split names ``train`` and ``eval``).
"""


import json

import apache_beam as beam
from tfx import v1 as tfx
from tfx.types import artifact_utils

from components._io import log, output_dir
from components.vww_ingest import run_ingest, run_synth
from edgenas_keras.data.records import class_names

SPLITS = ["train", "eval"]


def beam_flags(pipeline: "beam.Pipeline | None") -> list[str]:
    """The Beam options the orchestrator gave this component, as command-line flags for the ingest."""
    if pipeline is None:
        return []
    opts = pipeline.options.get_all_options(drop_default=True, retain_unknown_options=True)
    flags = []
    for key, value in sorted(opts.items()):
        for v in value if isinstance(value, list) else [value]:
            flags.append(f"--{key}" if v is True else f"--{key}={v}")
    return flags


def make_examples(out_dir: str, data: dict, beam_args: list[str]) -> dict:
    """Build the data set described by the config's ``data`` section into ``out_dir``; return its stats."""
    from edgenas_keras.data.sources import coco_sources, folder_sources, mlperf_tiny_sources, read_minival_ids
    from edgenas_keras.data.synth import SynthSpec

    workers = data.get("direct_num_workers") or None
    if data["source"] == "synth":
        spec = SynthSpec(
            n=data["synth_images"],
            seed=data["seed"],
            resolution=data["resolution"],
            grayscale=data["grayscale"],
            eval_fraction=data["eval_fraction"],
            area_threshold=data["area_threshold"],
            num_classes=data.get("num_classes", 0),
        )
        return run_synth(out_dir, spec, direct_num_workers=workers, beam_args=beam_args)
    classes = None
    if data["source"] == "folders":
        classes, sources = folder_sources(
            data["images"][0], list(data.get("classes") or ()) or None, eval_fraction=data["eval_fraction"]
        )
    elif data["source"] == "coco":
        minival = read_minival_ids(data["minival_ids"]) if data.get("minival_ids") else None
        sources = coco_sources(
            list(zip(data["images"], data["annotations"])),
            threshold=data["area_threshold"],
            minival_ids=minival,
            eval_fraction=data["eval_fraction"],
        )
    else:
        sources = mlperf_tiny_sources(data["images"][0], eval_fraction=data["eval_fraction"])
    options = {"source": data["source"], "images": data["images"], "annotations": data["annotations"]}
    return run_ingest(
        out_dir,
        sources,
        options,
        resolution=data["resolution"],
        grayscale=data["grayscale"],
        direct_num_workers=workers,
        beam_args=beam_args,
        exif_transpose=data.get("exif_transpose", False),
        classes=classes,
    )


@tfx.dsl.components.component(use_beam=True)
def VwwExampleGen(
    examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    data_config: tfx.dsl.components.Parameter[str],
    images: tfx.dsl.components.Parameter[str] = "[]",
    annotations: tfx.dsl.components.Parameter[str] = "[]",
    minival_ids: tfx.dsl.components.Parameter[str] = "",
    beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """Ingest VWW images or a user's image folders (any number of classes), or draw the synthetic set.

    ``data_config`` is the config's ``data`` section (JSON) without its paths; ``images`` and ``annotations``
    (JSON lists, or one path) and ``minival_ids`` are separate parameters, the run-time parameters
    ``data_images``, ``data_annotations`` and ``data_minival_ids`` of a compiled spec."""
    from components import params

    data = params.data_section(json.loads(data_config), images, annotations, minival_ids)
    log("VwwExampleGen", f"{data['source']} data -> {examples.uri}")
    with output_dir(examples.uri) as out:
        stats = make_examples(str(out), data, beam_flags(beam_pipeline))
    examples.split_names = artifact_utils.encode_split_names(SPLITS)
    examples.span = 0
    examples.version = 0
    examples.set_string_custom_property("fingerprint", stats["fingerprint"])
    examples.set_json_value_custom_property("written", stats["written"])
    # label i is class_names[i] (VWW: ["no_person", "person"]); the model side sizes its head from it
    examples.set_json_value_custom_property("class_names", class_names(stats))
    log("VwwExampleGen", f"wrote {stats['written']} (labels {stats['labels']})")
