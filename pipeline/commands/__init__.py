"""Subcommand modules. Each has ``register(subparsers)`` that adds its parser(s) with ``func`` set.

Keep heavy imports (TensorFlow, TFX, Beam) inside the command functions so ``edgenas --help`` stays fast.
"""

from pipeline.commands import analyze, arch, bundle, data, deploy, emulate, lut, report, run, search, space, train

COMMAND_MODULES = [space, arch, lut, analyze, bundle, emulate, data, deploy, search, run, train, report]
