"""The pipeline's configuration: frozen dataclasses loaded from YAML, validated with the field named.

One ``PipelineConfig`` describes a whole run: data, search space, device LUT, budgets, the search and
training schedules, and where bundles are pushed. ``pipeline/configs/default.yaml`` is the embedded default
(the main job); any other file is validated the same way, against the same defaults, so a user's file
only needs the fields it changes. Errors are ``UserError`` naming the file and the dotted field
(``budgets.latency_ms must be a positive number``), never a traceback.

The search and training sections map onto the library's own config dataclasses (``SearchConfig``,
``TrainConfig``) when those are available, so a field added there is accepted here without edits; the
components receive them as JSON parameters, which is also what a compiled Kubeflow spec carries.

``{output}`` in a path is replaced by the run's output folder (``push.dest: "{output}/pushed"``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml

from edgenas_keras.errors import UserError

PIPELINE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
DATA_SOURCES = ("synth", "coco", "mlperf-tiny")
RUNNERS = ("local", "beam")


@dataclass(frozen=True)
class DataConfig:
    source: str = "synth"  # synth | coco | mlperf-tiny
    synth_images: int = 2000  # synth: how many images to draw
    seed: int = 0  # synth: the drawing seed
    resolution: int = 96  # side of the stored images (the model may read them smaller: space.resolution)
    grayscale: bool = False
    eval_fraction: float = 0.1  # share of images hashed into the eval split (no minival_ids)
    area_threshold: float = 0.005  # VWW label rule: person area / image area must exceed this
    images: tuple[str, ...] = ()  # coco: one folder per annotations file; mlperf-tiny: one folder
    annotations: tuple[str, ...] = ()  # coco: instances_*.json, one per images folder
    minival_ids: str = ""  # coco: ids held out as eval (the paper's protocol)
    direct_num_workers: int = 0  # ingest DirectRunner processes (0: the number of cores)
    exif_transpose: bool = False  # ingest: turn images upright by their EXIF orientation (default: raw)


@dataclass(frozen=True)
class SpaceConfig:
    file: str = ""  # a search-space YAML; empty: the shipped default space
    resolution: int = 0  # model input side; 0: the space's own


@dataclass(frozen=True)
class LutConfig:
    device: str = "cortex-m7"  # a shipped LUT by name ...
    file: str = ""  # ... or a user's LUT file (then device only names the push folder)
    clock_mhz: float = 0.0  # 0: the LUT's own clock


@dataclass(frozen=True)
class BudgetConfig:
    latency_ms: float = 0.0  # per inference on the device, from the LUT
    sram_bytes: int = 0  # activation arena + persistent runtime memory
    flash_bytes: int = 0  # model file + runtime overhead
    min_accuracy: float = 0.0  # int8 accuracy on the eval split the validator requires (0: report only)


@dataclass(frozen=True)
class PushConfig:
    dest: str = "{output}/pushed"  # a folder or gs://bucket/prefix
    model_name: str = "vww"


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "edgenas-vww"  # the pipeline's name (Kubeflow: [a-z0-9][a-z0-9-]{0,127})
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    lut: LutConfig = field(default_factory=LutConfig)
    budgets: BudgetConfig = field(default_factory=BudgetConfig)
    search: dict = field(default_factory=dict)  # the library's SearchConfig fields
    train: dict = field(default_factory=dict)  # the library's TrainConfig fields
    push: PushConfig = field(default_factory=PushConfig)
    beam_args: tuple[str, ...] = ()  # pass-through Beam options for the Beam components
    source: str = field(default="<defaults>", compare=False)

    def to_dict(self) -> dict:
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

    def search_budgets(self) -> dict:
        """The budgets the search designs for (an accuracy floor is checked, not searched for, so changing
        it re-runs only validation and push)."""
        return {k: v for k, v in self.budgets_dict().items() if k != "min_accuracy"}


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _fail(source: str, where: str, msg: str):
    raise UserError(f"{source}: {where} {msg}")


def _coerce(value, typ, source: str, where: str):
    """``value`` checked (and tuples/floats normalised) against the annotation ``typ``."""
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
    if typ is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            _fail(source, where, f"must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(typ):
        return _build(typ, value, source, where + ".")
    raise TypeError(f"unsupported config annotation {typ!r} for {where}")


def _build(cls, data, source: str, prefix: str = ""):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        _fail(source, prefix.rstrip(".") or "the file", "must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.compare}  # compare=False: set by the loader, not the file
    unknown = sorted(set(data) - known)
    if unknown:
        _fail(source, f"{prefix}{unknown[0]}", f"is not a known field (known: {', '.join(sorted(known))})")
    kwargs = {name: _coerce(value, hints[name], source, f"{prefix}{name}") for name, value in data.items()}
    return cls(**kwargs)


def _positive(source: str, where: str, value) -> None:
    if not value > 0:
        _fail(source, where, f"must be positive, got {value!r}")


def validate(cfg: PipelineConfig) -> PipelineConfig:
    """Cross-field checks; returns ``cfg`` unchanged or raises UserError naming the field."""
    s = cfg.source
    if not PIPELINE_NAME_RE.match(cfg.name):
        _fail(s, "name", f"{cfg.name!r} must match [a-z0-9][a-z0-9-]{{0,127}} (a Kubeflow pipeline name)")
    d = cfg.data
    if d.source not in DATA_SOURCES:
        _fail(s, "data.source", f"must be one of {', '.join(DATA_SOURCES)}, got {d.source!r}")
    _positive(s, "data.resolution", d.resolution)
    if not 0.0 < d.eval_fraction < 1.0:
        _fail(s, "data.eval_fraction", f"must be between 0 and 1, got {d.eval_fraction}")
    if d.source == "synth":
        _positive(s, "data.synth_images", d.synth_images)
    elif d.source == "coco":
        if not d.images or len(d.images) != len(d.annotations):
            _fail(s, "data.annotations", "must list one instances file per data.images folder (coco)")
    elif len(d.images) != 1:
        _fail(s, "data.images", "must list exactly one folder (mlperf-tiny: person/ and non_person/)")
    if d.direct_num_workers < 0:
        _fail(s, "data.direct_num_workers", "must be >= 0 (0: the number of cores)")
    if cfg.space.resolution < 0:
        _fail(s, "space.resolution", "must be >= 0 (0: the space's own)")
    if not cfg.lut.device:
        _fail(s, "lut.device", "must name the device (a shipped LUT, or the device a lut.file describes)")
    if cfg.lut.clock_mhz < 0:
        _fail(s, "lut.clock_mhz", "must be >= 0 (0: the LUT's own clock)")
    for name in ("latency_ms", "sram_bytes", "flash_bytes"):
        _positive(s, f"budgets.{name}", getattr(cfg.budgets, name))
    if not 0.0 <= cfg.budgets.min_accuracy <= 1.0:
        _fail(s, "budgets.min_accuracy", f"must be a fraction in [0, 1], got {cfg.budgets.min_accuracy}")
    if not cfg.push.dest:
        _fail(s, "push.dest", "must name a folder or gs://bucket/prefix")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", cfg.push.model_name):
        _fail(s, "push.model_name", "must be 1-128 letters, digits, '.', '_' or '-'")
    return cfg


def default_text() -> str:
    return resources.files("pipeline").joinpath("configs/default.yaml").read_text(encoding="utf-8")


def loads(text: str, source: str) -> PipelineConfig:
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
    return loads(p.read_text(encoding="utf-8"), str(p))


def dumps(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def write_resolved(cfg: PipelineConfig, folder: str | os.PathLike, name: str = "config.resolved.yaml") -> Path:
    """Write the resolved configuration next to an output (temporary name, then rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(dumps(cfg), encoding="utf-8")
    os.replace(tmp, target)
    return target


def to_json(obj) -> str:
    """Canonical JSON for component parameters: the same config gives the same string (cache keys)."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"))
