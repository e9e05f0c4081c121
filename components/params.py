"""Run-time parameters as the components receive them, checked again where they are used.

The pipeline configuration is checked when it is loaded (pipeline/config.py), but on Kubeflow Pipelines
the budgets, the seed, the data paths and the push destination are run-time parameters of the compiled
spec (``edgenas submit --param budgets_latency_ms=30``): a value given at submission never passed through
that check. The components therefore check what they receive, with the same rules, and name both the
config field and the run-time parameter in the one-line ``UserError``.

Pure Python (no TFX import), so pipeline code and tests can use it cheaply.
"""

from __future__ import annotations

import json
import math

from edgenas_keras.budgets import Budgets
from edgenas_keras.errors import UserError


def _where(field: str) -> str:
    return f"{field} (run-time parameter {field.replace('.', '_')})"


def budgets(latency_ms: float, sram_bytes: int, flash_bytes: int, min_accuracy: float | None = None) -> Budgets:
    """The library's ``Budgets`` from the run-time parameters (``latency_ms`` in ms, ``sram_bytes`` and
    ``flash_bytes`` in bytes, flash = model + TFLM runtime, ``min_accuracy`` a fraction; ``None``: 0, the
    search does not design for it).

    Raises UserError naming the config field and the run-time parameter when a budget is not positive (or
    the accuracy floor not in [0, 1])."""
    for name, value in (("latency_ms", latency_ms), ("sram_bytes", sram_bytes), ("flash_bytes", flash_bytes)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise UserError(f"{_where('budgets.' + name)} must be a positive number, got {value!r}")
    if min_accuracy is not None and not (isinstance(min_accuracy, (int, float)) and 0.0 <= min_accuracy <= 1.0):
        raise UserError(f"{_where('budgets.min_accuracy')} must be a fraction in [0, 1], got {min_accuracy!r}")
    return Budgets(float(latency_ms), int(sram_bytes), int(flash_bytes), float(min_accuracy or 0.0))


def paths(value: str, field: str) -> list[str]:
    """A list of paths from a string parameter: a JSON list (``["/a", "/b"]``), or one path as is.

    The compiled spec carries ``data.images`` and ``data.annotations`` as JSON lists in string parameters
    (Kubeflow parameters of TFX components are strings or numbers). Raises UserError for a JSON value
    that is not a list of non-empty strings."""
    text = (value or "").strip()
    if not text:
        return []
    if not text.startswith("["):
        return [text]
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{_where(field)} is not a JSON list of paths ({exc.msg}): {text[:80]!r}") from None
    if not all(isinstance(p, str) and p for p in items):
        raise UserError(f"{_where(field)} must be a JSON list of non-empty paths, got {text[:80]!r}")
    return items


def data_section(data: dict, images: str, annotations: str, minival_ids: str) -> dict:
    """The config's ``data`` section with the run-time data paths put back in and checked per source."""
    data = {**data, "images": paths(images, "data.images"), "annotations": paths(annotations, "data.annotations"),
            "minival_ids": minival_ids or ""}
    if data["source"] == "coco":
        if not data["images"] or len(data["images"]) != len(data["annotations"]):
            raise UserError(f"{_where('data.annotations')} must list one instances file per data.images folder "
                            f"(coco), got {len(data['annotations'])} for {len(data['images'])}")
    elif data["source"] == "folders" and len(data["images"]) != 1:
        raise UserError(f"{_where('data.images')} must name exactly one folder (folders: one subfolder per "
                        f"class), got {len(data['images'])}")
    elif data["source"] == "mlperf-tiny" and len(data["images"]) != 1:
        raise UserError(f"{_where('data.images')} must name exactly one folder (mlperf-tiny: person/ and "
                        f"non_person/), got {len(data['images'])}")
    return data


def seed(value: int) -> int:
    """The run's seed (search and training), an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{_where('seed')} must be an integer >= 0, got {value!r}")
    return value


def push_dest(value: str) -> str:
    """Where bundles are pushed: a folder or ``gs://bucket/prefix``, not empty."""
    if not value or not value.strip():
        raise UserError(f"{_where('push.dest')} must name a folder or gs://bucket/prefix")
    return value.strip()
