"""``edgenas data``: build VWW data sets in the TFX Examples layout (DESIGN.md section 5).

- ``data ingest``: real images (COCO 2014 + instances annotations, the MLPerf Tiny folders, or a user's
  image folders with any number of classes) through the Beam pipeline in components/vww_ingest.py;
  multi-process DirectRunner by default, any runner through ``--beam-arg=--runner=...`` or Beam options
  after a literal ``--``.
- ``data synth``: the synthetic VWW-like data set (edgenas_keras/data/synth.py), drawn in this process;
  the embedded default data set of the main job is made by it. ``--num-classes N`` draws N shape classes.

Both write ``OUT/Split-train/*.gz``, ``OUT/Split-eval/*.gz`` and, last, ``OUT/stats.json``.
"""

from __future__ import annotations

import sys

from edgenas_keras.errors import UserError
from pipeline.commands._util import BEAM_OPTIONS_EPILOG, JSON_OUTPUT, emit, existing_file


def register(subparsers) -> None:
    """Add ``edgenas data`` with ``data ingest`` and ``data synth`` to the subcommand parser
    ``subparsers``."""
    p = subparsers.add_parser("data", help="build data sets (ingest real images, or synthesise)")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    ing = sub.add_parser(
        "ingest",
        parents=[JSON_OUTPUT],
        epilog=BEAM_OPTIONS_EPILOG.format(
            example="edgenas data ingest --source folders --images DIR --out OUT -- --direct_num_workers=2"),
        help="ingest COCO 2014, MLPerf Tiny or your own image folders into TFRecord shards (Apache Beam)",
        description="Label, resize and shard real images. Sources: coco (COCO 2014 + instances "
        "annotations, the VWW person rule), mlperf-tiny (person/ and non_person/), folders (your own data "
        "set, any number of classes: every subfolder of --images is a class, named by the folder, labels in "
        "sorted name order or in the order of --classes; nested folders belong to their class; optional "
        "pre-split train/ and eval/ (or val/) folders each holding the class folders, else a stable hash "
        "split; gs://B/P is read through the GCS FUSE mount /gcs/B/P). OUT/stats.json records the classes "
        "in label order, counts per class and split, and for folders warns (also on stderr) when a class "
        "has fewer than 20 images or under 1% of them, or the largest class has over 10x the smallest. "
        "Every image Pillow opens is converted to "
        "8-bit RGB (or L) by one rule: 16-bit samples keep their high byte (v >> 8), 12-bit TIFFs are "
        "scaled by their bit depth, 32-bit integer and float images only by the range the file declares "
        "(TIFF SMinSampleValue/SMaxSampleValue), transparency is composited over white, EXIF "
        "orientation is kept raw unless --exif-transpose; images that cannot be converted exactly "
        "(no declared range, samples outside it, unreadable files) are quarantined with the reason, "
        "listed in OUT/stats.json and --json, never clipped. Pass-through Beam options take the "
        "'=' form: --beam-arg=--runner=DataflowRunner --beam-arg=--project=P ..., or follow a literal --.",
    )
    ing.add_argument("--source", choices=["coco", "mlperf-tiny", "folders"], required=True)
    ing.add_argument(
        "--images",
        action="append",
        required=True,
        metavar="DIR",
        help="image folder (coco: repeat with --annotations, e.g. train2014 and val2014; folders: the "
        "folder holding one subfolder per class, or train/ and eval/ with them)",
    )
    ing.add_argument(
        "--classes",
        metavar="A,B,...",
        help="folders only: the class folders in label order (default: folder names sorted); must name "
        "every class folder",
    )
    ing.add_argument(
        "--annotations",
        action="append",
        default=[],
        metavar="FILE",
        help="COCO instances_*.json, one per --images (coco only)",
    )
    ing.add_argument("--out", required=True, metavar="DIR", help="output Examples directory")
    ing.add_argument(
        "--minival-ids",
        metavar="FILE",
        help="image ids (one per line) held out as the eval split (coco only; the paper's protocol)",
    )
    ing.add_argument(
        "--eval-fraction",
        type=float,
        default=None,
        help="fraction sent to eval by a stable hash of the image id (default 0.1)",
    )
    ing.add_argument(
        "--area-threshold",
        type=float,
        default=0.005,
        help="person area / image area must be strictly greater than this for label 1",
    )
    ing.add_argument("--resolution", type=int, default=96)
    ing.add_argument("--grayscale", action="store_true", help="store 1-channel images")
    ing.add_argument(
        "--exif-transpose",
        action="store_true",
        help="rotate/flip each image upright by its EXIF orientation tag (default: keep the raw pixel "
        "orientation, as the reference VWW builder does and COCO annotations assume)",
    )
    ing.add_argument(
        "--num-shards", type=int, default=None, help="shards per split (default 1 per 2,000 images)"
    )
    ing.add_argument(
        "--direct-num-workers",
        type=int,
        default=None,
        help="DirectRunner worker processes (default: number of cores; 1 = in-process)",
    )
    ing.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="=--OPTION=VALUE",
        help="pass-through Beam pipeline option, e.g. --beam-arg=--runner=FlinkRunner (repeatable; or give "
        "them after a literal --, see below)",
    )
    ing.set_defaults(func=cmd_ingest)

    syn = sub.add_parser("synth", parents=[JSON_OUTPUT], help="generate the synthetic VWW data set")
    syn.add_argument("--out", required=True, metavar="DIR", help="output Examples directory")
    syn.add_argument("--n", type=int, required=True, help="number of images")
    syn.add_argument("--resolution", type=int, default=96)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--eval-fraction", type=float, default=0.1)
    syn.add_argument("--grayscale", action="store_true", help="store 1-channel images")
    syn.add_argument(
        "--num-classes",
        type=int,
        default=0,
        metavar="N",
        help="draw N shape classes (2..24: circle, square, triangle, star, cross, ring, crescent, hexagon, "
        "then striped and dotted ones) instead of the VWW person scenes (default 0: VWW)",
    )
    syn.set_defaults(func=cmd_synth)


