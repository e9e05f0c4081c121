"""Small models the tests build and convert themselves, and TensorFlow Lite's answer on one input. TensorFlow
is imported when a function is called, so importing this module is cheap."""

from __future__ import annotations

import numpy as np

IMAGE = (1, 16, 16, 3)   # the input of ``small_classifier_class``'s ``classify``


def small_block_net(size: int, classes: int):
    """A small Keras network of the operators our blocks produce (strided conv, depthwise, SE multiply,
    residual add, mean, dense, softmax) on ``size`` x ``size`` x 3 images with ``classes`` outputs; its weights
    are drawn after ``keras.utils.set_random_seed(0)``, so the same call builds the same network."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((size, size, 3))
    x = L.ReLU(6.0)(L.Conv2D(16, 3, strides=2, padding="same")(inp))
    y = L.ReLU(6.0)(L.DepthwiseConv2D(3, padding="same")(x))
    s = L.GlobalAveragePooling2D(keepdims=True)(y)
    s = L.ReLU(6.0)(L.Conv2D(8, 1)(s))
    s = L.ReLU(6.0)(L.Conv2D(16, 1)(s))
    y = L.Multiply()([y, s])
    y = L.Conv2D(16, 1)(y)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    out = L.Softmax()(L.Dense(classes)(x))
    return keras.Model(inp, out)


def small_classifier_class():
    """A ``tf.Module`` class whose ``classify`` maps a float ``image`` of shape ``IMAGE`` to ``{"logits"}``
    (3x3 convolution to 8 channels, stride 2, ReLU6; spatial mean; matmul to 2 logits). Constructed with a
    ``numpy`` generator, from which it draws the kernel, then the dense weights; subclasses add signatures or
    state and reuse ``logits``."""
    import tensorflow as tf

    class SmallClassifier(tf.Module):
        def __init__(self, rng: np.random.Generator):
            super().__init__()
            self.k = tf.constant(rng.normal(size=(3, 3, 3, 8)).astype("float32"))
            self.w = tf.constant(rng.normal(size=(8, 2)).astype("float32"))

        def logits(self, image):
            x = tf.nn.relu6(tf.nn.conv2d(image, self.k, 2, "SAME"))
            return tf.matmul(tf.reduce_mean(x, [1, 2]), self.w)

        @tf.function(input_signature=[tf.TensorSpec(IMAGE, tf.float32, name="image")])
        def classify(self, image):
            return {"logits": self.logits(image)}

    return SmallClassifier


def random_images(rng: np.random.Generator, n: int = 8):
    """A representative data set for ``small_classifier_class``: ``n`` samples of one uniform [-1, 1) image."""
    return ([rng.uniform(-1, 1, IMAGE).astype("float32")] for _ in range(n))


def full_int8(converter, representative) -> bytes:
    """Convert with full int8 quantisation (int8 builtins only, int8 input and output)."""
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def tflite_output(data: bytes, x: np.ndarray) -> np.ndarray:
    """TensorFlow Lite's first output of the model ``data`` (flatbuffer bytes) on the first input ``x``."""
    import tensorflow as tf

    it = tf.lite.Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


REFUSING_COMMANDS = ("bundle", "analyze", "validate")   # the commands that read a model file and refuse a bad one


def cli_refusal(command: str, model, out, capsys) -> str:
    """Run ``edgenas COMMAND`` (one of ``REFUSING_COMMANDS``, writing to ``out`` where it writes) on a model it
    must refuse; check that it exits 2 with one ``error:`` line naming the file, no traceback, nothing written.
    That line."""
    from pipeline.cli import main

    argv = {"bundle": ["bundle", str(model), "--out", str(out)],
            "analyze": ["analyze", str(model), "--device", "cortex-m7"],
            "validate": ["validate", str(model), "--device", "cortex-m7", "--latency-ms", "10", "--sram-kb",
                         "256", "--flash-kb", "1024", "--min-accuracy", "0", "--out", str(out)]}[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(model) in err[0], err
    assert "Traceback" not in captured.err and not out.exists()
    return err[0]
