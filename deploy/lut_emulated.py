"""Latency tables from the real kernels on emulated cores (``edgenas lut build --method emulated``), their
cycles-per-instruction fit to public board measurements, and the end-to-end check of such a table
(``edgenas lut validate --emulated``).

What is timed: the same single-operator int8 models the host table is built from (``lut.measure.single_op_model``,
cached per key under ``cache_root()/lut_models``), written as profile sets (``deploy.lut_profiler``) and run by
the LUT profiler firmware (``deploy/firmware/lut_profiler``) linked with the target's TFLM library (CMSIS-NN on
Cortex-M, reference kernels on RV32) in QEMU, its UART on a pseudo-terminal, collected through protocol v1
(``deploy.lut_profiler_qemu``, ``deploy.lut_profiler.collect``): many keys per QEMU run. The keys are split into
chunks that fit the machine (``chunk_keys``: the models' bytes in 4 MiB of code memory beside the ~0.5 MiB
firmware, the largest arena in 4 MiB of RAM). Each chunk also times the cheapest model TFLM can invoke (one
RESHAPE of one element, ``OVERHEAD_KEY``): the per-invoke overhead of the interpreter, which a model pays once
and not once per operator, is subtracted from every key.

From instructions to cycles (``anchor_fit``): QEMU counts instructions (``-icount shift=0``, SysTick at 40 or
50 instructions per tick on Cortex-M, ``minstret`` on RV32), not cycles. The public measurements in
``ANCHORS`` (board, clock, latency of a public int8 model; the same rows as ``../shared/board_anchors.json``)
give cycles = latency x clock; the same model run end to end on the emulated core (``deploy.emulate``,
cached) gives instructions. One constant cycles-per-instruction (CPI) per target is fitted to its anchors by
least squares on the relative error: ``cpi = sum(r) / sum(r^2)`` with ``r = weighted instructions / cycles``.
One operator class differs: on the CMSIS-NN cores an im2col convolution (CONV_2D with a kernel larger than
1x1, class ``conv`` of ``lut.calibrate.op_class``) costs more cycles per instruction on the boards than the
rest (plausibly the extra loads and stores per MAC through the im2col buffer; the anchors show the effect, not
its cause). One factor for
that class, shared by the Cortex-M4, M7 and M33 tables, is fitted to every CMSIS-NN board with two anchors
(EK-RA6M4 and Nucleo-L4R5ZI: ResNet-8, almost all 3x3 convolutions, against the VWW MobileNet, mostly 1x1 and
depthwise), each board keeping its own scale (``_pooled_class_factor``): 1.097, which brings both boards'
leave-one-out errors from up to 22% to about 13%. Those errors are therefore not out of sample: the public
anchors have no third model per board to check the factor on. RV32 runs TFLM's reference kernels and has one
board: no class factor. The table's entries are ``(instructions - overhead) x cpi x class factor`` in
``cycles`` at the anchor board's clock (``lut.calibrate.fitted_cycles`` prices an end-to-end run the same
way); ``metadata.fit`` says what was fitted to what and ``metadata.emulation`` how the instructions were counted.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from deploy import tflm_build as tb
from edgenas_keras import lut as lutmod
from edgenas_keras._fs import read_json_lines, sha256_file
from edgenas_keras.errors import UserError
from edgenas_keras.progress import stderr as print_to_stderr

FIT_FORMAT = 2   # 2: class_factors
OVERHEAD_KEY = "edgenas:invoke-overhead"
# Per chunk (one firmware image, one QEMU run): model bytes in code memory, the profiler's arena in RAM.
CHUNK_MODEL_BYTES = 2_600_000
CHUNK_ARENA_BYTES = 3_400_000
CHUNK_MAX_KEYS = 160
# Under QEMU an invoke's instruction count is deterministic (the counts of repeated invokes are equal to the
# counter's resolution; the m4/m7 builds of 2026-11-30 with 3 warm-ups and 5 samples have a MAD of 0 on every
# key): one warm-up and one timed invoke per key (a board's default: 3 warm-ups, 5 to 31 samples).
PROFILER_DEFINES = ("PROFILER_WARMUP=1", "PROFILER_MIN_SAMPLES=1", "PROFILER_MAX_SAMPLES=1")

# The public int8 models of the anchors: a file of that name with other bytes is not used.
IC_RESNET8 = "mlperf_tiny_ic_resnet8_int8.tflite"
VWW_96 = "mlperf_tiny_vww_96_int8.tflite"
PERSON_DETECT = "tflm_person_detect.tflite"
ANCHOR_MODEL_SHA256 = {
    IC_RESNET8: "3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415",
    VWW_96: "597a384c8c2c8a1276f04702f25013b7838f2f814f1ca7c174d295b73e3d6b7b",
    PERSON_DETECT: "808cfdfc0cf3a6fa6f6fa26bfa379ea97c16d5db7334637766e39c3408502e9d",
}
# Public measurements of public int8 models on boards (../shared/board_anchors.json, with its sources): per
# board (target, board, clock in MHz) its figures (model, latency in ms, where it is published).
_BOARD_FIGURES = (
    ("cortex-m33", "EK-RA6M4 (Cortex-M33)", 200, (
        (IC_RESNET8, 246.1841,
         "MLPerf Tiny v0.7 closed, renesas EK-RA6M4 ic results.txt (4.062 inf/s), TFLM + CMSIS-NN"),
        (VWW_96, 162.364,
         "MLPerf Tiny v0.7 closed, renesas EK-RA6M4 vww results.txt (6.159 inf/s), TFLM + CMSIS-NN"))),
    ("cortex-m4", "Nucleo-L4R5ZI (Cortex-M4F)", 120, (
        (IC_RESNET8, 704.2254,
         "MLPerf Tiny v0.5 closed, reference Nucleo-L4R5ZI ic results.txt (1.420 inf/s), TFLM + CMSIS-NN"),
        (VWW_96, 600.6006,
         "MLPerf Tiny v0.5 closed, reference Nucleo-L4R5ZI vww results.txt (1.665 inf/s), TFLM + CMSIS-NN"))),
    ("cortex-m7", "STM32F746 (Cortex-M7)", 216, (
        (PERSON_DETECT, 108.0,
         "MicroNets (Banbury et al., MLSys 2021) Table 4: TFLM person detection, TFLM + CMSIS-NN"),)),
    ("riscv32", "PCL Scepu02 (RV32IMAC)", 336, (
        (IC_RESNET8, 1239.5849,
         "MLPerf Tiny v0.5 closed, PengChengLaboratory pcl-scepu02 ic performance_log.txt (0.807 inf/s), "
         "TFLM 2.3.1 reference kernels"),
        (VWW_96, 846.6507,
         "MLPerf Tiny v0.5 closed, PengChengLaboratory pcl-scepu02 vww performance_log.txt (1.181 inf/s), "
         "TFLM 2.3.1 reference kernels"))),
)
# One row per figure: target, board, clock_mhz, latency_ms, model, its sha256, source.
ANCHORS: list[dict] = [
    {"target": target, "board": board, "clock_mhz": mhz, "latency_ms": ms, "model": model,
     "sha256": ANCHOR_MODEL_SHA256[model], "source": source}
    for target, board, mhz, figures in _BOARD_FIGURES for model, ms, source in figures
]
# The class factor shared by the CMSIS-NN cores (anchor_fit, module docstring): on the boards im2col
# convolutions cost more cycles per instruction than the rest.
POOLED_TARGETS = ("cortex-m4", "cortex-m7", "cortex-m33")
POOLED_CLASS = "conv"
POOLED_BOUNDS = (0.5, 2.0)
CORES = {"cortex-m4": "Cortex-M4F", "cortex-m7": "Cortex-M7", "cortex-m33": "Cortex-M33",
         "riscv32": "RISC-V RV32IMC"}


def target_of(device: str) -> tb.Target:
    """The emulated core of a LUT device name (``riscv`` -> ``riscv32``); ``UserError`` for other devices."""
    name = tb.DEVICE_TARGETS.get(device)
    if name is None:
        raise UserError(f"device {device!r} has no emulated core: emulated tables are built for "
                        f"{', '.join(sorted(tb.DEVICE_TARGETS))}")
    return tb.get_target(name)


def reference_model_dirs() -> list[Path]:
    """Where anchor models are looked for: ``$EDGENAS_REFERENCE_MODELS``, ``tests/data/reference_models`` of
    the checkout, ``../shared/reference_models`` beside it."""
    root = Path(__file__).resolve().parent.parent
    dirs = [Path(p) for p in os.environ.get("EDGENAS_REFERENCE_MODELS", "").split(os.pathsep) if p]
    return [*dirs, root / "tests" / "data" / "reference_models", root.parent / "shared" / "reference_models"]


def _anchor_model(a: dict) -> Path | None:
    for d in reference_model_dirs():
        p = d / a["model"]
        if p.is_file() and sha256_file(p) == a["sha256"]:
            return p
    return None


def _anchor_rows(t: tb.Target, progress: Callable[[str], None] | None) -> tuple[list[dict], list[str]]:
    """The anchors of core ``t`` that run here: each with its board cycles and end-to-end emulated counts."""
    from deploy.emulate import measured_footprint

    rows, skipped = [], []
    for a in ANCHORS:
        if a["target"] != t.name:
            continue
        path = _anchor_model(a)
        if path is None:
            skipped.append(f"{a['model']}: not found in {', '.join(map(str, reference_model_dirs()))}")
            continue
        fp, note = measured_footprint(path, t.name, progress=progress)
        if fp is None:
            skipped.append(f"{a['model']}: {note}")
            continue
        cycles = a["latency_ms"] * 1e3 * a["clock_mhz"]
        rows.append({"board": a["board"], "model": a["model"], "model_sha256": a["sha256"],
                     "latency_ms": a["latency_ms"], "clock_mhz": a["clock_mhz"], "cycles": round(cycles),
                     "instructions": int(fp["instructions"]), "instructions_by_class": fp["instructions_by_class"],
                     "cpi": cycles / fp["instructions"], "source": a["source"]})
    return rows, skipped


def _weighted(row: dict, factors: dict[str, float]) -> float:
    """An anchor's instructions with the class factors applied (cycles per base CPI)."""
    return row["instructions"] + sum((f - 1.0) * row["instructions_by_class"].get(c, 0) for c, f in factors.items())


