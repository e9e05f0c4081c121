"""On-board profiling, host side, end to end: profile set out, a simulated board on a pseudo-terminal
speaking the line protocol (timing the models with the TFLM runtime), a reset mid-run, a valid measured LUT.

The real profiler firmware runs in QEMU in ``test_collect_qemu.py``; the simulated board stays for what QEMU
cannot show: a cycle-counting board (method measured), a protocol line cut short by a reset, a board that
reports another device."""

import json

import pytest
from sim_board import SimBoard

from deploy.lut_profiler import ProtocolError, parse_line
from edgenas_keras import lut as lutmod
from edgenas_keras.cost.graph import reachable_keys
from edgenas_keras.arch.space import SearchSpace
from pipeline.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def profile_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("set")
    assert main(["lut", "profile-set", "--device", "sim-board", "--out", str(out), "--limit", "3", "--json"]) == 0
    return out


def test_profile_set_has_models_manifest_and_c_source(profile_set):
    m = json.loads((profile_set / "manifest.json").read_text())
    keys = reachable_keys(SearchSpace.load())
    assert [e["key"] for e in m["keys"]] == keys[:3]
    for e in m["keys"]:
        assert (profile_set / e["file"]).stat().st_size == e["bytes"] and e["arena_bytes"] > 0
    src = (profile_set / "profile_set.cc").read_text()
    assert "kProfileSetSize = 3;" in src and m["set"] in src and keys[0] in src


@pytest.mark.parametrize("limit", ["0", "-2"])
def test_profile_set_limit_below_one_is_one_error_line_and_writes_nothing(limit, tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["lut", "profile-set", "--device", "sim-board", "--out", str(out), "--limit", limit]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --limit must be at least 1, got {limit}"] and not out.exists()


def test_collect_over_pty_with_a_reset_resumes(profile_set, tmp_path, capsys):
    board = SimBoard(profile_set, "sim-board", reset_after=1).start()
    out = tmp_path / "sim-board.json"
    try:
        rc = main(["lut", "collect", "--port", board.port, "--device", "sim-board", "--profile-set",
                   str(profile_set), "--out", str(out), "--timeout", "120", "--json"])
    finally:
        board.close()
    assert rc == 0
    assert board.boots == 2                      # the board rebooted once...
    assert board.requests.count(1) >= 2          # ...and the key in flight was asked for again
    assert sorted(set(board.requests)) == [0, 1, 2]
    table = lutmod.load(out)
    assert table.metadata["method"] == "measured" and table.unit == "cycles" and table.clock_mhz == 100.0
    m = json.loads((profile_set / "manifest.json").read_text())
    assert sorted(table.entries) == sorted(e["key"] for e in m["keys"])
    assert all(e.value >= 1 and e.samples >= 5 for e in table.entries.values())
    assert not (tmp_path / "sim-board.json.progress.jsonl").exists()
    assert "board reset" in capsys.readouterr().err


def test_collect_refuses_a_board_with_another_profile_set(profile_set, tmp_path, capsys):
    board = SimBoard(profile_set, "other-board").start()
    try:
        rc = main(["lut", "collect", "--port", board.port, "--device", "sim-board", "--profile-set",
                   str(profile_set), "--out", str(tmp_path / "x.json"), "--timeout", "30"])
    finally:
        board.close()
    assert rc == 2
    assert "board reports device 'other-board'" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_malformed_protocol_lines_are_errors_and_noise_is_ignored():
    assert parse_line("hello from the bootloader") is None
    assert parse_line("BYE") == ("bye", None)
    assert parse_line("RESULT 3 1200 4 31 0123abcd") == ("result", (3, 1200, 4, 31, "0123abcd"))
    with pytest.raises(ProtocolError, match="malformed RESULT"):
        parse_line("RESULT 3 12.5 4 31 0123abcd")
    with pytest.raises(ProtocolError, match="protocol 2"):
        parse_line("EDGENAS-LUT 2 device=x keys=1 clock_hz=1 set=0123abcd")
    # count= says what the board counts; firmware without the field counts cycles
    assert parse_line("EDGENAS-LUT 1 device=x keys=1 clock_hz=25000000 set=0123abcd")[1].count == "cycles"
    head = parse_line("EDGENAS-LUT 1 device=x keys=1 clock_hz=25000000 set=0123abcd count=instructions")[1]
    assert (head.count, head.clock_hz) == ("instructions", 25_000_000)
    with pytest.raises(ProtocolError, match="malformed header"):
        parse_line("EDGENAS-LUT 1 device=x keys=1 clock_hz=1 set=0123abcd count=ticks")
