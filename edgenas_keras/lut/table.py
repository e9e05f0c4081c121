"""A latency lookup table (LUT format v1): its types, parsing and validation, pricing. Pure Python: no
TensorFlow (an import-linter contract).

A LUT file is JSON (schema: ``lut_assets/lut.schema.json``)::

    {"format": "edgenas-lut", "version": 1,
     "metadata": {"device": "cortex-m7", "core": "Cortex-M7", "clock_mhz": 480, "runtime": "tflm",
                  "kernels": "cmsis-nn", "method": "analytical", "unit": "cycles", "tool_version": "0.1.0",
                  "date": "2026-11-26", "sources": ["..."]},
     "entries": [{"key": "<ops.lut_key(...)>", "value": 1234.0, "dispersion": 10.0, "samples": 5}, ...]}

``unit`` is ``cycles`` for MCU tables (scaled by the clock, so ``clock_mhz`` can be overridden at use) and ``us``
for host tables. ``instructions`` (method ``emulated``: counted by the profiler firmware in QEMU, which models no
cycles) is priced like cycles at one instruction per cycle, and says so in its ``sources``. Entries are keyed at
TFLite-operator granularity by ``edgenas_keras.cost.graph.lut_key``.

Shipped tables live in ``lut_assets/`` with a ``manifest.json`` of sha256 checksums that ``load_device``
verifies. A LUT may also carry an analytical model (``model`` in the metadata) that prices keys the table does
not list; measured tables do not, and a missing key is an error that lists the keys and the build command.

One exception, the classifier head: a table built for the default space lists ``FULLY_CONNECTED`` from
1x1xC to 2 outputs and ``SOFTMAX`` over 2 values only (the emulated tables also one 64 -> 10 and a softmax
over 10), and a data set with N classes needs those operators at N. A keys-only table (measured, emulated)
prices such a missing head key (``FULLY_CONNECTED`` from 1x1xC when it lists that C at another output
count, ``SOFTMAX`` over N when it lists another N) from its own entries of the same operator and
attributes (``_head_price``): where they hold two or more output counts, a least-
squares fit of ``a + b*N + c*C*N`` (``FULLY_CONNECTED``; ``a + b*N`` for ``SOFTMAX``); otherwise the
entry with the same input and the nearest output count scaled in proportion to N, which
over-states the cost because every kernel also has a fixed part (shipped emulated Cortex-M7 table without
its 64 -> 10 entry: 3,080 cycles for the emulated 2,053). The head is a few thousand cycles of a model's
millions, so the estimate does not decide a verdict; ``head_estimated(keys)`` names the keys priced this
way, and the search, ``analyze`` and ``validate`` report them. Any other missing key (a head over input
channels the table never saw, any other operator) is still refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgenas_keras._fs import atomic_write_bytes
from edgenas_keras.errors import MissingLutKeysError, UserError
from edgenas_keras.lut import analytical

FORMAT = "edgenas-lut"
VERSION = 1
# The schema (lut_assets/lut.schema.json) is what parse() enforces; these restate its enums for callers.
UNITS = ("cycles", "instructions", "us")
CLOCKED_UNITS = ("cycles", "instructions")   # rescaled by clock_mhz; "instructions" at one per cycle
METHODS = ("measured", "emulated", "analytical", "fixture")


def assets_dir() -> Path:
    """The shipped ``lut_assets/`` folder (next to the packages in a checkout or editable install)."""
    return Path(__file__).resolve().parents[2] / "lut_assets"


@dataclass(frozen=True)
class LutEntry:
    """One entry of a LUT, as the file stores it (before the calibration and re-basing factors of
    ``Lut.raw``): ``value`` in the table's unit (cycles, instructions or µs), ``dispersion`` the MAD of the
    samples in the same unit (0 for analytical), ``samples`` the number of timings (1 for analytical)."""

    value: float
    dispersion: float
    samples: int


@dataclass
class Lut:
    """A parsed LUT (module docstring): its ``metadata``, entries by key, the file's ``sha256`` ('' when
    built in memory), ``source`` (the path, for messages) and ``estimator``, the analytical model that prices
    keys the entries do not list (in the table's unit; None unless ``metadata.model`` names one)."""

    metadata: dict
    entries: dict[str, LutEntry]
    sha256: str = ""
    source: str = "<memory>"
    # Prices keys the table does not list (analytical devices); None for measured tables.
    estimator: Callable[[str], float] | None = field(default=None, repr=False)

    @property
    def device(self) -> str:
        """The device the table is for (``metadata.device``: ``cortex-m7``, also when loaded by an alias)."""
        return self.metadata["device"]

    @property
    def unit(self) -> str:
        """The unit of the entries: ``cycles``, ``instructions`` or ``us`` (``UNITS``)."""
        return self.metadata["unit"]

    @property
    def clock_mhz(self) -> float:
        """The clock in MHz: what cycle and instruction values are converted at (``with_clock`` overrides
        it); for a ``us`` table recorded only (a host table's nominal clock)."""
        return float(self.metadata["clock_mhz"])

    def with_clock(self, clock_mhz: float | None) -> Lut:
        """A view of this LUT at another clock (cycle tables only; host tables are in microseconds)."""
        if clock_mhz is None:
            return self
        if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz) and clock_mhz > 0):
            raise UserError(f"--clock-mhz must be a positive number, got {clock_mhz}")
        if self.unit not in CLOCKED_UNITS:
            raise UserError(f"LUT {self.source} is in {self.unit}, measured at a fixed clock: --clock-mhz does "
                            "not apply to it")
        meta = dict(self.metadata, clock_mhz=float(clock_mhz))
        return Lut(meta, self.entries, self.sha256, self.source, self.estimator)

    def to_us(self, value: float) -> float:
        """A value in the table's unit in µs: cycles (and instructions, at one per cycle) divided by
        ``clock_mhz``; a ``us`` value unchanged."""
        return value / self.clock_mhz if self.unit in CLOCKED_UNITS else value

    @property
    def build_hint(self) -> str:
        """How to add missing keys: the space's keys, or a model's own (any kernel/stride/dilation); for a
        device that also ships an analytical table, that it prices any shape."""
        method = self.metadata.get("method")
        how = f" --method {method}" if method in ("emulated", "analytical") else ""
        hint = (f"build them with: edgenas lut build --device {self.device}{how} (add --model MODEL.tflite for a "
                "model's own operators)")
        if method != "analytical":
            any_shape = [n for n, e in sorted(manifest().get("luts", {}).items())
                         if e.get("device", n) == self.device and n.endswith("-analytical")]
            if any_shape:
                hint += (f", or price any shape with the analytical table (--device {any_shape[0]}) or an "
                         "estimate (analyze --allow-estimate)")
        return hint

    def head_estimated(self, keys: Iterable[str]) -> list[str]:
        """The keys of ``keys`` this table prices with the classifier-head estimate (module docstring): a
        keys-only table's missing ``FULLY_CONNECTED`` keys from 1x1xC whose C it lists at another output
        count, and ``SOFTMAX`` keys over 1x1xN when it lists a softmax over another N (same attributes).
        Empty for tables with an analytical model."""
        if self.estimator is not None:
            return []
        wanted = {k for k in keys if k not in self.entries and is_head_key(k)}
        if not wanted:   # the common case (every key listed): no walk over the entries
            return []
        listed = {_head_basis(k) for k in self.entries if is_head_key(k)}
        return sorted(k for k in wanted if _head_basis(k) in listed)

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys of ``keys`` this table cannot price (neither listed nor estimated)."""
        if self.estimator is not None:
            return []
        keys = set(keys)
        return sorted({k for k in keys if k not in self.entries} - set(self.head_estimated(keys)))

    def require(self, keys: Iterable[str]) -> None:
        """Check that the table can price every key of ``keys`` (listed, analytical, or a head estimate).

        Raises:
            MissingLutKeysError: (a ``UserError``) some keys are neither listed nor estimated; the message
                gives their count, the first five and ``build_hint``.
        """
        miss = self.missing(keys)
        if miss:
            raise MissingLutKeysError(self.source, miss, self.build_hint)

    def raw(self, key: str) -> float:
        """The table's value for ``key`` (cycles or us), from the entries or the analytical estimator, times
        the board calibration's factor when the table is calibrated (``lut_calibrate``) and the re-basing
        factor when a host table was re-based to this machine (``host_rebase``): the one place for both."""
        e = self.entries.get(key)
        if e is not None:
            value = e.value
        elif self.estimator is not None:
            value = self.estimator(key)
        elif self.head_estimated([key]):
            value = _head_price(self.entries, key)
        else:
            raise MissingLutKeysError(self.source, [key], self.build_hint)
        reb = self.metadata.get("rebase")   # a host table re-based to this machine (host_rebase)
        if reb:
            value *= _host_rebase().factor(reb, key)
        cal = self.metadata.get("calibration")
        return value * _lut_calibrate().factor(cal, key) if cal else value

    def op_us(self, key: str) -> float:
        """The latency of one operator in µs: ``raw(key)`` (calibrated, re-based) through ``to_us``. Raises
        ``MissingLutKeysError`` as ``raw``."""
        return self.to_us(self.raw(key))

    def latency_ms(self, keys: Iterable[str]) -> float:
        """The latency in ms of a graph's operators: the sum of ``op_us`` over ``keys`` (a key listed twice
        counts twice) / 1000. Raises ``MissingLutKeysError`` (``require``) before pricing any key."""
        keys = list(keys)
        self.require(keys)
        return sum(self.op_us(k) for k in keys) / 1000.0

    # -- serialisation ----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The LUT document (format v1): ``format``, ``version``, ``metadata`` and the entries sorted by key.
        The estimator is not stored: ``parse`` rebuilds it from ``metadata.model``."""
        return {"format": FORMAT, "version": VERSION, "metadata": self.metadata,
                "entries": [{"key": k, "value": e.value, "dispersion": e.dispersion, "samples": e.samples}
                            for k, e in sorted(self.entries.items())]}

    def dumps(self) -> str:
        """``to_json`` as the file's text (indent 1, sorted keys, final newline): what ``save`` writes and
        hashes."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> str:
        """Write atomically; returns the sha256 of the file."""
        data = self.dumps().encode()
        atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()


HEAD_OPS = ("FULLY_CONNECTED", "SOFTMAX")


def is_head_key(key: str) -> bool:
    """True for a classifier-head operator key: ``FULLY_CONNECTED`` or ``SOFTMAX`` on a 1x1xC input."""
    op, _, rest = key.partition("|")
    return op in HEAD_OPS and rest.startswith("in=1x1x")


_HEAD_RE = re.compile(r"^(FULLY_CONNECTED|SOFTMAX)\|in=1x1x(\d+)\|out=(\d+)\|(.*)$")


def _head_parts(key: str) -> tuple[tuple[str, str], int, int]:
    """(operator and attributes after ``out``, input channels C, outputs N) of a head key."""
    m = _HEAD_RE.match(key)
    if m is None:
        return ("", ""), 0, 0
    return (m.group(1), m.group(4)), int(m.group(2)), int(m.group(3))


def _head_basis(key: str) -> tuple:
    """What a head key shares with the entries it may be estimated from: the operator and its attributes,
    and for ``FULLY_CONNECTED`` the input channels (the output count is what differs)."""
    kind, c, _ = _head_parts(key)
    return (kind, c) if kind[0] == "FULLY_CONNECTED" else (kind,)


def _head_price(entries: dict[str, LutEntry], key: str) -> float:
    """A head key's value from the table's entries of the same operator and attributes (module docstring)."""
    kind, c, n = _head_parts(key)
    basis = [(bc, bn, e.value) for k, e in entries.items() if is_head_key(k)
             for (bkind, bc, bn) in [_head_parts(k)] if bkind == kind]
    fc = kind[0] == "FULLY_CONNECTED"
    if len({bn for _, bn, _ in basis}) >= 2:
        import numpy as np  # noqa: PLC0415

        rows = np.array([[1.0, bn, bc * bn] if fc else [1.0, bn] for bc, bn, _ in basis])
        coef, _, rank, _ = np.linalg.lstsq(rows, np.array([v for _, _, v in basis]), rcond=None)
        if rank == rows.shape[1]:
            value = float(np.dot([1.0, n, c * n] if fc else [1.0, n], coef))
            if value > 0:
                return value
    work = (lambda bc, bn: bc * bn) if fc else (lambda bc, bn: bn)
    bc, bn, v = min(basis, key=lambda b: (abs(b[0] - c), abs(b[1] - n), b[0], b[1]))
    return v * work(c, n) / work(bc, bn)


def _lut_calibrate():
    from edgenas_keras.lut import calibrate as lut_calibrate  # noqa: PLC0415  (only calibrated tables need it)

    return lut_calibrate


def _host_rebase():
    from edgenas_keras.lut import rebase  # noqa: PLC0415

    return rebase


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@functools.cache
def _schema_validator():
    """The validator of ``lut_assets/lut.schema.json`` (read and checked once per process)."""
    import jsonschema  # noqa: PLC0415  (about 0.1 s to import; only parsing a LUT needs it)

    schema = json.loads((assets_dir() / "lut.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _where(path) -> str:
    """``metadata.calibration.factors``, ``entries[3].value``: a JSON path as the error messages spell it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_error(error, doc, source: str) -> str:
    """One line naming the file, the field (and an entry's key) and what the schema wants there."""
    path = list(error.absolute_path)
    where = _where(path)
    if path[:1] == ["entries"] and len(path) >= 2 and isinstance(path[1], int):
        entry = doc["entries"][path[1]]
        if isinstance(entry, dict) and isinstance(entry.get("key"), str) and path[2:3] not in ([], ["key"]):
            where = f"{_where(path[:2])} ({entry['key']}): {_where(path[2:])}"
    kind, want, got = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = next(k for k in want if k not in got)
        return f"{source}: {where or 'the LUT'} lacks required field {missing!r}"
    if kind == "type" and not path:
        return f"{source}: a LUT must be a JSON object"
    if kind == "const" and path == ["version"]:
        return f"{source}: LUT version {_short(got)} is not supported (this tool reads version {VERSION})"
    if kind == "const":
        return f"{source}: field {where!r} must be {want!r}, got {_short(got)}"
    if kind == "enum":
        return f"{source}: {where} must be one of {tuple(want)}, got {_short(got)}"
    if kind == "type":
        return f"{source}: {where} must be of type {want}, got {_short(got)}"
    if kind in ("exclusiveMinimum", "minimum"):
        op = ">" if kind == "exclusiveMinimum" else ">="
        return f"{source}: {where} must be a number {op} {want}, got {_short(got)}"
    if kind == "minLength":
        return f"{source}: {where} must be a non-empty string"
    if kind == "pattern":
        return (f"{source}: {where} {_short(got)} is not a LUT key (OP|in=HxWxC|out=C|k=K|s=S|p=PAD|act=ACT"
                "[|...], edgenas_keras.cost.graph.lut_key)")
    if kind == "additionalProperties":
        extra = sorted(set(got) - set(error.schema.get("properties", {})))
        return f"{source}: {where or 'the LUT'} has unknown field(s) {', '.join(map(repr, extra))}"
    return f"{source}: {where or 'the LUT'}: {error.message.splitlines()[0]}"


