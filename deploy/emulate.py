"""``edgenas emulate``: a firmware bundle built into a Cortex-M / RISC-V image and run once in QEMU.

What runs: the bundle's exact files (``<name>_model_data.cc``, ``<name>_op_resolver.h``,
``<name>_model_settings.h`` from ``edgenas_keras.tflite.bundle.make_bundle``) with the application
``deploy/firmware/app/main.cc``, linked against TFLM's ``microlite`` library for the target (CMSIS-NN kernels
on Cortex-M, reference kernels on RV32; built and cached by ``deploy.tflm_build``), the platform's start-up
code and linker script, on QEMU's ``mps2-an386`` (Cortex-M4), ``mps2-an500`` (Cortex-M7), ``mps2-an505``
(Cortex-M33) or ``virt`` (RV32). The app allocates a large arena, reports ``arena_used_bytes()`` (the 32-bit
arena TFLM's allocator and the kernels' scratch buffers need), checks that the bundle's ``kTensorArenaSize``
allocates, invokes once on the given input and prints the output tensor and the instruction counts of the
whole invoke and of each operator (a ``MicroProfilerInterface``).

Instruction counts: Cortex-M runs under ``-icount shift=0`` (QEMU's virtual clock advances 1 ns per guest
instruction) and the app reads SysTick, which counts the machine's processor clock: 25 MHz on AN386/AN500,
so one tick is 40 instructions; 20 MHz on AN505, 50 instructions. A 24-bit SysTick wraps every 2^24 ticks;
an interrupt counts the wraps (64-bit count). Resolution: one tick (40 or 50 instructions) per reading, so a
per-operator figure is within one tick plus the profiler's own few instructions. Every run also times a
loop of 1,000,000 instructions and checks the scale (``counter.calibration``). RV32 reads ``minstret``:
exact. QEMU is not cycle-accurate: these are instructions, not cycles.

``output_matches_host``: the int8 outputs are byte-identical to the host TFLM Python runtime's
(``tflite_micro.runtime`` via ``edgenas_keras.tflite.tflm.run``) on the same input.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deploy import tflm_build as tb
from edgenas_keras.errors import UserError
from edgenas_keras.progress import stderr as print_to_stderr
from edgenas_keras.tflite.c_source import c_array

APP_DIR = tb.FIRMWARE_DIR / "app"
# The measuring arena (static, in RAM): the MPS2 machines have 4 MiB of RAM, our RV32 layout 8 MiB.
ARENA_BYTES = {True: 3 << 20, False: 6 << 20}
CALIBRATION_INSTRUCTIONS = 1_000_000


@dataclass
class EmulationResult:
    """What one emulated run measured (``as_dict`` is the ``--json`` output)."""

    target: str
    qemu_machine: str
    toolchain: str
    output_matches_host: bool
    arena_used_bytes: int
    instructions: int
    per_op: list
    image_text_bytes: int
    image_data_bytes: int
    model_bytes: int
    input_bytes: int
    settings_arena: dict
    counter: dict
    outputs: list
    host_outputs: list
    library: dict
    qemu_seconds: float
    input_source: str
    elf: str | None = None

    @property
    def flash_bytes(self) -> int:
        """The linked image's flash: code and read-only data (model included) plus .data's initial values."""
        return self.image_text_bytes + self.image_data_bytes

    @property
    def runtime_flash_bytes(self) -> int:
        """Flash without the model array and the embedded test input: TFLM, kernels, start-up and libc."""
        return self.flash_bytes - self.model_bytes - self.input_bytes

    def as_dict(self) -> dict:
        """Every field plus ``flash_bytes`` and ``runtime_flash_bytes``: the ``--json`` output of ``edgenas
        emulate``."""
        return {**asdict(self), "flash_bytes": self.flash_bytes, "runtime_flash_bytes": self.runtime_flash_bytes}


def default_input(model_bytes: bytes, seed: int = 0) -> np.ndarray:
    """A deterministic input for the model's first input tensor: int8 values drawn with ``seed``."""
    from edgenas_keras.tflite.model import parse

    m = parse(model_bytes)
    t = m.tensors[m.inputs[0]]
    dtype = np.dtype(t.dtype)
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    return rng.integers(info.min, info.max + 1, size=tuple(t.shape), dtype=dtype)


