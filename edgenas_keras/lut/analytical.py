"""Analytical cycle models of int8 operators on the paper's devices, for LUTs built without hardware.

Why a model and not a fit: these tables are judged against boards we cannot reach, so each operator is priced
from what its kernel does, with a handful of per-device coefficients (cycles per MAC on each kernel path,
per output element for requantisation, per element for elementwise work, per byte for copies, per call for
the interpreter). The coefficients were set from public end-to-end measurements (``lut_assets/README.md``
lists every source and the figure it contributed) and the structure of the kernels:

- CMSIS-NN (``cortex-m4``, ``cortex-m7``): ``CONV_2D`` 1x1 with stride 1 and input channels a multiple of 4
  takes ``arm_convolve_1x1_s8_fast`` (no im2col); other convolutions pay an im2col copy per output pixel;
  a dot-product length that is not a multiple of 4 leaves a scalar tail (``misaligned`` factor). A
  convolution over fewer than 4 output pixels cannot reuse weights across pixels and runs at the
  fully-connected rate. ``DEPTHWISE_CONV_2D`` 3x3 with channels a multiple of 4 takes
  ``arm_depthwise_conv_3x3_s8``; others the generic path (with a channel multiplier or a dilation, CMSIS-NN's
  scalar ``arm_depthwise_conv_s8``: the misaligned rate). CMSIS-NN has no broadcasting ``MUL``/``ADD``:
  TFLM falls back to its reference broadcast loop (slow, index arithmetic per element). ``MEAN`` is TFLM's
  reference kernel on every device.
- TFLM reference kernels (``riscv``): scalar loops with per-tap bounds checks; no SIMD, no fast paths.
- TFLite runtime on Cortex-A53 (``cortex-a53``): NEON GEMM kernels, a larger per-operator cost.

Shapes come from the LUT key alone (``ops.spec_from_key``: kernel and stride height x width, dilation, depth
multiplier, the output shape), so a table prices any shape of the common int8 image operators, including keys
it does not list, from their real work (a 10x4 kernel is 40 taps, never 10x10). Deterministic: same key,
same coefficients, same cycles.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from edgenas_keras.cost.graph import spec_from_key
from edgenas_keras.errors import UserError

MODEL_NAME = "edgenas-cycles"
MODEL_VERSION = 1


@dataclass(frozen=True)
class CycleModel:
    """Coefficients of one device's kernels (cycles)."""

    call: float            # per operator invoke: TFLM dispatch, kernel prologue, tensor lookups
    per_channel: float     # per output channel of conv/depthwise/FC: per-channel multiplier and shift setup
    conv1x1_mac: float     # CONV_2D 1x1 fast path (CMSIS-NN arm_convolve_1x1_s8_fast)
    conv_mac: float        # CONV_2D through im2col + matrix multiply
    im2col_byte: float     # per byte copied into the im2col buffer
    dw3x3_mac: float       # DEPTHWISE_CONV_2D 3x3 fast path
    dw_mac: float          # DEPTHWISE_CONV_2D generic path
    fc_mac: float          # FULLY_CONNECTED (and convolutions without pixel reuse)
    misaligned: float      # cost factor when the SIMD dimension is not a multiple of 4
    out_elem: float        # requantisation + activation per output element of conv/depthwise/FC
    tap: float             # per (output element x filter tap) bounds check (reference kernels)
    add_elem: float        # ADD, same shapes
    mul_elem: float        # MUL, same shapes
    bcast_elem: float      # ADD/MUL broadcasting a 1x1xC operand (reference broadcast loop)
    mean_in: float         # MEAN per input element
    mean_out: float        # MEAN per output element (requantisation of the sum)
    pool_tap: float        # AVERAGE/MAX_POOL_2D per output element x window tap
    softmax_elem: float
    act_elem: float        # standalone activations (LOGISTIC, TANH, HARD_SWISH, RELU...) per element
    copy_byte: float       # RESHAPE, PAD, CONCATENATION, transposes: per byte moved
    quant_elem: float      # QUANTIZE / DEQUANTIZE per element (float arithmetic)