def fit_class_factor(boards: dict[str, list[dict]], cls: str = POOLED_CLASS,
                     bounds: tuple[float, float] = POOLED_BOUNDS) -> float:
    """The one factor for class ``cls`` that best explains several boards' anchors, each board with its own
    scale: minimises the sum over boards of the squared deviations of ``log(cycles / weighted instructions)``
    from the board's mean (``scipy.optimize.minimize_scalar``, bounded by ``bounds``). ``boards``: {board:
    [{"cycles", "instructions", "instructions_by_class"}, ...]} with two or more anchors each (a board with
    one anchor adds nothing). Dimensionless; 1.0 means the class costs what the others cost per instruction."""
    from scipy.optimize import minimize_scalar

    def loss(g: float) -> float:
        total = 0.0
        for rs in boards.values():
            logs = [math.log(r["cycles"] / _weighted(r, {cls: g})) for r in rs]
            mean = sum(logs) / len(logs)
            total += sum((x - mean) ** 2 for x in logs)
        return total

    return float(minimize_scalar(loss, bounds=bounds, method="bounded").x)


def _pooled_class_factor(progress: Callable[[str], None] | None) -> dict:
    """``fit_class_factor`` on every CMSIS-NN board with two or more anchors that run here (``POOLED_TARGETS``).
    Returns ``{"factor", "boards", "anchors"}``; factor 1.0 when no such board runs here."""
    boards: dict[str, list[dict]] = {}
    for name in POOLED_TARGETS:
        for r in _anchor_rows(tb.get_target(name), progress)[0]:
            boards.setdefault(r["board"], []).append(r)
    boards = {b: rs for b, rs in boards.items() if len(rs) >= 2}
    if not boards:
        return {"factor": 1.0, "boards": [], "anchors": 0}
    return {"factor": fit_class_factor(boards), "boards": sorted(boards),
            "anchors": sum(len(rs) for rs in boards.values())}


