"""What the training tests share: a synthetic VWW set and ``edgenas train`` run in-process, as a user runs it,
and the module-scoped fixtures that hold them (``synth_data_fixture``, ``train_run_fixture``)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from edgenas_keras.data.synth import SynthSpec, write_synth
from pipeline.cli import main


def cli_json(*argv: str) -> tuple[int, dict]:
    """Run ``edgenas ARGV --json`` in this process: (exit status, the JSON object printed last)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([*argv, "--json"])
    return rc, json.loads(buf.getvalue().strip().splitlines()[-1])


def synth_examples(tmp_path_factory, spec: SynthSpec):
    """A synthetic VWW set drawn by ``spec`` into a fresh folder; its path."""
    out = tmp_path_factory.mktemp("synth") / "examples"
    write_synth(out, spec)
    return out


def cli_train(tmp_path_factory, arch: str, data_dir, resolution: int, epochs: int, seed: int):
    """``edgenas train --json`` once (``epochs`` float epochs, one QAT epoch, batch 32), checked to succeed:
    (output folder, the JSON it printed)."""
    out = tmp_path_factory.mktemp("train") / "run"
    rc, printed = cli_json("train", "--arch", arch, "--data", str(data_dir), "--out", str(out), "--epochs",
                           str(epochs), "--qat-epochs", "1", "--seed", str(seed), "--resolution", str(resolution),
                           "--batch-size", "32")
    assert rc == 0
    return out, printed


def synth_data_fixture(spec: SynthSpec):
    """A module-scoped ``data_dir`` fixture: the synthetic VWW set drawn by ``spec``. A test module assigns it
    to ``data_dir`` (``data_dir = synth_data_fixture(SynthSpec(...))``)."""

    @pytest.fixture(scope="module")
    def data_dir(tmp_path_factory):
        return synth_examples(tmp_path_factory, spec)

    return data_dir


def train_run_fixture(arch: str, resolution: int, epochs: int, seed: int):
    """A module-scoped ``train_run`` fixture: ``cli_train`` of ``arch`` on the module's ``data_dir``, once:
    (output folder, the JSON it printed). A test module assigns it to ``train_run``."""

    @pytest.fixture(scope="module")
    def train_run(data_dir, tmp_path_factory):
        return cli_train(tmp_path_factory, arch, data_dir, resolution, epochs=epochs, seed=seed)

    return train_run
