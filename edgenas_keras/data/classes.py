"""The class count flows from the data: a data set's class names, and the search space sized for them.

An Examples folder written by EdgeNAS (``edgenas data synth|ingest``, ``edgenas_keras.data.records``) records
its class names in label order in ``stats.json`` (``classes``; label ``i`` is ``names[i]``). The search, the
supernet, training, QAT, export, the TFLM evaluation, validation and the firmware bundle all take the class
count and the names from there, never from the search-space file: ``space_for_data`` gives the space a head
of as many outputs as the data has classes. When the space file states another ``head.num_classes``, **the
data wins** and a one-line warning says so (a space is a set of architectures; the head follows the task).

Data sets written before ``classes`` existed, and folders without ``stats.json`` (other tools), are VWW's
two classes ``no_person``, ``person`` (``records.class_names``). Pure Python: no TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from edgenas_keras.data.records import STATS_FILE, VWW_CLASSES, class_names
from edgenas_keras.errors import UserError
from edgenas_keras.arch.space import SearchSpace


def dataset_class_names(data_dir: str | Path) -> list[str]:
    """The class names of the Examples folder ``data_dir`` in label order, from its ``stats.json``
    (``records.class_names``); VWW's ``["no_person", "person"]`` without one. ``UserError`` for a
    ``stats.json`` that is not JSON, or that names fewer than two classes."""
    path = Path(data_dir) / STATS_FILE
    if not path.is_file():
        return list(VWW_CLASSES)
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({exc}); rerun `edgenas data ingest`") from None
    if not isinstance(stats, dict):
        raise UserError(f"{path}: must be a JSON object (the stats `edgenas data ingest` writes)")
    names = class_names(stats)
    if len(names) < 2:
        raise UserError(f"{path}: the data set has {len(names)} class(es) ({', '.join(names) or 'none'}); a "
                        "classifier needs at least 2")
    return names


def space_for_data(space: SearchSpace, names: list[str] | tuple[str, ...],
                   warn: Callable[[str], None] | None = None) -> SearchSpace:
    """``space`` with a head of ``len(names)`` outputs: the data's class count wins over the space file's
    ``head.num_classes``. When they differ, ``warn`` (if given) receives one line saying so."""
    n = len(names)
    if n == space.num_classes:
        return space
    if n < 2:
        raise UserError(f"the data set has {n} class(es); a classifier needs at least 2")
    if warn is not None:
        shown = ", ".join(names[:8]) + (", ..." if n > 8 else "")
        warn(f"warning: search space {space.name!r} states head.num_classes {space.num_classes}, the data set "
             f"has {n} classes ({shown}): the head gets {n} outputs (the data wins)")
    return space.with_classes(n)
