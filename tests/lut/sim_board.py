"""A simulated lut_profiler board on a pseudo-terminal: speaks line protocol v1 (deploy/lut_profiler.py) and
times each model with the TFLM Python runtime, so its cycle counts are real measurements of this host at a
nominal clock. ``reset_after`` makes it reboot (new header, the request in flight dropped) after that many
results, like a board reset mid-run."""

from __future__ import annotations

import os
import threading
import tty
from pathlib import Path

from edgenas_keras.lut import measure as lut_build


class SimBoard:
    def __init__(self, set_dir: Path, device: str, clock_hz: int = 100_000_000, reset_after: int | None = None):
        import json

        self.manifest = json.loads((Path(set_dir) / "manifest.json").read_text())
        self.models = [(Path(set_dir) / e["file"]).read_bytes() for e in self.manifest["keys"]]
        self.device, self.clock_hz, self.reset_after = device, clock_hz, reset_after
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.requests: list[int] = []
        self.boots = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SimBoard:
        self.thread.start()
        return self

    def _say(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def _header(self) -> None:
        self._say(f"EDGENAS-LUT 1 device={self.device} keys={len(self.models)} clock_hz={self.clock_hz} "
                  f"set={self.manifest['set']}")

    def _boot(self) -> None:
        self.boots += 1
        self._header()

    def _run(self) -> None:
        self._say("boot banner: simulated board, TFLM python runtime")   # noise the host must ignore
        self._boot()
        buf, results = b"", 0
        while True:
            try:
                chunk = os.read(self.master, 1024)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd = line.decode().strip()
                if cmd == "HELLO":
                    self._header()
                    continue
                if cmd == "END":
                    self._say("BYE")
                    return
                if not cmd.startswith("RUN "):
                    continue
                i = int(cmd[4:])
                self.requests.append(i)
                if self.reset_after is not None and results == self.reset_after:
                    self.reset_after = None
                    self._say("RESU")   # a line cut by the reset
                    self._boot()
                    continue
                m = lut_build.measure_model(self.models[i], budget_s=0.05)
                cyc = max(1, round(m["value"] * self.clock_hz / 1e6))
                mad = round(m["dispersion"] * self.clock_hz / 1e6)
                sha8 = self.manifest["keys"][i]["sha256"][:8]
                self._say(f"RESULT {i} {cyc} {mad} {m['samples']} {sha8}")
                results += 1

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.thread.join(timeout=5)
