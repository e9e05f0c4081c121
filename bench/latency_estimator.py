"""Latency estimator throughput: the vectorised numpy estimator against a plain per-architecture loop, on the
same architectures and LUT in the same run (one core).

    .venv/bin/python bench/latency_estimator.py [--device cortex-m7] [--n 200000]

Last line: JSON with vectorized_archs_per_s, loop_archs_per_s, ratio (target: >= 100,000 archs/s vectorised).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from edgenas_keras import lut as lutmod  # noqa: E402
from edgenas_keras.cost.estimate import LatencyTables, arch_latency_ms  # noqa: E402
from edgenas_keras.arch.space import SearchSpace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cortex-m7", help="shipped LUT (falls back to the test fixture if absent)")
    ap.add_argument("--n", type=int, default=200_000, help="architectures for the vectorised estimator")
    ap.add_argument("--loop-n", type=int, default=2_000, help="architectures for the plain loop")
    a = ap.parse_args()
    space = SearchSpace.load()
    if a.device in lutmod.shipped_devices():
        lut, lut_name = lutmod.load_device(a.device), a.device
    else:
        from lut_fixtures import fixture_lut

        lut, lut_name = fixture_lut(space), "fixture"
    tables = LatencyTables.from_lut(space, lut)
    archs = space.sample(a.loop_n, seed=0)
    idx = np.stack([space.to_indices(x) for x in archs])
    big = np.tile(idx, (a.n // len(idx) + 1, 1, 1))[: a.n]

    t = time.perf_counter()
    vec = tables.batch_latency_ms(space, big)
    vec_s = time.perf_counter() - t
    t = time.perf_counter()
    loop = [arch_latency_ms(space, x, lut) for x in archs]
    loop_s = time.perf_counter() - t
    assert np.allclose(vec[: len(loop)], loop)
    out = {"vectorized_archs_per_s": round(a.n / vec_s), "loop_archs_per_s": round(len(archs) / loop_s),
           "ratio": round((a.n / vec_s) / (len(archs) / loop_s), 1), "n_vectorized": a.n, "n_loop": len(archs),
           "lut": lut_name, "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                                        "processor": platform.processor() or platform.machine()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
