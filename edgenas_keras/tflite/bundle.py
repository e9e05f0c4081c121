"""The firmware bundle: what a firmware engineer needs to run an int8 ``.tflite`` (ours or anyone's) in TFLM.

Contents (issue 6, section 4): ``model.tflite``; ``<name>_model_data.cc/.h`` (the model as a 16-byte-aligned
C array and its length, the TFLM examples' convention); ``<name>_op_resolver.h`` (a
``tflite::MicroMutableOpResolver<N>`` registering exactly the operators the model uses, so the linker keeps
no other kernel); ``<name>_model_settings.h`` (input shape, quantisation, preprocessing, labels, ``kTensorArenaSize``);
``manifest.json`` (provenance and the sha256 of every file); ``README.md``.

Preprocessing (how a camera pixel becomes the model's input): never a hand-written sentence. For a model
trained by EdgeNAS it is the rule the training reader computes with (``edgenas_keras.data.preprocessing``),
recorded by training in ``metrics.json`` beside the exported model (matched by sha256) or passed by the
caller; for any other model it is unknown, and the bundle says so, unless the user states the input range
(``input_range``, ``edgenas bundle --input-range LO,HI``). The settings header, the manifest's
``preprocessing`` section and the README are all generated from the same ``Preprocessing`` value, with the
pixel -> int8 mapping of the model's input quantisation; when one integer offset maps every pixel to its
nearest int8 value (``q = pixel - 128`` for ``pixel / 127.5 - 1`` at scale 1/127.5), that offset is given too.

Arena: ``kTensorArenaSize`` is, where the caller passes it (``target_arena``; ``edgenas bundle --device D``
does when the device's core can be emulated and its toolchain is installed), the arena the model needs on
the device's 32-bit core (``arena_used_bytes()`` in QEMU, ``deploy.emulate``) plus the margin; otherwise
the arena measured on this host by bisection (exact for the host TFLM build)
plus ``ARENA_MARGIN``, rounded up to 16; the manifest's ``arena.source`` says which. The host is 64-bit, so its persistent structs already overstate a
32-bit MCU's; the margin covers what the host does not see: optimised kernel libraries (CMSIS-NN) request
scratch buffers that the host's reference kernels do not (im2col, depthwise buffers: a few KiB for
MobileNet-class models), and TFLM builds newer than the host's may add a few persistent bytes.

The files' text is rendered from the Jinja2 templates in ``edgenas_keras/templates/bundle/`` (``TEMPLATES``);
the model array is written by ``edgenas_keras.tflite.c_source.c_array``. The bundle is written to a temporary
directory next to ``out_dir`` and renamed into place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

import edgenas_keras
from edgenas_keras.data.preprocessing import Preprocessing
from edgenas_keras.errors import UserError
from edgenas_keras.tflite.c_source import c_array
from edgenas_keras.tflite.model import TfliteModel, parse
from edgenas_keras.tflite.tflm import ARENA_ALIGNMENT, min_arena_bytes

BUNDLE_FORMAT = "edgenas-bundle/1"
ARENA_MARGIN_FRACTION = 0.05     # of the measured host arena ...
ARENA_MARGIN_MIN = 2048          # ... and never less than this many bytes
# TFLM's MicroMutableOpResolver method names, where they differ from CamelCase of the builtin name.
_RESOLVER_EXCEPTIONS = {
    "BATCH_MATMUL": "AddBatchMatMul",
    "CUMSUM": "AddCumSum",
    "PADV2": "AddPadV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}
_RESERVED_MANIFEST_KEYS = {"format", "name", "model", "arena", "device", "tools", "git_revision", "files",
                           "labels", "preprocessing"}
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

# The text of the C sources and the README lives in Jinja2 templates here (as TFLM renders its op resolver from
# micro_mutable_op_resolver.h.mako); what decides the text (C string escaping, Markdown quoting of labels, arena
# arithmetic, the preprocessing mapping) stays in this module and is passed in.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "bundle"


@functools.lru_cache(maxsize=1)
def _environment():
    """The bundle's Jinja2 templates (C and Markdown: no autoescaping; a missing value is an error)."""
    import jinja2  # noqa: PLC0415

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["fmt"] = format      # {{ x|fmt(",") }} is format(x, ","): Python's format specs, as before
    env.filters["repr"] = repr       # {{ x|repr }}: floats in C as repr() writes them (shortest round trip)
    return env


