"""QatTrainer: examples + architecture -> the trained float/QAT model and the int8 TFLite model.

The training, quantization-aware fine-tuning and full-integer export are
``edgenas_keras.train.train_and_export``; this adapter rebuilds the search space the architecture was found
in (``space.json`` in the architecture artifact), decodes the architecture string and hands the library a
local output folder that becomes the ``Model`` artifact (``model_int8.tflite``, ``metrics.json`` ...). The
model's head has one output per class of the examples (the search's ``space.json`` already says so; the
library checks it against the examples' ``stats.json``), and ``metrics.json`` records the class names.
"""

import json

from tfx import v1 as tfx

from components import Architecture
from components._io import input_dir, log, output_dir
from components.search import SPACE_FILE


@tfx.dsl.components.component
def QatTrainer(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    architecture: tfx.dsl.components.InputArtifact[Architecture],
    model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    train_config: tfx.dsl.components.Parameter[str],
    seed: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    """Train the architecture, fine-tune it with QAT and export the int8 model.

    ``seed`` is the run-time parameter ``seed`` of a compiled spec (``train.seed`` in the config wins)."""
    from components import params
    from edgenas_keras.arch.space import SearchSpace, decode
    from edgenas_keras.train import TrainConfig, train_and_export

    seed = params.seed(seed)

    arch_dir = input_dir(architecture.uri)
    space = SearchSpace.from_dict(json.loads((arch_dir / SPACE_FILE).read_text()), source=str(arch_dir))
    arch_text = architecture.get_string_custom_property("arch")
    arch = decode(arch_text)
    config = TrainConfig.from_dict({"seed": seed, **json.loads(train_config)}, source="pipeline config train")
    log("QatTrainer", f"training {arch_text}")
    with output_dir(model.uri) as out:
        result = train_and_export(
            space, arch, str(input_dir(examples.uri)), str(out), config, progress=lambda m: log("QatTrainer", m)
        )
    model.set_string_custom_property("arch", arch_text)
    log("QatTrainer", f"int8 accuracy (TFLM) {result.metrics['accuracy_int8_tflm']:.4f}")
