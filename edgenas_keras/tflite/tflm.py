"""Helpers around the TFLite Micro Python runtime: arena measurement, running, timing, int8 (de)quantisation.

Why these exist:
- TFLM has no "how much arena do you need" API; its constructor fails when the arena is too small. The
  minimal arena is found by bisection on ``arena_size``, and each failed attempt prints to stderr from C,
  below Python's ``sys.stderr``: ``quiet_c_stderr`` silences file descriptor 2 (keeping what was printed, so a
  real failure can still be reported). When TFLM cannot prepare a model at all (an operator this build has no
  kernel for, an operator whose Prepare refuses its tensors), what it printed is the reason users see
  (``tflm_reason``), not a guess.
- The LUT builder times single-operator models; the Python -> C call of ``invoke`` costs microseconds that a
  microcontroller does not pay, so ``time_invoke`` also reports that per-invoke overhead, measured on a model
  with one operator on a one-element tensor, for the caller to subtract.

The host is 64-bit: TFLM's persistent structs (tensor and node records, pointers) are larger than on a
32-bit MCU, so a host arena is an upper bound for the same model on a Cortex-M (kernel-library scratch
aside; see ``edgenas_keras.tflite.bundle``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
from tflite_micro import runtime

from edgenas_keras.errors import UserError
from edgenas_keras.tflite.model import parse

ARENA_ALIGNMENT = 16          # TFLM aligns the arena and its buffers to 16 bytes
_MAX_ARENA = 1 << 30          # give up above 1 GiB: no microcontroller model needs that


@contextlib.contextmanager
def quiet_c_stderr(captured: list[str] | None = None):
    """Redirect file descriptor 2 (C-level stderr) to a temporary file for the duration of the block.

    What was printed is appended to ``captured`` (when given), so callers can report a real failure.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()   # Python's own writes in the block belong to the sink too
            os.dup2(saved, 2)
            os.close(saved)
            if captured is not None:
                sink.seek(0)
                captured.append(sink.read().decode("utf-8", "replace"))


_REASON_CHARS = 400           # an error line quotes at most this much of TFLM's output


def tflm_reason(printed: str, fallback: str = "") -> str:
    """TFLM's own account of a failure, from what it printed on stderr: its distinct non-empty lines in order,
    joined with ``; `` (at most ``_REASON_CHARS`` characters), or ``fallback`` when it printed nothing.

    E.g. ``Didn't find op for builtin opcode 'GELU'; Failed to get registration from op code GELU``.
    """
    seen: list[str] = []
    for line in printed.replace("\r", "\n").splitlines():
        line = line.strip()
        if line and line not in seen:
            seen.append(line)
    text = "; ".join(seen) or fallback
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."


DEBUG_ENV = "EDGENAS_DEBUG"   # set by `edgenas --debug`: native libraries' own logging stays visible


def debug_enabled() -> bool:
    """True when ``EDGENAS_DEBUG`` is set to anything but ``""`` or ``"0"`` (``edgenas --debug`` sets it)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def quiet_native_output():
    """Silence what native code prints on file descriptors 1 and 2 during the block (TensorFlow's converter:
    ``WARNING: All log messages before absl::InitializeLog()...``, ``fully_quantize: 0, ...``, ``Ignored
    output_format``), unless ``debug_enabled()``. Python output in the block is silenced with it.

    It redirects the process's descriptors, so nothing else may be printing meanwhile: TFX's LocalDagRunner
    runs one component at a time in this process, and the block wraps only the conversion call. If the
    block raises anything but a ``UserError``, what was printed is written back to stderr before the
    traceback, so a crash keeps its native log.
    """
    if debug_enabled():
        yield
        return
    sys.stdout.flush()
    saved_out = os.dup(1)
    captured: list[str] = []
    failed = False
    try:
        with tempfile.TemporaryFile(mode="w+b") as sink:
            os.dup2(sink.fileno(), 1)
            try:
                with quiet_c_stderr(captured):
                    try:
                        yield
                    finally:
                        sys.stdout.flush()
                        sys.stderr.flush()
            except BaseException as exc:
                failed = not isinstance(exc, UserError)
                raise
            finally:
                os.dup2(saved_out, 1)
                if failed:
                    sink.seek(0)
                    captured.insert(0, sink.read().decode("utf-8", "replace"))
    finally:
        os.close(saved_out)
        if failed and "".join(captured).strip():
            sys.stderr.write("".join(captured))
            sys.stderr.flush()


def interpreter(model_bytes: bytes, arena_size: int) -> runtime.Interpreter:
    """A TFLM interpreter with ``arena_size`` bytes of arena. Raises ``RuntimeError`` (with TFLM's own
    messages, ``tflm_reason``) when the model cannot be allocated in it."""
    log: list[str] = []
    try:
        with quiet_c_stderr(log):
            return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=int(arena_size))
    except Exception as exc:  # TFLM raises RuntimeError; a damaged file fails earlier in Python
        raise RuntimeError(tflm_reason("".join(log), str(exc))) from exc


# The probe process: reads the model once, then answers one arena size per line with 1 (allocates) or with
# 0 and, as a JSON string, what TFLM printed on stderr while failing.
_PROBE_SRC = r"""
import json, os, sys, tempfile
from tflite_micro import runtime
answers = os.fdopen(os.dup(1), "w")
quiet = os.open(os.devnull, os.O_WRONLY)
os.dup2(quiet, 1)
inp = sys.stdin.buffer
data = inp.read(int(inp.readline()))
for line in inp:
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            runtime.Interpreter.from_bytes(data, arena_size=int(line))
            answer = "1"
        except Exception as exc:
            log.seek(0)
            answer = "0 " + json.dumps(log.read().decode("utf-8", "replace") or str(exc))
        os.dup2(quiet, 2)
    answers.write(answer + "\n")
    answers.flush()
