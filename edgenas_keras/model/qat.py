"""Quantization-aware training (tfmot, default 8-bit scheme) for the models ``edgenas_keras.model.builder`` makes.

Every layer the builder uses quantizes out of the box (DESIGN.md section 2) except the squeeze-and-excitation
gate's ``Multiply``: tfmot's registry does not know it ("Layer multiply ... is not supported"). The int8 MUL
kernel rescales its output from its two int8 inputs, and both inputs are already quantised by the layers that
produce them (a ReLU6 fused into its convolution on either side), so, as for tfmot's own ``Add``, only the
*output* needs a fake-quant node: ``SeMultiplyQuantizeConfig`` is tfmot's own output-only
``Default8BitOutputQuantizeConfig``, the same 8-bit moving-average, asymmetric, per-tensor quantizer the
registry gives ``Add``. That makes the QAT graph convert to exactly the int8 operators of ``ops.arch_graph``
(tests/train checks the operator list for architectures with and without SE), so the latency the search
priced is the latency of the model we ship.

``quantize_model`` annotates every layer (the ``Multiply`` with our config, the rest with the registry's
default), applies the annotations inside ``quantize_scope`` and returns a new model that starts from the float
model's weights.

**Activation ranges are calibrated before the fine-tune** (``calibrate_ranges``). tfmot's moving-average
quantizers start every range at [-6, 6] and move it towards the observed one by 0.1% per training step (EMA
decay 0.999), so a fine-tune of a few hundred steps ends with ranges still mostly the initial guess: a ReLU6
output quantised on about [-5, 6] wastes half of its 256 levels. Measured at the main job's scale (64 px,
2 epochs of 74 steps): int8 QAT 83.0% against 86.4% for plain post-training quantisation of the same float
model. ``calibrate_ranges`` sets each range to the min/max of the float model's tensor over the converter's
representative images, the rule of post-training calibration, so the fine-tune starts where PTQ ends and
only has to improve on it.
"""

from __future__ import annotations

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras as keras

# The layer quantize_apply puts on the model input; tfmot does not export it, and its range is calibrated too.
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import (
    QuantizeLayer as _QuantizeLayer,
)
# The registry's output-only config (for Add and friends); tfmot does not export it either.
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_configs import (
    Default8BitOutputQuantizeConfig as _Default8BitOutputQuantizeConfig,
)

_q = tfmot.quantization.keras


class SeMultiplyQuantizeConfig(_Default8BitOutputQuantizeConfig):
    """Output-only 8-bit quantisation for the SE ``Multiply``: tfmot's own ``Default8BitOutputQuantizeConfig``
    (one moving-average, asymmetric, per-tensor 8-bit output quantizer, as the registry gives ``Add``).

    A subclass only for its name: ``qat_model.h5`` files record the config by class name, and those written
    before this was tfmot's class (``get_config() == {}``) load as ``SeMultiplyQuantizeConfig()``, which is
    ``quantize_output=True``, the same quantizer."""


# Objects a saved QAT model refers to by name; pass to ``quantize_scope`` (or ``custom_objects``) to load one.
CUSTOM_OBJECTS = {"SeMultiplyQuantizeConfig": SeMultiplyQuantizeConfig}


def _annotate(layer):
    config = SeMultiplyQuantizeConfig() if isinstance(layer, keras.layers.Multiply) else None
    return _q.quantize_annotate_layer(layer, quantize_config=config)


def quantize_model(float_model: keras.Model) -> keras.Model:
    """The QAT version of a builder model (fake-quant nodes, BN folded the way the converter will fold it),
    initialised from ``float_model``'s weights. Compile and fine-tune it, then convert with
    ``export.to_int8_tflite``."""
    annotated = keras.models.clone_model(float_model, clone_function=_annotate)
    with _q.quantize_scope(CUSTOM_OBJECTS):
        return _q.quantize_apply(annotated)


def load_qat_model(path) -> keras.Model:
    """Load a QAT model saved with ``model.save(path)`` (needs our config and tfmot's layers in scope)."""
    with _q.quantize_scope(CUSTOM_OBJECTS):
        return keras.models.load_model(path, compile=False)


# Quantizers whose range is [min(observed min, 0), max(observed max, 0)], held in two variables: the ones the
# default 8-bit scheme uses for activations (moving average) and for the model input (all values).
_RANGE_QUANTIZERS = (_q.quantizers.MovingAverageQuantizer, _q.quantizers.AllValuesQuantizer)


def _range_targets(qat_model: keras.Model) -> list[tuple[str | None, object, object]]:
    """(float layer whose output the range covers, or None for the model input; min variable; max variable)
    for every activation range of ``qat_model``."""
    targets = []
    for layer in qat_model.layers:
        variables = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights}
        if isinstance(layer, _q.QuantizeWrapperV2):
            config, inner = layer.quantize_config, layer.layer
            found = [("output", q) for q in config.get_output_quantizers(inner)]
            found += [("post_activation", q) for _, q in config.get_activations_and_quantizers(inner)]
            source = inner.name
        elif isinstance(layer, _QuantizeLayer):
            found, source = [(layer.name, layer.quantizer)], None
        else:
            continue
        for prefix, quantizer in found:
            if f"{prefix}_min" not in variables:
                continue   # a quantizer without a range of its own (tfmot's no-op ones after a folded BN)
            if not isinstance(quantizer, _RANGE_QUANTIZERS) or quantizer.symmetric:
                raise ValueError(f"{layer.name}: {prefix} quantizer {type(quantizer).__name__} is not an "
                                 "asymmetric min/max quantizer; calibrate_ranges does not know how to set it")
            targets.append((source, variables[f"{prefix}_min"], variables[f"{prefix}_max"]))
    return targets


def calibrate_ranges(qat_model: keras.Model, float_model: keras.Model, images) -> int:
    """Set the activation ranges of ``qat_model`` (made by ``quantize_model(float_model)``) to what
    post-training calibration chooses: per quantised tensor, [min(observed min, 0), max(observed max, 0)] of
    the float model's tensor over ``images`` (an iterable of input batches, inference mode), in place.
    The weight ranges are set from the weights (one training-mode call; BatchNorm statistics are kept), so the
    model converts as is. Returns the number of activation ranges set. A range held by any other kind of
    quantizer is an error, not a silently uncalibrated tensor."""
    images = list(images)
    if not images:
        raise ValueError("calibrate_ranges needs at least one batch of images")
    # The weight quantizers (tfmot's last-value ones) take each kernel's range in a training-mode call and hold
    # [-6, 6] until then: make one, without letting it move the BatchNorm statistics.
    moving = [v for v in qat_model.non_trainable_variables if "moving_mean" in v.name or "moving_variance" in v.name]
    saved = [v.numpy() for v in moving]
    qat_model(images[0], training=True)
    for v, value in zip(moving, saved):
        v.assign(value)
    targets = _range_targets(qat_model)
    names = sorted({name for name, _, _ in targets if name is not None})
    probe = keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in names])
    lo = dict.fromkeys([None, *names], 0.0)
    hi = dict.fromkeys([None, *names], 0.0)
    for batch in images:
        outs = probe(batch, training=False) if names else []
        outs = [outs] if len(names) == 1 else outs
        for name, out in zip([None, *names], [batch, *outs]):
            out = np.asarray(out)
            lo[name], hi[name] = min(lo[name], float(out.min())), max(hi[name], float(out.max()))
    for name, vmin, vmax in targets:
        vmin.assign(lo[name])
        vmax.assign(hi[name])
    return len(targets)