def _render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)


def resolver_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers builtin ``op`` (``CONV_2D`` -> ``AddConv2D``)."""
    if op in _RESOLVER_EXCEPTIONS:
        return _RESOLVER_EXCEPTIONS[op]
    return "Add" + "".join(p.capitalize() for p in op.split("_")).replace("2d", "2D").replace("3d", "3D")


def arena_size(measured: int) -> int:
    """``kTensorArenaSize``: the measured host arena plus the documented margin, rounded up to 16 bytes."""
    margin = max(ARENA_MARGIN_MIN, int(measured * ARENA_MARGIN_FRACTION))
    return -(-(measured + margin) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


@dataclass(frozen=True)
class Bundle:
    """A written firmware bundle: its folder, C name, operator set, arena sizes in bytes (host bisection,
    ``kTensorArenaSize``, the emulated core's when measured) and each file's sha256.
    """
    out_dir: Path
    name: str
    ops: tuple[str, ...]          # the operator set, sorted
    host_arena_bytes: int         # measured by bisection
    tensor_arena_size: int        # kTensorArenaSize
    files: dict                   # file name -> sha256
    arena_source: str = "host"    # "emulated" (the device core's arena in QEMU) or "host" (64-bit bisection)
    target_arena_bytes: int | None = None   # arena_used_bytes() on the emulated core, when measured

    def as_dict(self) -> dict:
        """The fields as JSON-ready values (``out_dir`` a string, ``ops`` a list; arenas in bytes), for
        ``edgenas bundle``'s output."""
        return {"out_dir": str(self.out_dir), "name": self.name, "ops": list(self.ops),
                "host_arena_bytes": self.host_arena_bytes, "tensor_arena_size": self.tensor_arena_size,
                "arena_source": self.arena_source, "target_arena_bytes": self.target_arena_bytes,
                "files": self.files}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_revision() -> str | None:
    root = Path(edgenas_keras.__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def _tool_versions() -> dict:
    versions = {"edgenas": edgenas_keras.__version__, "python": platform.python_version()}
    for dist in ("tflite-micro", "tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy",
                 "flatbuffers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _model_data_h(name: str) -> str:
    return _render("model_data.h.j2", name=name, guard=f"{name.upper()}_MODEL_DATA_H_")


def _model_data_cc(name: str, data: bytes) -> str:
    return _render("model_data.cc.j2", name=name, sha256=_sha256(data), array=c_array(data, 12),
                   length=len(data))


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_") if p)


def _op_resolver_h(name: str, model: TfliteModel) -> str:
    """The resolver header: one ``Add...()`` per distinct operator of *all* subgraphs (TFLM looks up a kernel
    for every operator of every subgraph when it allocates, and ``MicroMutableOpResolver<N>`` refuses an
    ``Add`` beyond N and a second ``Add`` of the same operator: N is the number of distinct operators)."""
    subgraphs = []
    for g in model.subgraphs:
        sig = model.signature_of(g.index)
        tags = ([f"'{g.name}'"] if g.name else []) + ([f"signature '{sig}'"] if sig is not None else [])
        subgraphs.append({"index": g.index, "tags": " ".join(tags), "ops": ", ".join(g.op_set) or "none"})
    return _render("op_resolver.h.j2", guard=f"{name.upper()}_OP_RESOLVER_H_", cls=_camel(name),
                   ops=[(op, resolver_method(op)) for op in model.op_set], subgraphs=subgraphs,
                   resource_variables=model.resource_variables)


def _c_string(s: str) -> str:
    """``s`` as a C/C++ narrow string literal holding its UTF-8 bytes, for any text (class names come from
    users' folder names): printable ASCII as is, except ``"`` and ``\\`` (escaped) and ``?`` (``\\?``, so no
    trigraph forms); every other byte (control characters, each byte of a non-ASCII character) as a
    three-digit octal escape, which never runs into the next character as ``\\x`` escapes can. The literal
    has no line break, so it is safe inside a ``//`` comment too. (A JSON literal is not: its ``\\uXXXX``
    escapes of control characters and surrogate pairs are not valid C.)"""
    out = []
    for b in s.encode("utf-8"):
        ch = chr(b)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _md_label(label: str) -> str:
    """A label for the README's text: as is when it is plain words, else as a quoted JSON string (so a
    newline, backtick or markup character in a user's class name cannot break the page)."""
    return label if re.fullmatch(r"[\w .+-]+", label) else json.dumps(label, ensure_ascii=False)


def pixel_to_int8_offset(pre: Preprocessing, scale: float, zero_point: int) -> int | None:
    """``pre.int8_offset``: the exact integer pixel -> int8 offset for this input quantisation, or ``None``."""
    return pre.int8_offset(scale, zero_point)


def _offset_text(k: int) -> str:
    return f"q = pixel {'-' if k < 0 else '+'} {abs(k)}"


def preprocessing_manifest(pre: Preprocessing | None, model: TfliteModel) -> dict:
    """The manifest's ``preprocessing`` section: the rule, its source, and the pixel -> int8 mapping."""
    inp = model.tensors[model.inputs[0]]
    h, w, c = inp.hwc
    base = {"resolution": [h, w], "channels": c, "layout": "NHWC"}
    if pre is None:
        return {"known": False, **base, "source": "unknown: not recorded with the model",
                "how_to_state": "edgenas bundle --input-range LO,HI (pixels 0..255 -> [LO, HI])"}
    k = pixel_to_int8_offset(pre, inp.scale[0], inp.zero_point[0])
    general = (f"q = clamp(round(({pre.formula.removeprefix('x = ')}) / {inp.scale[0]!r}) + "
               f"({inp.zero_point[0]}), -128, 127)")
    return {"known": True, **base, **pre.to_dict(),
            "pixel_to_int8": {"integer_offset": k, "formula": _offset_text(k) if k is not None else general,
                              "exact": k is not None, "general_formula": general}}


def _model_settings_h(name: str, model: TfliteModel, labels: list[str], measured: int, arena: int,
                      pre: Preprocessing | None = None, target_arena: dict | None = None) -> str:
    inp = model.tensors[model.inputs[0]]
    out = model.tensors[model.outputs[0]]
    h, w, c = inp.hwc
    k = pixel_to_int8_offset(pre, inp.scale[0], inp.zero_point[0]) if pre is not None else None
    return _render("model_settings.h.j2", guard=f"{name.upper()}_MODEL_SETTINGS_H_", inp=inp, out=out,
                   input_name=_c_string(inp.name), output_name=_c_string(out.name),
                   dims=", ".join(str(d) for d in inp.shape), h=h, w=w, c=c,
                   c_labels=[_c_string(label) for label in labels], pre=pre, offset=k,
                   offset_text=_offset_text(k) if k is not None else None, target=target_arena,
                   measured=measured, arena=arena, margin_min=ARENA_MARGIN_MIN,
                   margin_fraction=ARENA_MARGIN_FRACTION)


def _readme(name: str, model: TfliteModel, labels: list[str], measured: int, arena: int,
            manifest: dict) -> str:
    inp = model.tensors[model.inputs[0]]
    return _render("README.md.j2", name=name, cls=_camel(name), model=model, inp=inp,
                   out=model.tensors[model.outputs[0]], architecture=manifest.get("architecture"),
                   device=manifest.get("device"), other_subgraphs=len(model.subgraphs) - 1,
                   other_subgraph_operators=sum(len(g.operators) for g in model.subgraphs[1:]),
                   arena=manifest["arena"], tensor_arena_size=arena, measured=measured,
                   margin_min=ARENA_MARGIN_MIN, margin_fraction=ARENA_MARGIN_FRACTION,
                   pre=manifest["preprocessing"],
                   input_float_range=((-128 - inp.zero_point[0]) * inp.scale[0],
                                      (127 - inp.zero_point[0]) * inp.scale[0]),
                   md_labels=[_md_label(v) for v in labels])


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UserError(f"bundle name {name!r} is not a C identifier: use lowercase letters, digits and "
                        "underscores, not starting with a digit")
    return name


def default_name(model_path: str | Path) -> str:
    """A C identifier from the model's file name (lowercase, ``_`` for other characters, ``m_`` before a digit)."""
    stem = re.sub(r"[^a-z0-9_]+", "_", Path(model_path).stem.lower()).strip("_") or "model"
    return stem if not stem[0].isdigit() else f"m_{stem}"


def recorded_preprocessing(model_path: str | Path, sha256: str | None = None) -> Preprocessing | None:
    """The preprocessing ``edgenas train`` recorded in ``metrics.json`` beside this very model (its sha256 is
    the QAT or the PTQ int8 model's there), or ``None``."""
    model_path = Path(model_path)
    metrics = model_path.parent / "metrics.json"
    try:
        m = json.loads(metrics.read_text())
        sha = sha256 or _sha256(model_path.read_bytes())
        if sha in (m.get("int8_sha256"), m.get("ptq_int8_sha256")) and m.get("preprocessing"):
            return Preprocessing.from_dict(m["preprocessing"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return None


def _resolve_preprocessing(given: Preprocessing | None, recorded: Preprocessing | None,
                           input_range: tuple[float, float] | None) -> Preprocessing | None:
    pre = given or recorded
    if input_range is None:
        return pre
    lo, hi = (float(v) for v in input_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise UserError(f"input range must be two finite numbers LO < HI, got {lo:g},{hi:g}")
    if pre is None:
        return Preprocessing.from_input_range(
            lo, hi, source=f"stated by the user (edgenas bundle --input-range {lo:g},{hi:g})")
    if not np.allclose(pre.input_range, (lo, hi), rtol=0, atol=1e-6):
        plo, phi = pre.input_range
        raise UserError(f"--input-range {lo:g},{hi:g} contradicts the preprocessing the model was trained with "
                        f"({pre.formula}, [{plo:g}, {phi:g}], {pre.source}); drop --input-range")
    return pre


def make_bundle(model_path: str | Path, out_dir: str | Path, name: str | None = None, device: str | None = None,
                extra_manifest: dict | None = None, preprocessing: Preprocessing | None = None,
                input_range: tuple[float, float] | None = None, target_arena: dict | None = None,
                arena_note: str | None = None) -> Bundle:
    """Write the firmware bundle of the int8 model at ``model_path`` to ``out_dir``.

    ``extra_manifest`` adds provenance the caller knows (``architecture``, ``lut_sha256``, ``budgets``,
    ``figures``, ``accuracy``, ``dataset_fingerprint``, ...) and may carry ``labels`` (class names, in output
    order; default: the preprocessing's labels, else ``class_0``, ``class_1``, ...). ``out_dir`` must not
    exist, be empty, or hold an earlier bundle (which is replaced).

    Preprocessing: ``preprocessing`` if given, else the one ``edgenas train`` recorded beside the model
    (``recorded_preprocessing``), else unknown (stated as such). ``input_range`` (LO, HI) states it for a
    model without a record: pixels 0..255 map linearly onto [LO, HI]; contradicting a known record, or LO >= HI,
    is a ``UserError``.

    Arena: ``target_arena`` is the measurement on the device's core (``deploy.emulate.measured_footprint``:
    ``arena_used_bytes``, ``target``, ``qemu_machine``, ``toolchain``, ``kernels``); ``kTensorArenaSize`` is
    then that arena plus the margin, and the manifest's ``arena.source`` is ``emulated``. Without it the
    64-bit host bisection is used (``source: host``), with ``arena_note`` recorded as the reason.
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise UserError(f"model file {model_path} does not exist or is not a file")
    name = _check_name(name or default_name(model_path))
    data = model_path.read_bytes()
    model = parse(data, str(model_path)).require_int8()
    custom = [op for op in model.op_set if op.startswith("CUSTOM")]
    if custom:
        raise UserError(f"{model_path} uses custom operator(s) {', '.join(custom)}: the bundle registers "
                        "builtin operators only; register them in your firmware and the runtime")
    if not model.inputs or not model.outputs:
        raise UserError(f"{model_path} has no input or output tensor")
    extra = dict(extra_manifest or {})
    clash = _RESERVED_MANIFEST_KEYS & (set(extra) - {"labels"})
    if clash:
        raise ValueError(f"extra_manifest may not set {sorted(clash)}")
    out_elems = model.tensors[model.outputs[0]].elements
    pre = _resolve_preprocessing(preprocessing, recorded_preprocessing(model_path, _sha256(data)), input_range)
    labels = [str(v) for v in extra.pop("labels", None) or (pre.labels if pre is not None else None)
              or [f"class_{i}" for i in range(out_elems)]]
    if len(labels) != out_elems:
        raise UserError(f"{len(labels)} labels given for a model with {out_elems} outputs")
    _check_out_dir(out_dir)

    measured = min_arena_bytes(data, str(model_path))
    target_bytes = int(target_arena["arena_used_bytes"]) if target_arena is not None else None
    arena = arena_size(target_bytes if target_bytes is not None else measured)
    arena_doc = {"source": "emulated" if target_arena is not None else "host",
                 "host_measured_bytes": measured, "tensor_arena_size": arena,
                 "margin": f"max({ARENA_MARGIN_MIN} B, {ARENA_MARGIN_FRACTION:.0%} of measured), rounded up to 16",
                 "measured_on": f"tflite-micro Python runtime, {platform.machine()} (64-bit), reference kernels"}
    if target_arena is not None:
        arena_doc.update(target_measured_bytes=target_bytes, target=dict(target_arena),
                         measured_on=f"{target_arena.get('target')} in QEMU {target_arena.get('qemu_machine')} "
                         f"(TFLM, {target_arena.get('kernels')} kernels, 32-bit)")
    if arena_note:
        arena_doc["note"] = arena_note
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": name,
        "device": device,
        **extra,
        "labels": labels,
        "preprocessing": preprocessing_manifest(pre, model),
        "model": {"source": str(model_path), "bytes": len(data), "sha256": _sha256(data),
                  "operators": len(model.operators), "op_set": model.op_set,
                  "inputs": model.input_details(), "outputs": model.output_details()},
        "arena": arena_doc,
        "tools": _tool_versions(),
        "git_revision": _git_revision(),
    }
    texts = {
        f"{name}_model_data.h": _model_data_h(name),
        f"{name}_model_data.cc": _model_data_cc(name, data),
        f"{name}_op_resolver.h": _op_resolver_h(name, model),
        f"{name}_model_settings.h": _model_settings_h(name, model, labels, measured, arena, pre, target_arena),
        "README.md": _readme(name, model, labels, measured, arena, manifest),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the bundle is an ordinary output directory
    try:
        files = {"model.tflite": _sha256(data)}
        (tmp / "model.tflite").write_bytes(data)
        for fname, text in texts.items():
            (tmp / fname).write_text(text)
            files[fname] = _sha256(text.encode())
        manifest["files"] = dict(sorted(files.items()))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(out_dir, name, tuple(model.op_set), measured, arena, manifest["files"], arena_doc["source"],
                  target_bytes)


def _is_bundle(d: Path) -> bool:
    try:
        return json.loads((d / "manifest.json").read_text()).get("format") == BUNDLE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_bundle(out_dir):
        raise UserError(f"output directory {out_dir} is not empty and holds no earlier bundle; "
                        "give a new or empty directory")


def _replace_dir(new: Path, out_dir: Path) -> None:
    """Move the finished bundle into place; an earlier bundle there is swapped out, then deleted."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.rename(old / "b")
    new.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
