"""Helpers shared by the subcommands: the flags several commands share (argparse parent parsers), JSON
output, the plain-text tables (``format_table``), path checks and the KiB -> bytes conversion of budgets.

A flag used by more than one command is declared once here and added with ``parents=[...]`` in the
command's ``add_parser`` call, so its name, dest, default and help are the same everywhere::

    p = sub.add_parser("analyze", parents=[LUT_SOURCE, JSON_OUTPUT], ...)
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

from edgenas_keras.errors import UserError

# The help epilog of the commands that take Beam options (``run``, ``data ingest``); ``pipeline.cli`` moves
# everything after the first literal ``--`` on the command line into ``args.beam_arg``.
BEAM_OPTIONS_EPILOG = (
    "Beam options: everything after a literal -- goes to Beam unchanged, in any form Beam accepts "
    "(--name=value or --name value), after the --beam-arg ones; e.g. {example}. "
    "--beam-arg=OPTION (repeatable) does the same one option at a time."
)

# ---- shared flags (parent parsers; add_help=False so the child keeps its own -h) -------------------------

JSON_OUTPUT = argparse.ArgumentParser(add_help=False)
JSON_OUTPUT.add_argument("--json", action="store_true",
                         help="print the result as one JSON object on stdout instead of the human-readable text")

SPACE_FILE = argparse.ArgumentParser(add_help=False)
SPACE_FILE.add_argument("--space", metavar="FILE", help="search-space YAML (default: the shipped space)")

# the pipeline configuration: run, compile
PIPELINE_CONFIG = argparse.ArgumentParser(add_help=False)
PIPELINE_CONFIG.add_argument("--config", metavar="FILE", help="pipeline YAML (default: the embedded default.yaml)")


def lut_source(required: bool = True, clock_mhz: bool = True) -> argparse.ArgumentParser:
    """A parent parser with the LUT choice ``--device NAME | --lut FILE`` (mutually exclusive; ``required``
    as given) and, if ``clock_mhz``, ``--clock-mhz MHZ`` (float) to rescale a cycle table. The commands
    hand ``args.device, args.lut[, args.clock_mhz]`` to ``edgenas_keras.lut.resolve``."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--device", metavar="NAME",
                   help="a shipped LUT by name (see `edgenas lut list`): e.g. cortex-m7, timed on the emulated "
                   "core (a measured or emulated table lists the search space's and the reference models' keys), "
                   "or cortex-m7-analytical (also cortex-m4-, riscv-analytical), which prices any shape")
    g.add_argument("--lut", metavar="FILE",
                   help="a LUT file (format v1) instead, e.g. from `edgenas lut calibrate` or `edgenas lut "
                   "collect`; its metadata names the device")
    if clock_mhz:
        p.add_argument("--clock-mhz", type=float, metavar="MHZ", help="rescale a cycle LUT to this clock")
    return p


# --device NAME | --lut FILE (one required) and --clock-mhz: analyze, arch check, validate
LUT_SOURCE = lut_source()
# --device NAME | --lut FILE (one required), no --clock-mhz: lut validate, lut calibrate (whose --clock-mhz
# is the board's clock during the measurements, declared there)
LUT_SOURCE_NO_CLOCK = lut_source(clock_mhz=False)
# --device NAME | --lut FILE, at most one on the command line: search (``lut.resolve`` asks for one)
LUT_SOURCE_OPTIONAL = lut_source(required=False, clock_mhz=False)


