"""Search space, architectures and the architecture-string codec. Pure Python: no TensorFlow here.

An architecture is data: a tuple of ``Block`` choices, one per searchable block. Its one human-readable form
is the architecture string (DESIGN.md section 4): block tokens joined by ``-``, each token the operation
followed by its factors in canonical order::

    skip                      identity (stride-1 blocks only)
    dws_k5_c32                depthwise-separable conv, kernel 5, 32 output channels
    dws_k3_se4_c24            ... with squeeze-and-excitation, reduction 4
    ir_k3_e6_c48              inverted residual (MobileNetV2), kernel 3, expansion 6, 48 channels
    ir_k7_e2_se8_c64

e.g. ``ir_k3_e4_c16-dws_k5_c24-skip-ir_k3_e6_se4_c32-dws_k3_c32-ir_k5_e2_c48-skip``.

The decoder accepts factors in any order and returns the canonical form; a malformed string raises
``SpaceError`` (a ``ValueError``) naming the token and its (1-based) block position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from edgenas_keras.errors import SpaceError

OPS = ("dws", "ir", "skip")
FACTORS = ("op", "kernel", "expansion", "se", "channels")
_PREFIX = {"k": "kernel", "e": "expansion", "se": "se", "c": "channels"}


@dataclass(frozen=True)
class Block:
    """One searchable block's choice. Fields that do not apply to ``op`` are None (skip has none)."""

    op: str
    kernel: int | None = None
    expansion: int | None = None
    se: int = 0
    channels: int | None = None

    def __post_init__(self):
        if self.op not in OPS:
            raise SpaceError(f"unknown operation {self.op!r}; expected one of {', '.join(OPS)}")
        if self.op == "skip":
            if any(v for v in (self.kernel, self.expansion, self.se, self.channels)):
                raise SpaceError("skip takes no kernel, expansion, se or channels")
            return
        if self.kernel is None or self.channels is None:
            raise SpaceError(f"{self.op} needs a kernel (k) and channels (c)")
        if self.op == "ir" and self.expansion is None:
            raise SpaceError("ir needs an expansion (e)")
        if self.op == "dws" and self.expansion is not None:
            raise SpaceError("dws takes no expansion (e); use ir")

    @property
    def token(self) -> str:
        """The block's canonical token, e.g. ``ir_k3_e6_se4_c24`` or ``skip`` (the codec's inverse of ``decode_block``)."""
        if self.op == "skip":
            return "skip"
        parts = [self.op, f"k{self.kernel}"]
        if self.op == "ir":
            parts.append(f"e{self.expansion}")
        if self.se:
            parts.append(f"se{self.se}")
        parts.append(f"c{self.channels}")
        return "_".join(parts)


@dataclass(frozen=True)
class Arch:
    """An architecture: one ``Block`` per slot of a search space, input to output. ``str(arch)`` is its string form."""
    blocks: tuple[Block, ...]

    def __str__(self) -> str:
        return encode(self)

    @property
    def num_blocks(self) -> int:
        """Number of blocks (slots)."""
        return len(self.blocks)


def encode(arch: Arch) -> str:
    """The architecture string: the blocks' canonical tokens joined by ``-``."""
    return "-".join(b.token for b in arch.blocks)


def decode_block(token: str, position: int = 1) -> Block:
    """One block token (factors in any order) -> ``Block``; ``position`` (1-based) only names the block in
    errors. Raises ``SpaceError`` (a ValueError) naming the token and the bad factor.
    """
    where = f"block {position} token {token!r}"
    if not token:
        raise SpaceError(f"{where}: empty token (two '-' in a row, or a leading/trailing '-')")
    parts = token.split("_")
    op = parts[0]
    if op not in OPS:
        raise SpaceError(f"{where}: unknown operation {op!r}; expected one of {', '.join(OPS)}")
    values: dict[str, int] = {}
    for part in parts[1:]:
        prefix = part.rstrip("0123456789")
        digits = part[len(prefix):]
        if prefix not in _PREFIX or not digits:
            raise SpaceError(f"{where}: bad factor {part!r}; expected k<int>, e<int>, se<int> or c<int>")
        name = _PREFIX[prefix]
        if name in values:
            raise SpaceError(f"{where}: factor {prefix} given twice")
        values[name] = int(digits)
    try:
        return Block(op=op, **values)
    except (TypeError, ValueError) as exc:
        raise SpaceError(f"{where}: {exc}") from None


