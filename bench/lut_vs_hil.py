"""LUT pricing against hardware-in-the-loop style measurement, per architecture, in the same run.

HIL here is what a search without a LUT would pay per candidate: build the architecture, convert it to
full int8, and time it in the TFLM runtime. LUT pricing is the operator decomposition plus a table sum.
Prints JSON as the last line: lut_s_per_arch, hil_s_per_arch, ratio (hil / lut), with the machine.

    .venv/bin/python bench/lut_vs_hil.py [--archs 5] [--seed 0] [--device host-tflm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import edgenas_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgenas_keras import lut as lutmod
from edgenas_keras.lut import measure as lut_build
from edgenas_keras.cost.graph import arch_graph
from edgenas_keras.arch.space import SearchSpace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=5, help="architectures timed the HIL way")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="host-tflm", help="shipped LUT used for pricing")
    args = ap.parse_args()
    space = SearchSpace.load()
    table = lutmod.load_device(args.device)
    archs = space.sample(args.archs, seed=args.seed)
    many = space.sample(2000, seed=args.seed + 1)

    t0 = time.perf_counter()
    lut_ms = [table.latency_ms(arch_graph(space, a).keys) for a in many]
    lut_s = (time.perf_counter() - t0) / len(many)

    hil_ms = []
    t0 = time.perf_counter()
    for i, a in enumerate(archs):
        hil_ms.append(lut_build.measure_model(lut_build.arch_int8_model(space, a, seed=i))["value"] / 1000)
    hil_s = (time.perf_counter() - t0) / len(archs)
    print(f"LUT: {len(many)} archs priced, mean {sum(lut_ms) / len(lut_ms):.2f} ms; "
          f"HIL: {len(archs)} archs built+converted+timed, mean {sum(hil_ms) / len(hil_ms):.2f} ms")
    print(json.dumps({"lut_s_per_arch": lut_s, "hil_s_per_arch": hil_s, "ratio": hil_s / lut_s,
                      "device": args.device, "lut_archs": len(many), "hil_archs": len(archs),
                      "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}))


if __name__ == "__main__":
    main()
