"""On-board LUT profiling, host side: the profile set for the firmware, and the serial protocol collector.

A firmware team measures its own board with ``deploy/firmware/lut_profiler`` (a TFLM app). The host writes
the profile set (``write_profile_set``: one single-operator int8 model per LUT key, the same models the host
table is built from, plus ``manifest.json`` and a C++ source embedding them), then ``collect`` drives the
board over a serial port and writes a LUT: in cycles (method ``measured``) from a board's cycle counter, in
instructions (method ``emulated``) from the same firmware running in QEMU (``deploy/lut_profiler_qemu.py``).

Line protocol v1 (ASCII, one message per line, ``\\n``-terminated; strictly request/response, except the
header the board prints at every boot)::

    board: EDGENAS-LUT 1 device=<name> keys=<n> clock_hz=<int> set=<sha8> [count=cycles|instructions]
                                                                             (at boot, and on HELLO)
    host:  HELLO
    board: EDGENAS-LUT 1 ...
    host:  RUN <index>
    board: RESULT <index> <median> <mad> <samples> <sha8>     (median and MAD in the header's count unit;
      or:  ERROR <index> <message>                             sha8: first 8 hex of the model's sha256)
    host:  END
    board: BYE

``count`` says what the board counts: ``cycles`` (a core cycle counter; the default when the field is absent,
as from firmware older than the field) or ``instructions`` (guest instructions retired, as the firmware counts
them under an emulator: QEMU models no cycles). A cycle count gives a LUT of method ``measured`` in ``cycles``;
an instruction count a LUT of method ``emulated`` in ``instructions`` (priced as one instruction per cycle at
``clock_hz``; the metadata says so).

The host picks which key to run, so a board reset (a header while a RUN is in flight) loses at most that
key: the collector asks for it again. At the start the collector sends ``HELLO`` and waits until the board has
been quiet for one read timeout before its first ``RUN``: the header printed at boot and the one answering
``HELLO`` may both arrive, and neither is a reset. Each result is appended to ``<out>.progress.jsonl`` as it arrives, so
a rerun of ``collect`` resumes too. A duplicate RESULT for a key already recorded is ignored (it can follow
a spurious resend); lines that do not start with a protocol word (boot banners, debug prints) are ignored;
a malformed protocol line is an error. When the board stays silent for ``idle_s`` the request is resent.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgenas_keras import lut as lutmod
from edgenas_keras._fs import read_json_lines
from edgenas_keras.errors import UserError
from edgenas_keras.lut.table import read_json_file
from edgenas_keras.tflite.c_source import c_array

PROTOCOL_VERSION = 1
HEADER_RE = re.compile(r"^EDGENAS-LUT (\d+) device=(\S+) keys=(\d+) clock_hz=(\d+) set=([0-9a-f]{8})"
                       r"(?: count=(cycles|instructions))?$")
RESULT_RE = re.compile(r"^RESULT (\d+) (\d+) (\d+) (\d+) ([0-9a-f]{8})$")
ERROR_RE = re.compile(r"^ERROR (\d+) (.*)$")
PROTOCOL_WORDS = ("EDGENAS-LUT", "RESULT", "ERROR", "BYE")


def _sha8(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def set_id(entries: list[dict]) -> str:
    """Identifier of a profile set: the sha8 of its keys and model checksums (board and host must agree)."""
    return _sha8("\n".join(f"{e['key']} {e['sha256']}" for e in entries).encode())


def write_profile_set(keys: list[str], out_dir: Path, device: str,
                      model_fn: Callable[[str], bytes] | None = None, progress: bool = True,
                      arena_fn: Callable[[str, bytes], int] | None = None) -> dict:
    """Write ``NNNN.tflite`` per key, ``manifest.json`` and ``profile_set.cc`` (the models as C arrays).

    ``arena_fn(key, model_bytes)``: the model's host arena in bytes (default ``tflm.min_arena_bytes``, a
    bisection; ``deploy.lut_emulated`` passes its cached figures)."""
    from tqdm import tqdm  # noqa: PLC0415

    from edgenas_keras.lut import measure as lut_build  # noqa: PLC0415
    from edgenas_keras.tflite import tflm

    model_fn = model_fn or lut_build.single_op_model
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, key in enumerate(tqdm(keys, desc="profile set", unit="model", disable=not progress)):
        data = model_fn(key)
        name = f"{i:04d}.tflite"
        tmp = out_dir / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out_dir / name)
        entries.append({"index": i, "key": key, "file": name, "sha256": hashlib.sha256(data).hexdigest(),
                        "bytes": len(data), "arena_bytes": (arena_fn(key, data) if arena_fn
                                                            else tflm.min_arena_bytes(data, name))})
    manifest = {"format": "edgenas-profile-set", "protocol": PROTOCOL_VERSION, "device": device,
                "set": set_id(entries), "keys": entries}
    _write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    _write_text(out_dir / "profile_set.cc", _c_source(out_dir, manifest))
    return manifest


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _c_source(out_dir: Path, manifest: dict) -> str:
    """The profile set for the firmware: model arrays, keys, arena sizes (see lut_profiler/profile_set.h)."""
    lines = ["// Generated by `edgenas lut profile-set`: do not edit.", '#include "profile_set.h"', ""]
    for e in manifest["keys"]:
        data = (out_dir / e["file"]).read_bytes()
        lines += [f"alignas(16) static const unsigned char kModel{e['index']}[] = {{", c_array(data, 16), "};"]
    lines.append("")
    lines.append("const ProfileEntry kProfileSet[] = {")
    for e in manifest["keys"]:
        lines.append(f'  {{kModel{e["index"]}, {e["bytes"]}, {e["arena_bytes"]}, "{e["sha256"][:8]}", '
                     f'"{e["key"]}"}},')
    lines.append("};")
    lines.append(f"const int kProfileSetSize = {len(manifest['keys'])};")
    lines.append(f'const char kProfileSetId[] = "{manifest["set"]}";')
    lines.append(f'const char kProfileDevice[] = "{manifest["device"]}";')
    return "\n".join(lines) + "\n"


def read_manifest(path: Path) -> dict:
    """The manifest of a profile set, as ``write_profile_set`` wrote it.

    Args:
        path: the profile-set folder, or its ``manifest.json``.

    Returns:
        The parsed manifest (``format``, ``protocol``, ``device``, ``set``, and ``keys``: one entry per
        model), checked only for ``format: edgenas-profile-set`` and a ``keys`` list.

    Raises:
        UserError: the file does not exist, cannot be read, is not valid JSON, or is not an edgenas profile-set
            manifest.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    _, m = read_json_file(p, "profile-set manifest", "; create it with `edgenas lut profile-set`")
    if m.get("format") != "edgenas-profile-set" or not isinstance(m.get("keys"), list):
        raise UserError(f"{p} is not an edgenas profile-set manifest")
    return m


