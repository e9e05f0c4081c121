"""Latency lookup tables: the shipped tables and their manifest, and ``resolve`` (a device name or a file, at
a clock, re-based to this machine when it is a host table measured elsewhere).

The table itself (types, parsing, pricing) is ``lut.table``, pure Python; its names are re-exported here.
``resolve`` may measure this machine (``lut.host_rebase``, TensorFlow), so pure modules import ``lut.table``.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgenas_keras._fs import atomic_write_json
from edgenas_keras.errors import UserError
from edgenas_keras.lut import table
from edgenas_keras.lut.table import (  # noqa: F401  (the package's public names)
    CLOCKED_UNITS,
    FORMAT,
    METHODS,
    UNITS,
    VERSION,
    Lut,
    LutEntry,
    assets_dir,
    build_analytical_lut,
    device_of,
    is_head_key,
    load,
    manifest,
    parse,
    shipped_devices,
)


def load_device(device: str, clock_mhz: float | None = None) -> Lut:
    """Load a shipped LUT by name and verify its checksum against ``lut_assets/manifest.json``.

    A name is a device (``cortex-m7``: the table timed on the emulated core with TFLM's kernels for it) or an
    alias whose manifest entry says which device its table is for (``cortex-m7-analytical``: the analytical
    cycle model that prices any shape, ``device: cortex-m7``; ``cortex-m7-emulated``: the same file as
    ``cortex-m7``, kept for older configs); the returned table's ``device`` is always the device.
    ``UserError`` for an unknown name or a modified file."""
    entry = manifest().get("luts", {}).get(device)
    if entry is None:
        known = ", ".join(shipped_devices()) or "none"
        raise UserError(f"no shipped LUT for device {device!r} (shipped: {known}); pass --lut FILE for your own")
    path = table.assets_dir() / entry["file"]
    lut = load(path)
    if lut.sha256 != entry["sha256"]:
        raise UserError(f"{path}: sha256 {lut.sha256[:12]}... does not match lut_assets/manifest.json "
                        f"({entry['sha256'][:12]}...): the file was modified; rebuild it or restore it")
    return lut.with_clock(clock_mhz)


def resolve(device: str | None = None, lut_file: str | None = None, clock_mhz: float | None = None,
            rebase: bool | None = None) -> Lut:
    """The CLI's ``--device NAME | --lut FILE`` choice, ready to price on this machine: a host-measured table
    timed on another machine is re-based here (``host_rebase.for_this_machine``: a probe of its keys measured
    here, cached per table and machine; one warning line on stderr). ``rebase=False`` (or
    ``EDGENAS_HOST_REBASE=0``) prices it as measured, with ``machine.check_lut``'s warning."""
    from edgenas_keras import machine  # noqa: PLC0415

    if bool(device) == bool(lut_file):
        raise UserError("give exactly one of --device NAME or --lut FILE")
    lut = load(lut_file) if lut_file else load_device(device)
    if machine.is_host_measured(lut):
        from edgenas_keras.lut import host_rebase  # noqa: PLC0415  (measures this machine: TensorFlow)

        lut = host_rebase.for_this_machine(lut, rebase)
    return lut.with_clock(clock_mhz)


def shipped_file(device: str, method: str) -> Path:
    """Where ``edgenas lut build --device D --method M`` writes without ``--out``: the shipped file of the
    manifest entry for that device whose table has that method (``cortex-m7`` + ``analytical`` ->
    ``lut_assets/analytical/cortex-m7.json``), else ``lut_assets/<device>.json`` when that file is free or
    of the same method, else ``lut_assets/<method>/<device>.json``."""
    root = table.assets_dir()
    for name, entry in sorted(manifest().get("luts", {}).items()):
        path = root / entry["file"]
        if entry.get("device", name) == device and path.is_file() and _method_of(path) == method:
            return path
    path = root / f"{device}.json"
    if not path.is_file() or _method_of(path) == method:
        return path
    return root / method / f"{device}.json"


def _method_of(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("metadata", {}).get("method")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def update_manifest(device: str, path: Path, sha256: str) -> None:
    """Record a shipped LUT file and its checksum in ``lut_assets/manifest.json`` (atomically).

    Every name whose entry points at ``path`` (a device and its aliases share one file) gets the new checksum;
    a file no name points at is entered as ``device`` (or, when that name is taken by another file,
    ``<device>-<method>`` with ``"device": device``). ``path`` must be under ``lut_assets/``."""
    mpath = table.assets_dir() / "manifest.json"
    try:
        rel = Path(path).resolve().relative_to(table.assets_dir().resolve()).as_posix()
    except ValueError:
        raise UserError(f"{path} is not under {table.assets_dir()}: only shipped tables go in the manifest") from None
    m = manifest()
    luts = m.setdefault("luts", {})
    names = [n for n, e in luts.items() if e.get("file") == rel]
    if not names:
        name = device if device not in luts else f"{device}-{_method_of(Path(path))}"
        luts[name] = {"file": rel} if name == device else {"device": device, "file": rel}
        names = [name]
    for n in names:
        luts[n]["sha256"] = sha256
    atomic_write_json(mpath, m, indent=2, sort_keys=True)