def emit(args, obj: dict, human: str | None = None) -> None:
    """Print ``obj`` as one JSON object when ``--json`` was given, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(obj, sort_keys=True, default=str))
    else:
        print(human if human is not None else json.dumps(obj, indent=2, sort_keys=True, default=str))


def existing_file(path: str, what: str) -> Path:
    """``path`` as a Path if it is an existing file; else ``UserError`` calling it ``what`` (e.g. "model
    file")."""
    return _existing(path, what, Path.is_file, "a file")


def existing_dir(path: str, what: str) -> Path:
    """``path`` as a Path if it is an existing folder; else ``UserError`` calling it ``what`` (e.g. "data
    folder")."""
    return _existing(path, what, Path.is_dir, "a directory")


def _existing(path: str, what: str, is_kind, kind: str) -> Path:
    """``path`` as a Path if ``is_kind`` holds for it; else ``UserError``: "<what> <path> does not exist or is
    not <kind>"."""
    p = Path(path)
    if not is_kind(p):
        raise UserError(f"{what} {path} does not exist or is not {kind}")
    return p


def format_table(rows: Sequence[Sequence], headers: Sequence[str] = (), *, floatfmt: str | Sequence[str] = "g",
                 intfmt: str | Sequence[str] = "", colalign: Sequence[str | None] | None = None,
                 indent: str = "") -> str:
    """The commands' plain-text tables (``tabulate``'s "plain" format): a header line (if ``headers``), then
    one line per row, each column as wide as its widest cell or title, columns separated by two spaces.

    Cells are formatted from their Python type, never parsed from text (so a hex digest or ``"3,5"`` stays
    as written): ``float`` with ``floatfmt``, ``int`` with ``intfmt`` (``bool`` is text), ``None`` as an empty
    cell, anything else with ``str``. Columns whose cells are all numbers (or empty) are aligned right, the
    others left, unless ``colalign`` says otherwise; a title is aligned as its column. Trailing spaces are
    removed from every line.

    Args:
        rows: the table body, one sequence of cells per row (may be empty: then only the header line).
        headers: the column titles; empty for a table without a header line.
        floatfmt: a ``format()`` spec for float cells (e.g. ``".1f"``), or one spec per column.
        intfmt: a ``format()`` spec for int cells (e.g. ``","`` for thousands separators), or one per column.
        colalign: per column ``"left"``, ``"right"``, ``"center"`` or ``None`` (by type, as above).
        indent: text put before every line (e.g. two spaces under a caption).

    Returns:
        The table as one string, lines joined by ``"\\n"``, no trailing newline.
    """
    from tabulate import tabulate

    ncols = max([len(headers), *(len(r) for r in rows)])

    def per_column(spec, i: int):
        return spec if isinstance(spec, str) else spec[i]

    def cell(v, i: int) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return str(v)
        if isinstance(v, int):
            return format(v, per_column(intfmt, i))
        if isinstance(v, float):
            return format(v, per_column(floatfmt, i))
        return str(v)

    def numeric(i: int) -> bool:
        cells = [r[i] for r in rows if i < len(r) and r[i] is not None]
        return bool(cells) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cells)

    align = [(colalign[i] if colalign is not None and colalign[i] else None) or
             ("right" if numeric(i) else "left") for i in range(ncols)]
    body = [[cell(v, i) for i, v in enumerate(r)] for r in rows]
    # The titles go in as the first row: tabulate's own header row widens every column to its title + 2.
    text = tabulate([list(headers), *body] if headers else body, (), tablefmt="plain", disable_numparse=True,
                    colalign=align)
    return "\n".join(indent + line.rstrip() for line in text.splitlines())


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


def kib_to_bytes(kib: float | None, flag: str, allow_zero: bool = False) -> int | None:
    """A memory figure given on the command line in KiB (1024 bytes) -> whole bytes, the library's unit
    (``edgenas_keras.budgets``); None stays None (no budget).

    Raises ``UserError`` naming ``flag`` for a value that is not finite and positive (>= 0 with
    ``allow_zero``)."""
    if kib is None:
        return None
    if not math.isfinite(kib) or kib < 0 or (kib == 0 and not allow_zero):
        raise UserError(f"{flag} must be a {'non-negative' if allow_zero else 'positive'} number of KiB, got {kib:g}")
    if kib * 1024 >= 2**63:
        raise UserError(f"{flag} {kib:g} KiB is more bytes than a 64-bit integer holds")
    n = int(round(kib * 1024))
    if n == 0 and not allow_zero:
        raise UserError(f"{flag} {kib:g} KiB is less than one byte")
    return n
