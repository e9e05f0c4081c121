"""Progress lines on stderr: the one helper every part of the project uses (library, components, deploy, CLI,
benchmarks).

Pure Python (imports only ``sys``), so any module may use it without loading TensorFlow. Functions that report
progress take a ``progress: Callable[[str], None] | None`` argument; pass ``progress.stderr`` (or a
``progress.prefixed(...)`` writer) to print, ``None`` to stay quiet::

    from edgenas_keras import progress

    progress.stderr("resuming the search")          # -> "resuming the search"
    log = progress.prefixed("ingest: ")
    log("wrote 100 images")                         # -> "ingest: wrote 100 images"
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["stderr", "prefixed"]


def stderr(msg: str) -> None:
    """Write one progress line to standard error and flush it at once.

    ``sys.stderr`` is looked up at each call, so redirections made later (pytest's ``capsys``,
    ``contextlib.redirect_stderr``) see the line.

    Args:
        msg: the line, without its trailing newline (one is added).

    Returns:
        None.
    """
    print(msg, file=sys.stderr, flush=True)


class _Prefixed:
    """A progress writer that puts a fixed prefix before each line; a plain object, so it pickles (Beam workers)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, msg: str) -> None:
        stderr(f"{self.prefix}{msg}")

    def __repr__(self) -> str:
        return f"progress.prefixed({self.prefix!r})"

    def __getstate__(self):
        return self.prefix

    def __setstate__(self, prefix: str) -> None:
        self.prefix = prefix


def prefixed(prefix: str) -> Callable[[str], None]:
    """A progress writer that prints ``prefix + msg`` to standard error (as ``stderr`` does) for each ``msg``.

    Args:
        prefix: the text put before every line, exactly as given (include any separator, e.g. ``"ingest: "``).

    Returns:
        A callable taking one line (``str``) and returning None; it can be pickled, so it may be handed to
        worker processes.
    """
    return _Prefixed(prefix)
