"""Helpers shared by the subcommands: JSON output and path checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgenas_keras.errors import UserError


def emit(args, obj: dict, human: str | None = None) -> None:
    """Print ``obj`` as one JSON object when ``--json`` was given, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(obj, sort_keys=True, default=str))
    else:
        print(human if human is not None else json.dumps(obj, indent=2, sort_keys=True, default=str))


def existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {path} does not exist or is not a file")
    return p


def existing_dir(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{what} {path} does not exist or is not a directory")
    return p


def progress_write(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_space(path: str | None):
    """The shipped search space, or a user's YAML (errors become one-line user errors)."""
    from edgenas_keras.arch.space import SearchSpace

    try:
        return SearchSpace.load(path)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"search space: {exc}") from None


def parse_arch(text: str, space):
    """Decode an architecture string and check it against ``space``; errors name the bad token."""
    from edgenas_keras.arch.space import decode

    try:
        arch = decode(text)
        space.check(arch)
    except ValueError as exc:
        raise UserError(f"architecture {text!r}: {exc}") from None
    return arch