def anchor_fit(device: str, progress: Callable[[str], None] | None = print_to_stderr) -> dict:
    """The cycles-per-instruction fit of ``device``'s emulated core to its public anchors (module docstring).

    Returns ``{"cycles_per_instruction" (the core's base CPI), "class_factors" ({class: factor}; only
    ``POOLED_CLASS`` differs from 1, on the CMSIS-NN cores), "clock_mhz", "board", "anchors": [{model,
    latency_ms, clock_mhz, cycles, instructions, instructions_by_class, cpi, fitted_ms, residual_pct, source}],
    "leave_one_out_pct", "skipped", "method", "per_class"}``. Each anchor model runs once in QEMU
    (``deploy.emulate.measured_footprint``, cached per model and library); the pooled class factor runs the
    other CMSIS-NN cores' anchors too. Raises ``UserError`` when no anchor of the core can be emulated here."""
    from edgenas_keras.lut.calibrate import CLASSES, fitted_cycles

    t = target_of(device)
    rows, skipped = _anchor_rows(t, progress)
    if not rows:
        raise UserError(f"no public anchor of {t.name} could be run here to fit cycles per instruction: "
                        + "; ".join(skipped or ["no anchors"]))
    pooled = _pooled_class_factor(progress) if t.name in POOLED_TARGETS else None
    factors = dict.fromkeys(CLASSES, 1.0)
    if pooled:
        factors[POOLED_CLASS] = pooled["factor"]
    ratios = [_weighted(r, factors) / r["cycles"] for r in rows]
    cpi = sum(ratios) / sum(x * x for x in ratios)
    fit = {"cycles_per_instruction": cpi, "class_factors": factors}
    for r in rows:
        r["fitted_ms"] = fitted_cycles(fit, r["instructions"], r["instructions_by_class"]) / (r["clock_mhz"] * 1e3)
        r["residual_pct"] = 100 * (r["fitted_ms"] / r["latency_ms"] - 1)
    loo = None
    if len(rows) == 2:   # calibrated on one anchor, the other predicted: the fit's own leave-one-out
        w = [_weighted(r, factors) for r in rows]
        loo = [100 * (w[1 - i] * (rows[i]["cycles"] / w[i]) / rows[1 - i]["cycles"] - 1) for i in (0, 1)]
    if pooled and pooled["boards"]:
        per_class = (f"one factor for {POOLED_CLASS} (CONV_2D with a kernel larger than 1x1: im2col + GEMM), "
                     f"{pooled['factor']:.4f} relative to every other class, shared by the CMSIS-NN cores "
                     f"({', '.join(POOLED_TARGETS)}) and fitted to the {pooled['anchors']} anchors of the boards "
                     f"with two models ({'; '.join(pooled['boards'])}), each board with its own scale: least "
                     "squares on log errors. Its leave-one-out figures are therefore not out of sample for "
                     "those boards; on this core it is borrowed when its own board has one anchor")
    elif pooled is not None:
        per_class = "not fitted: no CMSIS-NN board with two anchors ran here"
    else:
        per_class = (f"not fitted: {t.name} runs TFLM's reference kernels, and its one board's two anchors "
                     "cannot fit a class factor and check it")
    return {"format": FIT_FORMAT, "cycles_per_instruction": cpi, "class_factors": factors,
            "clock_mhz": rows[0]["clock_mhz"], "board": rows[0]["board"], "target": t.name,
            "qemu_machine": t.machine, "anchors": rows, "leave_one_out_pct": loo, "skipped": skipped,
            "method": "cycles = base cycles per instruction x (instructions + sum over classes of (class factor "
                      "- 1) x the class's instructions); the base CPI by least squares on the relative error of "
                      "the core's anchors' measured cycles (latency x clock) against their end-to-end emulated "
                      "counts (edgenas emulate)",
            "per_class": per_class}