"""


class _ArenaProbe:
    """Asks a separate Python process whether TFLM allocates the model in a given arena.

    Why a separate process: for some models (seen with SE blocks) the host TFLM build aborts or dereferences a
    null pointer when an allocation fails part-way instead of raising, which would kill the caller (a TFX
    executor, the CLI, the test run). A probe process that dies did not allocate; the next probe starts a new
    one. A spawned process, not ``fork``: forking a process whose TensorFlow threads hold locks made every
    child fail. The model is sent once per process; a probe costs one allocation.
    """

    def __init__(self, model_bytes: bytes):
        self.data = bytes(model_bytes)
        self.proc: subprocess.Popen | None = None
        self.last_failure = ""   # what TFLM printed on the last failed allocation (or how the probe died)

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _PROBE_SRC], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.proc.stdin.write(f"{len(self.data)}\n".encode() + self.data)
        self.proc.stdin.flush()

    def allocates(self, arena_size: int) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(f"{int(arena_size)}\n".encode())
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            answer = b""
        if not answer:  # the probe process died on this size
            status = self.proc.wait()
            self.proc = None
            self.last_failure = (f"the TFLM runtime crashed while allocating (exit status {status}) instead of "
                                 "reporting an error")
            return False
        if answer.strip() == b"1":
            return True
        try:
            self.last_failure = json.loads(answer[1:].decode())
        except ValueError:
            self.last_failure = ""
        return False

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()
            self.proc.stdout.close()
            self.proc = None


def _allocating_bound(probe: _ArenaProbe, model_bytes: bytes, source: str) -> int:
    """An arena size (64 KiB x 4^n) with which TFLM allocates the model; a ``UserError`` with TFLM's reason
    if even 1 GiB does not do."""
    hi = max(64 * 1024, 4 * len(model_bytes))
    while not probe.allocates(hi):
        if hi >= _MAX_ARENA:
            reason = tflm_reason(probe.last_failure, "it printed no reason")
            raise UserError(f"TFLM cannot prepare {source}: {reason}")
        hi *= 4
    return hi


def require_prepares(model_bytes: bytes, source: str = "model") -> None:
    """Check that the TFLM runtime can prepare the model (in a separate process, with a large enough arena);
    otherwise a ``UserError`` quoting TFLM's own messages (``tflm_reason``). For callers that do other costly
    work with a model (an emulator build) before they measure its arena."""
    model_bytes = bytes(model_bytes)
    parse(model_bytes, source)
    probe = _ArenaProbe(model_bytes)
    try:
        _allocating_bound(probe, model_bytes, source)
    finally:
        probe.close()


def min_arena_bytes(model_bytes: bytes, source: str = "model") -> int:
    """The smallest ``arena_size`` with which TFLM allocates the model on this host (exact, by bisection).

    A model TFLM cannot allocate at all (an operator it has no kernel for, an operator whose Prepare refuses
    its tensors, a damaged file) is a ``UserError`` quoting TFLM's own messages (``tflm_reason``).
    """
    model_bytes = bytes(model_bytes)
    parse(model_bytes, source)
    probe = _ArenaProbe(model_bytes)
    try:
        hi = _allocating_bound(probe, model_bytes, source)
        lo = 0   # invariant: lo fails (or is 0), hi allocates
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if probe.allocates(mid):
                hi = mid
            else:
                lo = mid
        return hi
    finally:
        probe.close()


def default_arena(model_bytes: bytes) -> int:
    """An arena that comfortably fits any microcontroller-sized model (for runs where size does not matter)."""
    return max(4 << 20, 10 * len(model_bytes))


class Runner:
    """One allocated interpreter, invoked many times (evaluating a data set, timing)."""

    def __init__(self, model_bytes: bytes, arena_size: int | None = None, source: str = "model"):
        model = parse(bytes(model_bytes), source)
        self.arena_size = int(arena_size or default_arena(model_bytes))
        try:
            self.interpreter = interpreter(model_bytes, self.arena_size)
        except RuntimeError as exc:
            raise UserError(f"TFLM cannot allocate {source} in {self.arena_size} bytes: {exc}") from exc
        self.inputs = [self.interpreter.get_input_details(i) for i in range(len(model.inputs))]
        self.n_outputs = len(model.outputs)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Set every input (already quantised, the model's dtype), invoke, return every output."""
        if len(inputs) != len(self.inputs):
            raise ValueError(f"model takes {len(self.inputs)} input(s), got {len(inputs)}")
        for i, (x, d) in enumerate(zip(inputs, self.inputs)):
            self.interpreter.set_input(np.asarray(x, dtype=d["dtype"]).reshape(d["shape"]), i)
        self.interpreter.invoke()
        return [self.interpreter.get_output(i).copy() for i in range(self.n_outputs)]


