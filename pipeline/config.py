"""The pipeline's configuration: frozen dataclasses loaded from YAML, validated with the field named.

One ``PipelineConfig`` describes a whole run: data, search space, device LUT, budgets, the search and
training schedules, and where bundles are pushed. ``pipeline/configs/default.yaml`` is the embedded default
(the main job); any other file is validated the same way, against the same defaults, so a user's file
only needs the fields it changes. Errors are ``UserError`` naming the file and the dotted field
(``budgets.latency_ms must be a positive number``), never a traceback.

The whole file is checked when it is loaded, so ``edgenas compile`` and ``edgenas run`` refuse a mistake
before anything runs: unknown fields (with the nearest known name suggested), types, and ranges. The
``search`` and ``train`` sections are the library's own dataclasses (``SearchConfig``, ``TrainConfig``):
their fields and types are read from those dataclasses (a field added there is accepted here without
edits) and their ranges are the dataclasses' own ``__post_init__`` checks, run here at load with the
pipeline's budgets and seed, their messages re-addressed to the dotted field (``train.lr``). One
mechanism, the dataclass annotations, types every section; no second schema is kept.

The knobs a scheduled run changes (budgets, seed, data paths, push destination) are also the compiled
spec's run-time parameters: ``RUNTIME_PARAMETERS`` names them, ``runtime_values`` gives their values
for a configuration (pipeline/pipeline.py wires them in).

``{output}`` in a path is replaced by the run's output folder (``push.dest: "{output}/pushed"``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml

from edgenas_keras.errors import UserError

# Kubeflow Pipelines: the SDK and TFX's KubeflowV2DagRunner require ``[a-z0-9][a-z0-9-]{0,127}``
# (kfp/dsl/utils.py, tfx/orchestration/kubeflow/v2/pipeline_builder.py); the KFP API server, which since
# kubeflow/pipelines#11952 may keep pipelines as Kubernetes objects, also requires a DNS-1123 name that ends
# with a letter or digit. A name passes both only when it matches this.
PIPELINE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,126}[a-z0-9])?$")
NAME_RULE = "1-128 lowercase letters, digits or '-', starting and ending with a letter or digit"
DATA_SOURCES = ("synth", "coco", "mlperf-tiny", "folders")
RUNNERS = ("local", "beam")


@dataclass(frozen=True)
class DataConfig:
    """The ``data:`` section: which images the pipeline ingests (or draws) and how it stores them.

    Attributes:
        source: ``synth`` | ``coco`` | ``mlperf-tiny`` | ``folders`` (your own image folders, any classes).
        synth_images: synth: how many images to draw (> 0).
        seed: synth: the drawing seed (>= 0).
        resolution: side of the stored images in pixels (>= 8); the model may read them smaller
            (``space.resolution``).
        grayscale: store 1-channel images instead of RGB.
        eval_fraction: share of the images hashed into the eval split, in (0, 1) (without ``minival_ids``).
        area_threshold: coco: label 1 when person area / image area exceeds this (the VWW rule), in [0, 1).
        images: coco: one folder per annotations file; mlperf-tiny, folders: exactly one folder.
        annotations: coco: the ``instances_*.json`` files, one per ``images`` folder.
        minival_ids: coco: a file of image ids held out as the eval split (the paper's protocol); empty: none.
        direct_num_workers: ingest DirectRunner processes (0: the number of cores).
        exif_transpose: ingest: turn images upright by their EXIF orientation (default: the raw pixels).
        classes: folders: the class folders in label order (empty: the folder names sorted).
        num_classes: synth: 0 draws the VWW person scenes; N (2..24) draws N shape classes.
    """

    source: str = "synth"  # synth | coco | mlperf-tiny | folders (your own image folders, any classes)
    synth_images: int = 2000  # synth: how many images to draw
    seed: int = 0  # synth: the drawing seed
    resolution: int = 96  # side of the stored images (the model may read them smaller: space.resolution)
    grayscale: bool = False
    eval_fraction: float = 0.1  # share of images hashed into the eval split (no minival_ids)
    area_threshold: float = 0.005  # VWW label rule: person area / image area must exceed this
    images: tuple[str, ...] = ()  # coco: one folder per annotations file; mlperf-tiny, folders: one folder
    annotations: tuple[str, ...] = ()  # coco: instances_*.json, one per images folder
    minival_ids: str = ""  # coco: ids held out as eval (the paper's protocol)
    direct_num_workers: int = 0  # ingest DirectRunner processes (0: the number of cores)
    exif_transpose: bool = False  # ingest: turn images upright by their EXIF orientation (default: raw)
    classes: tuple[str, ...] = ()  # folders: the class folders in label order (empty: folder names sorted)
    num_classes: int = 0  # synth: 0 draws the VWW person scenes; N (2..24) draws N shape classes


@dataclass(frozen=True)
class SpaceConfig:
    """The ``space:`` section.

    Attributes:
        file: a search-space YAML; empty: the shipped default space.
        resolution: the model's input side in pixels; 0: the space's own.
    """

    file: str = ""  # a search-space YAML; empty: the shipped default space
    resolution: int = 0  # model input side; 0: the space's own


@dataclass(frozen=True)
class LutConfig:
    """The ``lut:`` section: the latency table the search and the validator price with.

    Attributes:
        device: a shipped LUT by name (``edgenas lut list``: ``cortex-m7``, ``cortex-m7-analytical`` ...);
            with ``file``, the device that file describes (it then only names the push folder).
        file: a user's LUT file, used instead of a shipped one; empty: the shipped ``device``.
        clock_mhz: the clock in MHz to rescale a cycle table to; 0: the LUT's own clock.
    """

    device: str = "cortex-m7"  # a shipped LUT by name (`edgenas lut list`; cortex-m7-analytical ...) ...
    file: str = ""  # ... or a user's LUT file (then device only names the push folder)
    clock_mhz: float = 0.0  # 0: the LUT's own clock


@dataclass(frozen=True)
class BudgetConfig:
    """The ``budgets:`` section: what the search designs for and the validator checks. The YAML schema of the
    library's one budget type, ``edgenas_keras.budgets.Budgets`` (``search_budgets`` builds it); every budget
    is required here, so 0 means "not given" and is refused at load.

    Attributes:
        latency_ms: latency per inference on the device, from the LUT, in ms (> 0).
        sram_bytes: peak SRAM, activation arena + persistent runtime memory, in bytes (> 0).
        flash_bytes: flash, model file + TFLM runtime, in bytes (> 0; with a shipped LUT it must exceed the
            device's documented runtime footprint).
        min_accuracy: the int8 top-1 accuracy on the eval split the validator requires, a fraction in [0, 1]
            (0: report only); not a search budget.
    """

    latency_ms: float = 0.0  # per inference on the device, from the LUT
    sram_bytes: int = 0  # activation arena + persistent runtime memory
    flash_bytes: int = 0  # model file + runtime overhead
    min_accuracy: float = 0.0  # int8 accuracy on the eval split the validator requires (0: report only)


@dataclass(frozen=True)
class PushConfig:
    """The ``push:`` section: where blessed bundles go (``DEST/<model_name>/<device>/<version>/``).

    Attributes:
        dest: a folder or ``gs://bucket/prefix``; ``{output}`` is replaced by the run's output folder.
        model_name: the first folder level under ``dest`` (1-128 letters, digits, '.', '_' or '-').
    """

    dest: str = "{output}/pushed"  # a folder or gs://bucket/prefix
    model_name: str = "vww"


@dataclass(frozen=True)
class PipelineConfig:
    """One whole run's configuration: the top-level fields and one dataclass per section (see the module
    docstring).

    Attributes:
        name: the pipeline's name (a Kubeflow name: ``PIPELINE_NAME_RE``).
        seed: the run's seed (>= 0), given to the search and to training.
        data, space, lut, budgets, push: the sections of those names.
        search: fields of the library's ``SearchConfig`` (checked at load; its budgets come from ``budgets``).
        train: fields of the library's ``TrainConfig`` (checked at load).
        beam_args: pass-through Beam options for the Beam components (each must start with ``--``).
        source: where the configuration was read (a path, ``default.yaml``, or ``<defaults>``); set by the
            loader, left out of comparisons and of ``to_dict``.
    """

    name: str = "edgenas-vww"  # the pipeline's name (Kubeflow: PIPELINE_NAME_RE)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    lut: LutConfig = field(default_factory=LutConfig)
    budgets: BudgetConfig = field(default_factory=BudgetConfig)
    search: dict = field(default_factory=dict)  # fields of the library's SearchConfig (checked at load)
    train: dict = field(default_factory=dict)  # fields of the library's TrainConfig (checked at load)
    push: PushConfig = field(default_factory=PushConfig)
    beam_args: tuple[str, ...] = ()  # pass-through Beam options for the Beam components
    source: str = field(default="<defaults>", compare=False)

    def to_dict(self) -> dict:
        """Every field but ``source``, as plain dicts and lists (tuples become lists): what ``dumps``
        writes."""
        d = dataclasses.asdict(self)
        d.pop("source")
        return _plain(d)

    def with_output(self, output: str | os.PathLike) -> PipelineConfig:
        """``{output}`` placeholders replaced by the run's output folder."""
        out = str(output)
        push = dataclasses.replace(self.push, dest=self.push.dest.replace("{output}", out))
        return dataclasses.replace(self, push=push)

    def budgets_dict(self) -> dict:
        """Every budget: what BudgetValidator checks."""
        return dataclasses.asdict(self.budgets)

    def search_budgets(self):
        """The ``Budgets`` the search designs for (an accuracy floor is checked, not searched for, so changing
        it re-runs only validation and push). Raises ``UserError`` for a budget that is not positive."""
        from edgenas_keras.budgets import Budgets

        b = self.budgets
        return Budgets(b.latency_ms, b.sram_bytes, b.flash_bytes)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _fail(source: str, where: str, msg: str):
    raise UserError(f"{source}: {where} {msg}")


def _unknown(source: str, where: str, name: str, known) -> None:
    """Refuse a field the section does not have, suggesting the nearest known name."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6) or sorted(
        k for k in known if min(len(k), len(name)) >= 3 and (k.startswith(name) or name.startswith(k))
    )
    hint = f"did you mean {close[0]}?" if close else f"fields: {', '.join(sorted(known))}"
    _fail(source, where, f"is not a field ({hint})")


def _optional(typ):
    """``X`` for an annotation ``X | None`` / ``Optional[X]``; None for any other annotation."""
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        rest = [a for a in args if a is not type(None)]
        if len(args) == 2 and len(rest) == 1:
            return rest[0]
    return None


def _coerce(value, typ, source: str, where: str):
    """``value`` checked (and tuples/floats normalised) against the annotation ``typ``."""
    inner = _optional(typ)
    if inner is not None:  # ``X | None``: null is a value of its own (the library's "not set")
        return None if value is None else _coerce(value, inner, source, where)
    origin = typing.get_origin(typ)
    if typ is bool:
        if not isinstance(value, bool):
            _fail(source, where, f"must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(source, where, f"must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(source, where, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            _fail(source, where, f"must be a finite number, got {value!r}")
        return float(value)
    if typ is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            _fail(source, where, f"must be a string, got {value!r}")
        return value
    if origin is tuple:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            _fail(source, where, f"must be a list, got {value!r}")
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        return tuple(_coerce(v, item, source, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(typ):
        return _build(typ, value, source, where + ".")
    raise TypeError(f"unsupported config annotation {typ!r} for {where}")


def _mapping(data, source: str, where: str) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        _fail(source, where or "the file", f"must be a mapping of fields, got {data!r}")
    return data


def _build(cls, data, source: str, prefix: str = ""):
    data = _mapping(data, source, prefix.rstrip("."))
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.compare}  # compare=False: set by the loader, not the file
    kwargs = {}
    for name, value in data.items():
        if name not in known:
            _unknown(source, f"{prefix}{name}", str(name), known)
        if name in LIBRARY_SECTIONS and not prefix:
            kwargs[name] = _library_section(name, value, source)
        else:
            kwargs[name] = _coerce(value, hints[name], source, f"{prefix}{name}")
    return cls(**kwargs)


# ---- search: and train: are the library's dataclasses ----------------------------------------------------

LIBRARY_SECTIONS = ("search", "train")
# SearchConfig fields the pipeline fills from other sections (the component gets them as parameters).
# (the old flat budget names too, so a config written for them is told where the budget went)
SEARCH_SET_ELSEWHERE = {"budgets": "the budgets section", "latency_ms": "budgets.latency_ms",
                        "sram_kb": "budgets.sram_bytes", "flash_kb": "budgets.flash_bytes"}
# SearchConfig fields the pipeline does not take, and why.
SEARCH_NOT_IN_PIPELINE = {
    "runtime_flash_bytes": "is not a pipeline setting: BudgetValidator counts lut.device's documented TFLM "
                           "runtime (or the emulated core's linked image), so the search sets that one aside too"}
# The prefix each library dataclass puts before the field it names in its UserError messages.
_LIBRARY_PREFIXES = {"search": ("search config: ", "pipeline config search: "),
                     "train": ("training config: ", "pipeline config train: ")}


def library_class(section: str):
    """The dataclass a library section maps onto: ``SearchConfig`` or ``TrainConfig`` (imports TensorFlow)."""
    if section == "search":
        from edgenas_keras.search import SearchConfig

        return SearchConfig
    from edgenas_keras.train import TrainConfig

    return TrainConfig


def _library_section(section: str, data, source: str) -> dict:
    """``search:`` / ``train:`` checked field by field against the library dataclass's annotations."""
    data = _mapping(data, source, section)
    cls = library_class(section)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)} - (set(SEARCH_SET_ELSEWHERE) | set(SEARCH_NOT_IN_PIPELINE)
                                             if section == "search" else set())
    out = {}
    for name, value in data.items():
        where = f"{section}.{name}"
        if section == "search" and name in SEARCH_SET_ELSEWHERE:
            _fail(source, where, f"is set from {SEARCH_SET_ELSEWHERE[name]}; set the budget there")
        if section == "search" and name in SEARCH_NOT_IN_PIPELINE:
            _fail(source, where, SEARCH_NOT_IN_PIPELINE[name])
        if name not in known:
            _unknown(source, where, str(name), known)
        out[name] = _coerce(value, hints[name], source, where)
    return out


