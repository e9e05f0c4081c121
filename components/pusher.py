"""TfliteMicroPusher: the firmware bundle of a blessed model, pushed to a folder or ``gs://``.

Only a blessed model is bundled and pushed: without the blessing the component still completes (the run
is not an error, the model simply did not meet its budgets) and records ``pushed = 0``. The bundle is
``edgenas_keras.bundle.make_bundle`` with the pipeline's provenance in its manifest (architecture, LUT
sha256, budgets, data fingerprint, validation figures); publishing is ``deploy.push.push_bundle``
(versioned, complete or absent, ``LATEST`` written last). ``PushedModel`` carries TFX's standard custom
properties ``pushed``, ``pushed_destination`` and ``pushed_version``.
"""

import json

from tfx import v1 as tfx

from components import Architecture, LatencyTable
from components._io import input_dir, log, output_dir, read_json, write_json
from components.validator import VALIDATION_FILE

BUNDLE_DIR = "bundle"
PUSH_FILE = "push.json"


@tfx.dsl.components.component
def TfliteMicroPusher(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    lut: tfx.dsl.components.InputArtifact[LatencyTable],
    architecture: tfx.dsl.components.InputArtifact[Architecture],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    pushed_model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.PushedModel],
    dest: tfx.dsl.components.Parameter[str],
    model_name: tfx.dsl.components.Parameter[str],
    device: tfx.dsl.components.Parameter[str],
    budgets: tfx.dsl.components.Parameter[str],
) -> None:
    """Bundle and push the int8 model if (and only if) it is blessed."""
    from deploy.push import push_bundle
    from edgenas_keras.bundle import make_bundle

    blessed = blessing.get_int_custom_property("blessed") == 1
    with output_dir(pushed_model.uri) as out:
        if not blessed:
            write_json(out / PUSH_FILE, {"pushed": False, "reason": "model not blessed"})
            pushed_model.set_int_custom_property("pushed", 0)
            log("TfliteMicroPusher", "model not blessed: nothing pushed")
            return
        validation = read_json(input_dir(blessing.uri) / VALIDATION_FILE)
        provenance = {
            "architecture": architecture.get_string_custom_property("arch"),
            "lut_sha256": lut.get_string_custom_property("sha256"),
            "budgets": json.loads(budgets),
            "dataset_fingerprint": examples.get_string_custom_property("fingerprint"),
            "validation": validation,
        }
        bundle = make_bundle(
            input_dir(model.uri) / "model_int8.tflite",
            out / BUNDLE_DIR,
            name=model_name.replace("-", "_").replace(".", "_").lower(),
            device=device,
            extra_manifest={"labels": ["no_person", "person"], **provenance},
        )
        result = push_bundle(bundle.out_dir, dest, model_name, device)
        write_json(out / PUSH_FILE, {"pushed": True, **result.to_dict()})
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_string_custom_property("pushed_destination", result.uri)
    pushed_model.set_string_custom_property("pushed_version", result.version)
    log("TfliteMicroPusher", f"pushed {result.uri}" + ("" if result.created else " (identical, already pushed)"))