@dataclass(frozen=True)
class Device:
    """A device the analytical cycle model prices: its core, clock (MHz), runtime and kernel library, the
    cycle coefficients (``CycleModel``) and the public sources the coefficients come from.
    """
    name: str
    core: str
    clock_mhz: float
    runtime: str
    kernels: str
    cycles: CycleModel
    sources: tuple[str, ...]


# The coefficients of each device's cycle model (the fields of CycleModel), one column per core, so the
# cores compare line by line.
# - cortex-m4, anchor measurements (lut_assets/README.md): MLPerf Tiny VWW (MobileNetV1 0.25, 96x96,
#   7.49 M MACs) takes 36.1 M cycles with CMSIS-NN kernels on a Cortex-M4 (NUCLEO-L4R5ZI, 120 MHz, microTVM +
#   CMSIS-NN, v1.0: 301 ms), 72.1 M cycles with TFLM v2.3.1 (v0.5 reference: 600.6 ms at 120 MHz), and
#   18.0 M cycles on a Cortex-M7 (NUCLEO-H7A3ZI-Q, 280 MHz, X-CUBE-AI, v0.7: 64.4 ms), which TFLM + CMSIS-NN
#   does not beat.
# - cortex-m7: dual issue and caches halve the inner loops; at 480 MHz flash and AXI SRAM cost more wait
#   states per access than at 280 MHz, which the per-MAC rates keep (2.5 vs X-CUBE-AI's 2.4 cycles/MAC
#   overall).
# - riscv (RV32IMAC, TFLM reference kernels): the v0.5 reference run gives ~9.6 cycles/MAC overall on a
#   Cortex-M4; a single-issue RV32 without post-increment addressing or DSP instructions needs ~15% more
#   instructions per MAC; no FPU (the F extension is absent) makes float (de)quantisation soft-float.
# - cortex-a53 (1.2 GHz), TFLite runtime, one thread: NEON int8 GEMM (ruy/XNNPACK) at ~0.3 cycles/MAC,
#   depthwise at ~0.6, and a per-operator cost of microseconds (interpreter, tensor resizing checks, cache
#   misses).
_COEFFICIENTS = {
    #                cortex-m4  cortex-m7  riscv  cortex-a53
    "call":          (1500,     1200,      2500,  6000),
    "per_channel":   (12,       8,         30,    2),
    "conv1x1_mac":   (4.2,      2.6,       9.5,   0.30),
    "conv_mac":      (4.4,      2.7,       11.0,  0.36),
    "im2col_byte":   (1.5,      0.9,       0,     0.15),
    "dw3x3_mac":     (5.0,      3.2,       13.0,  0.55),
    "dw_mac":        (7.5,      4.6,       13.0,  0.75),
    "fc_mac":        (2.6,      1.7,       9.0,   0.45),
    "misaligned":    (1.35,     1.3,       1.0,   1.1),
    "out_elem":      (9,        6,         30,    0.6),
    "tap":           (0,        0,         6,     0),
    "add_elem":      (5.5,      3.5,       28,    0.8),
    "mul_elem":      (5.0,      3.2,       24,    0.8),
    "bcast_elem":    (48,       30,        70,    1.5),
    "mean_in":       (4.0,      2.5,       6.0,   0.5),
    "mean_out":      (60,       40,        90,    4),
    "pool_tap":      (2.0,      1.3,       6.0,   0.4),
    "softmax_elem":  (90,       60,        400,   12),
    "act_elem":      (6,        4,         20,    1.0),
    "copy_byte":     (0.6,      0.35,      1.0,   0.08),
    "quant_elem":    (14,       8,         120,   1.5),
}
_M4, _M7, _RV, _A53 = (CycleModel(**{field: row[i] for field, row in _COEFFICIENTS.items()})
                       for i in range(4))