def rescale_entries(entries: dict[str, lutmod.LutEntry], old_fit: dict, new_fit: dict) -> dict[str, lutmod.LutEntry]:
    """Entries of an emulated table in ``old_fit``'s cycles converted to ``new_fit``'s (per key: divided by
    the old fit's cycles per instruction of its class, multiplied by the new one's). Used when a table is
    extended or re-fitted without timing its keys again."""
    from edgenas_keras.lut.calibrate import op_class

    def per_instr(fit: dict, key: str) -> float:
        return float(fit["cycles_per_instruction"]) * float((fit.get("class_factors") or {}).get(op_class(key), 1.0))

    out = {}
    for k, e in entries.items():
        s = per_instr(new_fit, k) / per_instr(old_fit, k)
        out[k] = lutmod.LutEntry(e.value * s, e.dispersion * s, e.samples)
    return out


def cycles_per_instruction(table: lutmod.Lut) -> float | None:
    """A table's fitted cycles per instruction (``metadata.fit``), 1.0 for a table in ``instructions``, else
    ``None`` (an analytical or measured table carries no fit)."""
    fit = table.metadata.get("fit") or {}
    if isinstance(fit.get("cycles_per_instruction"), (int, float)):
        return float(fit["cycles_per_instruction"])
    return 1.0 if table.unit == "instructions" else None


# -- the single-operator models, cached -------------------------------------------------------------------

def model_cache_dir() -> Path:
    """Where ``cached_model`` keeps the converted single-operator models: ``cache_root()/lut_models`` (created
    on first write, not here)."""
    return tb.cache_root() / "lut_models"


