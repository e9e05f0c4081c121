"""Atomic single-file writes: a reader sees the old file or the new one, never a half-written one; and the
two readers that go with files written over time (``sha256_file``, ``read_json_lines``).

Every writer of a single file that others read (LUTs, the LUT manifest, search and benchmark records, the
blessing, reports, caches, data shards) goes through here: the bytes go to a temporary file in the same folder
(``tempfile.mkstemp``: a unique name, so two processes writing the same path do not write into one temporary
file), are flushed and ``fsync``-ed, and the temporary file is renamed over the target with ``os.replace``
(atomic on POSIX and Windows within one file system). On any error the temporary file is removed and the
target is left as it was. The new file gets the mode a plain ``open(path, "w")`` would give it (0666 less the
umask), not ``mkstemp``'s 0600.

Folders written whole and then renamed into place (``train``'s staging folder, ``bundle``) are a different
pattern and do not use this module. Pure Python: no TensorFlow.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_writer", "read_json_lines",
           "sha256_file"]


@functools.cache
def _file_mode() -> int:
    """0666 less the process umask: the mode ``open()`` creates files with (read once per process; reading
    the umask means setting it, so this is done once rather than around every write)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file object whose contents replace ``path`` when the ``with`` block ends without an
    exception (for writers that stream, e.g. through ``gzip.GzipFile``); on an exception the temporary
    file is removed and ``path`` is untouched. The folder must exist."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (module docstring). The folder must exist."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` (encoded with ``encoding``) atomically. No newline translation: the
    file holds exactly ``text.encode(encoding)``."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj, **json_kwargs) -> None:
    """Replace ``path`` with ``json.dumps(obj, **json_kwargs)`` and a final newline, atomically (UTF-8).
    Callers pass the formatting they always used (``indent``, ``sort_keys``, ``default``) so files stay
    byte-identical."""
    atomic_write_text(path, json.dumps(obj, **json_kwargs) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB chunks (a large model or archive is not held in
    memory). ``OSError`` when it cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_lines(path: str | os.PathLike) -> Iterator:
    """The JSON values of a JSON-lines file (progress and cache files appended to as work is done), in file
    order; a line that is not valid JSON (a write cut short by a kill) is skipped, and a missing file has
    none. The values are as parsed: callers check they are the objects they expect."""
    path = Path(path)
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue
