"""The one writer of image data sets (VWW, image folders, synthetic): tf.train.Example records in gzip TFRecord shards, then ``stats.json``.

Ingest (Beam, any runner) and the synthetic generator (plain Python) both go through here, so everything
downstream reads one layout, the TFX ``Examples`` layout (DESIGN.md section 5)::

    OUT/Split-train/data-00000-of-00004.gz ...
    OUT/Split-eval/data-00000-of-00001.gz
    OUT/stats.json          written last: its presence means the data set is complete

Determinism: a record's shard is a stable hash of its key (never Python's ``hash``), records inside a
shard are sorted by key, examples are encoded with a fixed field order and gzip with a zero mtime, so a
rerun on the same input writes byte-identical shards and the same ``fingerprint``.

Examples are serialised here without TensorFlow (protobuf wire format of ``tf.train.Example``, checked
against TensorFlow's own parser in the tests) so that ingest workers do not pay TensorFlow's import.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from edgenas_keras._fs import atomic_write_json, atomic_writer
from edgenas_keras.errors import UserError

SPLITS = ("train", "eval")
STATS_FILE = "stats.json"
VWW_CLASSES = ("no_person", "person")  # label 0 and label 1 of every VWW source (COCO rule, MLPerf Tiny, synth)
# Class balance warnings (stats.json ``warnings``, one stderr line each), checked for data sets with their
# own classes (image folders, N-class synth): a class is *tiny* with fewer than TINY_CLASS_IMAGES images or
# under TINY_CLASS_SHARE of the data set (too few to learn or to measure its accuracy: at 20 eval-free
# images a class contributes 2 eval images at the default 10% split); the classes are *unbalanced* when the
# largest holds more than UNBALANCED_RATIO times the smallest (top-1 then mostly measures the big classes).
TINY_CLASS_IMAGES = 20
TINY_CLASS_SHARE = 0.01
UNBALANCED_RATIO = 10.0
RECORDS_PER_SHARD = 2000  # about 6 MB of 96x96 JPEGs per shard
MAX_SHARDS = 1024


# ---- stable hashing ------------------------------------------------------------------------------------


def stable_hash(key: str, salt: str) -> int:
    """A 64-bit hash of ``key`` that is the same in every process, run and machine."""
    return int.from_bytes(hashlib.sha256(f"{salt}\x00{key}".encode()).digest()[:8], "big")


def hash_split(key: str, fraction: float, salt: str) -> bool:
    """True for a stable ``fraction`` of keys: carves a held-out split (eval, or search validation)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return stable_hash(key, salt) < fraction * 2**64


def assign_split(key: str, eval_fraction: float) -> str:
    """``"eval"`` for a stable ``eval_fraction`` of keys, else ``"train"`` (used by every source)."""
    return "eval" if hash_split(key, eval_fraction, "vww-eval-split") else "train"


def shard_of(key: str, num_shards: int) -> int:
    """The shard (0 .. ``num_shards`` - 1) of a record, by a stable hash of its source key: reruns agree."""
    return stable_hash(key, "vww-shard") % num_shards


