"""``edgenas report RUN_DIR [--out report.html]``: a self-contained HTML report of a run or of the benchmark.

RUN_DIR is a folder ``edgenas run --out`` wrote (it holds ``summary.json``; every run's RunReport
component also writes the report as an artifact, ``summary.json``'s ``report``), or a benchmark result: a folder holding ``paper_tables.json`` or that JSON
file. The file has everything inline (SVG figures, styles; no script, no network). Finding a run's files is
``pipeline/report.py``; the sections and figures are ``edgenas_keras/report.py``.
"""

from __future__ import annotations

from pipeline.commands._util import JSON_OUTPUT, emit


def register(sub) -> None:
    """Add ``edgenas report`` to the subcommand parser ``sub``."""
    p = sub.add_parser(
        "report",
        parents=[JSON_OUTPUT],
        help="a self-contained HTML report of a pipeline run or of the benchmark",
        description="Write one self-contained HTML file (inline SVG figures, no script, no network) about a "
        "pipeline run or a benchmark result. For a run (a folder `edgenas run --out` wrote; every run "
        "also writes it as the RunReport artifact that summary.json's report names): the verdict against every budget; int8 accuracy against latency "
        "for every model validated in the folder, with the Pareto front and the latency budget; the search "
        "history (expected latency and memory against the search's budgets, the penalty multipliers, alpha's "
        "entropy per block); the final model's latency per operator (the LUT's price, and the emulated core's "
        "measured instructions where the validator ran it); the LUT's predicted-against-measured latencies "
        "(the table's <table>-validation.jsonl rows, where they exist). For a benchmark result (a folder "
        "holding paper_tables.json, or the JSON file): accuracy against latency for every network of each "
        "table, with the Pareto front and the budget, and the tables' figures. Every figure's numbers are "
        "also in its caption and a table.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run's output folder, or a benchmark result (folder or "
                   "paper_tables.json)")
    p.add_argument("--out", metavar="FILE.html", help="where to write the report (default: report.html in "
                   "RUN_DIR, or beside the benchmark JSON)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    """Write the HTML report of a run folder or a benchmark result (``pipeline.report.write_report``) and
    print its path.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a source
    that is neither, ``--out`` naming a folder.
    """
    from pipeline.report import write_report

    path, kind = write_report(args.run_dir, args.out)
    emit(args, {"report": str(path), "kind": kind}, f"wrote {path} ({kind} report)")
    return 0
