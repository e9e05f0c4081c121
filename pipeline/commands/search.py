"""``edgenas search``: the constrained supernet search on an Examples folder for one device.

The budgets and the common settings are flags (KiB at this edge, converted to the library's bytes; flash
counts model + TFLM runtime, as ``edgenas validate`` checks it); every other setting of ``SearchConfig``
comes from ``--config YAML`` (flags win). The result object (architecture, exact latency, SRAM, flash...) is printed
with ``--json``; progress goes to stderr. Rerunning with the same ``--out`` resumes an interrupted search.
"""

from __future__ import annotations

from pipeline.commands._util import (
    JSON_OUTPUT,
    LUT_SOURCE_OPTIONAL,
    SPACE_FILE,
    emit,
    existing_dir,
    existing_file,
    kib_to_bytes,
)


def register(sub) -> None:
    """Add ``edgenas search`` to the subcommand parser ``sub``."""
    p = sub.add_parser(
        "search", parents=[LUT_SOURCE_OPTIONAL, SPACE_FILE, JSON_OUTPUT], help="find an architecture that meets latency/SRAM/flash budgets",
        description="Train the EdgeNAS supernet with the latency (and memory) penalties and derive an "
        "architecture that meets every budget by the exact cost models. Writes result.json, history.json, "
        "config.json, TensorBoard scalars (tb/) and checkpoints (ckpt/) under --out; rerunning with the same "
        "--out resumes. With `strategy: evolution` or `derive: proxy` in --config, children in the budget "
        "window are scored with the supernet's inherited weights (BN recomputed per child) and the best is "
        "returned; candidates.json lists them. With `strategy: evolution` and `fitness: trained` no supernet is "
        "trained: each candidate is trained from scratch for `fitness_steps` steps and scored (fitness.jsonl "
        "keeps the scores, so a rerun resumes); with `finalists: K` the best K are trained again for "
        "`finalist_steps` steps and that longer training picks the answer (finalists.jsonl). The head has one output per class of --data (its stats.json "
        "names them): a --space that states another head.num_classes is overridden, with a warning. A LUT "
        "built for the 2-class head prices an N-class head from its own head entries (a warning names the "
        "estimated keys).")
    p.add_argument("--data", required=True, metavar="DIR", help="Examples folder (Split-train/*.gz)")
    p.add_argument("--latency-ms", type=float, metavar="T", help="latency budget in ms (required unless in "
                   "--config)")
    p.add_argument("--sram-kb", type=float, metavar="M", help="peak SRAM (TFLM arena) budget in KiB")
    p.add_argument("--flash-kb", type=float, metavar="F",
                   help="flash budget in KiB: model + TFLM runtime (as `edgenas validate` checks it)")
    p.add_argument("--runtime-flash-kb", type=float, metavar="R",
                   help="the TFLM runtime's flash from your link map, set aside from --flash-kb (default: "
                   "documented per device)")
    p.add_argument("--epochs", type=int, metavar="E", help="search epochs (warm-up included)")
    p.add_argument("--seed", type=int, metavar="S", help="seed (same seed and inputs: same architecture)")
    p.add_argument("--config", metavar="YAML", help="any SearchConfig field, budgets as a mapping "
                   "(docs/guide/search.md)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_search)


def _config(args):
    import yaml

    from edgenas_keras.errors import UserError
    from edgenas_keras.search import SearchConfig
    from edgenas_keras.search.config import refuse_moved_fields

    d = {}
    if args.config:
        path = existing_file(args.config, "search config")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise UserError(f"{path}: must be a mapping of SearchConfig fields")
    source = args.config or "search flags"
    refuse_moved_fields(d, source)
    for name in ("epochs", "seed"):
        if getattr(args, name) is not None:
            d[name] = getattr(args, name)
    budgets = d.get("budgets") or {}
    given = {"latency_ms": args.latency_ms, "sram_bytes": kib_to_bytes(args.sram_kb, "--sram-kb"),
             "flash_bytes": kib_to_bytes(args.flash_kb, "--flash-kb")}
    d["budgets"] = {**budgets, **{k: v for k, v in given.items() if v is not None}}
    if d["budgets"].get("latency_ms") is None:
        raise UserError("give a latency budget: --latency-ms T (or budgets: {latency_ms: T} in --config)")
    if args.runtime_flash_kb is not None:
        d["runtime_flash_bytes"] = kib_to_bytes(args.runtime_flash_kb, "--runtime-flash-kb", allow_zero=True)
    return SearchConfig.from_dict(d, source=source)


def cmd_search(args) -> int:
    """Run (or resume) the constrained search on ``--data`` for the LUT's device, writing to ``--out``, and
    print the architecture with its latency, SRAM, flash and MACs.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): no latency
    budget, a bad ``--config`` or ``--space``, a missing data folder.
    """
    from edgenas_keras import lut as lutmod
    from edgenas_keras.search import run_search
    from edgenas_keras.arch.space import SearchSpace

    config = _config(args)
    data = existing_dir(args.data, "data folder")
    lut = lutmod.resolve(args.device, args.lut)
    space = None
    if args.space:
        try:
            space = SearchSpace.load(existing_file(args.space, "search space"))
        except ValueError as exc:
            from edgenas_keras.errors import UserError

            raise UserError(str(exc)) from None
    result = run_search(data, lut, config, args.out, space=space)
    d = result.as_dict()
    human = (f"{d['arch']}\nlatency {d['latency_ms']:.3f} ms (budget {config.budgets.latency_ms:g}), "
             f"SRAM {d['sram_bytes'] / 1024:.1f} kB, flash {d['flash_bytes'] / 1024:.1f} kB, "
             f"{d['macs'] / 1e6:.2f} MMACs on {d['device']}; result in {args.out}/result.json")
    emit(args, d, human)
    return 0