def _schema_order(error) -> tuple:
    """Report the shallowest error first, then in document order (entries[3] before entries[10])."""
    path = list(error.absolute_path)
    return len(path), [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in path]


def parse(doc, source: str, sha256: str = "") -> Lut:
    """Validate a decoded LUT document against ``lut_assets/lut.schema.json``, then what the schema cannot
    say (finite numbers: Python's ``json`` reads ``Infinity`` and ``NaN``; no key twice; the calibration and
    re-basing records). Every error is one ``UserError`` line naming the file and the field or entry."""
    errors = sorted(_schema_validator().iter_errors(doc), key=_schema_order)
    if errors:
        raise UserError(_schema_error(errors[0], doc, source))
    meta = doc["metadata"]
    if not _finite(meta["clock_mhz"]):
        raise UserError(f"{source}: metadata.clock_mhz must be a positive finite number, "
                        f"got {meta['clock_mhz']!r}")
    entries: dict[str, LutEntry] = {}
    for i, e in enumerate(doc["entries"]):
        where = f"{source}: entries[{i}]"
        key = e["key"]
        if key in entries:
            raise UserError(f"{where}: duplicate key {key!r}")
        disp = e.get("dispersion", 0.0)
        if not _finite(e["value"]):
            raise UserError(f"{where} ({key}): value must be a positive finite number, got {e['value']!r}")
        if not _finite(disp):
            raise UserError(f"{where} ({key}): dispersion must be a finite number >= 0, got {disp!r}")
        entries[key] = LutEntry(float(e["value"]), float(disp), int(e.get("samples", 1)))
    if meta.get("calibration") is not None:
        _lut_calibrate().check(meta["calibration"], source)
    if meta.get("rebase") is not None:
        _host_rebase().check(meta["rebase"], source)
    lut = Lut(meta, entries, sha256, source)
    model = meta.get("model")
    if model:
        # Analytical tables name the model that generated them; it also prices shapes they do not list.
        lut.estimator = analytical.estimator_for(meta)
    return lut


