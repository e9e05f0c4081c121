"""A user's own image folders (any number of classes) and the N-class synthetic set, through the one writer.

Every tree is drawn here with Pillow: each class a different kind of picture, one truncated JPEG among them.
"""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from components.vww_ingest import run_ingest
from edgenas_keras.data.reader import make_dataset
from edgenas_keras.data.records import (
    STATS_FILE,
    TINY_CLASS_IMAGES,
    UNBALANCED_RATIO,
    class_names,
    class_warnings,
)
from edgenas_keras.data.sources import folder_sources
from edgenas_keras.data.synth import SynthSpec, draw_shapes, shape_class_names, write_synth
from pipeline.cli import main


def picture(kind: int, seed: int, fmt: str = "PNG", size=(48, 40)) -> bytes:
    """A small picture of class ``kind`` (a disc, a bar, a cross ...) on noise, encoded as ``fmt``."""
    rng = np.random.default_rng([kind, seed])
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    if kind == 0:
        draw.ellipse([8, 6, 36, 34], fill=colour)
    elif kind == 1:
        draw.rectangle([4, 16, 44, 24], fill=colour)
    else:
        draw.rectangle([20, 4, 28, 36], fill=colour)
        draw.rectangle([8, 16, 40, 24], fill=colour)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def make_tree(root, counts: dict, bad: str | None = None):
    """``root/<class>/<i>.png|jpg`` with ``counts[class]`` images; ``bad`` gets one truncated JPEG more."""
    for kind, (name, n) in enumerate(counts.items()):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            fmt, ext = ("JPEG", "jpg") if i % 2 else ("PNG", "png")
            (d / f"img_{i:03d}.{ext}").write_bytes(picture(kind % 3, i, fmt))
    if bad:
        (root / bad / "truncated.jpg").write_bytes(picture(0, 99, "JPEG", (320, 240))[:700])
    return root


def read_records(out):
    """``{source_id: label}`` over both splits, and ``{split: count}``."""
    labels, per_split = {}, {}
    for split in ("train", "eval"):
        files = sorted(str(p) for p in (out / f"Split-{split}").glob("*.gz"))
        per_split[split] = 0
        for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            f = tf.train.Example.FromString(raw.numpy()).features.feature
            labels[f["image/source_id"].bytes_list.value[0].decode()] = f["image/class/label"].int64_list.value[0]
            per_split[split] += 1
    return labels, per_split


# Class names a C header could not use as identifiers are kept as they are (the bundle escapes them).
COUNTS = {"zebra": 6, "apple": 7, "Mango-2": 5, "big cat": 6}


