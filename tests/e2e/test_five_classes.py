"""Issue 15's must-hold test: a user's own 5-class image-folder data set, end to end through the CLI.

The test draws a small image-folder tree (5 classes of 28 images at 32x32: a coloured shape per class on a
noisy background, and one class holding a file that is not an image), then runs what a user runs:
``edgenas data ingest --source folders``, a short ``edgenas search`` with a search-space file that still
states ``num_classes: 2`` and a LUT built for that 2-class head (the data wins; the 5-class head is priced
from the table's own head entries), ``edgenas train``, ``edgenas validate`` and ``edgenas bundle``. What a
user would notice: the class names reach the bundle (manifest and ``kCategoryLabels``) in label order, the
quarantine counts the bad image, and validation reports per-class accuracy beside top-1, consistent with it.
Tiny on purpose (a few search steps, two float epochs): it checks the plumbing, not accuracy.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from lut_fixtures import fixture_lut
from PIL import Image, ImageDraw

from edgenas_keras.arch.space import SearchSpace
from pipeline.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RES = 32
PER_CLASS = 28
# Folder names; labels follow their sorted order. Two are not C identifiers: the header must escape them.
FOLDERS = {"square": (220, 40, 40), "circle": (40, 200, 60), "9 lives": (40, 60, 220), "café": (230, 210, 40),
           "zig-zag": (200, 40, 200)}
CLASSES = sorted(FOLDERS)
BAD_CLASS, BAD_FILE = "circle", "broken.jpg"


def _draw(path, name: str, rgb, rng) -> None:
    img = Image.fromarray(rng.integers(0, 90, (RES, RES, 3), dtype=np.uint8))
    d = ImageDraw.Draw(img)
    x, y = (int(v) for v in rng.integers(2, 10, 2))
    box = (x, y, x + int(rng.integers(16, 22)), y + int(rng.integers(16, 22)))
    {"square": d.rectangle, "circle": d.ellipse}.get(name, d.rectangle)(box, fill=rgb)
    if name == "zig-zag":
        d.line([(0, 4), (8, 28), (16, 4), (24, 28), (31, 4)], fill=rgb, width=3)
    img.save(path, quality=95)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders") / "images"
    rng = np.random.default_rng(15)
    for name, rgb in FOLDERS.items():
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            _draw(root / name / f"{i:03d}.jpg", name, rgb, rng)
    (root / BAD_CLASS / BAD_FILE).write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root


def cli(capsys, *argv: str) -> tuple[int, dict, str]:
    """Run ``edgenas ARGV --json``: (exit status, the JSON object printed, stderr)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([*argv, "--json"])
    out = buf.getvalue().strip()
    return rc, (json.loads(out.splitlines()[-1]) if out else {}), capsys.readouterr().err


@pytest.fixture(scope="module")
def run(tree, tmp_path_factory):
    work = tmp_path_factory.mktemp("five")
    space32 = SearchSpace.load().with_resolution(RES)
    space_file = work / "space32.yaml"   # states head.num_classes: 2, as a user's copy of the default would
    space_file.write_text(yaml.safe_dump(space32.to_dict()))
    lut_file = work / "host.json"        # a keys-only table built for the 2-class head
    lut = fixture_lut(space32, device="host-tflm")
    lut.metadata.update(unit="us", clock_mhz=1.0)
    lut.save(lut_file)
    search_cfg = work / "search.yaml"
    search_cfg.write_text(yaml.safe_dump({"epochs": 2, "warmup_epochs": 1, "steps_per_epoch": 3, "batch_size": 16,
                                          "train_resolution": RES, "check_every": 2}))
    return {"work": work, "space": space_file, "lut": lut_file, "search_cfg": search_cfg}