def cached_model(key: str) -> bytes:
    """The single-operator model of ``key`` (``lut.measure.single_op_model``), converted once and cached (the
    conversion takes seconds; the same model is timed on every target). ``OVERHEAD_KEY`` gives the one-RESHAPE
    model (``tflm.trivial_model_bytes``)."""
    from edgenas_keras.lut import measure as lut_build
    from edgenas_keras.tflite import tflm

    if key == OVERHEAD_KEY:
        return tflm.trivial_model_bytes()
    p = model_cache_dir() / (hashlib.sha256(f"{lut_build.TOOL_VERSION}\n{key}".encode()).hexdigest()[:32]
                             + ".tflite")
    if p.is_file():
        return p.read_bytes()
    data = lut_build.single_op_model(key)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(p)
    return data


def _arena(key: str, data: bytes) -> int:
    from edgenas_keras.tflite import tflm

    p = model_cache_dir() / "arena.jsonl"
    sha = hashlib.sha256(data).hexdigest()
    for rec in read_json_lines(p):
        if rec.get("sha256") == sha:
            return int(rec["arena_bytes"])
    n = tflm.min_arena_bytes(data, key)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write(json.dumps({"sha256": sha, "arena_bytes": n}) + "\n")
    return n


def chunk_keys(sizes: dict[str, tuple[int, int]], max_bytes: int = CHUNK_MODEL_BYTES,
               max_arena: int = CHUNK_ARENA_BYTES, max_keys: int = CHUNK_MAX_KEYS) -> tuple[list[list[str]], dict]:
    """Split keys (``{key: (model_bytes, host_arena_bytes)}``, in order) into profile sets that fit one
    emulated machine: model bytes at most ``max_bytes``, the profiler's arena (``lut_profiler_qemu.arena_bytes``
    of the largest) at most ``max_arena``, at most ``max_keys``. Returns the chunks and the keys that fit no
    chunk alone, with the reason."""
    chunks: list[list[str]] = []
    too_big: dict[str, str] = {}
    cur: list[str] = []
    cur_bytes = cur_arena = 0
    for key, (nbytes, arena) in sizes.items():
        need = arena + arena // 2 + 16384
        if nbytes > max_bytes or need > max_arena:
            too_big[key] = (f"its model ({nbytes} bytes, arena {need} bytes with the profiler's margin) does not "
                            "fit the emulated machine's memory")
            continue
        if cur and (cur_bytes + nbytes > max_bytes or max(cur_arena, need) > max_arena or len(cur) >= max_keys):
            chunks.append(cur)
            cur, cur_bytes, cur_arena = [], 0, 0
        cur.append(key)
        cur_bytes += nbytes
        cur_arena = max(cur_arena, need)
    if cur:
        chunks.append(cur)
    return chunks, too_big


# -- the build ----------------------------------------------------------------------------------------------

def _collect_chunk(t: tb.Target, device: str, keys: list[str], work: Path, timeout_s: float,
                   progress: Callable[[str], None] | None) -> dict[str, dict]:
    """Write the profile set of ``keys`` (plus ``OVERHEAD_KEY`` first), build the profiler for ``t``, run it in
    QEMU on a pty and collect it through protocol v1; ``{key: {instructions, dispersion, samples}}``."""
    import serial

    from deploy import lut_profiler_qemu as lpq
    from deploy.lut_profiler import collect, write_profile_set

    manifest = write_profile_set([OVERHEAD_KEY, *keys], work, device, model_fn=cached_model, progress=False,
                                 arena_fn=_arena)
    elf = lpq.build_profiler(t.name, work, progress=progress, extra_defines=PROFILER_DEFINES)
    out = work / "collected.json"
    with lpq.QemuBoard(t.name, elf) as board:
        port = serial.serial_for_url(board.port, baudrate=115200, timeout=1.0)
        try:
            table = collect(port, manifest, device, out, timeout_s=timeout_s, idle_s=max(60.0, timeout_s / 10),
                            log=progress or (lambda s: None))
        finally:
            port.close()
    return {k: {"instructions": e.value, "dispersion": e.dispersion, "samples": e.samples}
            for k, e in table.entries.items()}


