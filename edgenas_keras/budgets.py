"""What a model must meet on a device: the one ``Budgets`` type, and the TFLM runtime's flash per device.

One shape and one meaning everywhere (the search, ``validate``, the pipeline's ``budgets:`` section and its
run-time parameters): latency in milliseconds per inference, SRAM and flash in bytes, ``None`` for "no budget"
(the pipeline and ``edgenas validate`` require all three; ``edgenas search`` takes latency alone), and
**flash counts the model file plus the TFLM runtime** linked beside it (code and read-only data). The
search prices the model file alone, so it designs for ``flash_bytes`` minus the runtime's footprint
(``Budgets.model_flash_bytes``). Only the CLI speaks KiB (1 KiB = 1024 bytes) and converts at its edge.

Pure Python: no TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgenas_keras.errors import UserError
from edgenas_keras.lut.table import device_of

HOST_DEVICE = "host-tflm"
# The largest budgets the stack carries: the search's penalty computes in float32 (latency), and pipeline
# run-time parameters are 64-bit integers (bytes).
MAX_LATENCY_MS = 3.0e38
MAX_BYTES = 2**63 - 1


@dataclass(frozen=True)
class RuntimeFootprint:
    """The TFLM runtime's flash in bytes for a device, and where the figure comes from (measured or documented)."""
    bytes: int
    source: str


# The TFLM runtime's flash (code + read-only data) linked for our operator set: MicroInterpreter, allocator,
# flatbuffer reader, and the kernels CONV_2D, DEPTHWISE_CONV_2D, ADD, MUL, MEAN, FULLY_CONNECTED, SOFTMAX.
_MCU_SOURCE = ("estimate: the TFLM core runtime 'just fits in 16 KB on an Arm Cortex M3' (tflite-micro README), "
               "plus about 48 KiB for the int8 kernels of our seven operators with CMSIS-NN (optimised conv and "
               "depthwise paths keep their generic fallbacks); replace with the figure from your link map")
RUNTIME_FLASH: dict[str, RuntimeFootprint] = {
    HOST_DEVICE: RuntimeFootprint(1_094_435, "measured: `size` text + data of tflite_micro/_runtime.so "
                                  "(tflite-micro 0.dev20261023182759, x86-64, every reference kernel and the "
                                  "Python bindings): an upper bound for the host runtime"),
    "cortex-m4": RuntimeFootprint(64 * 1024, _MCU_SOURCE),
    "cortex-m7": RuntimeFootprint(64 * 1024, _MCU_SOURCE),
    "cortex-m33": RuntimeFootprint(64 * 1024, _MCU_SOURCE),   # Armv8-M Mainline: the same Thumb-2 CMSIS-NN code
    "riscv": RuntimeFootprint(72 * 1024, "estimate: as for Cortex-M with reference kernels (no CMSIS-NN); "
                                "RV32IMC code is about 10% larger than Thumb-2"),
    "cortex-a53": RuntimeFootprint(128 * 1024, "estimate: the Cortex-M figure doubled for AArch64 code density "
                                   "and 64-bit structs; flash is rarely the constraint on this class"),
}


def runtime_footprint(device: str, override_bytes: int | None = None) -> RuntimeFootprint:
    """The TFLM runtime's flash on ``device`` (a device or a shipped LUT alias of it), or ``override_bytes``
    (from the user's link map).

    Raises ``UserError`` for a device without a documented figure (``RUNTIME_FLASH``) and no override, or a
    negative override."""
    if override_bytes is not None:
        if isinstance(override_bytes, bool) or not isinstance(override_bytes, int) or override_bytes < 0:
            raise UserError(f"runtime flash footprint must be an integer >= 0 bytes, got {override_bytes!r}")
        return RuntimeFootprint(int(override_bytes), "given by the caller")
    device = device_of(device)   # a shipped alias (cortex-m7-analytical) is its device's runtime
    if device not in RUNTIME_FLASH:
        raise UserError(f"no documented TFLM runtime flash footprint for device {device!r} (known: "
                        f"{', '.join(sorted(RUNTIME_FLASH))}); give the runtime's flash from your link map "
                        "(--runtime-flash-kb, or runtime_flash_bytes)")
    return RUNTIME_FLASH[device]


