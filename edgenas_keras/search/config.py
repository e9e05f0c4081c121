"""The search's configuration (``SearchConfig``), its result (``SearchResult``) and the space at K blocks.

Pure Python: no TensorFlow (the pipeline's configuration imports it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from edgenas_keras.arch.space import SearchSpace
from edgenas_keras.budgets import Budgets, runtime_footprint
from edgenas_keras.cost.estimate import (
    ArchCost,
)
from edgenas_keras.errors import UserError

KB = 1024  # progress lines print memory in kB = KiB: 1 kB = 1024 bytes
VAL_SALT = "search-val"
PROXIES = ("lut", "macs")
STRATEGIES = ("differentiable", "evolution")
DERIVATIONS = ("argmax", "proxy")
FITNESS = ("inherited", "trained")
# Fields of SearchConfig before the one budget type (2026-12-02) and where each went.
MOVED_FIELDS = {"latency_ms": "budgets.latency_ms", "sram_kb": "budgets.sram_bytes (in bytes)",
                "flash_kb": "budgets.flash_bytes (in bytes, model + TFLM runtime)"}


def refuse_moved_fields(d: dict, source: str) -> None:
    """Raise ``UserError`` naming ``source`` when ``d`` uses a field of the old flat budget form
    (``MOVED_FIELDS``), saying where it went; and when ``d["budgets"]`` is present but not a mapping."""
    moved = [f"{k} is now {v}" for k, v in MOVED_FIELDS.items() if k in d]
    if moved:
        raise UserError(f"{source}: {'; '.join(moved)}")
    if "budgets" in d and not isinstance(d["budgets"], (dict, Budgets)):
        raise UserError(f"{source}: budgets must be a mapping of latency_ms, sram_bytes, flash_bytes, got "
                        f"{d['budgets']!r}")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search.

    ``budgets`` (``edgenas_keras.budgets.Budgets``: ms and bytes, None for none, flash = model + TFLM runtime;
    its ``min_accuracy`` is not searched for) and ``runtime_flash_bytes``, the runtime's flash on the device
    (None: the device's documented figure, ``budgets.RUNTIME_FLASH``), which the search sets aside from the
    flash budget because it prices the model file alone. Every other field is a knob of the search (comments
    below; the guide's Search page). ``UserError`` for a value out of range, naming the field."""

    budgets: Budgets
    runtime_flash_bytes: int | None = None
    # Objective and the multiplier schedule
    penalty: bool = True            # ablation: False = CE only
    schedule: bool = True           # ablation: False = fixed multipliers
    mu0: float = 1.0                # latency multiplier, initial
    nu0: float = 1.0                # SRAM multiplier, initial
    flash_mult0: float = 1.0        # flash multiplier, initial
    growth: float = 1.5             # multiplier factor after a violated check (paper rule)
    check_every: int = 5            # alpha steps between constraint checks
    latency_proxy: str = "lut"      # ablation: "macs"
    num_blocks: int | None = None   # ablation: K searchable blocks instead of the space's
    # Training
    epochs: int = 4
    warmup_epochs: int = 1
    steps_per_epoch: int | None = 30  # cap on weight steps per epoch (None: the whole training subset)
    batch_size: int = 32
    train_resolution: int | None = 48  # supernet input resolution (None: the space's); costs use the space's
    weight_lr: float = 3e-3
    alpha_lr: float = 5e-2
    tau_start: float = 1.0
    tau_end: float = 0.1
    val_fraction: float = 0.2
    seed: int = 0
    alpha_init_bias: float = 2.0    # initial logit of each factor's costliest choice over its cheapest (0: uniform)
    # Derivation
    fill: bool = True
    # Strategy and accuracy evidence (edgenas_keras.search.selection)
    strategy: str = "differentiable"  # "evolution": window-path supernet, then evolution over inherited weights
    derive: str = "argmax"          # "proxy": alpha's candidates scored with inherited weights (differentiable)
    window_low: float = 0.9         # candidates scored: latency in [window_low * B, B], every budget met
    candidates: int = 64            # children scored with inherited weights (proxy derivation, evolution)
    population: int = 16            # evolution's population
    bn_batches: int = 2             # training batches a child's BN statistics are recomputed on
    score_batches: int = 8          # validation batches a child is scored on
    fitness: str = "inherited"      # evolution's score: "inherited" supernet weights or "trained" from scratch
    fitness_steps: int = 250        # fitness "trained": Adam steps of each child's stand-alone training
    fitness_lr_decay: bool = False  # fitness "trained": cosine-decay the learning rate to 0 over those steps
    fitness_bn_batches: int = 0     # fitness "trained": training batches BN statistics are recomputed on (0: moving)
    finalists: int = 0              # evolution: the best this many trained again for finalist_steps; that decides
    finalist_steps: int = 600       # Adam steps of each finalist's stand-alone training

    def __post_init__(self):
        def positive(name, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise UserError(f"search config: {name} must be a positive number, got {v!r}")

        if not isinstance(self.budgets, Budgets):
            raise UserError(f"search config: budgets must be a Budgets, got {type(self.budgets).__name__}")
        v = self.runtime_flash_bytes
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise UserError(f"search config: runtime_flash_bytes must be an integer >= 0 (bytes) or null, got {v!r}")
        for name in ("mu0", "nu0", "flash_mult0", "weight_lr", "alpha_lr", "tau_start", "tau_end"):
            positive(name)
        for name in ("epochs", "batch_size", "check_every", "candidates", "population", "bn_batches",
                     "score_batches", "fitness_steps", "finalist_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"search config: {name} must be an integer >= 1, got {v!r}")
        for name in ("num_blocks", "steps_per_epoch", "train_resolution"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise UserError(f"search config: {name} must be an integer >= 1 or null, got {v!r}")
        if not isinstance(self.warmup_epochs, int) or not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"search config: warmup_epochs must be an integer in [0, epochs), got "
                            f"{self.warmup_epochs!r} with epochs {self.epochs}")
        if not (isinstance(self.growth, (int, float)) and self.growth >= 1):
            raise UserError(f"search config: growth must be >= 1, got {self.growth!r}")
        if self.latency_proxy not in PROXIES:
            raise UserError(f"search config: latency_proxy must be one of {PROXIES}, got {self.latency_proxy!r}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"search config: strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.derive not in DERIVATIONS:
            raise UserError(f"search config: derive must be one of {DERIVATIONS}, got {self.derive!r}")
        if self.fitness not in FITNESS:
            raise UserError(f"search config: fitness must be one of {FITNESS}, got {self.fitness!r}")
        if self.fitness == "trained" and self.strategy != "evolution":
            raise UserError("search config: fitness 'trained' needs strategy 'evolution' (the differentiable "
                            f"strategy scores alpha's candidates with the supernet's weights), got {self.strategy!r}")
        if not isinstance(self.fitness_lr_decay, bool):
            raise UserError(f"search config: fitness_lr_decay must be true or false, got {self.fitness_lr_decay!r}")
        for name in ("fitness_bn_batches", "finalists"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise UserError(f"search config: {name} must be an integer >= 0, got {v!r}")
        if self.finalists and self.strategy != "evolution" and self.derive != "proxy":
            raise UserError("search config: finalists need strategy 'evolution' or derive 'proxy' (they are the "
                            f"best of the scored candidates), got strategy {self.strategy!r}, derive {self.derive!r}")
        if (isinstance(self.window_low, bool) or not isinstance(self.window_low, (int, float))
                or not 0 <= self.window_low < 1):
            raise UserError(f"search config: window_low must be a number in [0, 1), got {self.window_low!r}")
        if self.population < 2:
            raise UserError(f"search config: population must be an integer >= 2, got {self.population!r}")
        if not (isinstance(self.val_fraction, float) and 0 < self.val_fraction < 1):
            raise UserError(f"search config: val_fraction must be a number in (0, 1), got {self.val_fraction!r}")
        if not (isinstance(self.alpha_init_bias, (int, float)) and math.isfinite(self.alpha_init_bias)):
            raise UserError(f"search config: alpha_init_bias must be a number, got {self.alpha_init_bias!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise UserError(f"search config: seed must be an integer >= 0, got {self.seed!r}")

    @classmethod
    def from_dict(cls, d: dict, source: str = "search config") -> SearchConfig:
        """A ``SearchConfig`` from a mapping of its fields (a YAML ``search:`` section or ``config.json``).

        Raises ``UserError`` naming ``source`` and the field for an unknown field, a wrong type or a value out of
        range.
        """
        if not isinstance(d, dict):
            raise UserError(f"{source}: must be a mapping of search settings")
        refuse_moved_fields(d, source)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{source}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if "budgets" not in d:
            raise UserError(f"{source}: missing field budgets (latency_ms, and sram_bytes / flash_bytes if any)")
        d = dict(d, budgets=d["budgets"] if isinstance(d["budgets"], Budgets)
                 else Budgets.from_dict(d["budgets"], source=f"{source} budgets"))
        if "warmup_epochs" not in d and isinstance(d.get("epochs"), int) and d["epochs"] >= 1:
            d = dict(d, warmup_epochs=min(cls.warmup_epochs, d["epochs"] - 1))  # --epochs 1: search at once
        return cls(**d)

    def as_dict(self) -> dict:
        """Every field as a dict (``config.json``; ``from_dict``'s input)."""
        return dataclasses.asdict(self)

    def model_flash_bytes(self, device: str) -> int | None:
        """The flash the model file may take on ``device``: the flash budget minus the TFLM runtime's footprint
        (``runtime_flash_bytes``, else the device's documented figure); None without a flash budget.

        Raises ``UserError`` for a device with no documented runtime figure and no ``runtime_flash_bytes``, or
        a budget the runtime fills."""
        if self.budgets.flash_bytes is None:
            return None
        return self.budgets.model_flash_bytes(runtime_footprint(device, self.runtime_flash_bytes).bytes)


def search_config_from(search: dict, budgets: Budgets | dict, seed: int) -> SearchConfig:
    """The pipeline's form (a ``search:`` mapping of SearchConfig fields without ``budgets``, the budgets
    section, the run's seed) -> ``SearchConfig``. Raises ``UserError`` for a bad field or budget."""
    d = dict(search or {}, budgets=budgets)
    d.setdefault("seed", seed)
    return SearchConfig.from_dict(d, source="pipeline config search")


@dataclass(frozen=True)
class SearchResult:
    """What a search returns and writes to ``result.json``: the architecture string, its exact cost
    (``ArchCost``: ms, bytes), the budgets (``Budgets.as_dict``: ms and bytes, flash = model + TFLM runtime), the
    device and LUT checksum, whether every budget holds, the
    architecture before repair and fill (``derived_arch``, ``derived_latency_ms``) and strategy extras.
    """
    arch: str
    cost: ArchCost
    budgets: dict
    device: str
    lut_sha256: str
    feasible: bool
    repaired: bool
    filled: bool
    derived_arch: str            # argmax of alpha, before repair / fill
    derived_latency_ms: float
    out_dir: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The ``result.json`` form: the architecture, its cost figures at top level, budgets and extras."""
        return {"arch": self.arch, **self.cost.as_dict(), "budgets": self.budgets, "device": self.device,
                "lut_sha256": self.lut_sha256, "feasible": self.feasible, "repaired": self.repaired,
                "filled": self.filled, "derived_arch": self.derived_arch,
                "derived_latency_ms": self.derived_latency_ms, "out_dir": self.out_dir, **self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> SearchResult:
        """Read back ``as_dict``'s form (``result.json``); fields it does not know go to ``extra``."""
        cost = ArchCost(*(d[k] for k in ("latency_ms", "sram_bytes", "flash_bytes", "macs", "params")))
        known = {"arch", "budgets", "device", "lut_sha256", "feasible", "repaired", "filled", "derived_arch",
                 "derived_latency_ms", "out_dir", *cost.as_dict()}
        return cls(d["arch"], cost, d["budgets"], d["device"], d["lut_sha256"], d["feasible"], d["repaired"],
                   d["filled"], d["derived_arch"], d["derived_latency_ms"], d.get("out_dir", ""),
                   {k: v for k, v in d.items() if k not in known})


# -- the space under search -------------------------------------------------------------------------------

def space_with_blocks(space: SearchSpace, k: int | None) -> SearchSpace:
    """The K-searchable-blocks ablation: the first K blocks of ``space`` (K < N), or N blocks followed by
    stride-1 copies of the last block's choices (K > N)."""
    if k is None or k == space.num_blocks:
        return space
    d = space.to_dict()
    blocks = d["blocks"][:k]
    while len(blocks) < k:
        blocks.append({"stride": 1, "choices": dict(d["blocks"][-1]["choices"])})
    d["blocks"] = blocks
    d["name"] = f"{space.name}-k{k}"
    try:
        return SearchSpace.from_dict(d, source=f"{space.source} with num_blocks={k}")
    except ValueError as exc:
        raise UserError(f"num_blocks {k}: {exc}") from None


