"""The one budget type (issue 16, item 3): ms and bytes, None for none, flash = model + TFLM runtime in the
search as in validate and the pipeline, KiB only at the CLI edge."""

from pathlib import Path

import pytest

from edgenas_keras import lut as lutmod
from edgenas_keras.arch.space import SearchSpace
from edgenas_keras.budgets import RUNTIME_FLASH, Budgets, runtime_footprint
from edgenas_keras.cost.estimate import arch_cost
from edgenas_keras.errors import UserError
from edgenas_keras.search import SearchConfig
from edgenas_keras.search.derive import check_feasible, cheapest_indices
from pipeline.cli import main


def test_budgets_fields_units_and_none():
    b = Budgets(45, sram_bytes=196608.0, flash_bytes=524288)
    assert (b.latency_ms, b.sram_bytes, b.flash_bytes, b.min_accuracy) == (45.0, 196608, 524288, 0.0)
    assert isinstance(b.sram_bytes, int)
    assert Budgets.from_dict(b.as_dict()) == b
    assert Budgets.from_dict({"latency_ms": 10, "sram_bytes": None}) == Budgets(10.0)
    for bad, needle in [({"latency_ms": 10, "sram_kb": 64}, "unknown field(s) sram_kb"),
                        ({"sram_bytes": 1024}, "missing latency_ms"),
                        ({"latency_ms": 10, "flash_bytes": 0}, "flash_bytes must be a positive number"),
                        ({"latency_ms": 10, "sram_bytes": 1024.5}, "whole number of bytes"),
                        ({"latency_ms": float("inf")}, "latency_ms must be a positive number"),
                        ({"latency_ms": 10, "min_accuracy": 80}, "fraction in [0, 1]")]:
        with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            Budgets.from_dict(bad)


def test_model_flash_is_the_budget_minus_the_runtime():
    assert Budgets(10, flash_bytes=200_000).model_flash_bytes(65_536) == 200_000 - 65_536
    assert Budgets(10).model_flash_bytes(65_536) is None
    with pytest.raises(UserError, match="leaves no room for the model next to the TFLM runtime"):
        Budgets(10, flash_bytes=65_536).model_flash_bytes(65_536)
    # the search's share: the device's documented runtime, an alias counting as its device, or the override
    cfg = SearchConfig(budgets=Budgets(10, flash_bytes=300_000))
    assert cfg.model_flash_bytes("cortex-m7") == 300_000 - RUNTIME_FLASH["cortex-m7"].bytes
    assert cfg.model_flash_bytes("cortex-m7-analytical") == cfg.model_flash_bytes("cortex-m7")
    with pytest.raises(UserError, match="no documented TFLM runtime flash footprint for device 'my-board'"):
        cfg.model_flash_bytes("my-board")
    own = SearchConfig(budgets=Budgets(10, flash_bytes=300_000), runtime_flash_bytes=40_000)
    assert own.model_flash_bytes("my-board") == 260_000
    assert SearchConfig(budgets=Budgets(10)).model_flash_bytes("my-board") is None   # no flash budget: no runtime
    with pytest.raises(UserError, match="runtime_flash_bytes must be an integer >= 0"):
        SearchConfig(budgets=Budgets(10), runtime_flash_bytes=-1)


def test_search_floor_counts_the_runtime_like_validate():
    """A flash budget exactly the cheapest model plus the device's runtime is feasible; one byte less is not,
    and the message says the runtime took its share."""
    space, lut = SearchSpace.load(), lutmod.load_device("cortex-m7")
    floor_model = arch_cost(space, space.from_indices(cheapest_indices(space)), lut).flash_bytes
    runtime = runtime_footprint("cortex-m7").bytes
    check_feasible(space, lut, SearchConfig(budgets=Budgets(1e6, flash_bytes=floor_model + runtime)))
    with pytest.raises(UserError, match="next to the TFLM runtime, below the floor"):
        check_feasible(space, lut, SearchConfig(budgets=Budgets(1e6, flash_bytes=floor_model + runtime - 1)))
    # the runtime from a link map replaces the documented figure
    check_feasible(space, lut, SearchConfig(budgets=Budgets(1e6, flash_bytes=floor_model + 1000),
                                            runtime_flash_bytes=1000))


@pytest.mark.parametrize("flags, needle", [
    (["--flash-kb", "64"], "leaves no room for the model next to the TFLM runtime"),   # 64 KiB: the runtime
    (["--sram-kb", "0"], "--sram-kb must be a positive number of KiB"),
    (["--flash-kb", "nan"], "--flash-kb must be a positive number of KiB"),
    (["--flash-kb", "512", "--runtime-flash-kb", "-1"], "--runtime-flash-kb must be a non-negative number"),
])
def test_search_cli_budget_flags_exit_2(capsys, tmp_path, flags, needle):
    argv = ["search", "--data", str(tmp_path), "--device", "cortex-m7", "--latency-ms", "1000",
            "--out", str(tmp_path / "out"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not (tmp_path / "out").exists()   # refused before anything is written


@pytest.mark.parametrize("flags, needle", [
    (["--sram-kb", "1e308"], "--sram-kb 1e+308 KiB is more bytes than a 64-bit integer holds"),
    (["--flash-kb", "0.0001"], "--flash-kb 0.0001 KiB is less than one byte"),
    (["--runtime-flash-kb", "inf"], "--runtime-flash-kb must be a non-negative number of KiB"),
    (["--out", "NOWHERE/blessing.json"], "does not exist"),
])
def test_validate_cli_budget_flags_exit_2_before_any_check(capsys, tmp_path, flags, needle):
    model = Path(__file__).parent / "data" / "reference_models" / "tflm_person_detect.tflite"
    argv = ["validate", str(model), "--device", "cortex-a53", "--latency-ms", "100", "--sram-kb", "512",
            "--flash-kb", "2048", "--min-accuracy", "0"]
    argv += [str(tmp_path / f) if f.startswith("NOWHERE") else f for f in flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_search_budget_limits_and_old_config_fields(capsys, tmp_path):
    """Budgets the search could not carry (float32 latency, int64 bytes) and a --config in the old flat form are
    one error line each, before anything is written."""
    with pytest.raises(UserError, match="latency_ms must be at most 3e"):
        Budgets(1e308)
    with pytest.raises(UserError, match="sram_bytes must be at most"):
        Budgets(10, sram_bytes=10**40)
    for text, needle in [("latency_ms: 30\n", "latency_ms is now budgets.latency_ms"),
                         ("budgets: {latency_ms: 30}\nsram_kb: 128\n", "sram_kb is now budgets.sram_bytes (in bytes)"),
                         ("budgets: fast\n", "budgets must be a mapping")]:
        cfg = tmp_path / "search.yaml"
        cfg.write_text(text)
        argv = ["search", "--data", str(tmp_path), "--device", "cortex-m7", "--latency-ms", "1000",
                "--config", str(cfg), "--out", str(tmp_path / "out")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert not (tmp_path / "out").exists()
