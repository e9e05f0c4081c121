"""TfliteMicroPusher: the firmware bundle of a blessed model, pushed to a folder or ``gs://``.

Only a blessed model is bundled and pushed: without the blessing the component still completes (the run
is not an error, the model simply did not meet its budgets) and records ``pushed = 0``. The bundle is
``edgenas_keras.tflite.bundle.make_bundle`` with the pipeline's provenance in its manifest (architecture, LUT
sha256, budgets, data fingerprint, validation figures) and the input preprocessing the trainer recorded in
``metrics.json`` beside the model (``bundle.recorded_preprocessing``: the reader's rule, never restated here)
and the data set's class names as the labels (``bundle_labels``: the Examples artifact's ``class_names``);
publishing is ``deploy.push.push_bundle``
(versioned, complete or absent, ``LATEST`` written last). ``PushedModel`` carries TFX's standard custom
properties ``pushed``, ``pushed_destination`` and ``pushed_version``.
"""

from tfx import v1 as tfx

from components import Architecture, LatencyTable
from components._io import input_dir, log, output_dir, read_json, write_json
from components.validator import VALIDATION_FILE

BUNDLE_DIR = "bundle"
PUSH_FILE = "push.json"


def bundle_labels(examples, preprocessing) -> list[str]:
    """The class names the bundle states, in output order: the data set's (the Examples artifact's
    ``class_names``, label ``i`` is ``names[i]``), else the labels training recorded with the model
    (``metrics.json`` preprocessing), else VWW's for artifacts older than both. A disagreement between the
    first two is logged (the data's names are used)."""
    from edgenas_keras.data.preprocessing import LABELS

    data = None
    if examples.has_custom_property("class_names"):
        value = examples.get_json_value_custom_property("class_names")
        data = [str(v) for v in value] if value else None
    recorded = list(preprocessing.labels) if preprocessing is not None and preprocessing.labels else None
    if data and recorded and data != recorded:
        log("TfliteMicroPusher", f"warning: the examples name the classes {data}, the model was trained with "
            f"{recorded}; the bundle states the examples' names")
    return data or recorded or list(LABELS)


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
    latency_ms: tfx.dsl.components.Parameter[float],
    sram_bytes: tfx.dsl.components.Parameter[int],
    flash_bytes: tfx.dsl.components.Parameter[int],
    min_accuracy: tfx.dsl.components.Parameter[float] = 0.0,
) -> None:
    """Bundle and push the int8 model if (and only if) it is blessed (``dest`` and the budgets are the
    run-time parameters ``push_dest`` and ``budgets_*`` of a compiled spec)."""
    from components import params
    from deploy.push import push_bundle
    from edgenas_keras.tflite.bundle import make_bundle, recorded_preprocessing

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
            "budgets": params.budgets(latency_ms, sram_bytes, flash_bytes, min_accuracy).as_dict(),
            "dataset_fingerprint": examples.get_string_custom_property("fingerprint"),
            "validation": validation,
        }
        model_file = input_dir(model.uri) / "model_int8.tflite"
        preprocessing = recorded_preprocessing(model_file)
        if preprocessing is None:
            log("TfliteMicroPusher", "warning: the model has no recorded preprocessing (trained by an older "
                "EdgeNAS); the bundle states it as unknown")
        labels = bundle_labels(examples, preprocessing)
        bundle = make_bundle(
            model_file,
            out / BUNDLE_DIR,
            name=model_name.replace("-", "_").replace(".", "_").lower(),
            device=device,
            extra_manifest={"labels": labels, **provenance},
            preprocessing=preprocessing,
        )
        result = push_bundle(bundle.out_dir, params.push_dest(dest), model_name, device)
        write_json(out / PUSH_FILE, {"pushed": True, **result.to_dict()})
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_string_custom_property("pushed_destination", result.uri)
    pushed_model.set_string_custom_property("pushed_version", result.version)
    log("TfliteMicroPusher", f"pushed {result.uri}" + ("" if result.created else " (identical, already pushed)"))