def decode(text: str) -> Arch:
    """Parse an architecture string (any factor order) into an ``Arch``."""
    if not isinstance(text, str) or not text.strip():
        raise SpaceError("empty architecture string")
    tokens = text.strip().split("-")
    return Arch(tuple(decode_block(t, i + 1) for i, t in enumerate(tokens)))


def canonical(text: str) -> str:
    """The canonical form of an architecture string (factors in the codec's order). Raises ``SpaceError``."""
    return encode(decode(text))


# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSlot:
    """A searchable position: its stride, input resolution and the choices allowed there."""

    index: int
    stride: int
    in_res: int
    choices: dict  # factor -> tuple of values

    @property
    def skip_legal(self) -> bool:
        """Whether skip may be chosen here: the space lists it and the slot keeps the shape (an identity
        cannot downsample, so a stride-2 slot never skips)."""
        if self.stride != 1:
            return False
        return "skip" in self.choices["op"]

    @property
    def ops(self) -> tuple[str, ...]:
        """The operations legal at this slot: its ``op`` choices, without ``skip`` where skipping is not legal."""
        return tuple(o for o in self.choices["op"] if o != "skip" or self.skip_legal)

    @property
    def cardinality(self) -> int:
        """Number of distinct legal blocks at this slot (``block_choices`` enumerates them)."""
        c = self.choices
        per_conv = len(c["kernel"]) * len(c["se"]) * len(c["channels"])
        n = 0
        for op in self.ops:
            n += {"dws": per_conv, "ir": per_conv * len(c["expansion"]), "skip": 1}[op]
        return n


