"""Where the workplace's shared folder is (reference models, the TFLM offline mirror), for tests that read it.

Test modules import this, not ``conftest``: several folders have a ``conftest.py``, and which one the bare name
``conftest`` means depends on collection order."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGENAS_SHARED", ROOT.parent / "shared"))
REFERENCE_MODELS = SHARED / "reference_models"
