"""The VWW ingest pipeline on Apache Beam: sources -> examples -> deterministic gzip TFRecord shards.

``run_ingest`` (real images) and ``run_synth`` (the synthetic generator) are what the CLI and the TFX
ingest component call. All per-record work is in the library (``edgenas_keras.data``); this module only
wires it into Beam:

    Create(tasks) -> Reshuffle -> make_record (or quarantine) -> key by (split, shard) -> GroupByKey
    -> write_shard (sorted by key) ; quarantine -> ToList -> quarantine.json ; then finalize (stats.json last)

The Reshuffle breaks fusion so the runner spreads the expensive step (read, decode, resize, encode) over
its workers; after it only small 96x96 JPEGs travel. Shards are chosen by a stable hash of the image key,
so a rerun, with any number of workers or any runner, writes the same records to the same shards.

Runner: the DirectRunner in multi-process mode by default (``direct_num_workers`` processes, default the
number of cores); any other runner through pass-through Beam options (``--runner=DataflowRunner`` ...).
Shards are staged and finalised through the local file system, so ``out_dir`` must be a path every worker
can write (a local disk for the DirectRunner; a shared mount for a cluster).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from edgenas_keras import progress
from edgenas_keras.data.images import BadImage
from edgenas_keras.data.records import (
    SPLITS,
    VWW_CLASSES,
    assign_split,
    finalize,
    num_shards_for,
    shard_of,
    staging_dir,
    write_shard,
)
from edgenas_keras.data.sources import SourceImage, source_record
from edgenas_keras.data.synth import SynthSpec

QUARANTINE_FILE = "quarantine.json"
PROGRESS_EVERY = 500


_log = progress.prefixed("ingest: ")   # one progress line on stderr, "ingest: <msg>"


def default_workers() -> int:
    """The number of CPUs this process may run on (``os.sched_getaffinity``; where that does not exist,
    ``os.cpu_count()``, or 1 if unknown): the DirectRunner's default worker count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def beam_options(direct_num_workers: int | None, beam_args: Sequence[str] = ()) -> list[str]:
    """Beam pipeline arguments: the user's pass-through ones, else the multi-process DirectRunner."""
    args = list(beam_args)
    if any(a.startswith("--runner") for a in args):
        return args
    workers = direct_num_workers or default_workers()
    mode = "multi_processing" if workers > 1 else "in_memory"
    return [
        "--runner=DirectRunner",
        f"--direct_running_mode={mode}",
        f"--direct_num_workers={workers}",
        *args,
    ]


class _MakeRecords:
    """FlatMap body: task -> Record on the main output, or a quarantine entry; logs progress per worker."""

    def __init__(self, make_record: Callable, describe: Callable):
        self.make_record, self.describe, self.done = make_record, describe, 0

    def __call__(self, task):
        import apache_beam as beam

        try:
            yield self.make_record(task)
        except BadImage as exc:
            yield beam.pvalue.TaggedOutput("quarantine", {"file": self.describe(task), "reason": str(exc)})
        self.done += 1
        if self.done % PROGRESS_EVERY == 0:
            _log(f"worker {os.getpid()}: {self.done} images processed")


def _write_group(item, staging: str, num_shards: dict):
    (split, shard), records = item
    return write_shard(staging, split, shard, num_shards[split], records)


def _write_quarantine(items: list, staging: str) -> None:
    Path(staging, QUARANTINE_FILE).write_text(json.dumps(items), encoding="utf-8")


def _run(
    out_dir,
    tasks: list,
    make_record,
    describe,
    splits: list[str],
    options: dict,
    num_shards: int | None,
    direct_num_workers: int | None,
    beam_args: Sequence[str],
    classes: Sequence[str] = VWW_CLASSES,
    balance_warnings: bool = False,
) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    counts = Counter(splits)
    shards = {s: num_shards or num_shards_for(counts[s]) for s in SPLITS}
    staging = str(staging_dir(out_dir))
    args = beam_options(direct_num_workers, beam_args)
    _log(
        f"{len(tasks)} images ({counts['train']} train, {counts['eval']} eval) -> {out_dir}; beam {' '.join(args)}"
    )
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        results = (
            p
            | "Tasks" >> beam.Create(tasks, reshuffle=False)
            | "Spread" >> beam.Reshuffle()
            | "MakeRecords"
            >> beam.FlatMap(_MakeRecords(make_record, describe)).with_outputs("quarantine", main="records")
        )
        (
            results.records
            | "KeyByShard" >> beam.Map(lambda r: ((r.split, shard_of(r.key, shards[r.split])), r))
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards" >> beam.Map(_write_group, staging, shards)
        )
        (
            results.quarantine
            | "CollectQuarantine" >> beam.combiners.ToList()
            | "WriteQuarantine" >> beam.Map(_write_quarantine, staging)
        )
    quarantined = json.loads(Path(staging, QUARANTINE_FILE).read_text(encoding="utf-8"))
    stats = finalize(out_dir, staging, quarantined, {**options, "num_shards": shards}, classes, balance_warnings)
    _log(f"wrote {stats['written']} labels {stats['labels']}, {len(quarantined)} quarantined")
    for warning in stats.get("warnings", ()):
        _log(f"warning: {warning}")
    return stats


def _source_path(src: SourceImage) -> str:
    return src.path


def run_ingest(
    out_dir,
    sources: Sequence[SourceImage],
    options: dict,
    resolution: int = 96,
    grayscale: bool = False,
    num_shards: int | None = None,
    direct_num_workers: int | None = None,
    beam_args: Sequence[str] = (),
    exif_transpose: bool = False,
    classes: Sequence[str] | None = None,
) -> dict:
    """Ingest labelled source images (see ``edgenas_keras.data.sources``); returns the ``stats.json`` dict.

    ``classes`` names the labels in order (label ``i`` is ``classes[i]``, e.g. from ``folder_sources``);
    ``None`` is VWW's ``no_person``, ``person``. With ``classes`` given, ``stats.json`` also carries the
    class balance ``warnings`` (``edgenas_keras.data.records.class_warnings``), each logged on stderr.

    ``options`` are the resolved user options recorded in ``stats.json``. Bad images (and images the
    conversion rules of ``edgenas_keras.data.pixels`` refuse) are quarantined with their reason; an
    empty result raises UserError. ``num_shards`` (per split) defaults to one per 2,000 images.
    ``exif_transpose`` makes the workers apply each image's EXIF orientation tag (default: raw pixels).
    """
    make = partial(source_record, resolution=resolution, grayscale=grayscale, exif_transpose=exif_transpose)
    return _run(
        out_dir,
        list(sources),
        make,
        _source_path,
        [s.split for s in sources],
        {**options, "resolution": resolution, "grayscale": grayscale, "exif_transpose": exif_transpose},
        num_shards,
        direct_num_workers,
        beam_args,
        VWW_CLASSES if classes is None else classes,
        classes is not None,
    )


def run_synth(
    out_dir,
    spec: SynthSpec,
    num_shards: int | None = None,
    direct_num_workers: int | None = None,
    beam_args: Sequence[str] = (),
) -> dict:
    """The synthetic data set of ``spec`` drawn on Beam workers; identical output to ``write_synth``."""
    indices = list(range(spec.n))
    splits = [assign_split(spec.key(i), spec.eval_fraction) for i in indices]
    return _run(
        out_dir,
        indices,
        spec.record,
        spec.key,
        splits,
        spec.options(),
        num_shards,
        direct_num_workers,
        beam_args,
        spec.class_names(),
        spec.num_classes > 0,
    )

