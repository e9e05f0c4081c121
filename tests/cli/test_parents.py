"""The flags declared once in pipeline/commands/_util.py (argparse parent parsers) and the CLI's spelling
rules: every command that uses a parent lists its flags in --help and parses them to the same dest; the
LUT choice is exclusive; ``run --out`` and ``run --output`` are one flag; Beam options after ``--``."""

from __future__ import annotations

import pytest

from pipeline.cli import build_parser, main, parse_args
from pipeline.commands import _util

# command path -> the parents it uses
USES = {
    ("analyze",): [_util.LUT_SOURCE, _util.JSON_OUTPUT],
    ("arch", "check"): [_util.LUT_SOURCE, _util.SPACE_FILE, _util.JSON_OUTPUT],
    ("validate",): [_util.LUT_SOURCE, _util.JSON_OUTPUT],
    ("search",): [_util.LUT_SOURCE_OPTIONAL, _util.SPACE_FILE, _util.JSON_OUTPUT],
    ("lut", "validate"): [_util.LUT_SOURCE_NO_CLOCK, _util.SPACE_FILE, _util.JSON_OUTPUT],
    ("lut", "calibrate"): [_util.LUT_SOURCE_NO_CLOCK, _util.JSON_OUTPUT],
    ("lut", "build"): [_util.SPACE_FILE, _util.JSON_OUTPUT],
    ("lut", "profile-set"): [_util.SPACE_FILE, _util.JSON_OUTPUT],
    ("lut", "list"): [_util.JSON_OUTPUT],
    ("lut", "show"): [_util.JSON_OUTPUT],
    ("lut", "collect"): [_util.JSON_OUTPUT],
    ("lut", "qemu-board"): [_util.JSON_OUTPUT],
    ("space", "show"): [_util.SPACE_FILE, _util.JSON_OUTPUT],
    ("train",): [_util.SPACE_FILE, _util.JSON_OUTPUT],
    ("bundle",): [_util.JSON_OUTPUT],
    ("emulate",): [_util.JSON_OUTPUT],
    ("data", "ingest"): [_util.JSON_OUTPUT],
    ("data", "synth"): [_util.JSON_OUTPUT],
    ("submit",): [_util.JSON_OUTPUT],
    ("push",): [_util.JSON_OUTPUT],
    ("run",): [_util.JSON_OUTPUT],
    ("compile",): [_util.JSON_OUTPUT],
    ("report",): [_util.JSON_OUTPUT],
}

# the commands with a --device NAME | --lut FILE choice, and minimal other arguments that let them parse
LUT_CHOICE = {
    ("analyze",): ["m.tflite"],
    ("arch", "check"): ["ir_k3_e4_c16"],
    ("validate",): ["m.tflite", "--latency-ms", "1", "--sram-kb", "1", "--flash-kb", "1", "--min-accuracy", "0.5"],
    ("search",): ["--data", "d", "--out", "o"],
    ("lut", "validate"): [],
    ("lut", "calibrate"): ["--model", "m.tflite", "--latency-ms", "1", "--out", "o.json"],
}


def _subparser(path):
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[name]
    return parser


def _flags(parent):
    return [s for a in parent._actions for s in a.option_strings]


def test_every_parent_flag_declared_once_in_the_commands():
    """No command declares --json, --space or the LUT choice itself any more: each comes from a parent."""
    import inspect

    from pipeline.commands import COMMAND_MODULES, lut_tools

    for module in [*COMMAND_MODULES, lut_tools]:
        if module is _util:
            continue
        src = inspect.getsource(module)
        for flag in ('"--json"', '"--space"', '"--lut"'):
            assert flag not in src, f"{module.__name__} declares {flag} itself"


