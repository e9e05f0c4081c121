"""Architecture -> Functional tf_keras model built from stock layers only, ready for tfmot QAT.

Layers: Conv2D / DepthwiseConv2D with linear activation and no bias, BatchNormalization, ``ReLU(6.)``, Add,
GlobalAveragePooling2D, Dense, Softmax, and the squeeze-and-excitation gate (``Multiply``; its QAT config lives in
``edgenas_keras.model.qat``). After int8 conversion BN folds into the convolution and ReLU6 fuses into it, which gives
exactly the operators of ``edgenas_keras.cost.graph.arch_graph`` (a test checks this on converted models).

The SE gate is ``relu6(conv(z))`` with the conv's bias initialised to 3, i.e. 6 x hard-sigmoid(x) =
relu6(x + 3), rather than tf_keras' ``hard_sigmoid`` (clip(0.2x+0.5), which tfmot rejects as an unknown
activation); the gate's scale (0..6 instead of 0..1) is absorbed by the linear projection that always follows
it (with BN in float training).
"""

from __future__ import annotations

import tf_keras as keras

from edgenas_keras.arch.plan import plan
from edgenas_keras.arch.space import Arch, SearchSpace

L = keras.layers

# BatchNorm moving-average momentum. Keras' 0.99 leaves the moving statistics unconverged after the few hundred
# steps of a short schedule (the model then predicts one class at eval: measured on the synthetic VWW data,
# README.md "Data"); 0.9 converges within ~50 steps and costs nothing on long schedules.
BN_MOMENTUM = 0.9


def conv_bn_relu(x, filters, kernel, stride, name, relu=True):
    """Conv2D (no bias) + BatchNorm (+ ReLU6 unless ``relu`` is False), layers named ``{name}_conv``, ``_bn``, ``_relu``."""
    x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def dw_bn_relu(x, kernel, stride, name):
    """DepthwiseConv2D (no bias) + BatchNorm + ReLU6, layers named ``{name}_dw``, ``_dwbn``, ``_dwrelu``."""
    x = L.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dwbn")(x)
    return L.ReLU(6.0, name=f"{name}_dwrelu")(x)


def squeeze_excite(x, reduced, name):
    """Squeeze-and-excitation gate over ``x`` (B, H, W, C) with a ``reduced``-channel bottleneck (the plan's
    ``se_ch``); returns ``x`` scaled per channel, same shape."""
    c = x.shape[-1]
    s = L.GlobalAveragePooling2D(keepdims=True, name=f"{name}_sepool")(x)
    s = L.Conv2D(reduced, 1, name=f"{name}_sereduce")(s)
    s = L.ReLU(6.0, name=f"{name}_serelu")(s)
    # Bias 3 makes the gate relu6(z + 3), i.e. 6 x hard-sigmoid, open at 3 from the start. With bias 0 about half
    # the channels start shut (relu6 of a centred z) and a network of several SE blocks does not train at all
    # (measured: 50% on the synthetic VWW after 6 epochs against 80% without SE).
    s = L.Conv2D(c, 1, bias_initializer=keras.initializers.Constant(3.0), name=f"{name}_seexpand")(s)
    s = L.ReLU(6.0, name=f"{name}_segate")(s)
    return L.Multiply(name=f"{name}_semul")([x, s])


def build_model(space: SearchSpace, arch: Arch, resolution: int | None = None, dropout: float = 0.0,
                name: str = "edgenas") -> keras.Model:
    """Build ``arch`` as a Functional model with softmax output, each block as
    ``edgenas_keras.arch.plan.plan`` lays it out (widths, SE bottleneck, residual ADD).

    Args:
        space: the search space.
        arch: an architecture of ``space``.
        resolution: input side in pixels; None takes the space's.
        dropout: dropout rate before the classifier (0: none).
        name: the model's name.

    Returns:
        A ``tf_keras`` Functional model: input (batch, resolution, resolution, in_channels) images, output
        (batch, num_classes) probabilities.

    Raises:
        ValueError: ``space`` does not allow ``arch``.
    """
    plans = plan(space, arch, resolution)
    res = resolution or space.resolution
    inp = keras.Input((res, res, space.in_channels), name="image")
    x = conv_bn_relu(inp, space.stem_channels, space.stem_kernel, space.stem_stride, "stem")
    for p in plans:
        if p.is_skip:
            continue
        n = f"b{p.index}"
        block_in = x
        if p.block.op == "ir":
            x = conv_bn_relu(x, p.mid_ch, 1, 1, f"{n}_expand")
        x = dw_bn_relu(x, p.block.kernel, p.stride, n)
        if p.se_ch:
            x = squeeze_excite(x, p.se_ch, n)
        x = conv_bn_relu(x, p.out_ch, 1, 1, f"{n}_project", relu=False)
        if p.residual:
            x = L.Add(name=f"{n}_add")([block_in, x])
    x = L.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = L.Dropout(dropout, name="head_dropout")(x)
    x = L.Dense(space.num_classes, name="head_fc")(x)
    out = L.Softmax(name="head_softmax")(x)
    return keras.Model(inp, out, name=name)