def _library_ranges(section: str, build, source: str) -> None:
    """Run the library dataclass's own range checks; its message re-addressed to the dotted field."""
    try:
        build()
    except UserError as exc:
        msg = str(exc)
        for prefix in _LIBRARY_PREFIXES[section]:
            if msg.startswith(prefix):
                msg = msg[len(prefix):]
                break
        field_name = msg.split(" ", 1)[0]
        known = {f.name for f in fields(library_class(section))}
        where = f"{section}.{msg}" if field_name in known else f"{section}: {msg}"
        raise UserError(f"{source}: {where}") from None


# ---- ranges and cross-field checks ------------------------------------------------------------------------


def _positive(source: str, where: str, value) -> None:
    if not value > 0:
        _fail(source, where, f"must be positive, got {value!r}")


def _at_least(source: str, where: str, value, low, why: str = "") -> None:
    if not value >= low:
        _fail(source, where, f"must be >= {low}{why}, got {value!r}")


def _lut_covers_space(cfg: PipelineConfig, s: str) -> None:
    """A shipped table that lists its keys (measured, or timed on the emulated core) must list every operator
    of the space at the model resolution, or the search would stop on the first missing key after ingest;
    refused here with the ways out. A space that does not load is reported where it is loaded."""
    from edgenas_keras.lut import device_of, load_device, shipped_devices
    from edgenas_keras.cost.graph import reachable_keys
    from edgenas_keras.arch.space import SearchSpace

    try:
        space = SearchSpace.load(cfg.space.file or None)
        if cfg.space.resolution:
            space = space.with_resolution(cfg.space.resolution)
        keys = reachable_keys(space)
    except (OSError, ValueError, UserError):
        return
    table = load_device(cfg.lut.device)
    miss = table.missing(keys)
    if miss:
        device = device_of(cfg.lut.device)
        alias = f"{device}-analytical"
        any_shape = f"lut.device {alias} (the analytical table, any shape), " if alias in shipped_devices() else ""
        _fail(s, "lut.device", f"{cfg.lut.device} ({table.metadata['method']}: it lists its keys only) lacks "
              f"{len(miss)} of the {len(keys)} operator keys of the space at {space.resolution} px (e.g. {miss[0]}); "
              f"use the resolution it was built for (the shipped tables: 96), {any_shape}or time them into a table "
              f"of your own: edgenas lut build --device {device} --resolution {space.resolution} --out FILE, then "
              "lut.file: FILE")