def load(path: str | Path) -> Lut:
    """Read and ``parse`` the LUT file at ``path``; its ``sha256`` is that of the file's bytes (compared with
    the manifest by ``load_device``, not here).

    Raises:
        UserError: the file does not exist, is a folder, cannot be read, is not valid JSON (or UTF-8), or fails
            ``parse``'s checks.
    """
    raw, doc = read_json_file(path, "LUT file")
    return parse(doc, str(Path(path)), hashlib.sha256(raw).hexdigest())


def read_json_file(path: str | Path, what: str, missing_hint: str = "") -> tuple[bytes, object]:
    """The bytes of the JSON file at ``path`` and the value they hold (a LUT; ``deploy.lut_profiler``'s
    profile-set manifest).

    Raises:
        UserError: calling the file ``what`` (e.g. "LUT file"): it is a folder, does not exist (the message then
            ends with ``missing_hint``, e.g. how to make it), cannot be read, or is not valid JSON (or UTF-8).
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {p} is a folder, not a JSON file")
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist{missing_hint}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UserError(f"{what} {p} cannot be read ({exc.strerror or exc})") from None
    try:
        return raw, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not valid JSON ({exc})") from None


def manifest() -> dict:
    """The shipped tables' manifest (``lut_assets/manifest.json``): ``{"luts": {name: {"file", "sha256", ...}}}``."""
    p = assets_dir() / "manifest.json"
    if not p.is_file():
        return {"luts": {}}
    return json.loads(p.read_text())


