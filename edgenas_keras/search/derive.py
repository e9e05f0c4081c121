"""From alpha to an architecture, pure numpy: the cheapest-first order of every factor, the feasibility
check, exact pricing (``Pricer``), ``repair`` and ``fill`` (the module docstring of ``search.loop``)."""

from __future__ import annotations

import math

import numpy as np

from edgenas_keras.arch.space import FACTORS, SearchSpace
from edgenas_keras.cost.estimate import (
    ArchCost,
    LatencyTables,
    arch_cost,
)
from edgenas_keras.errors import UserError
from edgenas_keras.lut.table import Lut
from edgenas_keras.search.config import KB, SearchConfig


def _rank(factor: str, value) -> float:
    """Position of a choice in the fixed cheapest-first order used by repair and fill."""
    if factor == "op":
        return {"skip": 0, "dws": 1, "ir": 2}[value]
    if factor == "se":
        return 0.0 if value == 0 else 1.0 / value
    return float(value)


def _relevant(space: SearchSpace, idx: np.ndarray, i: int, j: int) -> bool:
    """Whether factor j of block i changes the architecture (skip has no factors; dws no expansion)."""
    op = space.slots[i].choices["op"][idx[i, 0]]
    if j == 0:
        return True
    if op == "skip":
        return False
    return not (op == "dws" and FACTORS[j] == "expansion")


def initial_alpha(space: SearchSpace, bias: float, shape) -> np.ndarray:
    """alpha at the start: per factor, logits rising linearly in the cheapest-first order from 0 to ``bias``, so
    the search starts near the largest network and the penalty shrinks it to the budget (with ``bias`` 0:
    uniform, where budgets above the uniform mixture's latency would never engage the penalty)."""
    a = np.zeros(shape, np.float32)
    for i, slot in enumerate(space.slots):
        for j, f in enumerate(FACTORS):
            vals = slot.choices[f]
            order = sorted(range(len(vals)), key=lambda n, f=f, vals=vals: _rank(f, vals[n]))
            for pos, n in enumerate(order):
                a[i, j, n] = bias * pos / max(1, len(vals) - 1)
    return a


def cheapest_indices(space: SearchSpace) -> np.ndarray:
    """The space's cheapest architecture in index form, shape (num_blocks, len(FACTORS)): the bottom of every
    factor's cheapest-first order (skip where legal, smallest kernel, expansion, channels, no SE).
    """
    idx = np.zeros((space.num_blocks, len(FACTORS)), np.int64)
    for i, slot in enumerate(space.slots):
        for j, f in enumerate(FACTORS):
            vals = slot.choices[f] if f != "op" else slot.ops
            best = min(vals, key=lambda v, f=f: _rank(f, v))
            idx[i, j] = slot.choices[f].index(best)
    return idx


# -- exact pricing with budgets -----------------------------------------------------------------------------

class Pricer:
    """Exact costs of architectures in index form, and their normalised budget violation.

    The budgets are ``config.budgets``; flash is checked on the model file against ``model_flash_bytes`` (the
    flash budget minus the TFLM runtime on ``lut``'s device, ``SearchConfig.model_flash_bytes``). Raises
    ``UserError`` when that runtime figure is unknown or fills the budget."""

    def __init__(self, space: SearchSpace, lut: Lut, config: SearchConfig, tables: LatencyTables):
        self.space, self.lut, self.config, self.tables = space, lut, config, tables
        self.budgets = config.budgets
        self.model_flash_bytes = config.model_flash_bytes(lut.device)
        self._cache: dict[bytes, ArchCost] = {}

    def latency(self, idx: np.ndarray) -> float:
        """Latency in ms of the architecture ``idx`` (index form) from the latency tables."""
        return float(self.tables.batch_latency_ms(self.space, idx[None])[0])

    def cost(self, idx: np.ndarray) -> ArchCost:
        """The exact ``ArchCost`` of ``idx`` (ms, bytes), memoised."""
        key = np.asarray(idx, np.int64).tobytes()
        if key not in self._cache:
            self._cache[key] = arch_cost(self.space, self.space.from_indices(idx), self.lut)
        return self._cache[key]

    def fits(self, idx: np.ndarray) -> bool:
        """Every budget holds (``violation(idx) == 0``), the exact memory models priced only when the latency
        budget holds."""
        return self.latency(idx) <= self.budgets.latency_ms and self.violation(idx) == 0

    def violation(self, idx: np.ndarray) -> float:
        """Sum over budgets of max(0, cost/budget - 1); 0 when every budget holds. Latency first (cheap)."""
        b, model_flash = self.budgets, self.model_flash_bytes
        v = max(0.0, self.latency(idx) / b.latency_ms - 1.0)
        if b.sram_bytes is not None or model_flash is not None:
            ac = self.cost(idx)
            if b.sram_bytes is not None:
                v += max(0.0, ac.sram_bytes / b.sram_bytes - 1.0)
            if model_flash is not None:
                v += max(0.0, ac.flash_bytes / model_flash - 1.0)
        return v


