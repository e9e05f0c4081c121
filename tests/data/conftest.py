"""Small VWW inputs built inside the tests: COCO-format folders with an instances JSON, MLPerf Tiny folders."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image


def image_bytes(mode: str, size=(64, 48), fmt="JPEG", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    rgb.convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def write_coco(root, name: str, images: list[dict], annotations: list[dict], categories=None):
    """``images``: dicts with id, file_name, width, height and ``data`` (bytes to write, or None: missing)."""
    img_dir = root / name
    img_dir.mkdir(parents=True, exist_ok=True)
    for img in images:
        if img.get("data") is not None:
            (img_dir / img["file_name"]).write_bytes(img["data"])
    categories = categories or [{"id": 1, "name": "bicycle"}, {"id": 7, "name": "person"}]
    ann = {
        "images": [{k: v for k, v in img.items() if k != "data"} for img in images],
        "annotations": [{"id": i, "iscrowd": 0, **a} for i, a in enumerate(annotations)],
        "categories": categories,
    }
    ann_path = root / f"instances_{name}.json"
    ann_path.write_text(json.dumps(ann))
    return img_dir, ann_path


@pytest.fixture
def coco_two_pairs(tmp_path):
    """Two COCO pairs (train2014, val2014) covering every label rule and every kind of bad input.

    Images are 100x100 in the annotations, so the 0.005 threshold is an area of 50 pixels. The person
    category has id 7 (not 1); id 1 is a bicycle. Expected labels are in ``expected``.
    """
    W = H = 100
    rgb = image_bytes("RGB", (100, 100), seed=1)
    train = [
        dict(id=11, file_name="at_threshold.jpg", width=W, height=H, data=rgb),  # area 50: 0 (strict)
        dict(
            id=12, file_name="above_threshold.jpg", width=W, height=H, data=image_bytes("L", seed=2)
        ),  # gray
        dict(
            id=13, file_name="bicycle_only.jpg", width=W, height=H, data=image_bytes("CMYK", seed=3)
        ),  # cmyk
        dict(
            id=14, file_name="crowd.jpg", width=W, height=H, data=image_bytes("RGB", fmt="PNG", seed=4)
        ),  # png
        dict(id=15, file_name="no_annotations.jpg", width=W, height=H, data=rgb),
        dict(id=16, file_name="truncated.jpg", width=W, height=H, data=image_bytes("RGB", (320, 240))[:900]),
        dict(id=17, file_name="missing.jpg", width=W, height=H, data=None),
    ]
    train_anns = [
        dict(image_id=11, category_id=7, area=50.0),
        dict(image_id=12, category_id=7, area=50.5),
        dict(image_id=12, category_id=1, area=9000.0),
        dict(image_id=13, category_id=1, area=9000.0),
        dict(image_id=14, category_id=7, area=3000.0, iscrowd=1),
        dict(image_id=16, category_id=7, area=3000.0),
        dict(image_id=17, category_id=7, area=3000.0),
    ]
    val = [
        dict(id=21, file_name="val_person.jpg", width=W, height=H, data=rgb),
        dict(id=22, file_name="val_small_person.jpg", width=W, height=H, data=rgb),
        dict(id=23, file_name="val_empty.jpg", width=W, height=H, data=rgb),
    ]
    val_anns = [dict(image_id=21, category_id=7, area=400.0), dict(image_id=22, category_id=7, area=10.0)]
    pairs = [
        write_coco(tmp_path, "train2014", train, train_anns),
        write_coco(tmp_path, "val2014", val, val_anns),
    ]
    minival = tmp_path / "minival_ids.txt"
    minival.write_text("# held out\n21\n22\n\n23\n")
    return {
        "pairs": pairs,
        "minival": minival,
        "expected": {"11": 0, "12": 1, "13": 0, "14": 1, "15": 0, "21": 1, "22": 0, "23": 0},
        "quarantined": {"truncated.jpg": "truncated", "missing.jpg": "missing file"},
        "eval_ids": {"21", "22", "23"},
    }


@pytest.fixture
def mlperf_tree(tmp_path):
    root = tmp_path / "vw_coco2014_96"
    for sub, n in (("person", 5), ("non_person", 7)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            (root / sub / f"COCO_{sub}_{i:03d}.jpg").write_bytes(image_bytes("RGB", (96, 96), seed=i))
    return root
