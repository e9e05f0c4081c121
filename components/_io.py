"""Artifact folders as local paths, on one machine or in a Kubeflow container.

The library reads and writes local files. Locally an artifact's URI is a folder and is used as is; on
Kubeflow it is ``gs://...``, so inputs are copied down to a scratch folder and outputs are written to one
and copied up when complete (TFX's ``fileio`` speaks both). Components use only these helpers, so the same
executor code runs under LocalDagRunner, BeamDagRunner and the TFX Kubeflow container entrypoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tfx.dsl.io import fileio

from edgenas_keras import progress
from edgenas_keras._fs import atomic_write_json


def is_remote(uri: str) -> bool:
    """True for a URI with a scheme (``gs://...``: anything with ``://``), False for a local path."""
    return "://" in uri


def _copy_tree(src: str, dst: str) -> None:
    for root, _dirs, files in fileio.walk(src):
        root = root.decode() if isinstance(root, bytes) else str(root)
        rel = os.path.relpath(root, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        fileio.makedirs(target)
        for f in files:
            f = f.decode() if isinstance(f, bytes) else str(f)
            fileio.copy(os.path.join(root, f), os.path.join(target, f), overwrite=True)


def input_dir(uri: str) -> Path:
    """A local folder holding the artifact at ``uri`` (the folder itself when it is local)."""
    if not is_remote(uri):
        return Path(uri)
    local = Path(tempfile.mkdtemp(prefix="edgenas-in-"))
    _copy_tree(uri, str(local))
    return local


@contextlib.contextmanager
def output_dir(uri: str):
    """Yield a local folder to write the artifact into; a remote ``uri`` receives it on success."""
    if not is_remote(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)
        yield Path(uri)
        return
    local = Path(tempfile.mkdtemp(prefix="edgenas-out-"))
    try:
        yield local
        _copy_tree(str(local), uri)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def write_json(path: Path, obj) -> None:
    """Write JSON under a temporary name, then rename: a reader never sees half a file."""
    atomic_write_json(path, obj, indent=2, sort_keys=True, default=str)


def read_json(path: Path):
    """The JSON document in the local file ``path`` (UTF-8)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def log(component: str, msg: str) -> None:
    """One progress line on stderr, ``"  <component>: <msg>"`` (the CLI silences TFX's own logging)."""
    progress.stderr(f"  {component}: {msg}")
