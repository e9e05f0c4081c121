"""The class count flows from the data (issue 15): the space's head follows the data set's class names, a
keys-only LUT prices an N-class head from its own head entries, and the firmware bundle carries any class
name as a C string that compiles and prints back byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from edgenas_keras import lut as lutmod
from edgenas_keras.data.classes import dataset_class_names, space_for_data
from edgenas_keras.data.records import Record, write_dataset
from edgenas_keras.errors import MissingLutKeysError, UserError
from edgenas_keras.cost.graph import lut_key, reachable_keys
from edgenas_keras.arch.space import SearchSpace


def _tiny_dataset(out, classes):
    recs = [Record(f"k{i}", "eval" if i % 4 == 0 else "train", i % len(classes), b"x") for i in range(4 * len(classes))]
    return write_dataset(out, recs, {"source": "test"}, classes=classes)


def test_class_names_come_from_stats_json_in_label_order(tmp_path):
    _tiny_dataset(tmp_path / "five", ["zebra", "ant", "9 lives", "café", "b"])
    assert dataset_class_names(tmp_path / "five") == ["zebra", "ant", "9 lives", "café", "b"]
    # a data set written before `classes` existed, or by another tool: VWW's two classes
    stats = json.loads((tmp_path / "five" / "stats.json").read_text())
    del stats["classes"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "stats.json").write_text(json.dumps(stats))
    assert dataset_class_names(tmp_path / "old") == ["no_person", "person"]
    assert dataset_class_names(tmp_path / "no-stats") == ["no_person", "person"]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "stats.json").write_text("{not json")
    with pytest.raises(UserError, match="stats.json: not a readable JSON"):
        dataset_class_names(tmp_path / "broken")


def test_the_data_wins_over_the_space_file_with_one_warning():
    space = SearchSpace.load()
    assert space.num_classes == 2
    said = []
    five = space_for_data(space, ["a", "b", "c", "d", "e"], warn=said.append)
    assert five.num_classes == 5 and five.to_dict()["head"] == {"num_classes": 5}
    assert five.strides == space.strides and five.choices == space.choices and five.name == space.name
    assert len(said) == 1 and "num_classes 2" in said[0] and "5 classes" in said[0] and "the data wins" in said[0]
    # VWW data on the default space: nothing changes, nothing is said
    said.clear()
    assert space_for_data(space, ["no_person", "person"], warn=said.append) is space and said == []
    # the head's keys follow
    keys = reachable_keys(five)
    assert lut_key("SOFTMAX", (1, 1, 5), 5) in keys and lut_key("SOFTMAX", (1, 1, 2), 2) not in keys
    with pytest.raises(ValueError, match="at least 2 classes"):
        space.with_classes(1)


def test_keys_only_tables_price_an_n_class_head_from_their_own_head_entries():
    table = lutmod.load_device("cortex-m7")   # emulated: lists its keys only, the head at 2 (and one at 10)
    assert table.estimator is None
    fc5, sm5 = lut_key("FULLY_CONNECTED", (1, 1, 64), 5), lut_key("SOFTMAX", (1, 1, 5), 5)
    fc2, fc10 = lut_key("FULLY_CONNECTED", (1, 1, 64), 2), lut_key("FULLY_CONNECTED", (1, 1, 64), 10)
    sm2, sm10 = lut_key("SOFTMAX", (1, 1, 2), 2), lut_key("SOFTMAX", (1, 1, 10), 10)
    assert fc5 not in table.entries and sm5 not in table.entries
    assert table.missing([fc5, sm5]) == [] and table.head_estimated([fc5, sm5, fc2]) == sorted([fc5, sm5])
    # two output counts measured: the fit lands between them
    assert table.raw(fc2) < table.raw(fc5) < table.raw(fc10)
    assert table.raw(sm2) < table.raw(sm5) < table.raw(sm10)
    # one output count only (the 64 -> 10 entry left out): proportional to the work, an over-statement
    without = lutmod.Lut(table.metadata, {k: v for k, v in table.entries.items() if k not in (fc10, sm10)},
                         source="m7-without-10.json")
    assert without.head_estimated([fc10]) == [fc10]
    assert table.raw(fc10) < without.raw(fc10) < 2 * table.raw(fc10)
    assert table.raw(sm10) < without.raw(sm10) < 2 * table.raw(sm10)
    # the whole 5-class space is priced, with exactly its head keys estimated
    five = SearchSpace.load().with_classes(5)
    keys = reachable_keys(five)
    table.require(keys)
    assert set(table.head_estimated(keys)) == {k for k in keys if k.startswith(("FULLY_CONNECTED", "SOFTMAX"))}
    # a table with no FULLY_CONNECTED entry at all has nothing to scale from: the key is refused, named
    bare = lutmod.Lut(table.metadata, {k: v for k, v in table.entries.items()
                                       if not k.startswith("FULLY_CONNECTED")}, source="bare.json")
    with pytest.raises(MissingLutKeysError, match="FULLY_CONNECTED") as e:
        bare.require([fc5, sm5])
    assert e.value.missing == [fc5]


def test_search_prices_a_five_class_space_on_a_measured_host_table():
    """The search's feasibility check prices a 5-class space with the shipped measured host table, which lists
    the head at 2 classes only: no missing-key error, and the larger head costs more."""
    from edgenas_keras.budgets import Budgets
    from edgenas_keras.search import SearchConfig
    from edgenas_keras.search.derive import check_feasible

    table = lutmod.load_device("host-tflm")
    five = SearchSpace.load().with_classes(5)
    floor = check_feasible(five, table, SearchConfig(budgets=Budgets(1000.0)))
    two = check_feasible(SearchSpace.load(), table, SearchConfig(budgets=Budgets(1000.0)))
    assert floor.latency_ms > two.latency_ms   # more outputs cost more


# -- labels in the bundle ---------------------------------------------------------------------------------

LABELS = ['9 lives "x"', "café", "back\\slash?", "tab\there", "smile 😀", "person"]


@pytest.fixture(scope="module")
def six_class_model(tmp_path_factory):
    from edgenas_keras.model.builder import build_model
    from edgenas_keras.model.export import calibrate_untrained, random_representative, to_int8_tflite
    from edgenas_keras.arch.space import decode

    space = SearchSpace.load().with_resolution(32).with_classes(len(LABELS))
    model = build_model(space, decode("dws_k3_c16-dws_k3_c24-skip-dws_k3_c32-skip-dws_k3_c48-skip"), 32)
    calibrate_untrained(model, (32, 32, 3))
    path = tmp_path_factory.mktemp("model") / "six.tflite"
    path.write_bytes(to_int8_tflite(model, random_representative((32, 32, 3))))
    return path


def test_any_class_name_reaches_the_header_as_a_c_string_that_compiles(six_class_model, tmp_path):
    from edgenas_keras.tflite.bundle import make_bundle

    b = make_bundle(six_class_model, tmp_path / "bundle", "six", device="cortex-m7",
                    extra_manifest={"labels": LABELS})
    manifest = json.loads((b.out_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["labels"] == LABELS
    readme = (b.out_dir / "README.md").read_text(encoding="utf-8")
    assert "Labels, in order: " in readme and '"tab\\there"' in readme   # no raw tab in the page
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    main = tmp_path / "print_labels.cc"
    main.write_text('#include <cstdio>\n#include <cstdint>\n#include "six_model_settings.h"\n'
                    'int main() { for (int i = 0; i < kCategoryCount; ++i) { std::fputs(kCategoryLabels[i], stdout);'
                    ' std::fputc(0, stdout); } return 0; }\n')
    exe = tmp_path / "print_labels"
    for std in ("-std=c++11", "-std=c++17"):
        subprocess.run([gxx, std, "-Wall", "-Werror", "-I", str(b.out_dir), str(main), "-o", str(exe)], check=True)
        out = subprocess.run([str(exe)], capture_output=True, check=True).stdout
        assert out.split(b"\0")[:-1] == [label.encode("utf-8") for label in LABELS]


def _jpeg_dataset(out, classes, per_class=6, res=32):
    """A small Examples folder of noise JPEGs, ``per_class`` per class, every third one in eval."""
    import io

    import numpy as np
    from PIL import Image

    from edgenas_keras.data.records import vww_record

    rng = np.random.default_rng(0)
    recs = []
    for label in range(len(classes)):
        for i in range(per_class):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(buf, "JPEG")
            key = f"{label}-{i}"
            recs.append(vww_record(key, "eval" if i % 3 == 0 else "train", label, buf.getvalue(), res, key, key))
    return write_dataset(out, recs, {"source": "test"}, classes=classes)


def test_tflm_evaluation_reports_per_class_and_top5_and_refuses_a_class_count_mismatch(six_class_model, tmp_path):
    from edgenas_keras.tflite.evaluate import tflm_evaluate

    _jpeg_dataset(tmp_path / "six", LABELS)
    r = tflm_evaluate(six_class_model.read_bytes(), tmp_path / "six", source="six.tflite")
    assert [row["class"] for row in r["per_class"]] == LABELS and [row["count"] for row in r["per_class"]] == [2] * 6
    assert r["examples"] == 12 and r["accuracy"] == sum(row["correct"] for row in r["per_class"]) / 12
    assert all(row["accuracy"] == row["correct"] / 2 for row in r["per_class"])
    assert r["accuracy"] <= r["top5_accuracy"] <= 1.0 and r["top5_accuracy"] >= 4 / 12  # 5 of 6 outputs
    _jpeg_dataset(tmp_path / "five", LABELS[:5])
    with pytest.raises(UserError, match="has 6 outputs but the data set .* has 5 classes"):
        tflm_evaluate(six_class_model.read_bytes(), tmp_path / "five", source="six.tflite")
