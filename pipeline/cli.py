"""The ``edgenas`` command line: one entry point, one module per subcommand group in pipeline/commands.

Error contract (DESIGN.md section 4): a user's mistake prints one line ``error: ...`` on stderr and exits
with status 2; ``--debug`` shows the traceback instead.

Beam options after ``--``: the commands with ``--beam-arg`` (``run``, ``data ingest``) also take Beam options
after a literal ``--`` (``edgenas data ingest ... -- --direct_num_workers=2``). ``parse_args`` splits the
command line at the first ``--`` and appends the tail to ``args.beam_arg``; a tail given to any other command
is a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

# The Google client libraries (TFX and kfp import them) warn on import about their own future support:
# google-api-core about Python 3.10 once per client package, google-auth about grpcio, aiplatform about
# google-cloud-storage (about 17 FutureWarnings before a command prints anything); users should see our
# output. Only those: every other warning (tfmot's "will not be quantized" among them) still shows.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")

import edgenas_keras  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from edgenas_keras.errors import UserError  # noqa: E402
from pipeline.commands import COMMAND_MODULES  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The ``edgenas`` argument parser: ``--debug`` and a required subcommand, one group per module of
    ``COMMAND_MODULES`` (each adds its own with ``register(sub)``)."""
    parser = argparse.ArgumentParser(
        prog="edgenas",
        description="EdgeNAS: latency- and memory-constrained architecture search for microcontrollers, "
        "from VWW data to a TFLite Micro bundle.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks for errors, and the native libraries' own log lines (TensorFlow, "
                        "its converter) that EdgeNAS otherwise silences")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


class BeamTailError(UserError):
    """Arguments after ``--`` given to a command that takes no Beam options."""


def parse_args(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse an ``edgenas`` command line (``sys.argv[1:]`` if None). Everything after the first literal ``--``
    is a Beam option, appended to ``args.beam_arg`` after the ``--beam-arg`` ones.

    Raises BeamTailError if there is a ``--`` and the command has no ``--beam-arg``; argparse's own usage
    errors exit with status 2 as usual."""
    argv = list(sys.argv[1:] if argv is None else argv)
    tail = None
    if "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1:]
    args = (parser or build_parser()).parse_args(argv)
    if tail is not None:
        if not hasattr(args, "beam_arg"):
            command = " ".join(str(v) for k, v in sorted(vars(args).items())
                               if k == "command" or (k.endswith("_command") and v))
            raise BeamTailError(f"`edgenas {command}` takes no Beam options, but arguments follow `--`: "
                                f"{' '.join(tail) or '(none)'} (only `run` and `data ingest` pass options after "
                                "-- to Beam)")
        args.beam_arg = [*args.beam_arg, *tail]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one ``edgenas`` command line (``sys.argv[1:]`` if ``argv`` is None) and return its exit status.

    Returns the handler's status (``None`` counts as 0); 2 after printing ``error: <message>`` on stderr when
    a ``UserError`` is raised (a ``BeamTailError`` included); 130 on Ctrl-C. argparse's usage errors exit with
    2 through ``SystemExit``. With ``--debug`` a ``UserError`` raised by the command propagates (a traceback)
    instead, and the native libraries' logging is switched back on.
    """
    try:
        args = parse_args(argv)
    except BeamTailError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.debug:
        # native libraries' own logging (TensorFlow's C++ log, the converter's) becomes visible again
        os.environ["EDGENAS_DEBUG"] = "1"
        if "tensorflow" not in sys.modules:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    try:
        rc = args.func(args)
        return int(rc or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
