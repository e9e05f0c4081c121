"""Warnings: the CLI hides the Google client libraries' import-time FutureWarnings and nothing else; in
particular tfmot's warning that a layer "will not be quantized" (a UserWarning:
tensorflow_model_optimization/python/core/quantization/keras/quantize.py:213, ``warnings.warn(...)`` with the
default category) must reach the user.

Each check runs in a fresh interpreter: pytest's own filters (pyproject.toml, tests/conftest.py) would
otherwise decide what shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
# the text tfmot writes (quantize.py:213-218)
TFMOT = ("Lambda layers are not supported by automatic model annotation because the internal functionality "
         "cannot always be determined by serialization alone. We recommend that you make a custom layer and add "
         "a custom QuantizeConfig for it instead. This layer will not be quantized which may lead to unexpected "
         "results.")
GOOGLE = ("You are using a non-supported Python version (3.10.13). Google will not post any further updates to "
          "google.api_core supporting this Python version.")  # google/api_core/_python_version_support.py:246


def _stderr(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stderr


def _warn(message: str, category: str, module: str) -> str:
    # warn_explicit attributes the warning to ``module`` as warnings.warn does to the caller's module
    return f"warnings.warn_explicit({message!r}, {category}, 'x.py', 1, module={module!r})"


def test_tfmot_will_not_be_quantized_shows_after_importing_the_cli():
    err = _stderr("import warnings, pipeline.cli\n"
                  + _warn(TFMOT, "UserWarning", "tensorflow_model_optimization.python.core.quantization.keras."
                          "quantize"))
    assert "will not be quantized" in err


def test_only_the_google_client_future_warnings_are_hidden():
    err = _stderr("import warnings, pipeline.cli\n"
                  + _warn(GOOGLE, "FutureWarning", "google.api_core._python_version_support") + "\n"
                  + _warn("grpcio < 1.83.0 does not support Post-Quantum Cryptography", "FutureWarning",
                          "google.auth.transport.grpc") + "\n"
                  + _warn("a future change in tfmot", "FutureWarning", "tensorflow_model_optimization.x"))
    assert "non-supported Python version" not in err and "Post-Quantum" not in err
    assert "a future change in tfmot" in err


def test_tfmot_will_not_be_quantized_shows_during_a_pipeline_run():
    err = _stderr("import io, warnings, pipeline.cli\nfrom pipeline.runners import quiet_logging\n"
                  "quiet_logging(io.StringIO())\n"
                  + _warn(TFMOT, "UserWarning", "tensorflow_model_optimization.python.core.quantization.keras."
                          "quantize"))
    assert "will not be quantized" in err