@pytest.mark.slow
def test_folder_ingest_classes_quarantine_stats_warnings_and_determinism(tmp_path, capsys):
    tree = make_tree(tmp_path / "pets", COUNTS, bad="Mango-2")
    (tree / "apple" / "notes.txt").write_text("not an image: skipped by suffix")
    (tree / "apple" / "more").mkdir()
    (tree / "apple" / "more" / "nested.png").write_bytes(picture(1, 50))  # nested folders belong to the class
    out = tmp_path / "examples"
    args = ["data", "ingest", "--source", "folders", "--images", str(tree), "--out", str(out),
            "--resolution", "24", "--eval-fraction", "0.3", "--json"]
    assert main(args + ["--direct-num-workers", "2"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out.strip().splitlines()[-1])
    stats = json.loads((out / STATS_FILE).read_text())

    # sorted folder names (code point order, as ImageFolder): upper case before lower case
    expected = ["Mango-2", "apple", "big cat", "zebra"]
    assert stats["classes"] == printed["classes"] == class_names(stats) == expected
    totals = {"Mango-2": 5, "apple": 8, "big cat": 6, "zebra": 6}
    assert {k: v["total"] for k, v in stats["class_counts"].items()} == totals
    assert stats["labels"] == {str(i): totals[name] for i, name in enumerate(expected)}
    for name, c in stats["class_counts"].items():
        lab = str(expected.index(name))
        assert (c["train"], c["eval"]) == (stats["labels_per_split"]["train"][lab],
                                           stats["labels_per_split"]["eval"][lab])
        assert c["train"] + c["eval"] == c["total"]
    # the truncated JPEG is quarantined with its reason, everything else written
    assert [q["file"].endswith("Mango-2/truncated.jpg") for q in stats["quarantined"]] == [True]
    assert stats["considered"] == 25 + 1 and sum(stats["written"].values()) == 25

    labels, per_split = read_records(out)
    assert per_split == stats["written"] and stats["written"]["eval"] > 0
    assert "apple/more/nested.png" in labels
    assert all(labels[key] == expected.index(key.split("/")[0]) for key in labels)

    # every class is under 20 images: four warnings, in stats.json and on stderr
    assert len(stats["warnings"]) == 4 and all("is tiny" in w for w in stats["warnings"])
    assert "warning: class 'Mango-2' is tiny: 5 of 25 images" in captured.err

    # determinism: in-process this time, into a second folder: byte-identical shards, same fingerprint
    again = tmp_path / "again"
    assert main(args[:7] + [str(again)] + args[8:] + ["--direct-num-workers", "1"]) == 0
    assert json.loads((again / STATS_FILE).read_text())["fingerprint"] == stats["fingerprint"]
    assert {p.relative_to(again).as_posix(): p.read_bytes() for p in again.glob("Split-*/*.gz")} == {
        p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("Split-*/*.gz")
    }

    # the reader yields the labels beyond 1 unchanged
    ys = np.concatenate([y.numpy() for _, y in make_dataset(out, "train", 64, 24)])
    assert set(ys.tolist()) <= {0, 1, 2, 3} and 3 in ys


def test_classes_option_fixes_the_label_order(tmp_path):
    tree = make_tree(tmp_path / "t", COUNTS)
    names, srcs = folder_sources(tree, ["zebra", "big cat", "apple", "Mango-2"])
    assert names == ["zebra", "big cat", "apple", "Mango-2"]
    assert {s.key.split("/")[0]: s.label for s in srcs} == {"zebra": 0, "big cat": 1, "apple": 2, "Mango-2": 3}
    default_names, default_srcs = folder_sources(tree)
    assert default_names == sorted(COUNTS)
    # the hash split is the one every source uses, and a rerun lists the same images in the same order
    assert [(s.key, s.split) for s in default_srcs] == [(s.key, s.split) for s in folder_sources(tree)[1]]
    assert len(default_srcs) == sum(COUNTS.values())


@pytest.mark.slow
@pytest.mark.parametrize("eval_folder", ["eval", "val"])
def test_pre_split_train_and_eval_folders_are_kept(tmp_path, eval_folder):
    root = tmp_path / "split"
    make_tree(root / "train", {"cat": 7, "dog": 5, "owl": 6})
    make_tree(root / eval_folder, {"cat": 2, "dog": 3})  # owl has no eval images: allowed
    names, srcs = folder_sources(root, eval_fraction=0.9)  # the fraction does not apply
    assert names == ["cat", "dog", "owl"]
    assert {s.split for s in srcs if s.key.startswith("train/")} == {"train"}
    assert {s.split for s in srcs if s.key.startswith(f"{eval_folder}/")} == {"eval"}
    stats = run_ingest(tmp_path / "o", srcs, {"source": "folders"}, resolution=16, direct_num_workers=1,
                       classes=names)
    assert stats["written"] == {"train": 18, "eval": 5}
    assert stats["class_counts"] == {"cat": {"train": 7, "eval": 2, "total": 9},
                                     "dog": {"train": 5, "eval": 3, "total": 8},
                                     "owl": {"train": 6, "eval": 0, "total": 6}}


def test_balance_warnings_thresholds():
    assert class_warnings({"a": 100, "b": 100, "c": 90}) == []
    tiny = class_warnings({"a": 3000, "b": 25, "c": 400})  # b: 25 images but 0.73% of 3,425
    assert len(tiny) == 2 and tiny[0].startswith("class 'b' is tiny: 25 of 3425 images")
    assert tiny[1].startswith("classes are unbalanced: 'a' has 3000 images, 'b' 25 (ratio 120.0 > 10)")
    # exactly at the limits is not a finding; one image fewer / one more is
    assert class_warnings({"a": TINY_CLASS_IMAGES, "b": TINY_CLASS_IMAGES}) == []
    assert "is tiny" in class_warnings({"a": TINY_CLASS_IMAGES - 1, "b": TINY_CLASS_IMAGES})[0]
    assert class_warnings({"a": int(UNBALANCED_RATIO * 30), "b": 30}) == []
    assert "unbalanced" in class_warnings({"a": int(UNBALANCED_RATIO * 30) + 1, "b": 30})[0]
    # a class whose every image was quarantined
    assert class_warnings({"a": 50, "b": 0}) == [
        "class 'b' has no images written (every one quarantined?); it cannot be learned"
    ]


def _bad_trees(t):
    (t / "none").mkdir()
    (t / "none" / "loose.png").write_bytes(picture(0, 0))
    make_tree(t / "one", {"only": 3})
    make_tree(t / "empty", {"a": 2, "b": 2})
    (t / "empty" / "c").mkdir()
    make_tree(t / "two", {"a": 2, "b": 2})
    make_tree(t / "split" / "train", {"a": 2, "b": 2})
    make_tree(t / "split" / "eval", {"a": 1, "c": 1})


@pytest.mark.parametrize(
    "images, extra, fragment",
    [
        ("none", [], "has no class folders"),
        ("one", [], "holds one class folder (only/); a classifier needs at least two classes"),
        ("empty", [], "empty/c holds no images"),
        ("two", ["--classes", "a,b,c"], "--classes names c but"),
        ("two", ["--classes", "a"], "has class folders not in --classes (b)"),
        ("two", ["--classes", "a,b,a"], "--classes names a more than once"),
        ("split", [], "eval/c is a class folder of the eval split with no"),
        ("split", ["--eval-fraction", "0.2"], "--eval-fraction does not apply"),
        ("missing", [], "does not exist"),
        ("gs://no-such-bucket/pets", [], "read through the GCS FUSE mount /gcs/no-such-bucket/pets"),
    ],
)
def test_bad_folders_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, images, extra, fragment):
    _bad_trees(tmp_path)
    path = images if images.startswith("gs://") else str(tmp_path / images)
    out = tmp_path / "out"
    assert main(["data", "ingest", "--source", "folders", "--images", path, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "\n" not in err
    assert not out.exists()


def test_n_class_synth_writes_n_balanced_classes(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["data", "synth", "--out", str(out), "--n", "60", "--resolution", "24", "--num-classes", "5",
                 "--seed", "2", "--json"]) == 0
    stats = json.loads((out / STATS_FILE).read_text())
    assert stats["classes"] == shape_class_names(5) == ["circle", "square", "triangle", "star", "cross"]
    assert {name: c["total"] for name, c in stats["class_counts"].items()} == dict.fromkeys(stats["classes"], 12)
    labels, _ = read_records(out)
    assert sorted(set(labels.values())) == [0, 1, 2, 3, 4]
    assert stats["options"]["num_classes"] == 5
    assert "warning: class 'circle' is tiny: 12 of 60 images" in capsys.readouterr().err
    # drawn again, the same bytes; textures add classes beyond the eight shapes
    assert write_synth(tmp_path / "again", SynthSpec(60, 2, 24, num_classes=5))["fingerprint"] == stats["fingerprint"]
    assert shape_class_names(10)[8:] == ["circle_striped", "square_striped"]


def test_shape_classes_are_not_told_apart_by_colour_statistics():
    """A nearest-class-mean classifier on each image's mean and spread of colour stays near chance (1/4):
    the outline, not the colours or the amount of stuff, tells the class."""
    feats, labels = [], []
    for i in range(400):
        image, label = draw_shapes(1, i, 32, 4)
        pixels = np.asarray(image, np.float32).reshape(-1, 3)
        feats.append(np.r_[pixels.mean(0), pixels.std(0)])
        labels.append(label)
    x, y = np.array(feats), np.array(labels)
    assert y.tolist() == [i % 4 for i in range(400)]
    centroids = np.array([x[:200][y[:200] == k].mean(0) for k in range(4)])
    predicted = np.argmin(((x[200:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == y[200:]).mean() < 0.35
    again, _ = draw_shapes(1, 7, 32, 4)
    assert np.array_equal(np.asarray(again), np.asarray(draw_shapes(1, 7, 32, 4)[0]))


def test_vww_synth_default_is_unchanged(tmp_path):
    """The main job's data set: same bytes and fingerprint as before the writer became multi-class."""
    stats = write_synth(tmp_path / "vww", SynthSpec(40, 0, 32))
    assert stats["fingerprint"] == "54420215ff856e1ed560946de6855ceb3c12b524cc62c6ff2f322bf48d9d101c"
    assert stats["classes"] == ["no_person", "person"] and set(stats["labels"]) == {"0", "1"}
    assert "warnings" not in stats and "num_classes" not in stats["options"]
    assert class_names({"written": {}}) == ["no_person", "person"]  # a data set written before `classes`


def test_image_folders_config_through_the_example_gen(tmp_path):
    """pipeline/configs/image_folders.yaml as the pipeline's ingest reads it, with data.classes fixing the order."""
    from pathlib import Path

    import pipeline
    from components.example_gen import make_examples
    from pipeline.config import load

    cfg = load(Path(pipeline.__file__).parent / "configs" / "image_folders.yaml")
    assert cfg.data.source == "folders" and cfg.data.classes == ()
    tree = make_tree(tmp_path / "mine", {"bolt": 4, "nut": 4, "washer": 5}, bad="nut")
    data = {**cfg.to_dict()["data"], "images": [str(tree)], "classes": ["washer", "nut", "bolt"],
            "resolution": 16, "direct_num_workers": 1}
    stats = make_examples(str(tmp_path / "ex"), data, [])
    assert class_names(stats) == ["washer", "nut", "bolt"]
    assert stats["labels"] == {"0": 5, "1": 4, "2": 4} and len(stats["quarantined"]) == 1