def validate(cfg: PipelineConfig) -> PipelineConfig:
    """Ranges and cross-field checks of every section; returns ``cfg`` unchanged or raises UserError
    naming the file and the dotted field."""
    s = cfg.source
    if not PIPELINE_NAME_RE.match(cfg.name):
        _fail(s, "name", f"{cfg.name!r} must be {NAME_RULE} (a Kubeflow pipeline name)")
    _at_least(s, "seed", cfg.seed, 0)
    d = cfg.data
    if d.source not in DATA_SOURCES:
        _fail(s, "data.source", f"must be one of {', '.join(DATA_SOURCES)}, got {d.source!r}")
    _at_least(s, "data.resolution", d.resolution, 8, " (pixels)")
    _at_least(s, "data.seed", d.seed, 0)
    if not 0.0 < d.eval_fraction < 1.0:
        _fail(s, "data.eval_fraction", f"must be a fraction between 0 and 1 (exclusive), got {d.eval_fraction}")
    if not 0.0 <= d.area_threshold < 1.0:
        _fail(s, "data.area_threshold", f"must be a fraction in [0, 1), got {d.area_threshold}")
    if d.source == "synth":
        _positive(s, "data.synth_images", d.synth_images)
    elif d.source == "coco":
        if not d.images or len(d.images) != len(d.annotations):
            _fail(s, "data.annotations", "must list one instances file per data.images folder (coco)")
    elif d.source == "folders" and len(d.images) != 1:
        _fail(s, "data.images", "must list exactly one folder (folders: one subfolder per class)")
    elif d.source == "mlperf-tiny" and len(d.images) != 1:
        _fail(s, "data.images", "must list exactly one folder (mlperf-tiny: person/ and non_person/)")
    if d.classes and d.source != "folders":
        _fail(s, "data.classes", f"applies to data.source folders only, got source {d.source!r}")
    for i, name in enumerate(d.classes):
        if not name.strip():
            _fail(s, f"data.classes[{i}]", "must name a class folder, got an empty string")
        if name in d.classes[:i]:
            _fail(s, f"data.classes[{i}]", f"names {name!r} twice")
    if d.num_classes and (d.source != "synth" or not 2 <= d.num_classes <= 24):
        _fail(s, "data.num_classes", f"must be 0 (VWW) or 2..24 shape classes, for data.source synth only, "
              f"got {d.num_classes} with source {d.source!r}")
    for i, path in enumerate(d.images):
        if not path:
            _fail(s, f"data.images[{i}]", "must name a folder, got an empty string")
    for i, path in enumerate(d.annotations):
        if not path:
            _fail(s, f"data.annotations[{i}]", "must name a file, got an empty string")
    _at_least(s, "data.direct_num_workers", d.direct_num_workers, 0, " (0: the number of cores)")
    _at_least(s, "space.resolution", cfg.space.resolution, 0, " (0: the space's own)")
    if not cfg.lut.device:
        _fail(s, "lut.device", "must name the device (a shipped LUT, or the device a lut.file describes)")
    if not cfg.lut.file:
        from edgenas_keras.lut import shipped_devices

        shipped = shipped_devices()
        if cfg.lut.device not in shipped:
            close = difflib.get_close_matches(cfg.lut.device, shipped, n=1)
            hint = f"did you mean {close[0]}?" if close else "or give lut.file"
            _fail(s, "lut.device", f"{cfg.lut.device!r} is not a shipped LUT (shipped: {', '.join(shipped)}; {hint})")
        _lut_covers_space(cfg, s)
    _at_least(s, "lut.clock_mhz", cfg.lut.clock_mhz, 0, " (0: the LUT's own clock)")
    for name in ("latency_ms", "sram_bytes", "flash_bytes"):
        _positive(s, f"budgets.{name}", getattr(cfg.budgets, name))
    if not 0.0 <= cfg.budgets.min_accuracy <= 1.0:
        _fail(s, "budgets.min_accuracy", f"must be a fraction in [0, 1], got {cfg.budgets.min_accuracy}")
    # the device's documented TFLM runtime shares the flash budget, in the search and in BudgetValidator
    from edgenas_keras.budgets import RUNTIME_FLASH, runtime_footprint
    from edgenas_keras.lut import device_of

    if device_of(cfg.lut.device) not in RUNTIME_FLASH:
        _fail(s, "lut.device", f"{cfg.lut.device!r} has no documented TFLM runtime flash footprint (known: "
              f"{', '.join(sorted(RUNTIME_FLASH))}), and the pipeline's flash budget counts model + runtime; for "
              "another board use `edgenas search` and `edgenas validate` with --runtime-flash-kb from its link map")
    else:
        runtime = runtime_footprint(cfg.lut.device).bytes
        if cfg.budgets.flash_bytes <= runtime:
            _fail(s, "budgets.flash_bytes", f"{cfg.budgets.flash_bytes} leaves no room for the model next to "
                  f"the TFLM runtime ({runtime} bytes on {device_of(cfg.lut.device)}); it counts model + runtime")
    from edgenas_keras.search import search_config_from

    budgets = cfg.search_budgets()
    _library_ranges("search", lambda: search_config_from(dict(cfg.search), budgets, cfg.seed), s)
    _library_ranges("train", lambda: library_class("train").from_dict({"seed": cfg.seed, **cfg.train}), s)
    if not cfg.push.dest:
        _fail(s, "push.dest", "must name a folder or gs://bucket/prefix")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", cfg.push.model_name):
        _fail(s, "push.model_name", "must be 1-128 letters, digits, '.', '_' or '-'")
    for i, arg in enumerate(cfg.beam_args):
        if not arg.startswith("--"):
            _fail(s, f"beam_args[{i}]", f"must be a Beam option (--name=value), got {arg!r}")
    return cfg


