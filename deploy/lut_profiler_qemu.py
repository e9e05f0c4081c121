"""The LUT profiler firmware on emulated cores: build it for a profile set, run it in QEMU with its UART on a
pseudo-terminal, reset it.

``deploy/firmware/lut_profiler`` is the firmware a team flashes on its own board; here the same ``main.cc`` is
linked with the TFLM library of a QEMU target (``deploy.tflm_build``: cortex-m4 on ``mps2-an386``, cortex-m7
on ``mps2-an500``, cortex-m33 on ``mps2-an505``, riscv32 on ``virt``) and a board file for that machine
(``boards/mps2_qemu.cc``, ``boards/riscv_virt_qemu.cc``). QEMU connects the machine's first UART to a
pseudo-terminal (``-serial pty``), so ``edgenas lut collect --port /dev/pts/N`` drives it through line
protocol v1 exactly as it drives a board on ``/dev/ttyACM0``.

What the emulated board counts: QEMU models no cycles (DWT->CYCCNT reads zero on its M-profile machines).
With ``-icount shift=0`` (always passed here) QEMU's virtual clock advances 1 ns per guest instruction, so the
firmware counts guest instructions: SysTick ticks times 40 (25 MHz, an386/an500) or 50 (20 MHz, an505),
resolution one tick; ``minstret`` on RISC-V, exact. Its header says ``count=instructions`` and the collected
LUT is of method ``emulated`` in unit ``instructions``.

``QemuBoard`` also opens a QMP socket, so a test (or a user) can reset the machine mid-run (``reset()``:
QMP ``system_reset``, the emulated equivalent of pressing the board's reset button).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from deploy import tflm_build
from deploy.lut_profiler import read_manifest
from edgenas_keras.errors import UserError

PROFILER_DIR = tflm_build.FIRMWARE_DIR / "lut_profiler"

# target -> (board file under lut_profiler/boards, extra defines)
BOARDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cortex-m4": ("mps2_qemu.cc", ()),
    "cortex-m7": ("mps2_qemu.cc", ()),
    "cortex-m33": ("mps2_qemu.cc", ("MPS2_AN505",)),
    "riscv32": ("riscv_virt_qemu.cc", ()),
}
COUNTERS = ("instructions", "dwt")
PORT_RE = re.compile(r"char device redirected to (/dev/pts/\d+) \(label serial0\)")


def arena_bytes(manifest: dict) -> int:
    """The profiler's arena for a profile set: the largest host arena of its models (measured with the 64-bit
    host runtime and reference kernels, an upper bound of TFLM's 32-bit allocations) plus half again and
    16 KiB for the scratch buffers CMSIS-NN kernels request; a multiple of 16."""
    largest = max((int(e["arena_bytes"]) for e in manifest["keys"]), default=0)
    return (largest + largest // 2 + 16384 + 15) // 16 * 16


def build_profiler(target: str, set_dir: Path | str, out_elf: Path | str | None = None,
                   counter: str = "instructions", progress: Callable[[str], None] | None = None,
                   extra_defines: tuple[str, ...] = ()) -> Path:
    """Compile ``deploy/firmware/lut_profiler`` with ``set_dir/profile_set.cc`` for ``target`` and link it
    against the target's cached TFLM library (built on first use, about 8 minutes); returns the ELF.

    ``out_elf`` defaults to ``<set_dir>/lut_profiler-<target>.elf``. ``counter="dwt"`` builds the Cortex-M
    cycle-counter variant a real board uses (under QEMU its counter never runs and the firmware answers
    ERROR). Under emulation the counts are deterministic, so the firmware times 5 invokes per key
    (``PROFILER_BUDGET=0``); ``extra_defines`` (``NAME=VALUE``) tune it further (``PROFILER_WARMUP``,
    ``PROFILER_MIN_SAMPLES``, ``PROFILER_MAX_SAMPLES``, ``PROFILER_BUDGET``: see ``main.cc``). Raises ``UserError`` for an unknown target or counter, a missing profile set
    or a set that does not fit the machine, ``ToolchainMissing`` and ``BuildError`` from ``deploy.tflm_build``.
    """
    if target not in BOARDS:
        raise UserError(f"unknown target {target!r}: choose one of {', '.join(BOARDS)}")
    if counter not in COUNTERS or (counter == "dwt" and target == "riscv32"):
        raise UserError(f"counter {counter!r} is not available on {target}")
    set_dir = Path(set_dir)
    manifest = read_manifest(set_dir)
    if not (set_dir / "profile_set.cc").is_file():
        raise UserError(f"{set_dir / 'profile_set.cc'} does not exist; write it with `edgenas lut profile-set`")
    tgt = tflm_build.get_target(target)
    lib = tflm_build.tflm_library(tgt, progress=progress)
    board, board_defines = BOARDS[target]
    defines = [f"ARENA_BYTES={arena_bytes(manifest)}", "PROFILER_BUDGET=0",
               f"EDGENAS_INSTRUCTIONS_PER_TICK={tgt.instructions_per_tick}", *board_defines]
    if counter == "dwt":
        defines.append("PROFILER_COUNTER_DWT")
    defines += list(extra_defines)   # e.g. PROFILER_WARMUP=1, PROFILER_MIN_SAMPLES=1 (deploy.lut_emulated)
    out = Path(out_elf) if out_elf else set_dir / f"lut_profiler-{target}.elf"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        return tflm_build.compile_and_link(
            tgt, lib, [PROFILER_DIR / "main.cc", PROFILER_DIR / "boards" / board, set_dir / "profile_set.cc"],
            out, include_dirs=[PROFILER_DIR], defines=defines)
    except tflm_build.BuildError as exc:
        if "overflow" in str(exc):
            raise UserError(f"the profile set {set_dir} ({len(manifest['keys'])} models, arena "
                            f"{arena_bytes(manifest)} bytes) does not fit {tgt.machine}'s memory: split it with "
                            f"`edgenas lut profile-set --shard K/N`\n{exc}") from None
        raise


class QemuBoard:
    """The profiler firmware running in QEMU, its first UART on a pseudo-terminal (``port``), QMP on a Unix
    socket (``qmp_path``) for resets. Use as a context manager; ``stop()`` ends QEMU.

    Raises ``EmulationError`` when QEMU does not start or does not announce its pseudo-terminal in 30 s."""

    def __init__(self, target: str, elf: Path | str, qmp_path: Path | str | None = None):
        self.target = tflm_build.get_target(target)
        self.elf = Path(elf)
        self._tmp = None
        if qmp_path is None:
            self._tmp = tempfile.mkdtemp(prefix="edgenas-qmp-")
            qmp_path = Path(self._tmp) / "qmp.sock"
        self.qmp_path = Path(qmp_path)
        self.port: str | None = None
        self.output: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._port_found = threading.Event()

    @property
    def command(self) -> list[str]:
        """The QEMU argv: ``tflm_build.qemu_command`` with the first UART on a pseudo-terminal, semihosting
        and ``-icount shift=0``, plus a QMP server on the Unix socket ``qmp_path`` (``wait=off``)."""
        return [*tflm_build.qemu_command(self.target, self.elf, serial="pty", semihosting=True, icount=True),
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]

    def start(self, timeout_s: float = 30.0) -> QemuBoard:
        """Start QEMU and wait until it announces the UART's pseudo-terminal (then in ``port``).

        After the announcement it waits up to another ``timeout_s`` for the QMP socket file to appear, and
        goes on without it if it does not.

        Args:
            timeout_s: seconds to wait for the announcement (and again for the QMP socket).

        Returns:
            ``self``.

        Raises:
            ToolchainMissing: the target's cross toolchain or QEMU is not installed.
            EmulationError: no announcement within ``timeout_s`` while QEMU kept running (QEMU is stopped
                first), or QEMU exited before announcing one.
        """
        tflm_build.check_tools(self.target)
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._port_found.wait(timeout_s):
            self.stop()
            raise tflm_build.EmulationError(f"QEMU ({self.target.machine}) did not open a pseudo-terminal within "
                                            f"{timeout_s:g} s: {' '.join(self.output[-5:]) or 'no output'}")
        if self.port is None:      # the reader saw QEMU's output end before any announcement: it exited
            self.stop()
            raise tflm_build.EmulationError(f"QEMU ({self.target.machine}) exited before opening a pseudo-terminal: "
                                            f"{' '.join(self.output[-5:]) or 'no output'}")
        deadline = time.monotonic() + timeout_s
        while not self.qmp_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def _drain(self) -> None:
        """Read QEMU's output (the pty announcement, semihosting lines such as a fault report) until it exits."""
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            m = PORT_RE.search(line)
            if m and self.port is None:
                self.port = m.group(1)
                self._port_found.set()
        self._port_found.set()

    def alive(self) -> bool:
        """True while QEMU has been started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def qmp(self, command: str, timeout_s: float = 10.0) -> dict:
        """Run one QMP command on this machine (``qmp_command``)."""
        return qmp_command(self.qmp_path, command, timeout_s)

    def reset(self) -> None:
        """Reset the machine (QMP ``system_reset``): the firmware reboots and prints its header again."""
        self.qmp("system_reset")

    def stop(self) -> None:
        """End QEMU if it is running (terminate; kill after 10 s) and delete the temporary QMP folder this
        board made; safe to call more than once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> QemuBoard:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def qmp_command(qmp_path: Path | str, command: str, timeout_s: float = 10.0) -> dict:
    """Run one QMP command (e.g. ``system_reset``, ``stop``, ``cont``) on the QEMU listening on the Unix socket
    ``qmp_path``; returns its ``return`` value. ``EmulationError`` if QEMU answers an error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(qmp_path))
        f = s.makefile("rwb")
        json.loads(f.readline())                      # the greeting
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd}).encode() + b"\n")
            f.flush()
            while True:
                msg = json.loads(f.readline())
                if "event" in msg:                    # asynchronous events (RESET, STOP, ...) interleave
                    continue
                if "error" in msg:
                    raise tflm_build.EmulationError(f"QMP {cmd}: {msg['error'].get('desc', msg['error'])}")
                break
        return msg.get("return", {})


def describe(board: QemuBoard) -> dict:
    """What ``edgenas lut qemu-board`` prints: target, machine, port, QMP socket, ELF, QEMU's command."""
    return {"target": board.target.name, "qemu_machine": board.target.machine, "port": board.port,
            "qmp": str(board.qmp_path), "elf": str(board.elf), "command": board.command}
