"""Helpers for the search tests (imported by name: ``conftest`` is ambiguous across test folders)."""

from edgenas_keras.budgets import Budgets
from edgenas_keras.search import SearchConfig

BLOCKS = 3  # the num_blocks ablation keeps the supernet small, so its graph traces quickly


def small_config(latency_ms: float, sram_bytes: int | None = None, **kw) -> SearchConfig:
    """A search small enough for a test: ``latency_ms`` (and ``sram_bytes``) as its ``Budgets``, ``kw`` any
    other ``SearchConfig`` field."""
    base = dict(epochs=3, warmup_epochs=1, steps_per_epoch=6, batch_size=8, train_resolution=None,
                check_every=2, num_blocks=BLOCKS, alpha_lr=0.1)
    base.update(kw)
    return SearchConfig(budgets=Budgets(latency_ms, sram_bytes), **base)
