"""The example CI job stays runnable: valid YAML, and its `edgenas submit` lines parse with today's CLI."""

import shlex
from pathlib import Path

import yaml

from deploy.kfp_submit import normalize_cron
from pipeline.cli import build_parser

WORKFLOW = Path(__file__).resolve().parents[2] / "deploy" / "ci" / "github-actions-kubeflow.yml"


def edgenas_commands(subcommand: str) -> list[list[str]]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    found = []
    for job in doc["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                argv = shlex.split(line.split("|")[0])
                if argv[:2] == [".venv/bin/edgenas", subcommand]:
                    found.append(argv[1:])
    return found


def test_ci_submit_commands_parse_and_schedule_is_valid():
    commands = edgenas_commands("submit")
    assert len(commands) == 2  # the schedule on merge, the optional run now
    parser = build_parser()
    schedules = []
    for argv in commands:
        args = parser.parse_args(argv)
        assert args.json and args.package == "pipeline.yaml"
        schedules.append(args.schedule)
    assert normalize_cron(schedules[0]) == "0 0 3 * * 1" and schedules[1] is None