MLPERF_SOURCES = (
    "MLPerf Tiny v1.0, OctoML microTVM+CMSIS-NN, NUCLEO-L4R5ZI (Cortex-M4, 120 MHz), VWW: 3.320 inf/s "
    "(mlcommons/tiny_results_v1.0 closed/OctoML/results/microtvm_cmsis_nn/NUCLEO_L4R5ZI/vww/performance/results.txt)",
    "MLPerf Tiny v0.5 reference, TFLM v2.3.1, Nucleo-L4R5ZI (120 MHz), VWW: 1.665 inf/s "
    "(mlcommons/tiny_results_v0.5 closed/reference/results/Nucleo-L4R5ZI/vww/performance/results.txt)",
    "MLPerf Tiny v0.7, STMicroelectronics X-CUBE-AI, NUCLEO-H7A3ZI-Q (Cortex-M7, 280 MHz), VWW: 15.533 inf/s "
    "(mlcommons/tiny_results_v0.7 closed/STMicroelectronics/results/NUCLEO-H7A3ZI-Q/vww/performance/results.txt)",
    "CMSIS-NN kernel selection (arm_convolve_wrapper_s8 / arm_depthwise_conv_wrapper_s8): 1x1 fast path, "
    "3x3 depthwise path, channel-multiple-of-4 conditions (Lai et al. 2018, CMSIS-NN, arXiv:1801.06601)",
)

DEVICES = {
    "cortex-m4": Device("cortex-m4", "Cortex-M4F (STM32F4-class)", 168.0, "tflm", "cmsis-nn", _M4, MLPERF_SOURCES),
    "cortex-m7": Device("cortex-m7", "Cortex-M7 (STM32H7-class)", 480.0, "tflm", "cmsis-nn", _M7, MLPERF_SOURCES),
    "riscv": Device("riscv", "RV32IMAC (SiFive FE310-class)", 320.0, "tflm", "tflm-reference", _RV,
                    MLPERF_SOURCES[1:2] + ("TFLM reference kernels (tensorflow/lite/kernels/internal/reference)",)),
    "cortex-a53": Device("cortex-a53", "Cortex-A53", 1200.0, "tflite", "ruy/xnnpack-neon", _A53,
                         ("TFLite runtime, one thread; coefficients from the NEON int8 GEMM throughput of an "
                          "in-order dual-issue core (no public end-to-end anchor for these models; see README)",)),
}


def device(name: str) -> Device:
    """The analytical device ``name``; ``UserError`` listing the known ones if there is none."""
    if name not in DEVICES:
        raise UserError(f"no analytical model for device {name!r} (have: {', '.join(sorted(DEVICES))})")
    return DEVICES[name]


def _aligned(n: int) -> bool:
    return n % 4 == 0