def _metadata(done: dict[int, dict], device: str, set_id: str, side: Path) -> dict:
    """LUT metadata for the collected records: ``measured`` in ``cycles`` from a cycle counter, ``emulated`` in
    ``instructions`` from an emulator's instruction count (what the board's header said it counts)."""
    counts = {r.get("count", "cycles") for r in done.values()}
    clocks = {r["clock_hz"] for r in done.values()}
    if len(counts) > 1 or len(clocks) > 1:
        raise UserError(f"the saved results in {side} come from boards that count differently ({sorted(counts)} "
                        f"at {sorted(clocks)} Hz); delete it and collect again")
    count, clock_hz = counts.pop(), clocks.pop()
    meta = {"device": device, "core": device, "clock_mhz": clock_hz / 1e6, "runtime": "tflm",
            "kernels": "board firmware (see deploy/firmware/lut_profiler)", "tool_version": "0.1.0",
            "date": datetime.date.today().isoformat()}
    if count == "instructions":
        meta.update(method="emulated", unit="instructions", sources=[
            f"guest instructions retired per invoke, counted by deploy/firmware/lut_profiler running under an "
            f"emulator (board header count=instructions), profile set {set_id}, `edgenas lut collect`",
            "an emulator is not cycle-accurate: these are instructions, not cycles; clock_mhz is the emulated "
            "board's clock, and pricing with this table assumes one instruction per cycle at it"])
    else:
        meta.update(method="measured", unit="cycles", sources=[
            f"measured on board {device} with deploy/firmware/lut_profiler, profile set {set_id}, "
            "`edgenas lut collect`"])
    return meta


# -- the collector --------------------------------------------------------------------------------------

class ProtocolError(UserError):
    """The board sent something that breaks the line protocol."""


@dataclass(frozen=True)
class Header:
    """A board's header line: its device name, profile set (size and id), clock (Hz) and what it counts."""

    device: str
    keys: int
    clock_hz: int
    set_id: str
    count: str = "cycles"


def parse_line(line: str):
    """One protocol line -> ('header', Header) | ('result', tuple) | ('error', tuple) | ('bye', None) |
    None (not a protocol line). Malformed protocol lines raise ``ProtocolError``."""
    line = line.strip()
    if not line or not line.startswith(PROTOCOL_WORDS):
        return None
    if line == "BYE":
        return "bye", None
    if line.startswith("EDGENAS-LUT"):
        m = HEADER_RE.match(line)
        if not m:
            raise ProtocolError(f"malformed header line from the board: {line!r}")
        if int(m.group(1)) != PROTOCOL_VERSION:
            raise ProtocolError(f"board speaks protocol {m.group(1)}, this tool speaks {PROTOCOL_VERSION}")
        return "header", Header(m.group(2), int(m.group(3)), int(m.group(4)), m.group(5), m.group(6) or "cycles")
    if line.startswith("RESULT"):
        m = RESULT_RE.match(line)
        if not m:
            raise ProtocolError(f"malformed RESULT line from the board: {line!r}")
        return "result", (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5))
    m = ERROR_RE.match(line)
    if not m:
        raise ProtocolError(f"malformed ERROR line from the board: {line!r}")
    return "error", (int(m.group(1)), m.group(2))


