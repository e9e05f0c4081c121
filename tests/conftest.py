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



# The longest test files first. `make test` runs two xdist workers with --dist loadfile, which hands out files in
# collection order; a 15-20 min file collected late (the benchmark's smoke run, the whole pipelines) would end
# the run on one worker while the other idles. A stable sort: the rest keep pytest's order.
LONGEST_FIRST = ("tests/bench/", "tests/e2e/test_run.py", "tests/e2e/test_five_classes.py")


def pytest_collection_modifyitems(config, items):
    """Move the files in ``LONGEST_FIRST`` to the front, in that order."""
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)),
                    len(LONGEST_FIRST))

    items.sort(key=rank)