def build_emulated_lut(device: str, keys: list[str], out_path: Path | str, update_manifest: bool = True,
                       keep: dict[str, lutmod.LutEntry] | None = None, keep_metadata: dict | None = None,
                       timeout_s: float = 3600.0,
                       progress: Callable[[str], None] | None = print_to_stderr) -> tuple[lutmod.Lut, dict]:
    """Time every key on ``device``'s emulated core and write the LUT in cycles (module docstring).

    Resumable: each chunk's instruction counts are appended to ``<out>.progress.jsonl`` (per target and TFLM
    library) as it finishes. ``keep``: entries of an existing emulated table of the device carried over
    unmeasured, converted from ``keep_metadata["fit"]`` (that table's metadata) to
    this build's fit (``rescale_entries``): ``keys=[]`` with every entry kept re-fits a table without timing
    anything. Returns the loaded table and a report (``chunks``, ``keys_measured``, ``skipped``, ``fit``,
    ``seconds``, ``keys_per_minute``). Raises ``UserError`` (a device without an emulated core, a key the
    generator cannot build, toolchain missing, no anchor to fit), ``BuildError``/``EmulationError``."""
    import time

    from edgenas_keras.lut.measure import TOOL_VERSION, unbuildable_reason
    from edgenas_keras.lut.calibrate import op_class

    t = target_of(device)
    tb.check_tools(t)
    out_path = Path(out_path)
    # RESHAPE has no single-operator generator; in TFLM it shares its input's buffer or copies a few hundred
    # bytes, below the counter's resolution next to the per-invoke overhead: entered at one counter tick.
    reshapes = [k for k in keys if k.startswith("RESHAPE|")]
    keys = [k for k in keys if not k.startswith("RESHAPE|")]
    bad = {k: why for k in keys if (why := unbuildable_reason(k))}
    if bad:
        raise UserError(f"{len(bad)} key(s) have no single-operator model, e.g. {next(iter(bad))}: "
                        f"{next(iter(bad.values()))}")
    lib = tb.tflm_library(t, progress=progress)
    fit = anchor_fit(device, progress=progress)
    cpi = fit["cycles_per_instruction"]
    if keep and not (keep_metadata or {}).get("fit"):
        raise ValueError("keep needs keep_metadata with its fit: the kept entries' cycles are in their table's fit")
    side = out_path.with_name(out_path.name + ".progress.jsonl")
    stamp = {"target": t.name, "library": lib.info.get("key")}
    done: dict[str, dict] = {rec["key"]: rec for rec in read_json_lines(side) if isinstance(rec, dict)
                             and rec.get("target") == t.name and rec.get("library") == stamp["library"]}
    todo = [k for k in dict.fromkeys(keys) if k not in done and k not in (keep or {})]
    t0 = time.time()
    sizes = {}
    for i, k in enumerate(todo):
        data = cached_model(k)
        sizes[k] = (len(data), _arena(k, data))
        if progress and (i + 1) % 25 == 0:
            progress(f"single-operator models: {i + 1}/{len(todo)}")
    t_models = time.time() - t0
    chunks, too_big = chunk_keys(sizes)
    t1 = time.time()
    for n, chunk in enumerate(chunks):
        if progress:
            progress(f"chunk {n + 1}/{len(chunks)}: {len(chunk)} keys on QEMU {t.machine}")
        with tempfile.TemporaryDirectory(prefix=f"edgenas-lut-{t.name}-") as tmp:
            got = _collect_chunk(t, device, chunk, Path(tmp), timeout_s, progress)
        overhead = got.pop(OVERHEAD_KEY)["instructions"]
        with open(side, "a") as f:
            for k, rec in got.items():
                done[k] = {"key": k, **rec, "overhead": overhead, **stamp}
                f.write(json.dumps(done[k]) + "\n")
            f.flush()
            os.fsync(f.fileno())
    t_run = time.time() - t1
    entries = rescale_entries(keep, keep_metadata["fit"], fit) if keep else {}
    overheads = sorted({r["overhead"] for r in done.values()}
                       | set((keep_metadata or {}).get("emulation", {}).get("overhead_instructions", []) if keep else ()))
    for k in keys:
        if k in done:
            r = done[k]
            c = cpi * fit["class_factors"].get(op_class(k), 1.0)
            entries[k] = lutmod.LutEntry(max(r["instructions"] - r["overhead"], 1.0) * c, r["dispersion"] * c,
                                         int(r["samples"]))
    for k in reshapes:
        entries[k] = lutmod.LutEntry(t.instructions_per_tick * cpi * fit["class_factors"]["other"], 0.0, 1)
    missing = [k for k in keys if k not in entries]
    if missing:
        raise UserError(f"{len(missing)} key(s) could not be timed on {t.machine}, e.g. {missing[0]}: "
                        f"{too_big.get(missing[0], 'no result')}")
    kernels = "cmsis-nn" if t.kernels == "cmsis_nn" else "tflm-reference"
    # a re-fit (nothing timed now) keeps the old table's line on how its keys were timed
    timed = [line for line in (keep_metadata or {}).get("sources", [])[:1] if keep] if not todo else []
    timed = timed or [
        f"instructions: single-operator int8 models (edgenas_keras.lut.measure.single_op_model) run by "
        f"deploy/firmware/lut_profiler linked with TFLM ({kernels}, library {lib.info.get('key')}) in QEMU "
        f"{t.machine} with -icount shift=0, one invoke after one warm-up, minus the per-invoke overhead "
        f"(one-RESHAPE model); `edgenas lut build --device {device} --method emulated`"]
    meta = {"device": device, "core": f"{CORES[t.name]} (timed on QEMU {t.machine}; cycles fitted to {fit['board']})",
            "clock_mhz": fit["clock_mhz"], "runtime": "tflm", "kernels": kernels, "method": "emulated",
            "unit": "cycles", "tool_version": TOOL_VERSION, "date": datetime.date.today().isoformat(),
            "sources": [
                *timed,
                "cycles = instructions x the core's fitted cycles per instruction x its operator class's "
                "factor (metadata.fit): "
                + "; ".join(f"{a['model']} {a['latency_ms']} ms at {a['clock_mhz']} MHz on {a['board']} "
                            f"({a['source']})" for a in fit["anchors"]),
                "QEMU is not cycle-accurate: the entries' shape is the kernels' instruction counts; the scale is the "
                "anchors' (edgenas lut calibrate rescales to your board)",
                "RESHAPE keys (no single-operator generator; TFLM's RESHAPE shares or copies a small buffer) are "
                f"entered at one counter tick ({t.instructions_per_tick} instructions) x the fitted CPI"],
            "fit": fit,
            "emulation": {"target": t.name, "qemu_machine": t.machine, "toolchain": lib.info.get("compiler", ""),
                          "library_key": lib.info.get("key"), "counter_resolution_instructions":
                          t.instructions_per_tick, "overhead_instructions": overheads}}
    table = lutmod.Lut(meta, {k: entries[k] for k in sorted(entries)})
    sha = table.save(out_path)
    if update_manifest:
        lutmod.update_manifest(device, out_path, sha)
    side.unlink(missing_ok=True)
    minutes = (time.time() - t0) / 60
    report = {"chunks": len(chunks), "keys_measured": len(todo), "skipped": too_big, "fit": fit,
              "seconds": {"models": round(t_models, 1), "emulation": round(t_run, 1)},
              "keys_per_minute": round(len(todo) / minutes, 2) if todo and minutes > 0 else None}
    return lutmod.load(out_path), report


