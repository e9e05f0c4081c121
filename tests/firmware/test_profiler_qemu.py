"""The LUT profiler firmware (deploy/firmware/lut_profiler) built for every emulated core and run in QEMU with
its UART on a pseudo-terminal: ``edgenas lut collect --port /dev/pts/N`` collects a LUT from it through line
protocol v1, as from a board. On cortex-m7 the board is started with ``edgenas lut qemu-board`` (what a user
runs), reset mid-run through QMP, and collected from a second time; every target counts instructions (QEMU
models no cycles) and says so; the DWT build shows the ERROR path (QEMU has no cycle counter).

What QEMU cannot show (a cycle-counting board, a protocol line cut short by a reset, a board reporting another
device) stays with the simulated board in tests/lut/test_collect.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from firmware_support import require_target

from deploy.emulate import emulate
from deploy.lut_profiler_qemu import QemuBoard, build_profiler, qmp_command
from edgenas_keras import lut as lutmod
from pipeline.cli import main

pytestmark = pytest.mark.slow

DEVICE = "qemu-mcu"


@pytest.fixture(scope="module")
def profile_set(tmp_path_factory):
    """Three keys of the shipped space, one of each kind that matters: an ADD, a 1x1 CONV_2D, a 5x5
    DEPTHWISE_CONV_2D (every 211th key from the third)."""
    out = tmp_path_factory.mktemp("set")
    assert main(["lut", "profile-set", "--device", DEVICE, "--out", str(out), "--shard", "2/211", "--limit", "3",
                 "--json"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert [e["key"].split("|")[0] for e in m["keys"]] == ["ADD", "CONV_2D", "DEPTHWISE_CONV_2D"]
    return out


def _macs(key: str) -> int:
    """Multiply-accumulates of a 1x1 CONV_2D key (in=HxWxC, out=K)."""
    fields = dict(f.split("=", 1) for f in key.split("|")[1:])
    h, w, c = (int(v) for v in fields["in"].split("x"))
    return h * w * c * int(fields["out"])


def _collect(port: str, set_dir: Path, out: Path, capsys) -> tuple[int, str]:
    rc = main(["lut", "collect", "--port", port, "--device", DEVICE, "--profile-set", str(set_dir),
               "--out", str(out), "--timeout", "600", "--json"])
    return rc, capsys.readouterr().err


def _reset_after_first_result(progress: Path, qmp: Path, done: threading.Event, log: list) -> None:
    """Press reset while a RUN is in flight: as soon as the first result is saved (the collector sends the next
    RUN right after), pause the machine, reset it and let it run again."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not done.is_set():
        if progress.is_file() and progress.read_text().strip():
            qmp_command(qmp, "stop")
            qmp_command(qmp, "system_reset")
            qmp_command(qmp, "cont")
            log.append("reset")
            return
        time.sleep(0.005)


def test_qemu_board_collect_with_a_reset_then_again(profile_set, tmp_path, capsys):
    require_target("cortex-m7")
    build_profiler("cortex-m7", profile_set)   # the TFLM library too (cached): qemu-board then starts at once
    qmp = tmp_path / "qmp.sock"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "lut", "qemu-board", "--target", "cortex-m7",
                             "--profile-set", str(profile_set), "--qmp", str(qmp), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()                     # it failed: its one error line
        info = json.loads(line)
        assert info["device"] == DEVICE
        assert info["qemu_machine"] == "mps2-an500" and info["port"].startswith("/dev/pts/")
        assert "-icount" in info["command"] and "pty" in info["command"]

        out1 = tmp_path / "m7.json"
        done, resets = threading.Event(), []
        watcher = threading.Thread(target=_reset_after_first_result,
                                   args=(tmp_path / "m7.json.progress.jsonl", qmp, done, resets))
        watcher.start()
        rc, err = _collect(info["port"], profile_set, out1, capsys)
        done.set()
        watcher.join()
        assert rc == 0, err
        assert resets == ["reset"]
        # the key in flight (RUN 1, or RUN 2 if this machine was too busy to reset within RUN 1's 0.2 s) was
        # asked for again
        assert re.search(r"board reset \(#1\) during RUN [12]; asking again", err), err

        out2 = tmp_path / "m7-again.json"                  # the board keeps listening after BYE
        rc, err = _collect(info["port"], profile_set, out2, capsys)
        assert rc == 0, err
        assert "board reset" not in err
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0                             # qemu-board stops QEMU and exits cleanly

    m = json.loads((profile_set / "manifest.json").read_text())
    keys = [e["key"] for e in m["keys"]]
    first, second = lutmod.load(out1), lutmod.load(out2)
    for table in (first, second):
        assert table.metadata["method"] == "emulated" and table.unit == "instructions"
        assert table.clock_mhz == 25.0                      # mps2-an500's clock, which SysTick counts
        assert any("not cycles" in s for s in table.metadata["sources"])
        assert sorted(table.entries) == sorted(keys)
        for e in table.entries.values():
            assert e.samples == 5 and e.value % 40 == 0      # SysTick ticks of 40 instructions
            assert e.dispersion <= 40                         # deterministic up to one tick
    for k in keys:                                            # the reset changed nothing: same counts again
        assert abs(first.entries[k].value - second.entries[k].value) <= 40
    add, conv, dw = (first.entries[k].value for k in keys)
    assert add < conv and add < dw
    assert not (tmp_path / "m7.json.progress.jsonl").exists()
    # Another firmware counts the same: `edgenas emulate`'s app (deploy/firmware/app) times one invoke of the
    # same single-operator models on the same core; its figure includes its per-operator profiler's reads.
    for key, file in ((keys[1], "0001.tflite"), (keys[2], "0002.tflite")):
        other = emulate(profile_set / file, "cortex-m7", progress=None)
        assert abs(other.instructions - first.entries[key].value) <= 4 * 40, key


