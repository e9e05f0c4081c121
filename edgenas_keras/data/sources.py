"""Where records come from: COCO instances annotations, the MLPerf Tiny folder layout, a user's image
folders (any number of classes), split choice.

The label rule is DESIGN.md section 5 (the reference tensorflow/models VWW builder): label 1 iff some
annotation of the category *named* ``person`` has ``area / (height * width) > threshold`` (strict), with
height and width from the annotation file's ``images`` entry; crowd annotations count. Everything here is
pure Python: parsing a 450 MB instances file is the driver's job, the image work happens in workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgenas_keras.data.images import read_and_process
from edgenas_keras.data.records import Record, assign_split, vww_record
from edgenas_keras.errors import UserError

DEFAULT_AREA_THRESHOLD = 0.005
DEFAULT_EVAL_FRACTION = 0.1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


@dataclass(frozen=True)
class SourceImage:
    """One image to ingest: where it is, its label and split, and the id it is hashed by."""

    key: str  # stable, unique id: sharding and the eval split are hashed from it
    path: str
    label: int
    split: str  # "train" or "eval"
    source_id: str  # image/source_id: the COCO image id, else the key; unique, so subsets can hash it


def vww_label(annotations: Iterable[dict], person_id: int, height: int, width: int, threshold: float) -> int:
    """The VWW rule for one image: 1 iff a ``person`` annotation covers strictly more than ``threshold``."""
    image_area = float(height) * float(width)
    for ann in annotations:
        if ann["category_id"] == person_id and float(ann["area"]) / image_area > threshold:
            return 1
    return 0


@dataclass(frozen=True)
class CocoImage:
    """One COCO image with its VWW label: 1 when a person box covers at least the area threshold, else 0."""
    image_id: int
    file_name: str
    label: int


def parse_coco(annotations_path: str | Path, threshold: float = DEFAULT_AREA_THRESHOLD) -> list[CocoImage]:
    """Label every image of one COCO instances file; a malformed file is a UserError naming it."""
    path = Path(annotations_path)
    if not path.is_file():
        raise UserError(f"annotation file {path} does not exist; pass a COCO instances_*.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"annotation file {path} is not valid JSON ({exc}); pass a COCO instances_*.json"
        ) from exc
    try:
        person_ids = [c["id"] for c in data["categories"] if c["name"] == "person"]
        if len(person_ids) != 1:
            raise UserError(
                f"annotation file {path} has {len(person_ids)} categories named 'person' (need exactly one)"
            )
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        images = []
        for img in data["images"]:
            image_id = int(img["id"])
            height, width = int(img["height"]), int(img["width"])
            if height <= 0 or width <= 0:
                raise ValueError(f"image {image_id} has size {width}x{height}")
            label = vww_label(by_image.get(image_id, ()), person_ids[0], height, width, threshold)
            images.append(CocoImage(image_id, str(img["file_name"]), label))
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(
            f"annotation file {path} is not COCO instances format ({type(exc).__name__}: {exc})"
        ) from exc
    return images


def read_minival_ids(path: str | Path) -> set[int]:
    """Image ids, one per line (``#`` comments and blank lines allowed), as in mscoco_minival_ids.txt."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"minival ids file {p} does not exist")
    ids = set()
    for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ids.add(int(text))
        except ValueError:
            raise UserError(f"minival ids file {p} line {n}: {text!r} is not an integer image id") from None
    if not ids:
        raise UserError(f"minival ids file {p} holds no image ids")
    return ids


def coco_sources(
    pairs: Sequence[tuple[str | Path, str | Path]],
    threshold: float = DEFAULT_AREA_THRESHOLD,
    minival_ids: set[int] | None = None,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
) -> list[SourceImage]:
    """All images of the (images dir, instances file) pairs, labelled and split.

    With ``minival_ids`` those ids are the eval split (the paper's protocol) and every other image trains;
    otherwise a stable hash of the image id sends ``eval_fraction`` of them to eval.
    """
    out: dict[int, SourceImage] = {}
    for images_dir, ann_path in pairs:
        d = Path(images_dir)
        if not d.is_dir():
            raise UserError(f"images directory {d} does not exist or is not a directory")
        for img in parse_coco(ann_path, threshold):
            if img.image_id in out:
                raise UserError(
                    f"image id {img.image_id} appears twice (again in {ann_path}); pass each pair once"
                )
            key = f"coco/{img.image_id}"
            if minival_ids is not None:
                split = "eval" if img.image_id in minival_ids else "train"
            else:
                split = assign_split(key, eval_fraction)
            out[img.image_id] = SourceImage(key, str(d / img.file_name), img.label, split, str(img.image_id))
    return [out[i] for i in sorted(out)]


def mlperf_tiny_sources(
    images_dir: str | Path, eval_fraction: float = DEFAULT_EVAL_FRACTION
) -> list[SourceImage]:
    """The MLPerf Tiny ``vw_coco2014_96`` layout: ``person/`` is label 1, ``non_person/`` label 0."""
    root = Path(images_dir)
    if not root.is_dir():
        raise UserError(f"images directory {root} does not exist or is not a directory")
    out = []
    for sub, label in (("non_person", 0), ("person", 1)):
        d = root / sub
        if not d.is_dir():
            raise UserError(f"{root} has no {sub}/ folder; the MLPerf Tiny layout is person/ and non_person/")
        for f in sorted(d.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                key = f"{sub}/{f.name}"
                out.append(SourceImage(key, str(f), label, assign_split(key, eval_fraction), key))
    return out


SPLIT_FOLDERS = {"train": "train", "eval": "eval", "val": "eval"}  # pre-split folder name -> split
GCS_FUSE_ROOT = "/gcs"  # where Vertex AI / Kubeflow containers mount Cloud Storage (gs://b/p -> /gcs/b/p)


def local_folder(path: str | Path) -> Path:
    """The folder to list for a user's path: ``gs://bucket/p`` is read through the GCS FUSE mount
    ``/gcs/bucket/p``, as every source reads Cloud Storage (the workers open plain files); anything else
    as is. Raises UserError when the folder does not exist (naming the FUSE path for ``gs://``)."""
    text = str(path)
    if text.startswith("gs://"):
        fuse = Path(GCS_FUSE_ROOT, text[len("gs://"):].strip("/"))
        if not fuse.is_dir():
            raise UserError(
                f"{text} is read through the GCS FUSE mount {fuse}, which is not a folder here; mount the "
                f"bucket at {GCS_FUSE_ROOT}/<bucket> (Vertex AI and GKE's GCS FUSE CSI driver do) or copy it locally"
            )
        return fuse
    root = Path(text)
    if not root.is_dir():
        raise UserError(f"images directory {root} does not exist or is not a directory")
    return root


def _subfolders(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(d: Path) -> list[Path]:
    """Image files (by suffix, case-insensitive) anywhere under ``d``, hidden files and folders skipped,
    in sorted relative-path order (the ImageFolder rule: subfolders of a class folder belong to it)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        out += [
            Path(dirpath, f)
            for f in filenames
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
        ]
    return sorted(out, key=lambda p: p.relative_to(d).as_posix())


def is_presplit(images_dir: str | Path) -> bool:
    """True when an image-folder data set is pre-split: it holds ``train/`` and ``eval/`` or ``val/``."""
    names = {p.name for p in _subfolders(local_folder(images_dir))}
    return "train" in names and bool(names & {"eval", "val"})


def folder_sources(
    images_dir: str | Path,
    classes: Sequence[str] | None = None,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
) -> tuple[list[str], list[SourceImage]]:
    """A user's image-folder data set: ``(class names in label order, labelled and split images)``.

    Layout (the torchvision ``ImageFolder`` / Keras ``image_dataset_from_directory`` convention): every
    subfolder of ``images_dir`` is a class holding its images (nested folders included); class names are
    the folder names in sorted order, or ``classes`` in the order given (they must name exactly the
    folders). Pre-split data sets hold ``train/`` and ``eval/`` (or ``val/``), each with the class
    folders: those splits are kept and ``eval_fraction`` is unused; otherwise a stable hash of each
    image's key (``<class>/<relative path>``) sends ``eval_fraction`` of them to eval (``assign_split``).
    Files are chosen by suffix (``IMAGE_SUFFIXES``); a file that then does not decode is quarantined by
    the ingest, not here. ``gs://`` folders are read through their GCS FUSE mount (``local_folder``).

    Raises UserError (one line) for: a missing folder, no class folders, a single class, a class folder
    without images, a ``classes`` name without a folder (or a folder not in ``classes``, or a name given
    twice), an ``eval/`` class folder with no ``train/`` counterpart, and ``eval/`` beside ``val/``.
    Class names are kept as they are (not required to be C identifiers).
    """
    root = local_folder(images_dir)
    subs = {p.name: p for p in _subfolders(root)}
    split_dirs = {name: subs[name] for name in SPLIT_FOLDERS if name in subs}
    presplit = is_presplit(root)
    if presplit:
        if "eval" in split_dirs and "val" in split_dirs:
            raise UserError(f"{root} holds both eval/ and val/; keep one of them as the eval split")
        others = sorted(set(subs) - set(split_dirs))
        if others:
            raise UserError(
                f"{root} mixes split folders (train/, {'eval' if 'eval' in split_dirs else 'val'}/) with "
                f"other folders ({', '.join(others)}); put every class folder inside train/ and eval/"
            )
        layout = [(folder, SPLIT_FOLDERS[folder], d) for folder, d in sorted(split_dirs.items())]
    else:
        layout = [("", None, root)]
    train_root = split_dirs["train"] if presplit else root
    found = [p.name for p in _subfolders(train_root)]
    where = f"{train_root}" + (" (the train split)" if presplit else "")
    if not found:
        raise UserError(
            f"{where} has no class folders; put each class's images in its own subfolder "
            f"({train_root}/<class>/*.jpg)"
        )
    if classes is not None:
        names = [str(c).strip() for c in classes]
        if any(not n for n in names):
            raise UserError(f"--classes {','.join(names)} has an empty class name")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise UserError(f"--classes names {', '.join(dup)} more than once")
        missing = [n for n in names if n not in found]
        if missing:
            raise UserError(
                f"--classes names {', '.join(missing)} but {where} has no such folder "
                f"(class folders: {', '.join(found)})"
            )
        extra = [n for n in found if n not in names]
        if extra:
            raise UserError(
                f"{where} has class folders not in --classes ({', '.join(extra)}); name every class, or move "
                "the folder out"
            )
    else:
        names = found
    if len(names) < 2:
        raise UserError(
            f"{where} holds one class folder ({names[0]}/); a classifier needs at least two classes"
        )
    label_of = {n: i for i, n in enumerate(names)}
    out = []
    for folder, split, d in layout:
        for cls_dir in _subfolders(d):
            if cls_dir.name not in label_of:
                raise UserError(
                    f"{cls_dir} is a class folder of the {folder} split with no {train_root}/{cls_dir.name}/ "
                    f"(train classes: {', '.join(names)})"
                )
        for name in names:
            cls_dir = d / name
            if folder and folder != "train" and not cls_dir.is_dir():
                continue  # a class may have no eval images; the stats show it
            files = _image_files(cls_dir)
            if not files:
                raise UserError(
                    f"class folder {cls_dir} holds no images ({', '.join(IMAGE_SUFFIXES[:3])} ...); remove it "
                    "or add images"
                )
            for f in files:
                key = "/".join(x for x in (folder, name, f.relative_to(cls_dir).as_posix()) if x)
                out.append(
                    SourceImage(key, str(f), label_of[name], split or assign_split(key, eval_fraction), key)
                )
    return names, out


def source_record(
    src: SourceImage, resolution: int, grayscale: bool = False, exif_transpose: bool = False
) -> Record:
    """Read, decode, resize and re-encode one source image into its example; raises ``BadImage``.

    Every source goes through ``edgenas_keras.data.pixels.decode_pixels`` (via ``read_and_process``):
    one conversion rule for all image modes; ``exif_transpose`` applies the EXIF orientation tag
    (default: the raw orientation, as the reference VWW builder).
    """
    jpeg = read_and_process(src.path, resolution, grayscale, exif_transpose)
    return vww_record(src.key, src.split, src.label, jpeg, resolution, Path(src.path).name, src.source_id)
