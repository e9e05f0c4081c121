"""The identity of the machine a measured (host) LUT was timed on, and the warning when it is priced elsewhere.

A host table (``host-tflm``: single-operator models timed in the TFLM Python runtime) holds microseconds of
*this* CPU: another CPU model, another cache hierarchy or another tflite-micro build gives other figures
(issue 13: on an AMD EPYC family 25 model 17 the shipped table's held-out MAPE went from 1.24% to 6.2%).
``identity()`` reads what decides those timings:

- from ``/proc/cpuinfo`` (first processor): ``vendor`` (vendor_id), ``family`` (cpu family), ``model``,
  ``stepping``, ``model_name``, ``microcode`` and the nominal ``mhz``;
- from ``/sys/devices/system/cpu/cpu0/cache/index*/``: ``caches``, e.g. ``{"L1d": "48K", "L1i": "32K",
  "L2": "1024K", "L3": "32768K"}``;
- ``cores`` (``os.cpu_count()``), ``machine`` (``platform.machine()``), ``python``, and ``runtime``: the
  installed ``tflite-micro`` distribution's version (the runtime build that ran the kernels).

``IDENTITY_FIELDS`` are the ones compared: a difference in any of them makes ``check_lut`` print one warning
line on stderr (once per table and process). Core count, clock and microcode are recorded but not compared
(a VM of the same CPU with more cores times single-threaded kernels the same).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

IDENTITY_FIELDS = ("vendor", "family", "model", "stepping", "model_name", "caches", "runtime")
_CPUINFO = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping",
            "model name": "model_name", "microcode": "microcode", "cpu MHz": "mhz"}
_warned: set[str] = set()


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict:
    out: dict = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        if not line.strip():
            if out:
                break           # the first processor's block is enough
            continue
        name, _, val = line.partition(":")
        field = _CPUINFO.get(name.strip())
        if field and field not in out:
            val = val.strip()
            if field in ("family", "model", "stepping"):
                try:
                    val = int(val)
                except ValueError:
                    pass
            elif field == "mhz":
                try:
                    val = round(float(val), 1)
                except ValueError:
                    pass
            out[field] = val
    return out


def _caches(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict:
    caches = {}
    for d in sorted(root.glob("index*")):
        try:
            level = (d / "level").read_text().strip()
            kind = (d / "type").read_text().strip()
            size = (d / "size").read_text().strip()
        except OSError:
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        caches[name] = size
    return caches


def runtime_version() -> str:
    """The installed tflite-micro distribution's version, or ``unknown``."""
    from importlib import metadata  # noqa: PLC0415

    for dist in ("tflite-micro", "tflite_micro"):
        try:
            return f"tflite-micro {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def identity() -> dict:
    """This machine's identity (fields in the module docstring); fields it cannot read are left out."""
    ident = {**_cpuinfo(), "caches": _caches(), "cores": os.cpu_count(), "machine": platform.machine(),
             "python": platform.python_version(), "runtime": runtime_version()}
    if not ident.get("model_name"):
        ident["model_name"] = platform.processor() or "unknown"
    return ident


def describe(ident: dict | None) -> str:
    """A short human description: ``AMD EPYC (AuthenticAMD family 26 model 2 stepping 1, L2 1024K, L3 32768K,
    tflite-micro 0.dev...)``."""
    if not ident:
        return "an unknown machine"
    parts = []
    if "family" in ident:
        parts.append(f"{ident.get('vendor', '?')} family {ident['family']} model {ident.get('model', '?')} "
                     f"stepping {ident.get('stepping', '?')}")
    caches = ident.get("caches") or {}
    parts += [f"{k} {caches[k]}" for k in ("L2", "L3") if k in caches]
    if ident.get("runtime"):
        parts.append(ident["runtime"])
    return f"{ident.get('model_name') or ident.get('cpu') or 'unknown CPU'}" + (f" ({', '.join(parts)})"
                                                                               if parts else "")


def differences(recorded: dict | None, here: dict) -> list[str]:
    """The identity fields in which ``recorded`` (a table's ``metadata.host``) and ``here`` differ; a table
    recording none of them (measured before identities were recorded) gives ``["unknown"]``."""
    if not recorded or not any(f in recorded for f in IDENTITY_FIELDS if f != "model_name"):
        return ["unknown"]
    return [f for f in IDENTITY_FIELDS if recorded.get(f) != here.get(f)]


def is_host_measured(lut) -> bool:
    """A table timed on a host CPU (``method`` measured, unit us): the kind whose figures are the machine's."""
    return lut.metadata.get("method") == "measured" and lut.unit == "us"


def fingerprint(ident: dict) -> str:
    """A short hash (16 hex digits) of ``ident``'s ``IDENTITY_FIELDS``: equal for machines that time alike."""
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    doc = json.dumps({f: ident.get(f) for f in IDENTITY_FIELDS}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def mismatch(lut, here: dict | None = None) -> str | None:
    """The start of the warning for a host-measured ``lut`` timed on another or an unknown machine
    (``warning: LUT D was measured on ..., this machine is ...: family, model differ``), or None when the
    table is not host-measured, was measured here, or was already re-based to this machine
    (``metadata.rebase.machine``, ``host_rebase``)."""
    if not is_host_measured(lut):
        return None
    here = here if here is not None else identity()
    if (lut.metadata.get("rebase") or {}).get("machine") == fingerprint(here):
        return None
    recorded = lut.metadata.get("host")
    diff = differences(recorded, here)
    if not diff:
        return None
    if diff == ["unknown"]:
        rec = (f"an unknown machine (its metadata records only {recorded.get('cpu') or recorded.get('model_name')!r})"
               if recorded else "an unknown machine")
        why = "its timings may not hold here"
    else:
        rec = describe(recorded)
        why = f"{', '.join(diff)} differ"
    return f"warning: LUT {lut.device} was measured on {rec}, this machine is {describe(here)}: {why}"


def warn_once(lut, msg: str, stream=None) -> None:
    """Print ``msg`` on stderr unless a warning about this table was printed already in this process."""
    if (lut.sha256 or lut.device) not in _warned:
        _warned.add(lut.sha256 or lut.device)
        print(msg, file=stream or sys.stderr, flush=True)


def check_lut(lut, here: dict | None = None, stream=None) -> str | None:
    """Warn (one line on stderr, once per table and process) when ``lut`` was measured on a host that is not
    this one, or on an unknown one, and is priced as measured (``host_rebase`` re-bases instead, with its own
    line). Returns the warning, or None when the table is not host-measured or the machines match."""
    head = mismatch(lut, here)
    if head is None:
        return None
    more = "; its timings may not hold here" if head.endswith("differ") else ""
    msg = f"{head}{more} (rebuild it here: edgenas lut build --device {lut.device})"
    warn_once(lut, msg, stream)
    return msg


__all__ = ["IDENTITY_FIELDS", "check_lut", "describe", "differences", "fingerprint", "identity", "is_host_measured",
           "mismatch", "runtime_version", "warn_once"]