def run(model_bytes: bytes, inputs, arena_size: int | None = None) -> list[np.ndarray]:
    """Run the model once on ``inputs`` (one array, or a list with one array per model input)."""
    xs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    return Runner(model_bytes, arena_size)(*xs)


@dataclass(frozen=True)
class InvokeTiming:
    """Host timing of ``invoke()`` in the TFLM runtime, in seconds: the median and the interpreter's own overhead."""
    median_s: float      # median wall time of one ``invoke()``
    overhead_s: float    # the same on a one-operator, one-element model: the interpreter's per-invoke cost

    @property
    def net_s(self) -> float:
        """The model's own time: median minus the interpreter overhead (never below zero)."""
        return max(0.0, self.median_s - self.overhead_s)


def _median_invoke_s(runner: Runner, repeats: int, warmup: int) -> float:
    rng = np.random.default_rng(0)
    for i, d in enumerate(runner.inputs):
        info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
        x = (rng.integers(info.min, info.max + 1, size=d["shape"]) if info is not None
             else rng.standard_normal(d["shape"]))
        runner.interpreter.set_input(x.astype(d["dtype"]), i)
    invoke = runner.interpreter.invoke
    for _ in range(warmup):
        invoke()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        invoke()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def trivial_model_bytes() -> bytes:
    """An int8 model with one RESHAPE of a one-element tensor: the cheapest thing TFLM can invoke."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    def tensor(name: str, buffer: int, shape, dtype) -> s.TensorT:
        t = s.TensorT()
        t.name, t.buffer, t.shape, t.type = name.encode(), buffer, list(shape), dtype
        if dtype == s.TensorType.INT8:
            t.quantization = s.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [1.0], [0]
        return t

    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.RESHAPE
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    graph = s.SubGraphT()
    graph.tensors = [tensor("x", 0, (1, 1), s.TensorType.INT8), tensor("shape", 1, (2,), s.TensorType.INT32),
                     tensor("y", 0, (1, 1), s.TensorType.INT8)]
    graph.inputs, graph.outputs, graph.operators = [0], [2], [op]
    empty, shape = s.BufferT(), s.BufferT()
    shape.data = list(np.array([1, 1], dtype="<i4").tobytes())
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [empty, shape]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@functools.cache
def invoke_overhead_s(repeats: int = 2000, warmup: int = 200) -> float:
    """Median per-invoke cost of the interpreter itself (measured once per process)."""
    return _median_invoke_s(Runner(trivial_model_bytes(), 64 * 1024), repeats, warmup)


def time_invoke(model_bytes: bytes, repeats: int = 50, warmup: int = 5,
                arena_size: int | None = None) -> InvokeTiming:
    """Median seconds per ``invoke()`` of the model on random int8 inputs, and the interpreter overhead."""
    median = _median_invoke_s(Runner(model_bytes, arena_size), repeats, warmup)
    return InvokeTiming(median, invoke_overhead_s())


def quantize(x, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """Float -> integer with the tensor's affine quantisation: clip(round(x / scale) + zero_point)."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    """Integer -> float: (q - zero_point) * scale."""
    return (np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)