def build_analytical_lut(name: str, keys: list[str], date: str, tool_version: str):
    """The analytical LUT of device ``name``: an entry per key, and the model that prices any other key."""
    dev = analytical.device(name)
    meta = {"device": dev.name, "core": dev.core, "clock_mhz": dev.clock_mhz, "runtime": dev.runtime,
            "kernels": dev.kernels, "method": "analytical", "unit": "cycles", "tool_version": tool_version,
            "date": date, "sources": list(dev.sources), "model": analytical.model_metadata(dev)}
    price = analytical.estimator_for(meta)
    entries = {k: LutEntry(price(k), 0.0, 1) for k in keys}
    lut = Lut(meta, entries)
    lut.estimator = price
    return lut


def shipped_devices() -> list[str]:
    """The names of the shipped LUTs, sorted: every key of ``lut_assets/manifest.json``'s ``luts``, devices
    (``cortex-m7``) and their aliases (``cortex-m7-analytical``) alike; empty without a manifest."""
    return sorted(manifest().get("luts", {}))


def device_of(name: str) -> str:
    """The device a shipped LUT name stands for: the manifest entry's ``device`` for an alias
    (``cortex-m7-analytical`` -> ``cortex-m7``), the name itself otherwise (also for names not shipped, e.g.
    a push folder named next to ``lut.file``). Use it wherever a name picks a core, a runtime footprint or a
    push folder, so that two names of the same device are never two devices."""
    entry = manifest().get("luts", {}).get(name)
    return entry.get("device", name) if isinstance(entry, dict) else name
