"""Reference models and sampled architectures of the search space, run in QEMU on each target.

For each model and target: ``output_matches_host`` (int8 output byte-identical to the host TFLM runtime),
whether the bundle's ``kTensorArenaSize`` allocates on the core, both for the bundle ``edgenas bundle
--device`` writes (emulated 32-bit arena + margin) and for one sized from the 64-bit host bisection + margin
(what bundles were before), the emulated arena against the host's, instructions per invoke and the linked
flash. Architectures are
sampled from the shipped space with a seed, built, given BatchNorm statistics from one random batch
(``export.calibrate_untrained``) and converted to int8; they are untrained (accuracy is not the point).

    .venv/bin/python bench/emulate_space.py [--n 10] [--seed 0] [--targets cortex-m7,cortex-m4,riscv32]

Prints one JSON object (figures per model and target, the machine, wall times).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import edgenas_keras  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from deploy.emulate import emulate, emulate_bundle  # noqa: E402
from edgenas_keras.tflite.bundle import make_bundle  # noqa: E402
from edgenas_keras.arch.space import SearchSpace, encode  # noqa: E402

REFERENCE = ROOT / "tests" / "data" / "reference_models"


def sampled_models(n: int, seed: int, out: Path) -> list[tuple[str, Path]]:
    from edgenas_keras.model.builder import build_model
    from edgenas_keras.model.export import calibrate_untrained, random_representative, to_int8_tflite

    space = SearchSpace.load(None)
    shape = (space.resolution, space.resolution, space.in_channels)
    models = []
    for i, arch in enumerate(space.sample(n, seed=seed)):
        model = build_model(space, arch)
        calibrate_untrained(model, shape, seed=i)
        path = out / f"arch{i}.tflite"
        path.write_bytes(to_int8_tflite(model, random_representative(shape, n=4, seed=i)))
        models.append((encode(arch), path))
    return models


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default="cortex-m7,cortex-m4,riscv32")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    from edgenas_keras.tflite import tflm

    rows = []
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        models = [] if args.no_reference else [(p.name, p) for p in sorted(REFERENCE.glob("*.tflite"))]
        models += sampled_models(args.n, args.seed, Path(tmp))
        for name, path in models:
            host = tflm.min_arena_bytes(path.read_bytes())
            for target in args.targets.split(","):
                t0 = time.time()
                r = emulate(path, target, progress=None)      # bundle sized from the host bisection
                fp = {"arena_used_bytes": r.arena_used_bytes, "target": r.target, "qemu_machine": r.qemu_machine,
                      "toolchain": r.toolchain, "kernels": r.library["kernels"]}
                b = make_bundle(path, Path(tmp) / f"b-{target}", device=target, target_arena=fp)
                d = emulate_bundle(b.out_dir, target, progress=None)   # the bundle `bundle --device` writes
                rows.append({"model": name, "target": target,
                             "output_matches_host": r.output_matches_host and d.output_matches_host,
                             "settings_arena_allocates": d.settings_arena["allocates"],
                             "tensor_arena_size": d.settings_arena["tensor_arena_size"],
                             "host_sized_arena_allocates": r.settings_arena["allocates"],
                             "host_sized_tensor_arena_size": r.settings_arena["tensor_arena_size"],
                             "arena_used_bytes": r.arena_used_bytes, "host_arena_bytes": host,
                             "instructions": r.instructions, "operators": len(r.per_op),
                             "flash_bytes": r.flash_bytes - r.input_bytes, "model_bytes": r.model_bytes,
                             "runtime_flash_bytes": r.runtime_flash_bytes, "seconds": round(time.time() - t0, 1)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ok = all(r["output_matches_host"] and r["settings_arena_allocates"] for r in rows)
    print(json.dumps({"benchmark": "emulate_space", "all_bit_exact_and_allocating": ok, "rows": rows,
                      "n_sampled": args.n, "seed": args.seed, "seconds": round(time.time() - t_start, 1),
                      "machine": {"platform": platform.platform(), "python": platform.python_version()}}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