@pytest.mark.parametrize("path", sorted(USES), ids=lambda p: " ".join(p))
def test_help_lists_the_parents_flags(path, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*path, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for parent in USES[path]:
        for flag in _flags(parent):
            assert flag in out, f"edgenas {' '.join(path)} --help does not list {flag}"
    # and the parser really has the parent's actions, with the same dests
    dests = {a.dest for a in _subparser(path)._actions}
    for parent in USES[path]:
        assert {a.dest for a in parent._actions} <= dests


@pytest.mark.parametrize("path", sorted(LUT_CHOICE), ids=lambda p: " ".join(p))
def test_device_and_lut_together_is_one_usage_error(path, capsys):
    argv = [*path, *LUT_CHOICE[path]]
    args = build_parser().parse_args([*argv, "--device", "cortex-m7"])
    assert (args.device, args.lut) == ("cortex-m7", None)
    args = build_parser().parse_args([*argv, "--lut", "t.json"])
    assert (args.device, args.lut) == (None, "t.json")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*argv, "--device", "X", "--lut", "Y"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "not allowed with argument" in errors[0], err
    assert err.startswith("usage: ")


@pytest.mark.parametrize("path", [p for p in sorted(LUT_CHOICE) if p != ("search",)], ids=lambda p: " ".join(p))
def test_the_lut_choice_stays_required_where_it_was(path, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*path, *LUT_CHOICE[path]])
    assert e.value.code == 2
    assert "one of the arguments --device --lut is required" in capsys.readouterr().err


def test_search_leaves_the_lut_choice_to_lut_resolve():
    """search parses without either (lut.resolve then asks for one, after the data and budget checks)."""
    args = build_parser().parse_args(["search", *LUT_CHOICE[("search",)]])
    assert args.device is None and args.lut is None


def test_clock_mhz_is_a_float_where_the_parent_gives_it():
    for path in (("analyze",), ("arch", "check"), ("validate",)):
        args = build_parser().parse_args([*path, *LUT_CHOICE[path], "--device", "d", "--clock-mhz", "216"])
        assert args.clock_mhz == 216.0 and isinstance(args.clock_mhz, float)
    # lut calibrate's --clock-mhz is the board's clock during the measurements, checked by the command
    args = build_parser().parse_args(["lut", "calibrate", *LUT_CHOICE[("lut", "calibrate")], "--device", "d",
                                      "--clock-mhz", "216"])
    assert args.clock_mhz == "216"


def test_defaults_are_unchanged():
    args = build_parser().parse_args(["space", "show"])
    assert args.space is None and args.json is False
    args = build_parser().parse_args(["space", "show", "--space", "s.yaml", "--json"])
    assert args.space == "s.yaml" and args.json is True


def test_run_out_and_output_are_one_flag():
    parser = build_parser()
    assert parser.parse_args(["run"]).output == "runs/default"
    assert parser.parse_args(["run", "--out", "a"]).output == "a"
    assert parser.parse_args(["run", "--output", "a"]).output == "a"
    assert parser.parse_args(["run", "--output", "a", "--out", "b"]).output == "b"  # one dest: the last wins


def test_run_help_documents_out_and_the_alias(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--out DIR, --output DIR" in out and "--output is the same flag" in out


@pytest.mark.parametrize("argv", [
    ["run", "--runner", "beam"],
    ["data", "ingest", "--source", "folders", "--images", "d", "--out", "o"],
], ids=["run", "data ingest"])
def test_beam_options_after_double_dash(argv, capsys):
    args = parse_args([*argv, "--beam-arg=--a=1", "--", "--direct_num_workers", "2", "--runner=DirectRunner"])
    assert args.beam_arg == ["--a=1", "--direct_num_workers", "2", "--runner=DirectRunner"]
    assert parse_args(argv).beam_arg == []
    assert parse_args([*argv, "--"]).beam_arg == []
    # a flag of ours after -- is Beam's, not ours
    assert parse_args([*argv, "--", "--json"]).json is False
    with pytest.raises(SystemExit):
        parse_args([*argv, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "after a literal --" in out and "-- --direct_num_workers=" in out


def test_double_dash_tail_on_a_command_without_beam_options_is_an_error(capsys):
    rc = main(["space", "show", "--", "--direct_num_workers=2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--direct_num_workers=2" in err
    assert "space show" in err