def default_text() -> str:
    """The text of the embedded default configuration, ``pipeline/configs/default.yaml``."""
    return resources.files("pipeline").joinpath("configs/default.yaml").read_text(encoding="utf-8")


def loads(text: str, source: str) -> PipelineConfig:
    """The configuration in the YAML ``text``, checked whole; fields the text leaves out keep their defaults.

    Args:
        text: the YAML document.
        source: its name in error messages (a path, ``default.yaml``); becomes ``PipelineConfig.source``.

    Raises:
        UserError: naming ``source`` and the dotted field, for invalid YAML, an unknown field, a wrong type,
            or a failed range or cross-field check (``validate``).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    cfg = _build(PipelineConfig, data, source)
    return validate(dataclasses.replace(cfg, source=source))


def load(path: str | os.PathLike | None = None) -> PipelineConfig:
    """The configuration in ``path``; ``None`` is the embedded default (``pipeline/configs/default.yaml``)."""
    if path is None:
        return loads(default_text(), "default.yaml")
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config {p} does not exist or is not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config {p} cannot be read as UTF-8 text ({getattr(exc, 'strerror', None) or exc})") from None
    return loads(text, str(p))


def dumps(cfg: PipelineConfig) -> str:
    """``cfg`` as YAML (``to_dict``: ``source`` left out), fields in declaration order."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def write_resolved(cfg: PipelineConfig, folder: str | os.PathLike, name: str = "config.resolved.yaml") -> Path:
    """Write the resolved configuration next to an output (``_fs.atomic_write_text``: a unique temporary
    name, then one rename); returns its path."""
    from edgenas_keras._fs import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    atomic_write_text(target, dumps(cfg))
    return target