def check_feasible(space: SearchSpace, lut: Lut, config: SearchConfig) -> ArchCost:
    """Stop before training when the cheapest architecture already breaks a budget; return its cost.

    Raises ``UserError`` naming each broken budget and the floors (flash: the model's share of the budget,
    ``SearchConfig.model_flash_bytes``)."""
    b, model_flash = config.budgets, config.model_flash_bytes(lut.device)
    cheap = space.from_indices(cheapest_indices(space))
    floor = arch_cost(space, cheap, lut)
    floors = (f"floors on {lut.device}: latency {floor.latency_ms:.4g} ms, SRAM {floor.sram_bytes / KB:.1f} kB, "
              f"model flash {floor.flash_bytes / KB:.1f} kB (cheapest architecture {cheap})")
    broken = []
    if floor.latency_ms > b.latency_ms:
        broken.append(f"latency budget {b.latency_ms:g} ms is below the floor {floor.latency_ms:.4g} ms")
    if b.sram_bytes is not None and floor.sram_bytes > b.sram_bytes:
        broken.append(f"SRAM budget {b.sram_bytes / KB:g} kB is below the floor {floor.sram_bytes / KB:.1f} kB")
    if model_flash is not None and floor.flash_bytes > model_flash:
        broken.append(f"flash budget {b.flash_bytes / KB:g} kB leaves the model {model_flash / KB:g} kB next to "
                      f"the TFLM runtime, below the floor {floor.flash_bytes / KB:.1f} kB")
    if broken:
        raise UserError(f"infeasible budget: {'; '.join(broken)}; {floors}. Raise the budget or use a faster "
                        "device")
    return floor


def _moves(space: SearchSpace, idx: np.ndarray, cheaper: bool):
    """One-factor moves to strictly cheaper (or costlier) legal choices: (block, factor, new choice index)."""
    for i, slot in enumerate(space.slots):
        for j, f in enumerate(FACTORS):
            if not _relevant(space, idx, i, j):
                continue
            vals = slot.choices[f]
            here = _rank(f, vals[idx[i, j]])
            for n, v in enumerate(vals):
                if f == "op" and v not in slot.ops:
                    continue
                r = _rank(f, v)
                if (r < here) if cheaper else (r > here):
                    yield i, j, n


def repair(pricer: Pricer, idx: np.ndarray, logp: np.ndarray) -> tuple[np.ndarray, int]:
    """Cheaper moves until every budget holds (module docstring). Returns the indices and the move count."""
    idx = idx.copy()
    moves = 0
    viol = pricer.violation(idx)
    while viol > 0:
        best, best_score = None, -math.inf
        for i, j, n in _moves(pricer.space, idx, cheaper=True):
            cand = idx.copy()
            cand[i, j] = n
            gain = viol - pricer.violation(cand)
            if gain <= 0:
                continue
            score = gain / (max(0.0, logp[i, j, idx[i, j]] - logp[i, j, n]) + 0.05)
            if score > best_score:
                best, best_score = cand, score
        if best is None:  # no single move helps: take the cheapest architecture (feasible by the check)
            return cheapest_indices(pricer.space), moves + 1
        idx, moves = best, moves + 1
        viol = pricer.violation(idx)
    return idx, moves


def fill(pricer: Pricer, idx: np.ndarray, logp: np.ndarray) -> tuple[np.ndarray, int]:
    """Costlier moves that keep every budget, most probable first, until none does."""
    idx = idx.copy()
    moves = 0
    while True:
        cands = []
        for i, j, n in _moves(pricer.space, idx, cheaper=False):
            cand = idx.copy()
            cand[i, j] = n
            cands.append((-(logp[i, j, n] - logp[i, j, idx[i, j]]), moves, cand))
        cands.sort(key=lambda t: t[0])
        for _, _, cand in cands:
            if pricer.fits(cand):
                idx, moves = cand, moves + 1
                break
        else:
            return idx, moves


