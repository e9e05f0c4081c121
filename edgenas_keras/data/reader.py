"""The one tf.data reader of VWW ``Examples`` directories, used by search, training, QAT and export.

Model input range: **[-1, 1]** (``pixel / 127.5 - 1``), the MobileNet convention. It is symmetric around
zero, which suits int8 quantisation of the input (zero point near 0), and it is what every model built by
this project expects; the int8 converter's representative data must come from this reader for the same
reason. ``PREPROCESSING`` (``edgenas_keras.data.preprocessing``, free of TensorFlow) is that rule as data
(pixel divisor and offset, channel order, resize rule, labels): this reader computes with it, training records it beside the model (``metrics.json``) and the firmware
bundle states it from there (``edgenas_keras.tflite.bundle``), so the figures a firmware engineer reads are the ones
the model was trained and evaluated with. ``INPUT_RANGE`` is its float range.

Augmentation (training only) is light, as for the MLPerf Tiny reference: random horizontal flip and a shift
of up to 1/12 of the side (reflect-padded crop). Its randomness is stateless, seeded from ``shuffle_seed``
and the element's position, so a seeded run is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from edgenas_keras.data.preprocessing import (  # noqa: F401  (re-exported: the reader's rule)
    INPUT_RANGE,
    LABELS,
    PREPROCESSING,
    RESIZE_METHOD,
    Preprocessing,
    preprocessing,
)
from edgenas_keras.data.records import hash_split
from edgenas_keras.errors import UserError



FEATURE_SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/source_id": tf.io.FixedLenFeature([], tf.string),
}


@dataclass(frozen=True)
class Subset:
    """A stable part of a split: ``held_out=True`` keeps the ``fraction`` of records whose source id hashes
    under it (e.g. the search's validation set carved out of train), ``False`` keeps the rest."""

    fraction: float
    salt: str
    held_out: bool


def split_files(examples_dir: str | Path, split: str) -> list[str]:
    """The shards of one split, in name order; a missing or empty split is a UserError."""
    files = sorted(str(p) for p in Path(examples_dir, f"Split-{split}").glob("*.gz"))
    if not files:
        raise UserError(
            f"{examples_dir} has no Split-{split}/*.gz shards; run `edgenas data synth` or `data ingest`"
        )
    return files


def normalize(image_uint8: tf.Tensor) -> tf.Tensor:
    """uint8 pixels -> the model's input range [-1, 1] (``PREPROCESSING``)."""
    return tf.cast(image_uint8, tf.float32) / PREPROCESSING.pixel_divisor + PREPROCESSING.pixel_offset


def _in_subset(subset: Subset):
    def check(source_id):
        return hash_split(source_id.numpy().decode(), subset.fraction, subset.salt) == subset.held_out

    return lambda ex: tf.py_function(check, [ex["image/source_id"]], tf.bool)


def _augment(image: tf.Tensor, seed: tf.Tensor, resolution: int) -> tf.Tensor:
    pad = max(1, resolution // 12)
    image = tf.image.stateless_random_flip_left_right(image, seed)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed + 1)


def make_dataset(
    examples_dir: str | Path,
    split: str,
    batch_size: int,
    resolution: int,
    channels: int = 3,
    augment: bool = False,
    shuffle_seed: int | None = None,
    subset: Subset | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    normalized: bool = True,
) -> tf.data.Dataset:
    """Batches of (image float32 [B, R, R, C] in [-1, 1], label int32 [B]) from ``Split-<split>``.

    ``normalized=False`` yields the uint8 pixels instead (before ``normalize``): what a camera gives the
    firmware, for evaluating an int8 model the way the bundle tells firmware to feed it.

    ``shuffle_seed=None`` reads in file order (evaluation); a seed shuffles files and records. Images are
    resized when the data set was written at another resolution, and converted to ``channels`` (1 or 3).
    """
    files = split_files(examples_dir, split)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(files), seed=shuffle_seed)
    ds = tf.data.TFRecordDataset(ds, compression_type="GZIP", num_parallel_reads=min(4, len(files)))
    ds = ds.map(lambda r: tf.io.parse_single_example(r, FEATURE_SPEC), num_parallel_calls=tf.data.AUTOTUNE)
    if subset is not None:
        ds = ds.filter(_in_subset(subset))
    if shuffle_seed is not None:
        ds = ds.shuffle(4096, seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    base_seed = tf.constant([0 if shuffle_seed is None else shuffle_seed, 0], tf.int64)

    def decode(i, ex):
        image = tf.io.decode_jpeg(ex["image/encoded"], channels=channels)
        image = tf.image.resize(image, [resolution, resolution], method=RESIZE_METHOD, antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        if augment:
            image = _augment(image, base_seed + tf.stack([tf.constant(0, tf.int64), i]), resolution)
        return (normalize(image) if normalized else image), tf.cast(ex["image/class/label"], tf.int32)

    ds = ds.enumerate().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def load_arrays(
    examples_dir: str | Path,
    split: str,
    resolution: int,
    channels: int = 3,
    limit: int | None = None,
    subset: Subset | None = None,
):
    """A whole split (or its first ``limit`` records) as numpy arrays (x float32 in [-1, 1], y int32)."""
    import numpy as np

    ds = make_dataset(examples_dir, split, 256, resolution, channels, subset=subset).unbatch()
    if limit is not None:
        ds = ds.take(limit)
    xs, ys = [], []
    for x, y in ds.batch(1024):
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        raise UserError(
            f"{examples_dir} Split-{split} holds no records" + (" in the requested subset" if subset else "")
        )
    return np.concatenate(xs), np.concatenate(ys)
