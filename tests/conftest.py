"""Test set-up shared by every test: the environment every EdgeNAS process needs, before TensorFlow loads."""

import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning)

import edgenas_keras  # noqa: E402,F401  (the one place the library sets it for every entry point)

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