@pytest.mark.parametrize("name, machine, clock_mhz, resolution", [
    ("cortex-m4", "mps2-an386", 25.0, 40),
    ("cortex-m33", "mps2-an505", 20.0, 50),
    ("riscv32", "virt", 1000.0, 1),
])
def test_every_target_runs_the_profiler_on_a_pty(name, machine, clock_mhz, resolution, profile_set, tmp_path,
                                                  capsys):
    require_target(name)
    elf = build_profiler(name, profile_set, tmp_path / f"{name}.elf")
    out = tmp_path / f"{name}.json"
    with QemuBoard(name, elf) as board:
        assert board.target.machine == machine
        rc, err = _collect(board.port, profile_set, out, capsys)
    assert rc == 0, err
    table = lutmod.load(out)
    assert table.metadata["method"] == "emulated" and table.unit == "instructions"
    assert table.clock_mhz == clock_mhz
    keys = [e["key"] for e in json.loads((profile_set / "manifest.json").read_text())["keys"]]
    assert sorted(table.entries) == sorted(keys)
    for e in table.entries.values():
        assert e.value > 0 and e.value % resolution == 0 and e.dispersion <= resolution
    per_mac = table.entries[keys[1]].value / _macs(keys[1])
    if name == "riscv32":      # TFLM's reference kernels in plain C (4-D index arithmetic per MAC): tens
        assert 10.0 < per_mac < 200.0
    else:                      # CMSIS-NN (a 1x1 convolution of 16 input channels: requantisation weighs)
        assert 1.0 < per_mac < 10.0


def test_a_core_without_cycle_counter_answers_error(profile_set, tmp_path, capsys):
    """The DWT build (what a real Cortex-M board runs) under QEMU, which has no DWT: the firmware sees its
    counter stand still and answers ERROR; collect stops with one error line and writes no LUT."""
    require_target("cortex-m7")
    elf = build_profiler("cortex-m7", profile_set, tmp_path / "dwt.elf", counter="dwt")
    out = tmp_path / "dwt.json"
    capsys.readouterr()
    with QemuBoard("cortex-m7", elf) as board:
        rc = main(["lut", "collect", "--port", board.port, "--device", DEVICE, "--profile-set", str(profile_set),
                   "--out", str(out), "--timeout", "120"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: board failed on key 0 (ADD|")
    assert "counter (cycles) does not advance" in err
    assert not out.exists()


def test_a_board_whose_qemu_exits_at_once_is_an_emulation_error(tmp_path):
    """A QEMU that exits before it announces a terminal (here the real binary, given a machine it does not
    have, which it refuses at once): start() says so instead of returning a board without a port."""
    from deploy.tflm_build import EmulationError

    class NoSuchMachine(QemuBoard):
        @property
        def command(self):
            return [*super().command, "-M", "no-such-machine"]   # the last -M wins

    require_target("cortex-m7")
    board = NoSuchMachine("cortex-m7", tmp_path / "app.elf")
    with pytest.raises(EmulationError, match="exited before opening a pseudo-terminal: .*unsupported machine type"):
        board.start(timeout_s=30)
    assert not board.alive()
