"""Ingest end to end through the CLI and the Beam pipeline: images, quarantine, splits, determinism."""

import json

import pytest
import tensorflow as tf

from components.vww_ingest import run_ingest
from edgenas_keras.data.records import STATS_FILE, vww_record, write_dataset
from edgenas_keras.data.sources import mlperf_tiny_sources
from pipeline.cli import main


def read_split(out, split):
    files = sorted(str(p) for p in (out / f"Split-{split}").glob("*.gz"))
    rows = {}
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        f = tf.train.Example.FromString(raw.numpy()).features.feature
        image = tf.io.decode_jpeg(f["image/encoded"].bytes_list.value[0]).numpy()
        rows[f["image/source_id"].bytes_list.value[0].decode()] = (
            f["image/class/label"].int64_list.value[0],
            image.shape,
        )
    return rows


def coco_args(fx, out, *extra):
    args = ["data", "ingest", "--source", "coco", "--out", str(out), "--json"]
    for images, ann in fx["pairs"]:
        args += ["--images", str(images), "--annotations", str(ann)]
    return args + list(extra)


@pytest.mark.slow
def test_coco_ingest_labels_quarantine_minival_and_rerun_determinism(coco_two_pairs, tmp_path, capsys):
    out = tmp_path / "examples"
    args = coco_args(
        coco_two_pairs, out, "--minival-ids", str(coco_two_pairs["minival"]), "--resolution", "32"
    )
    assert main(args + ["--direct-num-workers", "2"]) == 0  # the default: multi-process DirectRunner
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = coco_two_pairs["expected"]
    assert printed["written"] == {"train": 5, "eval": 3}
    assert printed["labels"] == {"0": 5, "1": 3}
    reasons = {q["file"].rsplit("/", 1)[-1]: q["reason"] for q in printed["quarantined"]}
    assert set(reasons) == set(coco_two_pairs["quarantined"])
    for name, fragment in coco_two_pairs["quarantined"].items():
        assert fragment in reasons[name]

    train, evald = read_split(out, "train"), read_split(out, "eval")
    assert set(evald) == coco_two_pairs["eval_ids"]  # minival hold-out
    got = {k: v[0] for k, v in {**train, **evald}.items()}
    assert got == expected
    # grayscale, CMYK and PNG-named-.jpg inputs all become 32x32 RGB JPEGs
    assert {v[1] for v in {**train, **evald}.values()} == {(32, 32, 3)}

    stats = json.loads((out / STATS_FILE).read_text())
    assert stats["considered"] == 10 == sum(stats["written"].values()) + len(stats["quarantined"])
    assert (
        stats["options"]["minival_ids"].endswith("minival_ids.txt") and stats["options"]["resolution"] == 32
    )

    # Same input, one in-process worker this time: same records in the same shards, same fingerprint.
    shard_bytes = {p.name: p.read_bytes() for p in out.glob("Split-*/*.gz")}
    assert main(args + ["--direct-num-workers", "1"]) == 0
    assert json.loads((out / STATS_FILE).read_text())["fingerprint"] == stats["fingerprint"]
    assert {p.name: p.read_bytes() for p in out.glob("Split-*/*.gz")} == shard_bytes
    assert not list(out.glob(".staging-*"))


@pytest.mark.slow
def test_mlperf_tiny_ingest_grayscale(mlperf_tree, tmp_path):
    out = tmp_path / "mlperf"
    srcs = mlperf_tiny_sources(mlperf_tree, eval_fraction=0.3)
    stats = run_ingest(
        out, srcs, {"source": "mlperf-tiny"}, resolution=24, grayscale=True, direct_num_workers=1
    )
    rows = {**read_split(out, "train"), **read_split(out, "eval")}
    assert sum(stats["written"].values()) == 12 and stats["labels"] == {"0": 7, "1": 5}
    assert all((label == 1) == key.startswith("person/") for key, (label, _) in rows.items())
    assert {shape for _, shape in rows.values()} == {(24, 24, 1)}


def test_interrupted_write_leaves_no_stats(tmp_path):
    """A run that dies half-way must not leave anything that looks complete, even over an old output."""
    out = tmp_path / "ds"
    recs = [vww_record(f"k{i}", "train", i % 2, b"jpeg%d" % i, 8, "f.jpg", f"k{i}") for i in range(6)]
    write_dataset(out, recs, {})
    assert (out / STATS_FILE).exists()

    def dying():
        yield from recs[:3]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(out, dying(), {})
    assert not (out / STATS_FILE).exists()
    # the next run cleans up after the interrupted one and finishes
    assert sum(write_dataset(out, recs, {})["written"].values()) == 6
    assert (out / STATS_FILE).exists() and not list(out.glob(".staging-*"))


@pytest.mark.parametrize(
    "make_args, fragment",
    [
        (
            lambda fx, t: (
                coco_args(fx, t / "o")[:-4]
                + ["--images", str(t / "nope"), "--annotations", str(fx["pairs"][0][1])]
            ),
            "nope",
        ),
        (lambda fx, t: coco_args(fx, t / "o", "--minival-ids", str(t / "none.txt")), "minival ids file"),
        (lambda fx, t: coco_args(fx, t / "o")[:-2], "one --annotations per --images"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(coco_two_pairs, tmp_path, capsys, make_args, fragment):
    assert main(make_args(coco_two_pairs, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and "\n" not in err


def test_malformed_annotations_exit_2(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    bad = tmp_path / "instances_x.json"
    bad.write_text('{"images": [')
    args = [
        "data",
        "ingest",
        "--source",
        "coco",
        "--images",
        str(tmp_path / "imgs"),
        "--annotations",
        str(bad),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: annotation file") and str(bad) in err and "\n" not in err


def test_all_quarantined_is_an_error_and_writes_no_stats(tmp_path, capsys):
    for sub in ("person", "non_person"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        (tmp_path / "in" / sub / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "o"
    args = [
        "data",
        "ingest",
        "--source",
        "mlperf-tiny",
        "--images",
        str(tmp_path / "in"),
        "--out",
        str(out),
        "--direct-num-workers",
        "1",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no images written") and "2 quarantined" in err
    assert not (out / STATS_FILE).exists() and not list(out.glob(".staging-*"))
