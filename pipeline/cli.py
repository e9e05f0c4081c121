"""The ``edgenas`` command line: one entry point, one module per subcommand group in pipeline/commands.

Error contract (DESIGN.md section 4): a user's mistake prints one line ``error: ...`` on stderr and exits
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

# google-api-core warns about Python 3.10 on every Google client import; users should see our output.
warnings.filterwarnings("ignore", category=FutureWarning)

import edgenas_keras  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from edgenas_keras.errors import UserError  # noqa: E402
from pipeline.commands import COMMAND_MODULES  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
