"""Operator-class weighting of emulated runs (``lut_calibrate.instructions_by_class`` / ``fitted_cycles``), the
pooled class factor of the emulated tables (``deploy.lut_emulated.fit_class_factor``), re-fitting a table's
entries (``rescale_entries``, ``lut build --refit``) and the shipped tables' leave-one-out on the public board
anchors. No QEMU here: the inputs are built in the tests, the anchors' models are the reference models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.lut_emulated import ANCHORS, fit_class_factor, rescale_entries
from edgenas_keras import lut as lutmod
from edgenas_keras.lut.calibrate import Measurement, calibrate, fitted_cycles, instructions_by_class
from edgenas_keras.tflite.model import read_int8_model

ROOT = Path(__file__).resolve().parents[2]
REFS = ROOT / "tests" / "data" / "reference_models"
CONV3 = "CONV_2D|in=48x48x3|out=16|k=3|s=2|p=same|act=relu6"
CONV1 = "CONV_2D|in=24x24x16|out=32|k=1|s=1|p=same|act=relu6"
DW = "DEPTHWISE_CONV_2D|in=24x24x32|out=32|k=3|s=1|p=same|act=relu6"


def test_instructions_by_class_splits_an_invoke_and_gives_the_rest_to_other():
    per_op = [{"op": "CONV_2D", "lut_key": CONV3, "instructions": 1000},
              {"op": "CONV_2D", "lut_key": CONV1, "instructions": 700},
              {"op": "DEPTHWISE_CONV_2D", "lut_key": DW, "instructions": 300},
              {"op": "CONV_2D", "lut_key": None, "instructions": 40},     # unknown kernel: im2col class
              {"op": "MEAN", "lut_key": None, "instructions": 20}]
    by = instructions_by_class(per_op, 2100)
    assert by == {"conv": 1040, "conv1x1": 700, "depthwise": 300, "fc": 0, "other": 60}
    assert sum(by.values()) == 2100


def test_fitted_cycles_weighs_only_the_classes_with_a_factor():
    fit = {"cycles_per_instruction": 2.0, "class_factors": {"conv": 1.5, "conv1x1": 1.0}}
    assert fitted_cycles(fit, 1000, {"conv": 400, "conv1x1": 600}) == pytest.approx(2.0 * (1000 + 0.5 * 400))
    assert fitted_cycles({"cycles_per_instruction": 2.0}, 1000) == 2000.0
    with pytest.raises(ValueError, match="by operator class"):
        fitted_cycles(fit, 1000)


def test_the_pooled_class_factor_recovers_a_known_factor_across_boards_with_their_own_scales():
    # Two boards, each with an im2col-heavy and a 1x1-heavy model; true factor 1.25, scales 2.0 and 0.7.
    def row(scale, conv, rest):
        by = {"conv": conv, "other": rest}
        return {"cycles": scale * (1.25 * conv + rest), "instructions": conv + rest, "instructions_by_class": by}

    boards = {"A": [row(2.0, 9e6, 1e6), row(2.0, 1e6, 8e6)], "B": [row(0.7, 5e6, 5e6), row(0.7, 2e5, 3e6)]}
    assert fit_class_factor(boards) == pytest.approx(1.25, abs=1e-4)
    # A single board whose two models have the same class mix cannot tell: any factor fits; no crash.
    flat = {"C": [row(1.0, 1e6, 1e6), row(1.0, 2e6, 2e6)]}
    assert 0.5 <= fit_class_factor(flat) <= 2.0


def test_rescale_entries_moves_each_key_by_its_class_ratio():
    entries = {CONV3: lutmod.LutEntry(100.0, 1.0, 5), DW: lutmod.LutEntry(50.0, 0.0, 5)}
    old = {"cycles_per_instruction": 1.0, "class_factors": {"conv": 1.0}}
    new = {"cycles_per_instruction": 2.0, "class_factors": {"conv": 1.5}}
    out = rescale_entries(entries, old, new)
    assert out[CONV3].value == pytest.approx(300.0) and out[CONV3].dispersion == pytest.approx(3.0)
    assert out[DW].value == pytest.approx(100.0) and out[DW].samples == 5


def test_refit_refuses_a_table_that_is_not_emulated(tmp_path):
    src = lutmod.load_device("cortex-m7-analytical")
    out = tmp_path / "analytical.json"
    src.save(out)
    before = out.read_bytes()
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "lut", "build", "--device", "cortex-m7", "--method",
                        "analytical", "--refit", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error: --refit") and "Traceback" not in r.stderr
    assert out.read_bytes() == before


_DEVICE = {"cortex-m4": "cortex-m4", "cortex-m33": "cortex-m33", "riscv32": "riscv"}


@pytest.mark.parametrize("target", sorted(_DEVICE))
def test_shipped_tables_calibrated_on_one_anchor_predict_the_boards_other_anchor_within_15_percent(target):
    rows = [a for a in ANCHORS if a["target"] == target]
    assert len(rows) == 2
    base = lutmod.load_device(_DEVICE[target])
    for cal, other in (rows, rows[::-1]):
        lut, report = calibrate(base, [Measurement(REFS / cal["model"], cal["latency_ms"])],
                                clock_mhz=cal["clock_mhz"])
        # one measurement reproduces itself exactly
        assert report["points"][0]["calibrated_ms"] == pytest.approx(cal["latency_ms"], rel=1e-9)
        predicted = lut.latency_ms(read_int8_model(REFS / other["model"]).graph().keys)
        assert abs(predicted / other["latency_ms"] - 1) <= 0.15, (cal["model"], other["model"], predicted)
