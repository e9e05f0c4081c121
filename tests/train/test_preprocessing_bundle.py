"""The firmware bundle of a model EdgeNAS trained states the preprocessing the model was trained and evaluated
with, and a firmware engineer who applies it gets the accuracy the validator reports.

One short ``edgenas train`` run (32x32, a synthetic VWW set drawn here with a 240-image eval split) is
bundled from its output folder, as a user would; the test then reads the generated settings header as C
constants, applies its pixel -> int8 formula to the eval images' uint8 pixels, runs the int8 model in the TFLM
runtime in exactly ``kTensorArenaSize`` bytes, and compares the top-1 accuracy with ``edgenas validate``'s.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from train_support import cli_json, synth_data_fixture, train_run_fixture

from edgenas_keras.data.synth import SynthSpec
from pipeline.cli import main

pytestmark = pytest.mark.slow

RES = 32
ARCH = "ir_k3_e2_c16-dws_k3_c24-skip-dws_k3_c32-skip-dws_k3_c48-skip"


data_dir = synth_data_fixture(SynthSpec(n=600, seed=11, resolution=RES, eval_fraction=0.4))
train_run = train_run_fixture(ARCH, RES, epochs=4, seed=5)


@pytest.fixture(scope="module")
def bundle(train_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "vww"
    rc, report = cli_json("bundle", str(train_run[0] / "model_int8.tflite"), "--out", str(out), "--name", "vww")
    assert rc == 0
    return out


def header_constants(text: str) -> dict:
    """``constexpr <type> <name> = <value>;`` lines of a generated header, as Python values."""
    consts = {}
    for ctype, name, value in re.findall(r"constexpr (bool|int|float) (k\w+) = ([^;]+);", text):
        if ctype == "bool":
            consts[name] = {"true": True, "false": False}[value]
        elif ctype == "int":
            consts[name] = int(value)
        else:
            consts[name] = float(value.removesuffix("f"))
    return consts


def eval_pixels(data_dir):
    """The eval split as the camera would give it: uint8 RGB pixels [N, RES, RES, 3] and labels [N]."""
    import tensorflow as tf

    from edgenas_keras.data import reader

    ds = tf.data.TFRecordDataset(reader.split_files(data_dir, "eval"), compression_type="GZIP")
    images, labels = [], []
    for rec in ds:
        ex = tf.io.parse_single_example(rec, reader.FEATURE_SPEC)
        images.append(tf.io.decode_jpeg(ex["image/encoded"], channels=3).numpy())
        labels.append(int(ex["image/class/label"]))
    return np.stack(images), np.array(labels)


def test_training_records_the_readers_preprocessing(train_run):
    from edgenas_keras.data.reader import PREPROCESSING, normalize

    _, metrics = train_run
    pre = metrics["preprocessing"]
    assert pre["formula"] == "x = pixel / 127.5 - 1" and pre["input_range"] == [-1.0, 1.0]
    assert pre["channel_order"] == "RGB" and pre["labels"] == ["no_person", "person"]
    # the recorded figures are the ones the reader computes with
    pixels = np.arange(256, dtype=np.uint8)
    assert np.array_equal(normalize(pixels).numpy(),
                          (pixels.astype(np.float32) / np.float32(pre["pixel_divisor"])
                           + np.float32(pre["pixel_offset"])))
    assert PREPROCESSING.to_dict() == pre


def test_settings_header_manifest_and_readme_state_the_same_preprocessing(bundle, train_run):
    from edgenas_keras.tflite.model import read_model

    consts = header_constants((bundle / "vww_model_settings.h").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    pre = manifest["preprocessing"]
    assert pre["known"] is True and pre["formula"] == "x = pixel / 127.5 - 1"
    assert "edgenas_keras/data/reader.py" in pre["source"]
    assert consts["kPreprocessingKnown"] is True
    assert consts["kPixelDivisor"] == pre["pixel_divisor"] == 127.5
    assert consts["kPixelOffset"] == pre["pixel_offset"] == -1.0
    assert [consts["kInputRangeMin"], consts["kInputRangeMax"]] == pre["input_range"] == [-1.0, 1.0]
    assert [consts["kInputHeight"], consts["kInputWidth"], consts["kInputChannels"]] == [*pre["resolution"], 3]
    [d] = read_model(train_run[0] / "model_int8.tflite").input_details()
    assert consts["kInputScale"] == pytest.approx(d["scale"][0], rel=1e-7)
    assert consts["kInputZeroPoint"] == d["zero_point"][0]
    pix = pre["pixel_to_int8"]
    assert consts["kPixelToInputIsOffset"] is pix["exact"]
    if pix["exact"]:
        assert consts["kPixelToInputOffset"] == pix["integer_offset"]
    else:
        assert "kPixelToInputOffset" not in consts
    assert manifest["labels"] == ["no_person", "person"]
    assert re.findall(r'^\s+"(\w+)"', (bundle / "vww_model_settings.h").read_text(), re.M) == manifest["labels"]
    readme = (bundle / "README.md").read_text()
    assert "`x = pixel / 127.5 - 1`" in readme and "pixels 0..255 -> [-1, 1]" in readme
    assert "pixel / 255" not in readme and "[0, 1]" not in readme
    assert "Channel order: RGB" in readme and "no crop" in readme
    if pix["exact"]:
        assert f"`{pix['formula']}`" in readme


def test_header_formula_on_eval_pixels_gives_the_validators_accuracy(bundle, train_run, data_dir):
    """What a firmware engineer does with the bundle: uint8 pixels -> the header's formula -> TFLM, in
    ``kTensorArenaSize`` bytes; top-1 must equal ``edgenas validate``'s figure within half a point."""
    from edgenas_keras.tflite import tflm

    consts = header_constants((bundle / "vww_model_settings.h").read_text())
    pixels, labels = eval_pixels(data_dir)
    assert len(labels) >= 200 and pixels.shape[1:] == (RES, RES, 3)
    if consts["kPixelToInputIsOffset"]:
        q = np.clip(pixels.astype(np.int32) + consts["kPixelToInputOffset"], -128, 127).astype(np.int8)
    else:
        x = pixels / consts["kPixelDivisor"] + consts["kPixelOffset"]
        q = np.clip(np.round(x / consts["kInputScale"]) + consts["kInputZeroPoint"], -128, 127).astype(np.int8)
    runner = tflm.Runner((bundle / "model.tflite").read_bytes(), consts["kTensorArenaSize"])
    predicted = np.array([int(np.argmax(runner(img[None])[0])) for img in q])
    firmware_acc = float(np.mean(predicted == labels))

    rc, blessing = cli_json("validate", str(train_run[0] / "model_int8.tflite"), "--device", "cortex-a53",
                            "--latency-ms", "1000", "--sram-kb", "4096", "--flash-kb", "65536",
                            "--min-accuracy", "0", "--data", str(data_dir))
    assert rc == 0, blessing["reasons"]
    check = blessing["checks"]["accuracy"]
    assert check["detail"]["eval_examples"] == len(labels)
    assert abs(100 * firmware_acc - 100 * check["figure"]) <= 0.5, (firmware_acc, check["figure"])
    # the model learned something, so a wrong preprocessing would show: the old README's [0, 1] = pixel / 255
    wrong = tflm.quantize(pixels / 255.0, consts["kInputScale"], consts["kInputZeroPoint"])
    wrong_acc = float(np.mean(np.array([int(np.argmax(runner(img[None])[0])) for img in wrong]) == labels))
    print(f"accuracy: header formula {firmware_acc:.4f}, validator {check['figure']:.4f}, "
          f"pixel/255 {wrong_acc:.4f}")


def test_input_range_contradicting_the_training_record_is_refused(train_run, tmp_path, capsys):
    out = tmp_path / "b"
    rc = main(["bundle", str(train_run[0] / "model_int8.tflite"), "--out", str(out), "--input-range=0,1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --input-range 0,1 contradicts")
    assert "x = pixel / 127.5 - 1" in err[0] and not out.exists()
    # a copy away from its metrics.json is a model without a record: unknown, unless stated
    copy = tmp_path / "copied.tflite"
    copy.write_bytes((train_run[0] / "model_int8.tflite").read_bytes())
    rc, _ = cli_json("bundle", str(copy), "--out", str(tmp_path / "unknown"))
    assert rc == 0
    assert json.loads((tmp_path / "unknown" / "manifest.json").read_text())["preprocessing"]["known"] is False
    rc, _ = cli_json("bundle", str(copy), "--out", str(tmp_path / "stated"), "--input-range=-1,1")
    pre = json.loads((tmp_path / "stated" / "manifest.json").read_text())["preprocessing"]
    assert rc == 0 and pre["formula"] == "x = pixel / 127.5 - 1" and "--input-range -1,1" in pre["source"]