@dataclass(frozen=True)
class SearchSpace:
    """A search space: input resolution (pixels) and channels, the stem, one ``BlockSlot`` per block (stride and
    the choices of each factor) and the head's classes. Load with ``SearchSpace.load(path or None)``; the
    shipped space is ``arch/spaces/default.yaml``.
    """
    name: str
    resolution: int
    in_channels: int
    stem_channels: int
    stem_kernel: int
    stem_stride: int
    strides: tuple[int, ...]
    choices: tuple[dict, ...]  # per block: factor -> tuple of allowed values
    num_classes: int = 2
    source: str = field(default="", compare=False)

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> SearchSpace:
        """A space from its YAML form; ``SpaceError`` naming ``source`` and the field for anything missing or
        out of range.
        """
        def need(mapping, key, where):
            if not isinstance(mapping, dict) or key not in mapping:
                raise SpaceError(f"{source}: missing field {where}{key}")
            return mapping[key]

        def pos_int(v, where):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise SpaceError(f"{source}: {where} must be a positive integer, got {v!r}")
            return v

        if not isinstance(d, dict):
            raise SpaceError(f"{source}: a search space must be a YAML mapping")
        stem = need(d, "stem", "")
        base = need(d, "choices", "")
        blocks = need(d, "blocks", "")
        if not isinstance(blocks, list) or not blocks:
            raise SpaceError(f"{source}: blocks must be a non-empty list")
        strides, per_block = [], []
        for i, b in enumerate(blocks):
            stride = pos_int(need(b, "stride", f"blocks[{i}]."), f"blocks[{i}].stride")
            if stride not in (1, 2):
                raise SpaceError(f"{source}: blocks[{i}].stride must be 1 or 2, got {stride}")
            merged = dict(base)
            merged.update(b.get("choices", {}) or {})
            ch = {}
            for f in FACTORS:
                vals = merged.get(f)
                if not isinstance(vals, list) or not vals:
                    raise SpaceError(f"{source}: blocks[{i}] choices.{f} must be a non-empty list")
                if f == "op":
                    bad = [v for v in vals if v not in OPS]
                    if bad:
                        raise SpaceError(f"{source}: blocks[{i}] choices.op has unknown {bad}; use {OPS}")
                elif f == "se":
                    for v in vals:
                        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                            raise SpaceError(f"{source}: choices.se values must be integers >= 0, got {v!r}")
                else:
                    for v in vals:
                        pos_int(v, f"blocks[{i}] choices.{f} value")
                ch[f] = tuple(vals)
            if not [o for o in ch["op"] if o != "skip"]:
                raise SpaceError(f"{source}: blocks[{i}] allows no convolution (only skip)")
            strides.append(stride)
            per_block.append(ch)
        in_channels = pos_int(d.get("in_channels", 3), "in_channels")
        if in_channels not in (1, 3):
            raise SpaceError(f"{source}: in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
        res = pos_int(need(d, "resolution", ""), "resolution")
        total_stride = pos_int(stem.get("stride", 2), "stem.stride") * math.prod(strides)
        if res % total_stride:
            raise SpaceError(f"{source}: resolution {res} is not divisible by the total stride {total_stride}")
        return cls(
            name=str(d.get("name", "space")),
            resolution=res,
            in_channels=in_channels,
            stem_channels=pos_int(need(stem, "out_channels", "stem."), "stem.out_channels"),
            stem_kernel=pos_int(stem.get("kernel", 3), "stem.kernel"),
            stem_stride=pos_int(stem.get("stride", 2), "stem.stride"),
            strides=tuple(strides),
            choices=tuple(per_block),
            num_classes=pos_int((d.get("head") or {}).get("num_classes", 2), "head.num_classes"),
            source=source,
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> SearchSpace:
        """Load a search-space YAML; ``None`` loads the shipped default."""
        if path is None:
            text = resources.files("edgenas_keras").joinpath("arch/spaces/default.yaml").read_text()
            return cls.from_dict(yaml.safe_load(text), source="default.yaml")
        p = Path(path)
        if p.is_dir():
            raise SpaceError(f"search space {p} is a folder, not a YAML file")
        if not p.is_file():
            raise FileNotFoundError(f"search space {p} does not exist")
        try:
            d = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise SpaceError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpaceError(f"search space {p} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
        return cls.from_dict(d, source=str(p))

    def with_resolution(self, resolution: int) -> SearchSpace:
        """The same space at another input resolution (pixels); ``SpaceError`` if the strides do not divide it."""
        d = self.to_dict()
        d["resolution"] = resolution
        return SearchSpace.from_dict(d, source=self.source)

    def with_classes(self, num_classes: int) -> SearchSpace:
        """This space with a head of ``num_classes`` outputs (the data set's class count: it wins over the
        space file's ``head.num_classes``, see ``classes.space_for_data``). ``ValueError`` below 2."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"a classifier head needs at least 2 classes, got {num_classes!r}")
        if num_classes == self.num_classes:
            return self
        d = self.to_dict()
        d["head"] = {"num_classes": num_classes}
        return SearchSpace.from_dict(d, source=self.source)

    def to_dict(self) -> dict:
        """The YAML form (``from_dict``'s input)."""
        return {
            "name": self.name,
            "resolution": self.resolution,
            "in_channels": self.in_channels,
            "stem": {"out_channels": self.stem_channels, "kernel": self.stem_kernel, "stride": self.stem_stride},
            "blocks": [{"stride": s, "choices": {f: list(c[f]) for f in FACTORS}}
                       for s, c in zip(self.strides, self.choices)],
            "choices": {f: list(self.choices[0][f]) for f in FACTORS},
            "head": {"num_classes": self.num_classes},
        }

    # -- structure -------------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        """Number of blocks (slots)."""
        return len(self.strides)

    @cached_property
    def slots(self) -> tuple[BlockSlot, ...]:
        """The block slots, input to output, each with its stride and input resolution in pixels."""
        res = self.resolution // self.stem_stride
        out = []
        for i, (s, c) in enumerate(zip(self.strides, self.choices)):
            out.append(BlockSlot(i, s, res, c))
            res //= s
        return tuple(out)

    @property
    def cardinality(self) -> int:
        """Number of architectures in the space: the product of the slots' cardinalities."""
        return math.prod(s.cardinality for s in self.slots)

    @property
    def final_resolution(self) -> int:
        """Side in pixels of the last block's output (what the head pools)."""
        return self.resolution // self.stem_stride // math.prod(self.strides)

    def check(self, arch: Arch) -> None:
        """Raise SpaceError (a ValueError) naming the first block that the space does not allow."""
        if arch.num_blocks != self.num_blocks:
            raise SpaceError(f"architecture has {arch.num_blocks} blocks; space {self.name} has {self.num_blocks}")
        for slot, b in zip(self.slots, arch.blocks):
            where = f"block {slot.index + 1} ({b.token})"
            if b.op not in slot.ops:
                why = " (skip needs stride 1)" if b.op == "skip" else ""
                raise SpaceError(f"{where}: operation {b.op} not allowed here{why}")
            if b.op == "skip":
                continue
            for f, v in (("kernel", b.kernel), ("se", b.se), ("channels", b.channels)):
                if v not in slot.choices[f]:
                    raise SpaceError(f"{where}: {f} {v} not in {list(slot.choices[f])}")
            if b.op == "ir" and b.expansion not in slot.choices["expansion"]:
                raise SpaceError(f"{where}: expansion {b.expansion} not in {list(slot.choices['expansion'])}")

    def contains(self, arch: Arch) -> bool:
        """True when ``check(arch)`` passes."""
        try:
            self.check(arch)
        except ValueError:
            return False
        return True

    def channels_in(self, arch: Arch) -> list[int]:
        """Input channels of each block (a skip passes its input channels through), from
        ``edgenas_keras.arch.plan.plan``. Raises ``ValueError`` if the space does not allow ``arch``."""
        from edgenas_keras.arch.plan import plan

        return [p.in_ch for p in plan(self, arch)]

    def out_channels(self, arch: Arch) -> int:
        """Channels the head reads: the last non-skip block's, or the stem's. ``ValueError`` if the space
        does not allow ``arch``."""
        from edgenas_keras.arch.plan import plan

        return plan(self, arch)[-1].out_ch

    # -- sampling and the index form -------------------------------------------------------------------
    def sample(self, n: int | None = None, seed: int = 0):
        """Seeded uniform sample over the blocks' legal configurations. ``n=None`` returns one Arch."""
        rng = np.random.default_rng(seed)
        archs = [self._sample_one(rng) for _ in range(1 if n is None else n)]
        return archs[0] if n is None else archs

    def _sample_one(self, rng: np.random.Generator) -> Arch:
        blocks = []
        for slot in self.slots:
            # Weight each op by how many configurations it has, so the sample is uniform over the space.
            c = slot.choices
            per_conv = len(c["kernel"]) * len(c["se"]) * len(c["channels"])
            weights = np.array([{"dws": per_conv, "ir": per_conv * len(c["expansion"]), "skip": 1}[o]
                                for o in slot.ops], dtype=float)
            op = slot.ops[rng.choice(len(slot.ops), p=weights / weights.sum())]
            if op == "skip":
                blocks.append(Block("skip"))
                continue
            pick = {f: c[f][rng.integers(len(c[f]))] for f in ("kernel", "expansion", "se", "channels")}
            blocks.append(Block(op, pick["kernel"], pick["expansion"] if op == "ir" else None,
                                pick["se"], pick["channels"]))
        return Arch(tuple(blocks))

    def to_indices(self, arch: Arch) -> np.ndarray:
        """Per-block index form, shape (num_blocks, 5): indices into choices op, kernel, expansion, se,
        channels. Factors that do not apply to a block's op are 0."""
        self.check(arch)
        idx = np.zeros((self.num_blocks, len(FACTORS)), dtype=np.int64)
        for i, (slot, b) in enumerate(zip(self.slots, arch.blocks)):
            c = slot.choices
            idx[i, 0] = c["op"].index(b.op)
            if b.op == "skip":
                continue
            idx[i, 1] = c["kernel"].index(b.kernel)
            if b.op == "ir":
                idx[i, 2] = c["expansion"].index(b.expansion)
            idx[i, 3] = c["se"].index(b.se)
            idx[i, 4] = c["channels"].index(b.channels)
        return idx

    def from_indices(self, idx) -> Arch:
        """The architecture of an index form, shape (num_blocks, len(FACTORS)): per block, the index of each
        factor's choice (``to_indices``'s inverse). ``ValueError`` for a wrong shape.
        """
        idx = np.asarray(idx)
        if idx.shape != (self.num_blocks, len(FACTORS)):
            raise ValueError(f"index form must have shape ({self.num_blocks}, {len(FACTORS)}), got {idx.shape}")
        blocks = []
        for slot, row in zip(self.slots, idx):
            c = slot.choices
            op = c["op"][row[0]]
            if op == "skip":
                blocks.append(Block("skip"))
                continue
            blocks.append(Block(op, c["kernel"][row[1]], c["expansion"][row[2]] if op == "ir" else None,
                                c["se"][row[3]], c["channels"][row[4]]))
        arch = Arch(tuple(blocks))
        self.check(arch)
        return arch
