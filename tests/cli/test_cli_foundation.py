"""The CLI contract for the foundation commands: --json output, exit status 2 with one line, no traceback."""

import json
import subprocess
import sys

import pytest
from lut_fixtures import fixture_lut

from edgenas_keras.arch.space import SearchSpace
from pipeline.cli import main


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("lut") / "fixture.json"
    fixture_lut(SearchSpace.load(), resolutions=[96, 64]).save(p)
    return p


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_space_show_json(capsys):
    out = run_json(capsys, ["space", "show", "--json"])
    assert out["num_blocks"] == 7
    assert out["cardinality"] == 181**4 * 180**3
    assert [b["stride"] for b in out["blocks"]] == [1, 2, 1, 2, 1, 2, 1]


def test_arch_check_json_with_lut_file(capsys, lut_file):
    arch = "ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c32-dws_k3_c32-ir_k5_e2_c48-skip"
    out = run_json(capsys, ["arch", "check", arch, "--lut", str(lut_file), "--json"])
    for k in ("latency_ms", "sram_bytes", "flash_bytes", "macs", "params"):
        assert out[k] > 0, k
    bigger = run_json(capsys, ["arch", "check", arch.replace("c48", "c64"), "--lut", str(lut_file), "--json"])
    assert bigger["macs"] > out["macs"] and bigger["flash_bytes"] > out["flash_bytes"]
    half_clock = run_json(capsys, ["arch", "check", arch, "--lut", str(lut_file), "--clock-mhz", "240", "--json"])
    assert half_clock["latency_ms"] == pytest.approx(2 * out["latency_ms"])
    low = run_json(capsys, ["arch", "check", arch, "--lut", str(lut_file), "--resolution", "64", "--json"])
    assert low["resolution"] == 64 and low["macs"] < out["macs"]


@pytest.mark.parametrize("argv, needle", [
    (["arch", "check", "ir_k3_e4_c16-bogus", "--lut", "LUT"], "block 2 token 'bogus'"),
    (["arch", "check", "skip-skip-skip-skip-skip-skip-skip", "--lut", "LUT"], "skip needs stride 1"),
    (["arch", "check", "ARCH", "--device", "no-such-board"], "no shipped LUT for device 'no-such-board'"),
    (["arch", "check", "ARCH", "--lut", "/nonexistent/lut.json"], "/nonexistent/lut.json does not exist"),
    (["space", "show", "--space", "/nonexistent.yaml"], "/nonexistent.yaml does not exist"),
    (["arch", "check", "ARCH", "--lut", "FOLDER"], "is a folder, not a JSON file"),
    (["space", "show", "--space", "FOLDER"], "is a folder, not a YAML file"),
    (["space", "show", "--space", "LATIN1"], "cannot be read"),
])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, lut_file, argv, needle):
    good = "ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c32-dws_k3_c32-ir_k5_e2_c48-skip"
    latin1 = tmp_path / "space.yaml"
    latin1.write_bytes("blocks: [caf\xe9]\n".encode("latin-1"))      # not UTF-8
    named = {"LUT": str(lut_file), "ARCH": good, "FOLDER": str(tmp_path), "LATIN1": str(latin1)}
    argv = [named.get(a, a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]


def test_installed_entry_point_prints_no_traceback(lut_file):
    exe = [sys.executable, "-m", "pipeline.cli"]
    r = subprocess.run(exe + ["arch", "check", "not-an-architecture!!", "--lut", str(lut_file)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip().startswith("error: ")
    r = subprocess.run(exe + ["--debug", "arch", "check", "x", "--lut", str(lut_file)], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_every_subcommand_has_help():
    from pipeline.cli import build_parser

    parser = build_parser()
    seen = 0
    stack = [([], parser)]
    while stack:
        prefix, p = stack.pop()
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    stack.append((prefix + [name], sub))
        if prefix:
            with pytest.raises(SystemExit) as e:
                parser.parse_args(prefix + ["--help"])
            assert e.value.code == 0
            seen += 1
    assert seen >= 4
