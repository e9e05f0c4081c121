"""SpaceError: a malformed architecture string or search space is both a ValueError (the library's earlier
contract: callers that catch ValueError keep working) and a UserError (the CLI prints one line, exit 2)."""

from __future__ import annotations

import pytest

from edgenas_keras.arch.space import Block, SearchSpace, decode
from edgenas_keras.errors import SpaceError, UserError


@pytest.mark.parametrize("text, message", [
    ("", "empty architecture string"),
    ("ir_k3_e4_c16--skip", "block 2 token '': empty token (two '-' in a row, or a leading/trailing '-')"),
    ("conv_k3_c16", "block 1 token 'conv_k3_c16': unknown operation 'conv'; expected one of dws, ir, skip"),
    ("ir_k3_e4_x16", "block 1 token 'ir_k3_e4_x16': bad factor 'x16'; expected k<int>, e<int>, se<int> or c<int>"),
    ("ir_k3_k5_e4_c16", "block 1 token 'ir_k3_k5_e4_c16': factor k given twice"),
    ("ir_k3_c16", "block 1 token 'ir_k3_c16': ir needs an expansion (e)"),
])
def test_bad_architecture_strings_raise_space_error_with_the_same_message(text, message):
    with pytest.raises(SpaceError) as e:
        decode(text)
    assert str(e.value) == message
    assert isinstance(e.value, ValueError) and isinstance(e.value, UserError)


def test_existing_value_error_callers_keep_working(tmp_path):
    with pytest.raises(ValueError, match="dws takes no expansion"):
        Block("dws", 3, 4, 0, 16)
    space = SearchSpace.load()
    assert not space.contains(decode("-".join(["skip"] * space.num_blocks)))  # check() raises, contains catches
    bad = tmp_path / "space.yaml"
    bad.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="a search space must be a YAML mapping"):
        SearchSpace.load(bad)
    with pytest.raises(SpaceError, match="blocks must be a non-empty list"):
        SearchSpace.from_dict({"stem": {}, "choices": {}, "blocks": []}, source="s")


def test_the_cli_prints_one_line(capsys):
    from pipeline.cli import main

    rc = main(["arch", "check", "ir_k3_c16", "--device", "cortex-m7-analytical"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err == "error: architecture 'ir_k3_c16': block 1 token 'ir_k3_c16': ir needs an expansion (e)\n"
