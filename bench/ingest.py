"""Ingest throughput: the multi-process Beam DirectRunner against one process, same transform, same run.

Generates COCO-like full-size JPEGs (640x480, photo-like noise) in the MLPerf Tiny layout, then
runs ``components.vww_ingest.run_ingest`` twice on them: ``--direct-num-workers 1`` (in-process) and the
default (one worker process per core). Wall time includes pipeline start-up: that is what a user waits for.
Both runs must write the same fingerprint.

    .venv/bin/python bench/ingest.py --n 4000

Last line: JSON with multi_images_per_s, single_images_per_s, ratio (target >= 1.5 on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import edgenas_keras  # noqa: E402,F401
from components.vww_ingest import default_workers, run_ingest  # noqa: E402
from edgenas_keras.data.images import encode_jpeg  # noqa: E402
from edgenas_keras.data.sources import mlperf_tiny_sources  # noqa: E402
from edgenas_keras.data.synth import draw_scene  # noqa: E402


def make_inputs(root: Path, n: int, width: int, height: int, distinct: int = 64) -> None:
    """``n`` full-size JPEGs: ``distinct`` synthetic scenes upscaled to COCO size with photo-like noise,
    repeated under different names (decoding cost is per file, so repeats measure the same work)."""
    rng = np.random.default_rng(0)
    pool = []
    for i in range(distinct):
        img, label, _ = draw_scene(0, i, 96)
        big = np.asarray(img.resize((width, height)), np.int16) + rng.integers(-12, 13, (height, width, 3))
        pool.append((label, encode_jpeg(Image.fromarray(np.clip(big, 0, 255).astype("uint8")))))
    for i in range(n):
        label, data = pool[i % distinct]
        sub = root / ("person" if label else "non_person")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"img_{i:06d}.jpg").write_bytes(data)


def timed(out: Path, sources, workers: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    stats = run_ingest(out, sources, {"source": "mlperf-tiny"}, resolution=96, direct_num_workers=workers)
    return time.perf_counter() - t0, stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000, help="images")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--workers", type=int, default=default_workers())
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_inputs(root / "in", args.n, args.width, args.height)
        print(
            f"made {args.n} {args.width}x{args.height} JPEGs in {time.perf_counter() - t0:.0f}s",
            file=sys.stderr,
        )
        sources = mlperf_tiny_sources(root / "in")
        single_s, single = timed(root / "single", sources, 1)
        multi_s, multi = timed(root / "multi", sources, args.workers)
    assert single["fingerprint"] == multi["fingerprint"], "multi-process ingest wrote different data"
    result = {
        "multi_images_per_s": round(args.n / multi_s, 1),
        "single_images_per_s": round(args.n / single_s, 1),
        "ratio": round(single_s / multi_s, 3),
        "multi_s": round(multi_s, 1),
        "single_s": round(single_s, 1),
        "workers": args.workers,
        "images": args.n,
        "image_size": f"{args.width}x{args.height}",
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
