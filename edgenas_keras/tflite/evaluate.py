"""Accuracy of an int8 model on a data set's eval split, run image by image in the TFLM runtime, and the
eval split as a tf.data pipeline. Used by training (to report int8 accuracy) and by validation (the
accuracy floor), so validation does not import the training code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from edgenas_keras.data import reader
from edgenas_keras.errors import UserError
from edgenas_keras.tflite import tflm
from edgenas_keras.tflite.model import parse


def dataset_info(data_dir: str | Path) -> dict:
    """Record counts per split and the data set's fingerprint, from the writer's ``stats.json`` (or, for
    folders written by other tools, by counting records)."""
    stats_path = Path(data_dir, "stats.json")
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        return {"train": int(stats["written"]["train"]), "eval": int(stats["written"]["eval"]),
                "fingerprint": stats.get("fingerprint")}
    counts = {}
    for split in ("train", "eval"):
        files = reader.split_files(data_dir, split)
        counts[split] = int(tf.data.TFRecordDataset(files, compression_type="GZIP").reduce(0, lambda n, _: n + 1))
    return {**counts, "fingerprint": None}


def eval_dataset(data_dir, resolution: int, channels: int, batch_size: int, limit: int | None,
                 normalized: bool = True):
    """The eval split as a tf.data.Dataset of (images (batch, resolution, resolution, channels), labels
    (batch,)), the first ``limit`` images (all when None); pixels in the model's input range when
    ``normalized``, raw uint8-valued floats otherwise. Raises ``UserError`` for a folder with no eval split.
    """
    ds = reader.make_dataset(data_dir, "eval", batch_size, resolution, channels, normalized=normalized)
    if limit is not None:
        ds = ds.unbatch().take(limit).batch(batch_size)
    return ds


TOP5_MIN_CLASSES = 6   # top-5 accuracy is reported for data sets of more than 5 classes (it is 1.0 below)


def per_class_table(names, correct, counts) -> list[dict]:
    """Per-class accuracy rows in label order: ``{"label", "class", "correct", "count", "accuracy"}``, where
    ``accuracy`` is the share of that class's eval images the model labels correctly (per-class recall;
    ``None`` for a class without eval images)."""
    return [{"label": i, "class": str(n), "correct": int(c), "count": int(k),
             "accuracy": (c / k if k else None)} for i, (n, c, k) in enumerate(zip(names, correct, counts))]


def tflm_evaluate(model_bytes: bytes, data_dir, limit: int | None = None, source: str = "model",
                  class_names: list[str] | None = None) -> dict:
    """Accuracy of a full-int8 model on the eval split, run image by image in the TFLM runtime.

    Images are read as uint8 pixels at the model's own input resolution and channel count and mapped to int8
    exactly as the firmware bundle tells firmware to (``Preprocessing.to_int8`` with the model's input scale
    and zero point: ``q = pixel - 128`` when that offset is exact), so these figures are the ones a device
    following the bundle gets. ``class_names`` (default: the data set's, ``classes.dataset_class_names``)
    must have one name per model output, else ``UserError``.

    Returns ``{"accuracy": top-1, "examples": images, "per_class": per_class_table(...)}`` and, for more
    than 5 classes, ``"top5_accuracy"`` (the label among the 5 largest outputs; ties broken by index)."""
    from edgenas_keras.data.classes import dataset_class_names  # noqa: PLC0415

    model = parse(bytes(model_bytes), source).require_int8()
    inp = model.input_details()[0]
    _, res, _, ch = inp["shape"]
    names = list(class_names) if class_names is not None else dataset_class_names(data_dir)
    outputs = model.tensors[model.outputs[0]].elements
    if outputs != len(names):
        raise UserError(f"{source} has {outputs} outputs but the data set in {data_dir} has {len(names)} classes "
                        f"({', '.join(names)}); evaluate it on the data it was trained for")
    runner = tflm.Runner(model_bytes, source=source)
    correct = np.zeros(len(names), np.int64)
    counts = np.zeros(len(names), np.int64)
    top5, want_top5 = 0, len(names) >= TOP5_MIN_CLASSES
    pre = reader.preprocessing(ch)
    for x, y in eval_dataset(data_dir, res, ch, 64, limit, normalized=False):
        q = pre.to_int8(x.numpy(), inp["scale"][0], inp["zero_point"][0])
        for img, label in zip(q, y.numpy()):
            if not 0 <= label < len(names):
                raise UserError(f"{data_dir} holds label {int(label)} outside 0..{len(names) - 1} (its stats.json "
                                f"names {len(names)} classes); rerun `edgenas data ingest`")
            out = runner(img[None])[0].reshape(-1)
            counts[label] += 1
            correct[label] += int(np.argmax(out) == label)
            if want_top5:
                top5 += int(label in np.argsort(-out.astype(np.int64), kind="stable")[:5])
    total = int(counts.sum())
    if total == 0:
        raise UserError(f"{data_dir} Split-eval holds no records")
    result = {"accuracy": float(correct.sum()) / total, "examples": total,
              "per_class": per_class_table(names, correct, counts)}
    if want_top5:
        result["top5_accuracy"] = top5 / total
    return result


def tflm_accuracy(model_bytes: bytes, data_dir, limit: int | None = None, source: str = "model") -> tuple[float, int]:
    """Top-1 accuracy of a full-int8 model on the eval split in the TFLM runtime (``tflm_evaluate``).
    Returns (accuracy, number of images)."""
    r = tflm_evaluate(model_bytes, data_dir, limit, source)
    return r["accuracy"], r["examples"]
