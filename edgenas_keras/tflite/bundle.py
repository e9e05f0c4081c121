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

The bundle is written to a temporary directory next to ``out_dir`` and renamed into place.
"""

from __future__ import annotations

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

# The GNU make fragment that builds a bundle into a TFLM application (the same text as in
# deploy/firmware/README.md; tests/firmware/test_fragment.py builds it as written and runs it in QEMU).
MAKE_FRAGMENT = """\
# edgenas_bundle.mk: an EdgeNAS firmware bundle in a GNU make build of a TFLM application.
# Set before `include edgenas_bundle.mk`:
#   EDGENAS_BUNDLE  the directory `edgenas bundle` wrote
#   TFLM_ROOT       your tflite-micro tree (tensorflow/lite/micro/tools/make/downloads filled by TFLM's make)
#   TFLM_LIB        libtensorflow-microlite.a built from TFLM_ROOT for your core
#   CXX, CXXFLAGS   your cross compiler and CPU flags (the -mcpu/-mfpu/-mfloat-abi TFLM_LIB was built with)
# Gives: EDGENAS_OBJS (link them), EDGENAS_CPPFLAGS and EDGENAS_CXXFLAGS (compile your code that includes the
# bundle's headers with them), EDGENAS_LDLIBS (link after your objects).
EDGENAS_BUILD ?= build/edgenas
EDGENAS_SRCS := $(wildcard $(EDGENAS_BUNDLE)/*_model_data.cc)
EDGENAS_OBJS := $(patsubst $(EDGENAS_BUNDLE)/%.cc,$(EDGENAS_BUILD)/%.o,$(EDGENAS_SRCS))
EDGENAS_DOWNLOADS := $(TFLM_ROOT)/tensorflow/lite/micro/tools/make/downloads
EDGENAS_CPPFLAGS := -I$(EDGENAS_BUNDLE) -I$(TFLM_ROOT) -I$(EDGENAS_DOWNLOADS)/flatbuffers/include \\
  -I$(EDGENAS_DOWNLOADS)/gemmlowp -I$(EDGENAS_DOWNLOADS)/ruy -DTF_LITE_STATIC_MEMORY
EDGENAS_CXXFLAGS := -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics
EDGENAS_LDLIBS := $(TFLM_LIB) -lm

$(EDGENAS_BUILD)/%.o: $(EDGENAS_BUNDLE)/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(EDGENAS_CXXFLAGS) $(EDGENAS_CPPFLAGS) -c $< -o $@
"""


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


def _c_array(data: bytes, per_line: int = 12) -> str:
    lines = []
    for i in range(0, len(data), per_line):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ",")
    return "\n".join(lines)


def _model_data_h(name: str) -> str:
    guard = f"{name.upper()}_MODEL_DATA_H_"
    return f"""// Generated by edgenas bundle: the int8 model as a C array (TFLM examples' convention).
#ifndef {guard}
#define {guard}

// The .tflite flatbuffer, 16-byte aligned (TFLM reads it in place; keep it in flash).
extern const unsigned char g_{name}_model_data[];
// Its length in bytes.
extern const unsigned int g_{name}_model_data_len;

#endif  // {guard}
"""


def _model_data_cc(name: str, data: bytes) -> str:
    return f"""// Generated by edgenas bundle from model.tflite (sha256 {_sha256(data)}).
#include "{name}_model_data.h"

alignas(16) const unsigned char g_{name}_model_data[] = {{
{_c_array(data)}
}};
const unsigned int g_{name}_model_data_len = {len(data)};
"""


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_") if p)


def _op_resolver_h(name: str, model: TfliteModel) -> str:
    """The resolver header: one ``Add...()`` per distinct operator of *all* subgraphs (TFLM looks up a kernel
    for every operator of every subgraph when it allocates, and ``MicroMutableOpResolver<N>`` refuses an
    ``Add`` beyond N and a second ``Add`` of the same operator: N is the number of distinct operators)."""
    ops = model.op_set
    guard = f"{name.upper()}_OP_RESOLVER_H_"
    cls = _camel(name)
    calls = "\n".join(f"  TF_LITE_ENSURE_STATUS(resolver.{resolver_method(op)}());  // {op}" for op in ops)
    where = ""
    if len(model.subgraphs) > 1:
        lines = []
        for g in model.subgraphs:
            sig = model.signature_of(g.index)
            tags = ([f"'{g.name}'"] if g.name else []) + ([f"signature '{sig}'"] if sig is not None else [])
            run = "runs" if g.index == 0 else "allocated and prepared by TFLM too"
            lines.append(f"//   subgraph {g.index} {' '.join(tags)} ({run}): {', '.join(g.op_set) or 'none'}")
        where = (f"// The model has {len(model.subgraphs)} subgraphs; TFLM invokes subgraph 0 and prepares every "
                 "subgraph's operators,\n// so all of these are registered:\n" + "\n".join(lines) + "\n")
    variables = ""
    if model.resource_variables:
        variables = f"""
// The model keeps {model.resource_variables} resource variable(s) (VAR_HANDLE): create the interpreter with them,
// from an allocator on the arena, or VAR_HANDLE fails to prepare:
//   tflite::MicroAllocator* allocator = tflite::MicroAllocator::Create(tensor_arena, kTensorArenaSize);
//   tflite::MicroResourceVariables* variables =
//       tflite::MicroResourceVariables::Create(allocator, k{cls}ResourceVariableCount);
//   tflite::MicroInterpreter interpreter(model, resolver, allocator, variables);
constexpr int k{cls}ResourceVariableCount = {model.resource_variables};
"""
    return f"""// Generated by edgenas bundle: registers exactly the {len(ops)} operator types the model uses.
{where}#ifndef {guard}
#define {guard}

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr int k{cls}OpCount = {len(ops)};
using {cls}OpResolver = tflite::MicroMutableOpResolver<k{cls}OpCount>;
{variables}
// Registers the model's operators in `resolver`; returns kTfLiteError if one fails.
inline TfLiteStatus Register{cls}Ops({cls}OpResolver& resolver) {{
{calls}
  return kTfLiteOk;
}}

// Factory: a resolver with the model's operators registered (keep it alive as long as the interpreter).
inline {cls}OpResolver Make{cls}OpResolver() {{
  {cls}OpResolver resolver;
  Register{cls}Ops(resolver);
  return resolver;
}}

#endif  // {guard}
"""


def _subgraph_note(model: TfliteModel) -> str:
    """For the README: how many subgraphs besides 0, whose operators the resolver registers too."""
    others = len(model.subgraphs) - 1
    if others < 1:
        return ""
    return (f" in subgraph 0, which TFLM runs, and {sum(len(g.operators) for g in model.subgraphs[1:])} in "
            f"{others} other subgraph(s) that TFLM allocates and prepares too; operator types of all")


def _variables_note(name: str, model: TfliteModel) -> str:
    """For the README: a model with resource variables needs them passed to the interpreter."""
    if not model.resource_variables:
        return ""
    return (f"\nThe model keeps {model.resource_variables} resource variable(s) (VAR_HANDLE): construct the "
            "interpreter from a `tflite::MicroAllocator` on the arena and "
            f"`tflite::MicroResourceVariables::Create(allocator, k{_camel(name)}ResourceVariableCount)` as "
            f"`{name}_op_resolver.h` shows, or VAR_HANDLE fails to prepare.\n")


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


def _preprocessing_h(pre: Preprocessing | None, k: int | None) -> str:
    if pre is None:
        return """// Input preprocessing: UNKNOWN. The model carries no record of how its training scaled pixels; use
// the preprocessing its authors trained with, or state the range with `edgenas bundle --input-range LO,HI`.
constexpr bool kPreprocessingKnown = false;
"""
    lo, hi = pre.input_range
    lines = [f"// Input preprocessing, from {pre.source}:",
             f"// {pre.formula}, pixel in [0, 255] -> [{lo:g}, {hi:g}]; channel order "
             f"{pre.channel_order or 'not stated'}; resize: {pre.resize or 'not stated'}.",
             "// Then quantise with kInputScale and kInputZeroPoint (above).",
             "constexpr bool kPreprocessingKnown = true;",
             f"constexpr float kPixelDivisor = {pre.pixel_divisor!r}f;",
             f"constexpr float kPixelOffset = {pre.pixel_offset!r}f;",
             f"constexpr float kInputRangeMin = {lo!r}f;",
             f"constexpr float kInputRangeMax = {hi!r}f;"]
    if k is not None:
        lines += ["// The same in one integer step, exact (every pixel lands on its nearest int8 value):",
                  f"// {_offset_text(k)}, clamped to [-128, 127].",
                  "constexpr bool kPixelToInputIsOffset = true;",
                  f"constexpr int kPixelToInputOffset = {k};"]
    else:
        lines += ["// No single integer offset maps pixels to int8 exactly for this input quantisation:",
                  "// q = clamp(round((pixel / kPixelDivisor + kPixelOffset) / kInputScale) + kInputZeroPoint).",
                  "constexpr bool kPixelToInputIsOffset = false;"]
    return "\n".join(lines) + "\n"


def _arena_comment(measured: int, target_arena: dict | None) -> str:
    if target_arena is None:
        return (f"// Tensor arena: {measured} bytes measured by bisection in the TFLM runtime on a 64-bit host, "
                f"plus a margin\n// of max({ARENA_MARGIN_MIN} bytes, {ARENA_MARGIN_FRACTION:.0%}) for kernel-library "
                "scratch (CMSIS-NN), rounded up to 16.")
    return (f"// Tensor arena: {target_arena['arena_used_bytes']} bytes = arena_used_bytes() of this model on "
            f"{target_arena.get('target')} (TFLM\n// {target_arena.get('kernels', '')} build, 32-bit, run in QEMU "
            f"{target_arena.get('qemu_machine')}), plus a margin of max({ARENA_MARGIN_MIN} bytes, "
            f"{ARENA_MARGIN_FRACTION:.0%})\n// for other TFLM versions and toolchains, rounded up to 16 "
            f"(the 64-bit host needs {measured}).")


def _model_settings_h(name: str, model: TfliteModel, labels: list[str], measured: int, arena: int,
                      pre: Preprocessing | None = None, target_arena: dict | None = None) -> str:
    guard = f"{name.upper()}_MODEL_SETTINGS_H_"
    inp = model.tensors[model.inputs[0]]
    out = model.tensors[model.outputs[0]]
    dims = ", ".join(str(d) for d in inp.shape)
    h, w, c = inp.hwc
    label_lines = ",\n".join(f"    {_c_string(label)}" for label in labels)
    k = pixel_to_int8_offset(pre, inp.scale[0], inp.zero_point[0]) if pre is not None else None
    return f"""// Generated by edgenas bundle: what the application needs to feed the model and read its answer.
#ifndef {guard}
#define {guard}

// Input tensor 0 ({_c_string(inp.name)}), {inp.dtype}, shape [{dims}].
constexpr int kInputDims[] = {{{dims}}};
constexpr int kInputHeight = {h};
constexpr int kInputWidth = {w};
constexpr int kInputChannels = {c};
constexpr int kInputElements = {inp.elements};
// Quantisation: q = round(x / kInputScale) + kInputZeroPoint, clamped to [-128, 127].
constexpr float kInputScale = {inp.scale[0]!r}f;
constexpr int kInputZeroPoint = {inp.zero_point[0]};

{_preprocessing_h(pre, k)}
// Output tensor 0 ({_c_string(out.name)}), {out.dtype}, {out.elements} values:
// x = (q - kOutputZeroPoint) * kOutputScale.
constexpr float kOutputScale = {out.scale[0]!r}f;
constexpr int kOutputZeroPoint = {out.zero_point[0]};

constexpr int kCategoryCount = {len(labels)};
constexpr const char* kCategoryLabels[kCategoryCount] = {{
{label_lines}
}};

{_arena_comment(measured, target_arena)}
// Declare it as: alignas(16) static uint8_t tensor_arena[kTensorArenaSize];
constexpr int kTensorArenaSize = {arena};

#endif  // {guard}
"""


def _float_range(t) -> str:
    lo = (-128 - t.zero_point[0]) * t.scale[0]
    hi = (127 - t.zero_point[0]) * t.scale[0]
    return f"[{lo:.4g}, {hi:.4g}]"


def _readme_preprocessing(name: str, model: TfliteModel, section: dict) -> str:
    inp = model.tensors[model.inputs[0]]
    h, w, c = inp.hwc
    head = (f"- Image: {h} x {w} pixels, {c} channel(s), layout NHWC, type {inp.dtype}. The same figures are in "
            f"`manifest.json` (`preprocessing`) and `{name}_model_settings.h`.\n")
    quant = (f"- Quantise each float value x: `q = round(x / {inp.scale[0]:.8g}) + ({inp.zero_point[0]})`, clamped "
             f"to [-128, 127] (`kInputScale`, `kInputZeroPoint`); the representable float range is "
             f"{_float_range(inp)}.\n")
    if not section["known"]:
        return (head + "- **Pixel scaling: unknown.** This model carries no record of how its training scaled "
                "pixels (it is not an EdgeNAS training output, or it was moved away from the `metrics.json` "
                "written beside it), so this bundle does not guess: use the preprocessing the model's authors "
                "trained with (`kPreprocessingKnown = false`). To record it, re-run `edgenas bundle` with "
                "`--input-range LO,HI` (pixels 0..255 mapped linearly onto [LO, HI]).\n" + quant)
    lo, hi = section["input_range"]
    pix = section["pixel_to_int8"]
    text = (head + f"- Source of these figures: {section['source']}.\n"
            f"- Channel order: {section['channel_order'] or 'not stated'}. Resize: "
            f"{section['resize'] or 'not stated'}.\n"
            f"- Pixel scaling: `{section['formula']}` (`kPixelDivisor = {section['pixel_divisor']:g}`, "
            f"`kPixelOffset = {section['pixel_offset']:g}`): pixels 0..255 -> [{lo:g}, {hi:g}].\n" + quant)
    if pix["exact"]:
        text += (f"- In one integer step, exact: `{pix['formula']}` (`kPixelToInputOffset = "
                 f"{pix['integer_offset']}`), clamped to [-128, 127]; every pixel lands on its nearest int8 "
                 "value.\n")
    else:
        text += f"- No single integer offset is exact for this quantisation: `{pix['general_formula']}`.\n"
    return text


def _readme_arena(a: dict, arena: int, measured: int) -> str:
    margin = f"max({ARENA_MARGIN_MIN} bytes, {ARENA_MARGIN_FRACTION:.0%})"
    if a.get("source") == "emulated":
        t = a["target"]
        return (f"`kTensorArenaSize = {arena}` bytes: {a['target_measured_bytes']:,} bytes, the "
                f"`arena_used_bytes()` of this model on {t['target']} (TFLM with {t.get('kernels')} kernels, "
                f"built for the 32-bit core with {t.get('toolchain')} and run in QEMU `{t.get('qemu_machine')}` "
                f"by `edgenas emulate`), plus a margin of {margin} for other TFLM versions and toolchains, "
                f"rounded up to 16. The 64-bit host's TFLM runtime needs {measured:,} bytes (larger "
                "persistent structs).")
    note = f" ({a['note']})" if a.get("note") else ""
    return (f"`kTensorArenaSize = {arena}` bytes: {measured:,} bytes measured by bisection in the TFLM runtime "
            f"on a 64-bit host (the smallest arena with which it allocates; no emulated measurement{note}), "
            f"plus a margin of {margin}, rounded up to 16. A 32-bit MCU needs somewhat less than the host for "
            "the same kernels (smaller persistent structs); the margin covers the scratch buffers optimised "
            "kernels (CMSIS-NN) request and the host's reference kernels do not.")


def _readme(name: str, model: TfliteModel, labels: list[str], measured: int, arena: int,
            manifest: dict) -> str:
    out = model.tensors[model.outputs[0]]
    cls = _camel(name)
    arch = manifest.get("architecture")
    ops = ", ".join(model.op_set)
    return f"""# Firmware bundle `{name}`

Generated by `edgenas bundle`{f" for architecture `{arch}`" if arch else ""}{f", target device `{manifest['device']}`" if manifest.get("device") else ""}.
Model: {model.size_bytes:,} bytes, {len(model.operators)} operators{_subgraph_note(model)} ({ops}).

## Files

| file | what |
| --- | --- |
| `model.tflite` | the int8 model |
| `{name}_model_data.cc` / `.h` | the model as `alignas(16) const unsigned char g_{name}_model_data[]` and `g_{name}_model_data_len` |
| `{name}_op_resolver.h` | `{cls}OpResolver` (`tflite::MicroMutableOpResolver<{len(model.op_set)}>`), `Register{cls}Ops()`, `Make{cls}OpResolver()` |
| `{name}_model_settings.h` | input shape, quantisation and preprocessing, output quantisation, labels, `kTensorArenaSize` |
| `manifest.json` | provenance: tool versions, git revision, figures, sha256 of every file |

## Adding it to a TFLM build

1. Copy the `.cc` and `.h` files into your application and add `{name}_model_data.cc` to the sources
   (a TFLM tree provides `tensorflow/lite/micro/micro_mutable_op_resolver.h`).
2. Set up the interpreter:

```cpp
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "{name}_model_data.h"
#include "{name}_model_settings.h"
#include "{name}_op_resolver.h"

alignas(16) static uint8_t tensor_arena[kTensorArenaSize];
static {cls}OpResolver resolver;

const tflite::Model* model = tflite::GetModel(g_{name}_model_data);
Register{cls}Ops(resolver);
static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kTensorArenaSize);
interpreter.AllocateTensors();  // check the status: kTfLiteOk
```
{_variables_note(name, model)}
3. With GNU make: build TFLM's `microlite` library for your core with TFLM's own Makefile (for example
   `make -f tensorflow/lite/micro/tools/make/Makefile TARGET=cortex_m_generic TARGET_ARCH=cortex-m7+fp
   OPTIMIZED_KERNEL_DIR=cmsis_nn microlite`), save this fragment as `edgenas_bundle.mk`, set
   `EDGENAS_BUNDLE`, `TFLM_ROOT`, `TFLM_LIB`, `CXX` and `CXXFLAGS`, include it, and link `$(EDGENAS_OBJS)`
   and `$(EDGENAS_LDLIBS)` into your application:

```make
{MAKE_FRAGMENT}```

## The arena

{_readme_arena(manifest["arena"], arena, measured)} Keep the arena 16-byte aligned. After
`AllocateTensors()`, `interpreter.arena_used_bytes()` gives the figure on your board.

## Input preprocessing

{_readme_preprocessing(name, model, manifest["preprocessing"])}
## Output

- Output: {out.elements} int8 values; `x = (q - ({out.zero_point[0]})) * {out.scale[0]:.8g}`. Labels, in order: {", ".join(_md_label(v) for v in labels)}.
"""


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