def op_cycles(key: str, m: CycleModel, cmsis: bool) -> float:
    """Cycles of one operator named by its LUT key on a device with coefficients ``m``.

    Work comes from the key's real shapes (``ops.spec_from_key``): output (H, W) of window operators from
    the kernel height and width, stride and dilation per side (or the spelled-out output shape), MACs from
    KH*KW, never from a squared kernel. Square, undilated keys are priced exactly as before the key was
    extended (the shipped tables list them)."""
    spec = spec_from_key(key)
    op, (h, w, c) = spec.op, spec.in_shape
    oh, ow, oc = spec.out_shape
    (kh, kw), taps = spec.kernel_hw, spec.taps
    ins = h * w * c
    cyc = m.call
    if op == "CONV_2D":
        pixels = oh * ow
        macs = spec.macs
        depth = taps * c
        if pixels < 4:                                   # no weight reuse across pixels
            rate = m.fc_mac
        elif taps == 1 and spec.stride_hw == (1, 1) and (_aligned(c) or not cmsis):
            rate = m.conv1x1_mac
        else:
            rate = m.conv_mac
            cyc += pixels * depth * m.im2col_byte
        if cmsis and not _aligned(depth if taps > 1 else c):
            rate *= m.misaligned
        cyc += macs * rate + pixels * oc * (m.out_elem + taps * m.tap) + oc * m.per_channel
    elif op == "DEPTHWISE_CONV_2D":
        macs = spec.macs
        # CMSIS-NN: a channel multiplier or a dilation takes the generic scalar arm_depthwise_conv_s8
        # (arm_depthwise_conv_wrapper_s8), priced like the misaligned generic path.
        generic = spec.depth_multiplier != 1 or spec.dilation_hw != (1, 1)
        rate = m.dw3x3_mac if ((kh, kw) == (3, 3) and _aligned(c) and not generic) else m.dw_mac
        if cmsis and (not _aligned(c) or generic):
            rate *= m.misaligned
        cyc += macs * rate + oh * ow * oc * (m.out_elem + taps * m.tap) + oc * m.per_channel
    elif op == "FULLY_CONNECTED":
        rate = m.fc_mac * (m.misaligned if cmsis and not _aligned(ins) else 1.0)
        cyc += ins * oc * rate + oc * (m.out_elem + m.per_channel)
    elif op in ("ADD", "MUL", "SUB", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"):
        if spec.variant == "bcast":
            cyc += ins * m.bcast_elem
        else:
            cyc += ins * (m.mul_elem if op == "MUL" else m.add_elem)
    elif op in ("MEAN", "SUM"):
        cyc += ins * m.mean_in + oc * m.mean_out
    elif op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        cyc += oh * ow * c * (taps * m.pool_tap + m.out_elem / 2)
    elif op == "SOFTMAX":
        cyc += ins * m.softmax_elem
    elif op in ("LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "LEAKY_RELU", "PRELU"):
        cyc += ins * m.act_elem
    elif op in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        cyc += ins * m.copy_byte
    elif op in ("PAD", "PADV2", "CONCATENATION", "STRIDED_SLICE", "SLICE", "TRANSPOSE", "SPLIT",
                "RESIZE_NEAREST_NEIGHBOR", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"):
        cyc += max(ins, oh * ow * oc) * m.copy_byte * 2
    elif op in ("QUANTIZE", "DEQUANTIZE"):
        cyc += ins * m.quant_elem
    elif op in ("IF", "WHILE", "CALL_ONCE", "VAR_HANDLE"):
        pass   # the call only: the subgraphs IF/WHILE/CALL_ONCE run are not in this figure (analyze says so)
    elif op in ("READ_VARIABLE", "ASSIGN_VARIABLE"):
        cyc += ins * m.copy_byte
    else:
        raise UserError(f"the analytical cycle model has no rule for operator {op!r} (key {key})")
    return float(math.ceil(cyc))


def model_metadata(dev: Device) -> dict:
    """The ``metadata.model`` a LUT carries for ``dev`` (model name, version, CMSIS-NN or not, coefficients)."""
    return {"name": MODEL_NAME, "version": MODEL_VERSION, "cmsis_nn": dev.kernels == "cmsis-nn",
            "coefficients": asdict(dev.cycles)}


def estimator_for(meta: dict):
    """``callable(key) -> cycles`` from a LUT's ``metadata.model`` (what ``lut.parse`` calls)."""
    model = meta.get("model") or {}
    if model.get("name") != MODEL_NAME or model.get("version") != MODEL_VERSION:
        raise UserError(f"LUT model {model.get('name')!r} v{model.get('version')!r} is not supported "
                        f"(this tool has {MODEL_NAME} v{MODEL_VERSION})")
    coef = model.get("coefficients") or {}
    names = [f.name for f in fields(CycleModel)]
    missing = [n for n in names if not isinstance(coef.get(n), (int, float))]
    if missing:
        raise UserError(f"LUT model coefficients lack {', '.join(missing)}")
    m = CycleModel(**{n: float(coef[n]) for n in names})
    cmsis = bool(model.get("cmsis_nn"))
    return lambda key: op_cycles(key, m, cmsis)



def scaled_estimator(table):
    """Estimates for keys a measured table lacks: the analytical model of the same kernel family (CMSIS-NN
    or TFLM reference), scaled per operator type by the median ratio of the table's own entries to the
    model (all entries when the type is absent). Used only when the user asks for estimates."""
    import statistics  # noqa: PLC0415

    family = "cortex-m7" if "cmsis" in str(table.metadata.get("kernels", "")) else "riscv"
    dev = DEVICES[family]
    price = estimator_for({"model": model_metadata(dev)})
    ratios: dict[str, list[float]] = {}
    for key, e in table.entries.items():
        ratios.setdefault(key.split("|", 1)[0], []).append(e.value / price(key))
    if not ratios:
        raise UserError(f"LUT {table.source} has no entries to scale an estimate from")
    overall = statistics.median(r for rs in ratios.values() for r in rs)
    per_op = {op: statistics.median(rs) for op, rs in ratios.items()}
    return lambda key: price(key) * per_op.get(key.split("|", 1)[0], overall)