# -- end-to-end check ------------------------------------------------------------------------------------------

def validate_emulated(space, table: lutmod.Lut, n: int, seed: int, rows_path: Path | None = None,
                      progress: Callable[[str], None] | None = print_to_stderr, jobs: int = 1) -> tuple[dict, list[dict]]:
    """Sample ``n`` architectures of ``space``, price each from ``table`` and run its int8 model end to end on
    the table's emulated core (``deploy.emulate``); measured ms = the run's cycles under the table's fit
    (``lut.calibrate.fitted_cycles``: instructions by operator class x the fit's cycles per instruction) /
    clock. Returns ``lut.measure.accuracy`` figures (plus ``cycles_per_instruction``) and the rows (``arch``,
    ``predicted_ms``, ``measured_ms``, ``instructions``, ``instructions_by_class``, ``output_matches_host``).
    Resumable through ``rows_path`` like ``validate_host``. ``jobs`` > 1 converts and runs that many
    architectures at once in worker processes (the conversion dominates: about 30 s an architecture on an
    idle core). ``UserError`` when the table carries no fit (only emulated tables do)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from edgenas_keras.lut.measure import accuracy, read_validation_rows
    from edgenas_keras.lut.calibrate import fitted_cycles, instructions_by_class
    from edgenas_keras.cost.graph import arch_graph
    from edgenas_keras.arch.space import encode

    t = target_of(table.device)
    tb.check_tools(t)
    cpi = cycles_per_instruction(table)
    if cpi is None:
        raise UserError(f"LUT {table.source} ({table.metadata.get('method')}) has no fitted cycles per instruction: "
                        f"--emulated validates emulated tables (edgenas lut build --device {table.device} "
                        "--method emulated)")
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    archs = space.sample(n, seed=seed)
    table.require(k for a in archs for k in arch_graph(space, a).keys)
    tb.tflm_library(t, progress=progress)   # built once here, not by every worker
    # rows of an earlier fit format (no class split) cannot be re-priced under this fit: measured again
    done = {k: r for k, r in read_validation_rows(rows_path).items() if "instructions_by_class" in r}
    todo = [(i, arch) for i, arch in enumerate(archs) if encode(arch) not in done]

    def record(i: int, arch, run: dict) -> None:
        name = encode(arch)
        by_class = instructions_by_class(run["per_op"], run["instructions"])
        done[name] = {"arch": name, "predicted_ms": table.latency_ms(arch_graph(space, arch).keys),
                      "measured_ms": fitted_cycles(table.metadata["fit"], run["instructions"], by_class)
                      / (table.clock_mhz * 1e3),
                      "instructions": run["instructions"], "instructions_by_class": by_class,
                      "output_matches_host": run["output_matches_host"]}
        if rows_path is not None:
            with open(rows_path, "a") as f:
                f.write(json.dumps(done[name]) + "\n")
        if progress:
            progress(f"{len(done)}/{n}: {name}: LUT {done[name]['predicted_ms']:.2f} ms, emulated "
                     f"{done[name]['measured_ms']:.2f} ms")

    if jobs == 1 or len(todo) < 2:
        for i, arch in todo:
            record(i, arch, _run_arch(space, arch, seed + i, t.name))
    else:   # spawn, not fork: TensorFlow is loaded in this process
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_run_arch, space, arch, seed + i, t.name): (i, arch) for i, arch in todo}
            for fut in as_completed(futures):
                record(*futures[fut], fut.result())
    rows = [done[encode(a)] for a in archs]
    stats = accuracy([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])
    return {**stats, "cycles_per_instruction": cpi}, rows


def _run_arch(space, arch, seed: int, target: str) -> dict:
    """One architecture of ``validate_emulated``: its int8 model (``_arch_model``, cached) run end to end on
    ``target`` in QEMU; ``{instructions, per_op, output_matches_host}``. Top level so worker processes can run it."""
    from deploy.emulate import emulate
    from edgenas_keras.lut.measure import arch_int8_model

    with tempfile.TemporaryDirectory(prefix="edgenas-lut-validate-") as tmp:
        path = Path(tmp) / "arch.tflite"
        path.write_bytes(_arch_model(space, arch, seed, arch_int8_model))
        r = emulate(path, target, progress=None)
    return {"instructions": r.instructions, "per_op": r.per_op, "output_matches_host": r.output_matches_host}


def _arch_model(space, arch, seed: int, build: Callable) -> bytes:
    """``lut.measure.arch_int8_model(space, arch, seed)``, cached under ``cache_root()/lut_models/archs`` by the
    space, the architecture and the seed (the same models are run on every target)."""
    from edgenas_keras.lut.measure import TOOL_VERSION
    from edgenas_keras.arch.space import encode

    ident = json.dumps([TOOL_VERSION, repr(space), encode(arch), seed])
    p = model_cache_dir() / "archs" / (hashlib.sha256(ident.encode()).hexdigest()[:32] + ".tflite")
    if p.is_file():
        return p.read_bytes()
    data = build(space, arch, seed=seed)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(p)
    return data


def with_cycles_per_instruction(footprint: dict | None, table: lutmod.Lut,
                                progress: Callable[[str], None] | None = None) -> dict | None:
    """``footprint`` (``deploy.emulate.measured_footprint``) with the core's cycles per instruction for
    ``validate_model``'s ``latency_emulated`` check when ``table`` carries no fit of its own (analytical
    tables): ``cycles_per_instruction``, ``class_factors`` and ``cpi_source`` from ``anchor_fit`` (the anchors run once in QEMU,
    cached). Unchanged when the table has a fit, there is no footprint, or no anchor of the core runs here."""
    if not footprint or cycles_per_instruction(table) is not None:
        return footprint
    try:
        fit = anchor_fit(table.device, progress=progress)
    except UserError:
        return footprint
    return {**footprint, "cycles_per_instruction": fit["cycles_per_instruction"],
            "class_factors": fit["class_factors"],
            "cpi_source": f"the core's anchor fit to {fit['board']} ("
                          + ", ".join(f"{a['model']} {a['latency_ms']} ms" for a in fit["anchors"]) + ")"}