def _positive(name: str, v, *, integer: bool):
    """``v`` as a positive finite number up to the stack's limit (``MAX_BYTES`` for byte counts, given as an int
    or a whole float; ``MAX_LATENCY_MS`` for latency)."""
    if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise UserError(f"budget {name} must be a positive number, got {v!r}")
    limit = MAX_BYTES if integer else MAX_LATENCY_MS
    if v > limit:
        raise UserError(f"budget {name} must be at most {limit:.3g} (the largest the search and the pipeline's "
                        f"parameters carry), got {v:.3g}")
    if integer:
        if v != int(v):
            raise UserError(f"budget {name} must be a whole number of bytes, got {v!r}")
        return int(v)
    return float(v)


@dataclass(frozen=True)
class Budgets:
    """What a model must meet on a device.

    Args:
        latency_ms: latency per inference in ms (> 0; always set: it is what the search designs for).
        sram_bytes: peak SRAM in bytes, TFLM activation arena + persistent runtime memory (> 0), or None for
            no budget.
        flash_bytes: flash in bytes, the model file **plus** the TFLM runtime (> 0), or None for no budget.
        min_accuracy: the minimum int8 top-1 accuracy as a fraction in [0, 1] (0: report only). Checked by
            ``validate``; the search does not design for it.

    Raises ``UserError`` (message naming the field) for a budget that is not a positive finite number, above
    ``MAX_LATENCY_MS`` / ``MAX_BYTES``, a fractional byte count, or an accuracy outside [0, 1].
    """
    latency_ms: float
    sram_bytes: int | None = None
    flash_bytes: int | None = None
    min_accuracy: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "latency_ms", _positive("latency_ms", self.latency_ms, integer=False))
        for name in ("sram_bytes", "flash_bytes"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _positive(name, getattr(self, name), integer=True))
        a = self.min_accuracy
        if isinstance(a, bool) or not (isinstance(a, (int, float)) and math.isfinite(a) and 0 <= a <= 1):
            raise UserError(f"minimum accuracy must be a fraction in [0, 1] (e.g. 0.8 for 80%), got {a!r}")

    @classmethod
    def from_dict(cls, d, source: str = "budgets") -> Budgets:
        """From a mapping of the fields (``latency_ms``, ``sram_bytes``, ``flash_bytes``, ``min_accuracy``; a
        missing or null memory budget is None): the pipeline's ``budgets:`` section, ``result.json``'s
        ``budgets``. Raises ``UserError`` naming ``source`` for a non-mapping, an unknown field or a missing
        ``latency_ms``."""
        if not isinstance(d, dict):
            raise UserError(f"{source}: must be a mapping of latency_ms, sram_bytes, flash_bytes, min_accuracy")
        names = ("latency_ms", "sram_bytes", "flash_bytes", "min_accuracy")
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise UserError(f"{source}: unknown field(s) {', '.join(map(str, unknown))}; known: {', '.join(names)} "
                            "(memory in bytes, flash = model + TFLM runtime)")
        if d.get("latency_ms") is None:
            raise UserError(f"{source}: missing latency_ms (the latency budget in ms)")
        return cls(**{k: d[k] for k in names if d.get(k) is not None})

    def as_dict(self) -> dict:
        """The four fields as a dict (``from_dict``'s input; ``result.json``'s and the blessing's ``budgets``)."""
        return asdict(self)

    def model_flash_bytes(self, runtime_bytes: int) -> int | None:
        """The flash the model file may take next to a runtime of ``runtime_bytes``: ``flash_bytes`` minus it,
        or None without a flash budget. Raises ``UserError`` when the runtime leaves no room for a model."""
        if self.flash_bytes is None:
            return None
        if self.flash_bytes <= runtime_bytes:
            raise UserError(f"the flash budget {self.flash_bytes} bytes leaves no room for the model next to the "
                            f"TFLM runtime ({runtime_bytes} bytes); flash counts model + runtime: raise it")
        return self.flash_bytes - runtime_bytes