def test_five_class_folders_reach_the_bundle_in_order(tree, run, capsys):
    work, data = run["work"], run["work"] / "examples"

    # ingest: class names in sorted folder order, the broken file quarantined
    rc, ingest, err = cli(capsys, "data", "ingest", "--source", "folders", "--images", str(tree), "--out",
                          str(data), "--resolution", str(RES), "--eval-fraction", "0.25", "--direct-num-workers", "1")
    assert rc == 0, err
    stats = json.loads((data / "stats.json").read_text(encoding="utf-8"))
    assert stats["classes"] == CLASSES == ["9 lives", "café", "circle", "square", "zig-zag"]
    assert len(stats["quarantined"]) == 1 and stats["quarantined"][0]["file"].endswith(f"{BAD_CLASS}/{BAD_FILE}")
    assert sum(stats["written"].values()) == 5 * PER_CLASS
    assert stats["class_counts"][BAD_CLASS]["total"] == PER_CLASS

    # search: the space file says 2 classes, the data 5: the data wins, said once; the LUT's 2-class head
    # entries price the 5-class head
    rc, found, err = cli(capsys, "search", "--data", str(data), "--lut", str(run["lut"]), "--latency-ms", "100000",
                         "--space", str(run["space"]), "--config", str(run["search_cfg"]), "--seed", "0",
                         "--out", str(work / "search"))
    assert rc == 0, err
    assert err.count("the data wins") == 1 and "num_classes 2" in err and "5 classes" in err
    assert "SOFTMAX|in=1x1x5|out=5" in err   # the estimated head keys are named
    resolved = json.loads((work / "search" / "config.json").read_text())
    assert resolved["space"]["head"] == {"num_classes": 5}

    # train: a 5-output model, the data's names recorded as its labels, per-class accuracy in the TFLM runtime
    out = work / "train"
    rc, m, err = cli(capsys, "train", "--arch", found["arch"], "--data", str(data), "--out", str(out),
                     "--space", str(run["space"]), "--epochs", "2", "--qat-epochs", "1", "--seed", "3",
                     "--resolution", str(RES), "--batch-size", "16")
    assert rc == 0, err
    assert m["class_names"] == CLASSES and m["preprocessing"]["labels"] == CLASSES
    assert [r["class"] for r in m["per_class_int8_tflm"]] == CLASSES
    assert sum(r["count"] for r in m["per_class_int8_tflm"]) == m["eval_examples"] == stats["written"]["eval"]
    assert "top5_accuracy_int8_tflm" not in m   # top-5 is reported for more than 5 classes only
    model = out / "model_int8.tflite"

    # validate: per-class accuracy beside top-1, in the JSON and in the human output
    argv = [str(model), "--lut", str(run["lut"]), "--latency-ms", "100000", "--sram-kb", "4096", "--flash-kb",
            "8192", "--min-accuracy", "0.0", "--data", str(data)]
    rc, doc, err = cli(capsys, "validate", *argv)
    assert rc == 0 and doc["blessed"], doc.get("reasons")
    acc = doc["checks"]["accuracy"]
    rows = acc["detail"]["per_class"]
    assert [r["class"] for r in rows] == CLASSES and [r["label"] for r in rows] == list(range(5))
    assert [r["count"] for r in rows] == [stats["class_counts"][c]["eval"] for c in CLASSES]
    assert acc["figure"] == pytest.approx(sum(r["correct"] for r in rows) / sum(r["count"] for r in rows), abs=1e-6)
    assert acc["figure"] == pytest.approx(m["accuracy_int8_tflm"], abs=1e-6)
    assert [r["correct"] for r in rows] == [r["correct"] for r in m["per_class_int8_tflm"]]
    assert "SOFTMAX|in=1x1x5|out=5|k=1|s=1|p=none|act=none" in doc["checks"]["latency"]["detail"]["estimated_head_keys"]
    assert main(["validate", *argv, "--eval-limit", "8"]) == 0
    human = capsys.readouterr().out
    assert re.search(r"pass\s+accuracy", human)
    for name in CLASSES:
        assert re.search(rf"^\s+{re.escape(name)}\s+(\d\.\d{{4}} \(\d+/\d+\)|no eval images)$", human, re.M), human

    # bundle: the data's class names, in label order, in the manifest and the settings header
    rc, b, err = cli(capsys, "bundle", str(model), "--out", str(work / "bundle"), "--name", "five")
    assert rc == 0, err
    bundle = work / "bundle"
    assert json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["labels"] == CLASSES
    header = (bundle / "five_model_settings.h").read_text(encoding="utf-8")
    assert "constexpr int kCategoryCount = 5;" in header
    body = re.search(r"kCategoryLabels\[kCategoryCount\] = \{(.*?)\};", header, re.S).group(1)
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    decoded = [re.sub(rb"\\([0-7]{3})", lambda g: bytes([int(g.group(1), 8)]), s.encode()).decode("utf-8")
               for s in literals]
    assert decoded == CLASSES and '"caf\\303\\251"' in body


def test_pipeline_carries_the_datas_class_names_to_the_pushed_bundle(tmp_path, capsys):
    """`edgenas run` on 5-class synthetic shapes (data.num_classes: 5) with a LUT built for the 2-class head:
    the search sizes the head from the Examples, the validator reports per-class accuracy, and the pusher
    writes the data's class names (not VWW's) into the pushed bundle, in label order."""
    from tiny_pipeline import write_config

    from edgenas_keras.data.synth import shape_class_names

    names = shape_class_names(5)
    lut_file = tmp_path / "host.json"
    lut = fixture_lut(SearchSpace.load().with_resolution(RES), device="host-tflm")
    lut.metadata.update(unit="us", clock_mhz=1.0)
    lut.save(lut_file)
    config = write_config(tmp_path, data={"num_classes": 5, "synth_images": 200},
                          lut={"device": "host-tflm", "file": str(lut_file)}, push={"model_name": "shapes-tiny"})
    out = tmp_path / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["run", "--config", config, "--output", str(out), "--json"])
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert summary["blessed"] is True, summary.get("reasons")
    assert "the data wins" in err   # the space (2 classes) was overridden by the data (5), said on stderr
    validation = json.loads((Path(summary["artifacts"]["blessing"]) / "validation.json").read_text())
    rows = validation["checks"]["accuracy"]["detail"]["per_class"]
    assert [r["class"] for r in rows] == names
    assert validation["checks"]["accuracy"]["figure"] == pytest.approx(
        sum(r["correct"] for r in rows) / sum(r["count"] for r in rows), abs=1e-6)
    bundle = Path(summary["bundle_dir"])
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["labels"] == names and manifest["preprocessing"]["labels"] == names
    header = next(bundle.glob("*_model_settings.h")).read_text()
    assert "constexpr int kCategoryCount = 5;" in header
    assert re.findall(r'^\s+"([^"]*)",?$', header, re.M) == names
    space = json.loads((Path(summary["artifacts"]["search"]) / "space.json").read_text())
    assert space["head"] == {"num_classes": 5}