# ---- run-time parameters of the compiled spec --------------------------------------------------------------

# The knobs a scheduled run changes, as pipeline parameters: parameter name (the dotted field with "_" for
# ".") -> (dotted field, type). `edgenas submit --param budgets_latency_ms=30` overrides the compiled value
# for one run or schedule; everything else is fixed when the spec is compiled. Lists of paths travel as a
# JSON list in a string (Kubeflow parameters of TFX components are strings or numbers).
RUNTIME_PARAMETERS: dict[str, tuple[str, type]] = {
    "budgets_latency_ms": ("budgets.latency_ms", float),
    "budgets_sram_bytes": ("budgets.sram_bytes", int),
    "budgets_flash_bytes": ("budgets.flash_bytes", int),
    "budgets_min_accuracy": ("budgets.min_accuracy", float),
    "seed": ("seed", int),
    "data_images": ("data.images", str),
    "data_annotations": ("data.annotations", str),
    "data_minival_ids": ("data.minival_ids", str),
    "push_dest": ("push.dest", str),
}


def runtime_values(cfg: PipelineConfig) -> dict:
    """``{parameter name: value}`` of ``RUNTIME_PARAMETERS`` for ``cfg``: the values a local run binds and
    the defaults a compiled spec declares (path lists as compact JSON lists)."""
    values = {}
    for name, (dotted, ptype) in RUNTIME_PARAMETERS.items():
        value = cfg
        for part in dotted.split("."):
            value = getattr(value, part)
        if isinstance(value, tuple):
            value = json.dumps(list(value), separators=(",", ":"))
        values[name] = ptype(value)
    return values


def to_json(obj) -> str:
    """Canonical JSON for component parameters: the same config gives the same string (cache keys)."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"))