def num_shards_for(n_records: int) -> int:
    """Shards for a split of ``n_records``: a function of the input size only, so reruns agree."""
    return max(1, min(MAX_SHARDS, -(-n_records // RECORDS_PER_SHARD)))


# ---- tf.train.Example encoding -------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # length-delimited field (wire type 2)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(value: bytes | int) -> bytes:
    # Feature{bytes_list=1 | int64_list=3}; BytesList.value=1; Int64List.value=1 (packed varints)
    if isinstance(value, bytes):
        return _field(1, _field(1, value))
    return _field(3, _field(1, _varint(value & 0xFFFFFFFFFFFFFFFF)))


def encode_example(features: dict[str, bytes | int]) -> bytes:
    """Serialise ``tf.train.Example(features=Features(feature={name: value}))``, names in sorted order."""
    entries = b"".join(
        _field(1, _field(1, name.encode()) + _field(2, _feature(features[name]))) for name in sorted(features)
    )
    return _field(1, entries)  # Example.features=1 -> Features.feature=1 (map entries key=1, value=2)


@dataclass(frozen=True)
class Record:
    """One finished example: where it goes and what it is."""

    key: str
    split: str
    label: int
    example: bytes  # serialised tf.train.Example


def vww_record(
    key: str, split: str, label: int, jpeg: bytes, resolution: int, filename: str, source_id: str
) -> Record:
    """The DESIGN.md section 5 features for one processed image."""
    features = {
        "image/encoded": jpeg,
        "image/format": b"jpeg",
        "image/class/label": int(label),
        "image/height": int(resolution),
        "image/width": int(resolution),
        "image/filename": filename.encode(),
        "image/source_id": source_id.encode(),
        "image/key/sha256": hashlib.sha256(jpeg).hexdigest().encode(),
    }
    return Record(key, split, int(label), encode_example(features))


# ---- TFRecord shards -----------------------------------------------------------------------------------


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord_frame(data: bytes) -> bytes:
    """One TFRecord frame: little-endian uint64 length, masked CRC32C of the length, ``data``, masked CRC32C of
    the data (the framing TensorFlow's ``TFRecordWriter`` writes; checked against its reader in the tests).
    """
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def shard_name(split: str, shard: int, num_shards: int) -> str:
    """The shard's path inside the output folder: ``Split-<split>/data-<shard>-of-<num_shards>.gz`` (5 digits each)."""
    return f"Split-{split}/data-{shard:05d}-of-{num_shards:05d}.gz"


def write_shard(
    staging: str | Path, split: str, shard: int, num_shards: int, records: Iterable[Record]
) -> dict:
    """Write one gzip TFRecord shard (records sorted by key) under ``staging``; return its summary.

    The summary (file, count per label, digest of the records in order) is what ``finalize`` reconciles
    and fingerprints; it is also written beside the shard as ``<shard>.json`` for runners whose results
    only come back through files.
    """
    recs = sorted(records, key=lambda r: r.key)
    rel = shard_name(split, shard, num_shards)
    path = Path(staging) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    labels = {"0": 0, "1": 0}  # every label index that occurs, as a string (VWW: always both)
    with atomic_writer(path) as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for r in recs:
            gz.write(tfrecord_frame(r.example))
            digest.update(hashlib.sha256(r.example).digest())
            labels[str(r.label)] = labels.get(str(r.label), 0) + 1
    summary = {
        "file": rel,
        "split": split,
        "count": len(recs),
        "labels": labels,
        "digest": digest.hexdigest(),
    }
    _write_json(path.with_name(path.name + ".json"), summary)
    return summary


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, indent=2, sort_keys=True)


def read_summaries(staging: str | Path) -> list[dict]:
    """The per-shard summaries (``*.gz.json``: record counts, labels) written by ``write_shard``, sorted by path."""
    return [json.loads(p.read_text()) for p in sorted(Path(staging).glob("Split-*/*.gz.json"))]


# ---- finishing a data set ------------------------------------------------------------------------------


def staging_dir(out_dir: str | Path) -> Path:
    """A fresh scratch directory inside ``out_dir`` (same file system, so the final moves are renames)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale_stats = out / STATS_FILE
    if stale_stats.exists():
        stale_stats.unlink()  # from here on the old output no longer looks complete
    for leftover in out.glob(".staging-*"):  # from interrupted runs
        shutil.rmtree(leftover, ignore_errors=True)
    staging = out / f".staging-{os.getpid()}"
    staging.mkdir()
    return staging


def class_names(stats: dict) -> list[str]:
    """The class names of a data set in label order (label ``i`` is ``names[i]``), from its ``stats.json``.

    Data sets written before the writer recorded ``classes`` are VWW: ``["no_person", "person"]``.
    """
    return [str(c) for c in stats.get("classes", VWW_CLASSES)]


def class_warnings(counts: dict[str, int]) -> list[str]:
    """Balance warnings for per-class image counts (``{name: images}``, every split together).

    A class with fewer than ``TINY_CLASS_IMAGES`` images or under ``TINY_CLASS_SHARE`` of the total is
    tiny; largest / smallest above ``UNBALANCED_RATIO`` is unbalanced (a class without images gets its own
    warning, and no ratio is stated). Returns one sentence per finding, in label order."""
    total = sum(counts.values())
    out = []
    for name, n in counts.items():
        if n == 0:
            out.append(f"class {name!r} has no images written (every one quarantined?); it cannot be learned")
        elif n < TINY_CLASS_IMAGES or n < TINY_CLASS_SHARE * total:
            out.append(
                f"class {name!r} is tiny: {n} of {total} images (fewer than {TINY_CLASS_IMAGES} or under "
                f"{TINY_CLASS_SHARE:.0%}); its accuracy will be noisy"
            )
    if counts and min(counts.values()) > 0:
        big = max(counts, key=lambda k: counts[k])
        small = min(counts, key=lambda k: counts[k])
        if counts[big] > UNBALANCED_RATIO * counts[small]:
            out.append(
                f"classes are unbalanced: {big!r} has {counts[big]} images, {small!r} {counts[small]} "
                f"(ratio {counts[big] / counts[small]:.1f} > {UNBALANCED_RATIO:g}); top-1 favours the big classes"
            )
    return out


def finalize(
    out_dir: str | Path,
    staging: str | Path,
    quarantined: Sequence[dict],
    options: dict,
    classes: Sequence[str] = VWW_CLASSES,
    balance_warnings: bool = False,
) -> dict:
    """Move the staged shards into place and write ``stats.json`` last; return the stats.

    ``quarantined`` holds ``{"file", "reason"}`` items. An empty result is a UserError. ``classes`` names
    the labels in order (label ``i`` is ``classes[i]``; default VWW's two); ``stats.json`` records them as
    ``classes`` and the image counts per label index (``labels``, ``labels_per_split``, string keys
    ``"0"``..``"N-1"``) and per class name (``class_counts``: name -> train/eval/total). With
    ``balance_warnings`` it also holds ``warnings`` (``class_warnings``; the callers print them).
    A record label outside ``0..N-1`` is a ValueError (a bug of the source, not of the user).
    """
    out, staging = Path(out_dir), Path(staging)
    classes = [str(c) for c in classes]
    label_keys = [str(i) for i in range(len(classes))]
    summaries = read_summaries(staging)
    stray = sorted({lab for x in summaries for lab, n in x["labels"].items() if n} - set(label_keys))
    if stray:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(f"records carry labels {stray} outside 0..{len(classes) - 1} ({len(classes)} classes)")
    quarantined = sorted(quarantined, key=lambda q: (q["file"], q["reason"]))
    written = {s: sum(x["count"] for x in summaries if x["split"] == s) for s in SPLITS}
    if sum(written.values()) == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(
            f"no images written to {out} ({len(quarantined)} quarantined"
            + (f", first: {quarantined[0]['file']}: {quarantined[0]['reason']}" if quarantined else "")
            + "); check the input paths"
        )
    per_split = {
        s: {lab: sum(x["labels"].get(lab, 0) for x in summaries if x["split"] == s) for lab in label_keys}
        for s in SPLITS
    }
    totals = {lab: per_split["train"][lab] + per_split["eval"][lab] for lab in label_keys}
    fingerprint = hashlib.sha256()
    for x in sorted(summaries, key=lambda x: x["file"]):
        fingerprint.update(f"{x['file']}:{x['count']}:{x['digest']}\n".encode())
    for split in SPLITS:
        target = out / f"Split-{split}"
        shutil.rmtree(target, ignore_errors=True)
        src = staging / f"Split-{split}"
        if not src.exists():
            src.mkdir()  # an empty split is still a split: readers find no files rather than no folder
        for sidecar in src.glob("*.json"):
            sidecar.unlink()
        os.replace(src, target)
    shutil.rmtree(staging, ignore_errors=True)
    stats = {
        "written": written,
        "labels": totals,
        "labels_per_split": per_split,
        "classes": classes,
        "class_counts": {
            name: {"train": per_split["train"][lab], "eval": per_split["eval"][lab], "total": totals[lab]}
            for name, lab in zip(classes, label_keys)
        },
        "considered": sum(written.values()) + len(quarantined),
        "quarantined": list(quarantined),
        "shards": {s: sorted(x["file"] for x in summaries if x["split"] == s) for s in SPLITS},
        "fingerprint": fingerprint.hexdigest(),
        "options": options,
    }
    if balance_warnings:
        stats["warnings"] = class_warnings({name: totals[lab] for name, lab in zip(classes, label_keys)})
    _write_json(out / STATS_FILE, stats)
    return stats


def write_dataset(
    out_dir: str | Path,
    records: Iterable[Record],
    options: dict,
    classes: Sequence[str] = VWW_CLASSES,
    balance_warnings: bool = False,
) -> dict:
    """In-process writer (synthetic data): stage every shard, then ``finalize``; returns the stats.

    ``classes`` and ``balance_warnings`` as for ``finalize``.

    Records are held in memory until their shard is written (about 3 KB each at 96x96); the number of
    shards per split follows its size, exactly as in the Beam pipeline, so both write the same files.
    """
    staging = staging_dir(out_dir)
    by_split: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for r in records:
        by_split[r.split].append(r)
    num_shards = {s: num_shards_for(len(by_split[s])) for s in SPLITS}
    for split, recs in by_split.items():
        groups: dict[int, list[Record]] = {}
        for r in recs:
            groups.setdefault(shard_of(r.key, num_shards[split]), []).append(r)
        for shard, items in sorted(groups.items()):
            write_shard(staging, split, shard, num_shards[split], items)
    return finalize(out_dir, staging, [], {**options, "num_shards": num_shards}, classes, balance_warnings)
