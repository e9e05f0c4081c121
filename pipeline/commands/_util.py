"""Helpers shared by the subcommands: the flags several commands share (argparse parent parsers), JSON
output and path checks.

A flag used by more than one command is declared once here and added with ``parents=[...]`` in the
command's ``add_parser`` call, so its name, dest, default and help are the same everywhere::

    p = sub.add_parser("analyze", parents=[LUT_SOURCE, JSON_OUTPUT], ...)
"""

from __future__ import annotations

import argparse
import json
import sys
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
