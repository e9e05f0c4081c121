"""BudgetValidator: int8 model + LUT + budgets + eval examples -> a standard ``ModelBlessing``.

The checks (the int8 model's latency on the LUT's device, its SRAM and flash against the budgets, its
accuracy on the eval split) are ``edgenas_keras.validate``; this adapter writes the validation JSON into the
blessing artifact with TFX's own convention next to it, an empty ``BLESSED`` or ``NOT_BLESSED`` file and
the ``blessed`` custom property (1/0), so TFX tooling and our pusher read the verdict the same way.
"""

import json

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
    budgets: tfx.dsl.components.Parameter[str],
) -> None:
    """Bless the int8 model iff it meets every budget."""
    from edgenas_keras import lut as lut_lib
    from edgenas_keras.validate import validate_model

    table = lut_lib.load(input_dir(lut.uri) / "lut.json")
    report = validate_model(
        input_dir(model.uri) / "model_int8.tflite", table, json.loads(budgets), str(input_dir(examples.uri))
    )
    blessed = bool(report["blessed"])
    with output_dir(blessing.uri) as out:
        write_json(out / VALIDATION_FILE, report)
        (out / ("BLESSED" if blessed else "NOT_BLESSED")).write_text("")
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    log("BudgetValidator", "blessed" if blessed else f"NOT blessed: {'; '.join(report['reasons'])}")