def _check_common(args) -> None:
    if not 8 <= args.resolution <= 1024:
        raise UserError(
            f"--resolution {args.resolution} is out of range; use 8..1024 (96 is the VWW default)"
        )
    if args.eval_fraction is not None and not 0.0 <= args.eval_fraction < 1.0:
        raise UserError(f"--eval-fraction {args.eval_fraction} must be in [0, 1)")


def _summary(stats: dict) -> dict:
    out = {"written": stats["written"], "labels": stats["labels"], "quarantined": stats["quarantined"]}
    if "warnings" in stats:  # data sets with their own classes (folders, N-class synth)
        out.update(classes=stats["classes"], class_counts=stats["class_counts"], warnings=stats["warnings"])
    return out


def _human(stats: dict, out: str) -> str:
    w, lab = stats["written"], stats["labels"]
    if "warnings" in stats:
        per_class = ", ".join(f"{name}: {c['total']}" for name, c in stats["class_counts"].items())
        counts = f"{len(stats['classes'])} classes, {per_class}"
    else:
        counts = f"label 1: {lab['1']}, label 0: {lab['0']}"
    lines = [
        f"wrote {w['train']} train + {w['eval']} eval examples to {out} "
        f"({counts}); fingerprint {stats['fingerprint'][:16]}"
    ]
    q = stats["quarantined"]
    if q:
        lines.append(f"quarantined {len(q)}:")
        lines += [f"  {item['file']}: {item['reason']}" for item in q[:20]]
        if len(q) > 20:
            lines.append(f"  ... {len(q) - 20} more in {out}/stats.json")
    return "\n".join(lines)