def _progress(path: Path) -> dict[int, dict]:
    done: dict[int, dict] = {}
    for rec in read_json_lines(path):   # a line cut short is skipped: that key is asked for again
        try:
            done[int(rec["index"])] = rec
        except (KeyError, TypeError, ValueError):
            continue
    return done


def collect(port, manifest: dict, device: str, out_path: Path, timeout_s: float = 3600.0, idle_s: float = 30.0,
            max_resets: int = 20, log: Callable[[str], None] = lambda s: None) -> lutmod.Lut:
    """Drive the board on ``port`` (a pyserial-like object: ``readline()`` with a read timeout, ``write()``)
    through every key of the profile set; write the LUT to ``out_path`` (``measured`` cycles, or ``emulated``
    instructions when the board's header says ``count=instructions``) and return it loaded. Resumable.

    Raises ``ProtocolError`` for a malformed line, another device or profile set, or an answer to a key not
    asked for; ``UserError`` when the board answers ERROR, resets more than ``max_resets`` times or does not
    finish within ``timeout_s`` (progress stays in ``<out_path>.progress.jsonl``)."""
    import time  # noqa: PLC0415

    out_path = Path(out_path)
    side = out_path.with_name(out_path.name + ".progress.jsonl")
    keys = manifest["keys"]
    done = _progress(side)
    resets, header, request = 0, None, b"HELLO\n"
    deadline = time.monotonic() + timeout_s

    def send(req: bytes) -> None:
        nonlocal request, last
        request, last = req, time.monotonic()
        port.write(req)

    def next_request() -> bytes:
        todo = [e["index"] for e in keys if e["index"] not in done]
        return f"RUN {todo[0]}\n".encode() if todo else b"END\n"

    last = 0.0
    send(b"HELLO\n")
    with open(side, "a") as f:
        while True:
            now = time.monotonic()
            if now > deadline:
                raise UserError(f"the board did not finish within {timeout_s:g} s ({len(done)}/{len(keys)} keys "
                                f"measured, saved in {side}; rerun to resume)")
            raw = port.readline()
            if not raw:
                if header is not None and request == b"HELLO\n":
                    send(next_request())   # the start is settled: the board has been quiet for a read timeout
                elif now - last > idle_s:
                    send(request)   # the board missed it (or its answer was lost): ask again
                continue
            msg = parse_line(raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw)
            if msg is None:
                continue
            kind, val = msg
            if kind == "header":
                if val.device != device:
                    raise ProtocolError(f"board reports device {val.device!r}, expected {device!r}")
                if val.keys != len(keys) or val.set_id != manifest["set"]:
                    raise ProtocolError(f"board runs profile set {val.set_id} with {val.keys} keys; the manifest "
                                        f"is {manifest['set']} with {len(keys)}: flash the matching set")
                if header is not None and request.startswith(b"RUN"):
                    resets += 1
                    if resets > max_resets:
                        raise UserError(f"the board reset {resets} times; giving up (progress saved in {side})")
                    log(f"board reset (#{resets}) during {request.decode().strip()}; asking again "
                        f"({len(done)}/{len(keys)} keys measured)")
                header = val
                if request != b"HELLO\n":
                    send(next_request())
                # At the start both the boot header (when the port was open in time to see it) and the answer to
                # HELLO may come: the first RUN goes out once the board is quiet, so neither looks like a reset.
            elif kind == "result":
                idx, med, mad, n, sha8 = val
                if idx in done:
                    continue   # a duplicate answer to a resent request
                if header is None or request != f"RUN {idx}\n".encode():
                    raise ProtocolError(f"board answered key {idx}, which was not asked for")
                if idx >= len(keys) or sha8 != keys[idx]["sha256"][:8]:
                    raise ProtocolError(f"board's model {idx} has checksum {sha8}, the manifest says otherwise: "
                                        "flash the matching profile set")
                if med <= 0 or n < 1:
                    raise ProtocolError(f"RESULT {idx}: counts must be > 0 and samples >= 1")
                rec = {"index": idx, "key": keys[idx]["key"], "value": med, "dispersion": mad, "samples": n,
                       "clock_hz": header.clock_hz, "count": header.count}
                f.write(json.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
                done[idx] = rec
                send(next_request())
            elif kind == "error":
                what = keys[val[0]]["key"] if val[0] < len(keys) else "?"
                raise UserError(f"board failed on key {val[0]} ({what}): {val[1]}")
            elif kind == "bye" and request == b"END\n":
                break
    meta = _metadata(done, device, manifest["set"], side)
    entries = {r["key"]: lutmod.LutEntry(float(r["value"]), float(r["dispersion"]), int(r["samples"]))
               for r in done.values()}
    table = lutmod.Lut(meta, entries)
    table.save(out_path)
    side.unlink(missing_ok=True)
    return lutmod.load(out_path)