def load_input(path: str | Path, model_bytes: bytes) -> np.ndarray:
    """An input tensor from a ``.npy`` file: already quantised (the model's integer type), or float values
    (quantised with the input's scale and zero point). Its size must be the input tensor's."""
    from edgenas_keras.tflite import tflm
    from edgenas_keras.tflite.model import parse

    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"input {path}: not a readable .npy file ({exc})") from None
    m = parse(model_bytes)
    t = m.tensors[m.inputs[0]]
    dtype = np.dtype(t.dtype)
    if x.size != t.elements:
        raise UserError(f"input {path} has {x.size} values (shape {list(x.shape)}); the model's input takes "
                        f"{t.elements} (shape {list(t.shape)})")
    if np.issubdtype(x.dtype, np.floating):
        x = tflm.quantize(x, t.scale[0], t.zero_point[0], dtype)
    elif x.dtype != dtype:
        info = np.iinfo(dtype)
        if x.min() < info.min or x.max() > info.max:
            raise UserError(f"input {path} holds values outside {dtype.name}'s range")
        x = x.astype(dtype)
    return x.reshape(tuple(t.shape))


def _bundle_symbols(bundle_dir: Path) -> tuple[str, str, str]:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    name = manifest["name"]
    text = (bundle_dir / f"{name}_op_resolver.h").read_text()
    resolver = re.search(r"using (\w+) = tflite::MicroMutableOpResolver", text)
    register = re.search(r"inline TfLiteStatus (\w+)\(", text)
    if not resolver or not register:
        raise UserError(f"{bundle_dir / (name + '_op_resolver.h')} is not an edgenas bundle resolver header")
    return name, resolver.group(1), register.group(1)


def _c_bytes(data: bytes) -> str:
    """The input's bytes for the glue's array: 16 a line, no indent, no comma after the last byte."""
    return c_array(data, 16, indent="", trailing_comma=False)


def _write_glue(work: Path, bundle_dir: Path, data: bytes) -> str:
    name, resolver, register = _bundle_symbols(bundle_dir)
    (work / "edgenas_bundle.h").write_text(
        "// Generated by deploy/emulate.py: the bundle's headers and symbols for app/main.cc.\n"
        f'#include "{name}_model_data.h"\n#include "{name}_model_settings.h"\n#include "{name}_op_resolver.h"\n'
        f"#define EDGENAS_MODEL_DATA g_{name}_model_data\n#define EDGENAS_OP_RESOLVER {resolver}\n"
        f"#define EDGENAS_REGISTER_OPS {register}\n")
    (work / "edgenas_input.cc").write_text(
        "// Generated by deploy/emulate.py: the input tensor's bytes.\n"
        f"alignas(16) extern const unsigned char g_edgenas_input[] = {{\n{_c_bytes(data)}\n}};\n"
        f"extern const unsigned int g_edgenas_input_len = {len(data)};\n")
    return name


def parse_report(text: str) -> dict:
    """The app's report (see app/main.cc) as a dict; ``EmulationError`` if it is incomplete or an error."""
    if "EDGENAS-FAULT" in text:
        raise tb.EmulationError("the program faulted: " + text[text.index("EDGENAS-FAULT"):].splitlines()[0])
    if "EDGENAS-BEGIN" not in text or "EDGENAS-END" not in text:
        raise tb.EmulationError(f"the program did not finish its report; output ends: {text.strip()[-300:]!r}")
    body = text[text.index("EDGENAS-BEGIN"):text.index("EDGENAS-END")].splitlines()[1:]
    rep: dict = {"ops": [], "outputs": {}}
    for line in body:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "error":
            raise tb.EmulationError("on the emulated target: " + " ".join(parts[1:]))
        if parts[0] == "calib":
            rep["calib"] = (int(parts[1]), int(parts[2]))
        elif parts[0] == "settings_arena":
            rep["settings_arena"] = (int(parts[1]), parts[2] == "1")
        elif parts[0] == "arena_used_bytes":
            rep["arena_used_bytes"] = int(parts[1])
        elif parts[0] == "invoke":
            rep["invoke"] = int(parts[1])
        elif parts[0] == "op":
            rep["ops"].append((int(parts[1]), parts[2], int(parts[3])))
        elif parts[0] == "output":
            rep["outputs"][int(parts[1])] = bytes.fromhex(parts[2] if len(parts) > 2 else "")
    for key in ("calib", "settings_arena", "arena_used_bytes", "invoke"):
        if key not in rep:
            raise tb.EmulationError(f"the program's report lacks {key!r}")
    return rep


