"""BudgetValidator: int8 model + LUT + budgets + eval examples -> a standard ``ModelBlessing``.

The checks (the int8 model's latency on the LUT's device, its SRAM and flash against the budgets, its
accuracy on the eval split, with the per-class accuracy beside top-1 under the examples' class names) are
``edgenas_keras.validate``; this adapter writes the validation JSON into the
blessing artifact with TFX's own convention next to it, an empty ``BLESSED`` or ``NOT_BLESSED`` file and
the ``blessed`` custom property (1/0), so TFX tooling and our pusher read the verdict the same way.
"""

from tfx import v1 as tfx

from components import LatencyTable
from components._io import input_dir, log, output_dir, write_json

VALIDATION_FILE = "validation.json"


@tfx.dsl.components.component
def BudgetValidator(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    lut: tfx.dsl.components.InputArtifact[LatencyTable],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    latency_ms: tfx.dsl.components.Parameter[float],
    sram_bytes: tfx.dsl.components.Parameter[int],
    flash_bytes: tfx.dsl.components.Parameter[int],
    min_accuracy: tfx.dsl.components.Parameter[float] = 0.0,
) -> None:
    """Bless the int8 model iff it meets every budget (the run-time parameters ``budgets_*`` of a compiled
    spec: latency in ms on the LUT's device, SRAM and flash in bytes, the int8 accuracy floor, 0 = none)."""
    from components import params
    from edgenas_keras import lut as lut_lib
    from edgenas_keras.validate import validate_model

    budgets = params.budgets(latency_ms, sram_bytes, flash_bytes, min_accuracy)
    from deploy.emulate import measured_footprint

    table = lut_lib.load(input_dir(lut.uri) / "lut.json")
    model_file = input_dir(model.uri) / "model_int8.tflite"
    # SRAM and flash from the model on the device's core in QEMU where it can be emulated (deploy.emulate);
    # else the prediction / host bisection and RUNTIME_FLASH (the report's check details say which).
    footprint, note = measured_footprint(model_file, table.device, progress=None)
    # and its latency on the core: emulated instructions x cycles per instruction (checked beside the LUT's sum)
    from deploy.lut_emulated import with_cycles_per_instruction

    footprint = with_cycles_per_instruction(footprint, table)
    report = validate_model(model_file, table, budgets, str(input_dir(examples.uri)), target_footprint=footprint)
    report["target_footprint"] = footprint or {"note": note}
    blessed = bool(report["blessed"])
    with output_dir(blessing.uri) as out:
        write_json(out / VALIDATION_FILE, report)
        (out / ("BLESSED" if blessed else "NOT_BLESSED")).write_text("")
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    log("BudgetValidator", "blessed" if blessed else f"NOT blessed: {'; '.join(report['reasons'])}")