def cmd_ingest(args) -> int:
    """Check the flags against ``--source``, list the images and run the Beam ingest
    (``components.vww_ingest.run_ingest``) into ``--out``; print the counts and the quarantined images.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a flag that
    does not apply to the source, a value out of range, no images found.
    """
    from pathlib import Path

    from edgenas_keras.data import sources

    _check_common(args)
    if args.area_threshold < 0 or args.area_threshold >= 1:
        raise UserError(f"--area-threshold {args.area_threshold} must be in [0, 1)")
    options = {
        "source": args.source,
        "images": [d if d.startswith("gs://") else str(Path(d).resolve()) for d in args.images],
    }
    classes = None
    if args.classes is not None and args.source != "folders":
        raise UserError("--classes applies to --source folders only")
    if args.source == "folders":
        if args.annotations or args.minival_ids:
            raise UserError("--annotations and --minival-ids apply to --source coco only")
        if len(args.images) != 1:
            raise UserError("--source folders takes one --images folder (holding one subfolder per class)")
        if args.area_threshold != 0.005:
            raise UserError("--area-threshold applies to --source coco only")
        presplit = sources.is_presplit(args.images[0])
        if presplit and args.eval_fraction is not None:
            raise UserError(
                f"--eval-fraction does not apply: {args.images[0]} is pre-split into train/ and eval/ (or val/)"
            )
        eval_fraction = sources.DEFAULT_EVAL_FRACTION if args.eval_fraction is None else args.eval_fraction
        wanted = None if args.classes is None else args.classes.split(",")
        classes, srcs = sources.folder_sources(args.images[0], wanted, eval_fraction)
        options.update(classes=classes, presplit=presplit, eval_fraction=None if presplit else eval_fraction)
    elif args.source == "coco":
        if len(args.annotations) != len(args.images):
            raise UserError(
                f"--source coco needs one --annotations per --images (got {len(args.images)} --images and "
                f"{len(args.annotations)} --annotations)"
            )
        minival = None
        if args.minival_ids:
            if args.eval_fraction is not None:
                raise UserError(
                    "--minival-ids and --eval-fraction both choose the eval split; pass one of them"
                )
            minival = sources.read_minival_ids(existing_file(args.minival_ids, "minival ids file"))
        eval_fraction = sources.DEFAULT_EVAL_FRACTION if args.eval_fraction is None else args.eval_fraction
        srcs = sources.coco_sources(
            list(zip(args.images, args.annotations)), args.area_threshold, minival, eval_fraction
        )
        options.update(
            annotations=[str(Path(a).resolve()) for a in args.annotations],
            area_threshold=args.area_threshold,
            minival_ids=str(Path(args.minival_ids).resolve()) if minival else None,
            eval_fraction=None if minival else eval_fraction,
        )
    else:
        if args.annotations or args.minival_ids:
            raise UserError("--annotations and --minival-ids apply to --source coco only")
        if len(args.images) != 1:
            raise UserError(
                "--source mlperf-tiny takes one --images folder (holding person/ and non_person/)"
            )
        eval_fraction = sources.DEFAULT_EVAL_FRACTION if args.eval_fraction is None else args.eval_fraction
        srcs = sources.mlperf_tiny_sources(args.images[0], eval_fraction)
        options["eval_fraction"] = eval_fraction
    if not srcs:
        raise UserError(f"no images found in {', '.join(args.images)}")
    if args.num_shards is not None and args.num_shards < 1:
        raise UserError(f"--num-shards {args.num_shards} must be at least 1")

    import logging

    from components.vww_ingest import run_ingest

    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # worker start-up chatter; our progress is on stderr
    stats = run_ingest(
        args.out,
        srcs,
        options,
        args.resolution,
        args.grayscale,
        args.num_shards,
        args.direct_num_workers,
        args.beam_arg,
        exif_transpose=args.exif_transpose,
        classes=classes,
    )
    emit(args, _summary(stats), _human(stats, args.out))
    return 0


def cmd_synth(args) -> int:
    """Draw ``--n`` synthetic images (VWW scenes, or ``--num-classes`` shape classes) into ``--out`` and print
    the counts.

    Returns the exit status, 0; bad input raises ``UserError`` (exit 2 in ``pipeline.cli.main``): a value out
    of range.
    """
    from tqdm import tqdm

    from edgenas_keras.data.synth import SynthSpec, write_synth

    _check_common(args)
    if args.n < 1:
        raise UserError(f"--n {args.n} must be at least 1")
    spec = SynthSpec(
        args.n, args.seed, args.resolution, args.grayscale, args.eval_fraction, num_classes=args.num_classes
    )
    with tqdm(total=args.n, desc="synth", unit="img", file=sys.stderr, mininterval=1.0) as bar:
        stats = write_synth(args.out, spec, progress=lambda i: bar.update(1))
    for warning in stats.get("warnings", ()):
        print(f"warning: {warning}", file=sys.stderr)
    emit(args, _summary(stats), _human(stats, args.out))
    return 0