def emulate_bundle(bundle_dir: str | Path, target: str, input_array: np.ndarray | None = None,
                   input_source: str = "default: seeded int8 (seed 0)", timeout_s: float = 900.0,
                   keep_dir: str | Path | None = None,
                   progress: Callable[[str], None] | None = print_to_stderr) -> EmulationResult:
    """Build the bundle in ``bundle_dir`` for ``target`` and run it once in QEMU.

    ``input_array``: the first input tensor's values in the model's integer type (default
    ``default_input``). ``keep_dir``: keep the generated sources, objects, ELF and map there (else a
    temporary directory is removed). Raises ``ToolchainMissing``, ``BuildError``, ``EmulationError`` (all
    ``UserError``s). The library build on first use takes minutes (cached afterwards).
    """
    from edgenas_keras.tflite import tflm
    from edgenas_keras.tflite.model import parse

    t = tb.get_target(target)
    tb.check_tools(t)
    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / "manifest.json").is_file():
        raise UserError(f"{bundle_dir} is not a firmware bundle (no manifest.json)")
    model_bytes = (bundle_dir / "model.tflite").read_bytes()
    model = parse(model_bytes, str(bundle_dir / "model.tflite"))
    if input_array is None:
        input_array = default_input(model_bytes)
    lib = tb.tflm_library(t, progress=progress)

    work = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix=f"edgenas-emulate-{t.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        name = _write_glue(work, bundle_dir, np.ascontiguousarray(input_array).tobytes())
        elf = work / f"{name}-{t.name}.elf"
        arena = ARENA_BYTES[t.is_arm]
        if progress:
            progress(f"building {elf.name} and running it on QEMU {t.machine}")
        tb.compile_and_link(t, lib, [APP_DIR / "main.cc", bundle_dir / f"{name}_model_data.cc",
                                     work / "edgenas_input.cc"], elf, include_dirs=[work, bundle_dir],
                            defines=[f"EDGENAS_ARENA_BYTES={arena}"])
        run = tb.run_qemu(t, elf, timeout_s)
        rep = parse_report(run.stdout + "\n" + run.stderr)
        if run.returncode != 0:
            raise tb.EmulationError(f"QEMU exited with status {run.returncode}: {run.stderr.strip()[-300:]}")
        sizes = tb.elf_sizes(t, elf, [f"g_{name}_model_data", "g_edgenas_input"])
    finally:
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)

    ipt = t.instructions_per_tick
    loop, ticks = rep["calib"]
    measured = ticks * ipt
    # The loop's count plus the call and counter reads (a few dozen instructions), within one tick.
    if not (loop <= measured + ipt and measured <= loop + 100 + ipt):
        raise tb.EmulationError(f"counter check failed on {t.machine}: a {loop}-instruction loop measured "
                                f"{measured} instructions ({ticks} x {ipt}); is QEMU running with -icount shift=0?")
    host = tflm.run(model_bytes, [input_array])
    fw_outputs = [rep["outputs"].get(i, b"") for i in range(len(model.outputs))]
    matches = len(host) == len(fw_outputs) and all(
        np.ascontiguousarray(h).tobytes() == f for h, f in zip(host, fw_outputs))
    graph_ops = list(model.operators)
    per_op = []
    for index, tag, delta in rep["ops"]:
        key = None
        if len(rep["ops"]) == len(graph_ops) and graph_ops[index].op == tag:
            key = model.op_spec(graph_ops[index]).key
        per_op.append({"index": index, "op": tag, "lut_key": key, "instructions": delta * ipt})
    size_arena, allocates = rep["settings_arena"]
    return EmulationResult(
        target=t.name, qemu_machine=t.machine, toolchain=lib.info.get("compiler", ""),
        output_matches_host=bool(matches), arena_used_bytes=rep["arena_used_bytes"],
        instructions=rep["invoke"] * ipt, per_op=per_op, image_text_bytes=sizes["text"],
        image_data_bytes=sizes["data"], model_bytes=sizes.get(f"g_{name}_model_data", len(model_bytes)),
        input_bytes=sizes.get("g_edgenas_input", 0),
        settings_arena={"tensor_arena_size": size_arena, "allocates": allocates},
        counter={"method": "SysTick at the processor clock under -icount shift=0" if t.is_arm
                 else "minstret CSR", "instructions_per_tick": ipt, "resolution_instructions": ipt,
                 "calibration": {"loop_instructions": loop, "measured_instructions": measured}},
        outputs=[f.hex() for f in fw_outputs], host_outputs=[np.ascontiguousarray(h).tobytes().hex() for h in host],
        library={"key": lib.info.get("key"), "dir": str(lib.directory), "sources": lib.info.get("sources"),
                 "commits": lib.info.get("commits"), "kernels": t.kernels, "tflm_target": t.tflm_target,
                 "tflm_arch": t.tflm_arch},
        qemu_seconds=run.seconds, input_source=input_source, elf=str(elf) if keep_dir else None)


def emulate(model_path: str | Path, target: str, input_path: str | Path | None = None, timeout_s: float = 900.0,
            keep_dir: str | Path | None = None,
            progress: Callable[[str], None] | None = print_to_stderr) -> EmulationResult:
    """Bundle the int8 model at ``model_path`` (``make_bundle``, host-measured arena) into a temporary
    directory and ``emulate_bundle`` it on ``target``; ``input_path``: an optional ``.npy`` input."""
    from edgenas_keras.tflite.bundle import make_bundle

    t = tb.get_target(target)
    tb.check_tools(t)
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"model file {model_path} does not exist or is not a file")
    data = model_path.read_bytes()
    x = load_input(input_path, data) if input_path else None
    with tempfile.TemporaryDirectory(prefix="edgenas-emulate-bundle-") as tmp:
        b = make_bundle(model_path, Path(tmp) / "bundle", device=t.name)
        return emulate_bundle(b.out_dir, t.name, x, input_source=str(input_path) if input_path
                              else "default: seeded int8 (seed 0)", timeout_s=timeout_s, keep_dir=keep_dir,
                              progress=progress)


