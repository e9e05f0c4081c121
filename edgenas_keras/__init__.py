"""EdgeNAS library: search space, architectures, Keras builder, cost models, search, QAT, export, TFLM tools.

This package init is the one place that sets ``TF_USE_LEGACY_KERAS=1`` for every entry point (CLI, tests,
TFX executors, the container), because tensorflow-model-optimization 0.8 only supports Keras 2 (tf_keras)
and the variable must be set before TensorFlow is first imported. Pure-Python modules here (space, arch,
ops, lut) do not import TensorFlow, so importing the package stays cheap.

The library never imports tfx, kfp or apache_beam (DESIGN.md section 3; enforced by import-linter).
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ log (3: none; import-time "Unable to register cuDNN factory" lines are errors of level 2)
# is not for EdgeNAS users; `edgenas --debug` turns it back on (pipeline/cli.py).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
