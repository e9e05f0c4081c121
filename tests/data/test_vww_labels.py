"""The VWW label rule and the COCO / minival / MLPerf Tiny source parsing (no images decoded here)."""

import json

import pytest

from edgenas_keras.data.sources import coco_sources, mlperf_tiny_sources, parse_coco, read_minival_ids
from edgenas_keras.errors import UserError


def test_label_rule_on_coco_fixture(coco_two_pairs):
    labels = {s.source_id: s.label for s in coco_sources(coco_two_pairs["pairs"])}
    expected = coco_two_pairs["expected"]
    # strict threshold (11 exactly 0.5% -> 0, 12 just above -> 1), person looked up by name (id 7, and a
    # huge bicycle (id 1) does not count), crowd counts (14), no annotations (15) -> 0
    assert {k: labels[k] for k in expected} == expected
    assert labels["16"] == 1 and labels["17"] == 1  # labels come from annotations; the files fail later


def test_threshold_option_moves_the_boundary(coco_two_pairs):
    (_, ann), _ = coco_two_pairs["pairs"]
    by_id = {i.image_id: i.label for i in parse_coco(ann, threshold=0.3)}
    assert by_id[14] == 0 and by_id[12] == 0  # 3000 px = 0.30 is not > 0.3
    assert {i.image_id: i.label for i in parse_coco(ann, threshold=0.29)}[14] == 1


def test_minival_holds_out_eval_and_fraction_split_is_stable(coco_two_pairs):
    minival = read_minival_ids(coco_two_pairs["minival"])
    srcs = coco_sources(coco_two_pairs["pairs"], minival_ids=minival)
    assert {s.source_id for s in srcs if s.split == "eval"} == coco_two_pairs["eval_ids"]
    a = [s.split for s in coco_sources(coco_two_pairs["pairs"], eval_fraction=0.5)]
    b = [s.split for s in coco_sources(coco_two_pairs["pairs"], eval_fraction=0.5)]
    assert a == b and set(a) == {"train", "eval"}


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"images": [], "annotations": []}), "not COCO instances format"),
        (
            json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}),
            "named 'person'",
        ),
        (
            json.dumps(
                {"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
            ),
            "not COCO instances format",
        ),
    ],
)
def test_malformed_annotation_file_is_a_user_error(tmp_path, content, fragment):
    path = tmp_path / "instances_bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=fragment) as exc:
        parse_coco(path)
    assert str(path) in str(exc.value)


def test_minival_file_errors(tmp_path):
    bad = tmp_path / "ids.txt"
    bad.write_text("12\nabc\n")
    with pytest.raises(UserError, match="line 2"):
        read_minival_ids(bad)


def test_mlperf_tiny_layout(mlperf_tree):
    srcs = mlperf_tiny_sources(mlperf_tree, eval_fraction=0.0)
    assert sorted((s.key.split("/")[0], s.label) for s in srcs).count(("person", 1)) == 5
    assert sum(1 for s in srcs if s.label == 0) == 7 and all(s.split == "train" for s in srcs)
    (mlperf_tree / "person").rename(mlperf_tree / "people")
    with pytest.raises(UserError, match="person/"):
        mlperf_tiny_sources(mlperf_tree)