FOOTPRINT_FORMAT = 2   # 2: instructions_by_class


def target_for_device(device: str | None) -> str | None:
    """The emulated core that stands for a LUT device name (``cortex-m7`` -> ``cortex-m7``, ``riscv`` ->
    ``riscv32``), or ``None`` for devices without one (``host-tflm``, ``cortex-a53``). A shipped LUT alias
    stands for its device (``cortex-m7-analytical`` -> ``cortex-m7``, ``lut.device_of``)."""
    from edgenas_keras.lut import device_of

    return tb.DEVICE_TARGETS.get(device_of(device) if device else "")


def measured_footprint(model_path: str | Path, device: str | None,
                       progress: Callable[[str], None] | None = print_to_stderr) -> tuple[dict | None, str]:
    """The emulated 32-bit arena and linked flash of the model on ``device``'s core, for ``bundle`` and
    ``validate``: ``(footprint, note)``.

    ``footprint`` has ``target``, ``qemu_machine``, ``toolchain``, ``arena_used_bytes`` (``arena_used_bytes()``
    on the core), ``flash_bytes`` (the linked image's text + data without the app's test input: TFLM,
    kernels, start-up, libc and the model), ``runtime_flash_bytes`` (the same without the model),
    ``model_bytes``, ``image_text_bytes``, ``instructions`` (the whole invoke), ``per_op`` (``index``, ``op``,
    ``lut_key``, ``instructions`` of each operator), ``instructions_by_class`` (the invoke split by operator
    class, ``lut.calibrate.instructions_by_class``: what an emulated table's class factors weigh) and
    ``library_key``. It is ``None`` when the
    device has no emulated core or its toolchain/QEMU is not installed; ``note`` then says why (the caller
    falls back to the host bisection and records the note); so it is when the library build or the run fails
    (a model too large for the emulated machine's 4 MiB of flash, say), with the reason in the note. A
    model TFLM cannot prepare at all raises TFLM's reason (``UserError``). Results are cached per model
    sha256, target and library key under ``cache_root()/emulate``.
    """
    import hashlib

    target = target_for_device(device)
    if target is None:
        return None, f"device {device!r} has no emulated core (emulated: {', '.join(tb.TARGETS)})"
    t = tb.get_target(target)
    try:
        tb.check_tools(t)
    except tb.ToolchainMissing as exc:
        return None, f"no toolchain for {target}: {exc}"
    from edgenas_keras.tflite import tflm
    from edgenas_keras.lut.calibrate import instructions_by_class

    data = Path(model_path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    key, _ = tb._library_key(t, tb.tflm_sources(progress))
    cache = tb.cache_root() / "emulate" / f"{sha[:24]}-{t.name}-{key}-{FOOTPRINT_FORMAT}.json"
    if cache.is_file():
        return json.loads(cache.read_text()), "cached emulation"
    tflm.min_arena_bytes(data, str(model_path))   # a model TFLM cannot prepare: its reason, before any build
    try:
        lib = tb.tflm_library(t, progress=progress)
        r = emulate(model_path, target, progress=None)
    except (tb.BuildError, tb.EmulationError) as exc:
        return None, f"emulation on {target} failed: {str(exc).splitlines()[0]}"
    if not r.output_matches_host:
        return None, (f"emulation on {target}: the output differs from the host TFLM runtime's; its figures "
                      "are not used")
    fp = {"target": r.target, "qemu_machine": r.qemu_machine, "toolchain": r.toolchain,
          "arena_used_bytes": r.arena_used_bytes, "flash_bytes": r.flash_bytes - r.input_bytes,
          "runtime_flash_bytes": r.runtime_flash_bytes, "model_bytes": r.model_bytes,
          "image_text_bytes": r.image_text_bytes, "instructions": r.instructions,
          "instructions_by_class": instructions_by_class(r.per_op, r.instructions),
          "library_key": lib.info["key"], "kernels": t.kernels, "model_sha256": sha,
          # per operator (index, op, lut_key, instructions): the report's emulated latency per operator
          "per_op": [{k: o[k] for k in ("index", "op", "lut_key", "instructions")} for o in r.per_op],
          "method": "edgenas emulate: the bundle linked with TFLM for the core, run in QEMU"}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(fp, indent=2, sort_keys=True) + "\n")
    tmp.replace(cache)
    return fp, "emulated"
