"""Quantization-aware training (tfmot, default 8-bit scheme) for the models ``edgenas_keras.builder`` makes.

Every layer the builder uses quantizes out of the box (DESIGN.md section 2) except the squeeze-and-excitation
gate's ``Multiply``: tfmot's registry does not know it ("Layer multiply ... is not supported"). The int8 MUL
kernel rescales its output from its two int8 inputs, and both inputs are already quantised by the layers that
produce them (a ReLU6 fused into its convolution on either side), so, as for tfmot's own ``Add``, only the
*output* needs a fake-quant node: ``SeMultiplyQuantizeConfig`` gives it the same 8-bit moving-average,
asymmetric, per-tensor quantizer the registry gives ``Add``. That makes the QAT graph convert to exactly the
int8 operators of ``ops.arch_graph`` (tests/train checks the operator list for architectures with and without
SE), so the latency the search priced is the latency of the model we ship.

``quantize_model`` annotates every layer (the ``Multiply`` with our config, the rest with the registry's
default), applies the annotations inside ``quantize_scope`` and returns a new model that starts from the float
model's weights.
"""

from __future__ import annotations

import tensorflow_model_optimization as tfmot
import tf_keras as keras

_q = tfmot.quantization.keras


class SeMultiplyQuantizeConfig(_q.QuantizeConfig):
    """Output-only 8-bit quantisation for the SE ``Multiply`` (the registry's treatment of ``Add``)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                      narrow_range=False)]

    def get_config(self):
        return {}


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
