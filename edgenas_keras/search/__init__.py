"""The latency- and memory-constrained architecture search (paper section 3.3).

``run_search(data_dir, lut, config, out_dir)`` is the entry point; the package is split by job:

- ``config``: ``SearchConfig`` (every knob, validated), ``SearchResult``, ``space_with_blocks``. Pure Python.
- ``derive``: from alpha (or any scores) to an architecture that meets every budget: the cheapest-first order
  of each factor, ``check_feasible``, exact pricing (``Pricer``), ``repair`` and ``fill``. Pure numpy.
- ``objective``: E[LAT], E[MEM], E[FLASH] as differentiable functions of alpha's probabilities (TensorFlow).
- ``loop``: the supernet's weight and alpha steps, checkpoints, TensorBoard and the derivation at the end.
- ``selection``: candidate scoring and the evolutionary strategy (``strategy: evolution``).

The module docstring of ``search.loop`` describes the objective and the schedule.
"""

from edgenas_keras.search.config import SearchConfig, SearchResult, search_config_from, space_with_blocks
from edgenas_keras.search.loop import run_search

__all__ = ["SearchConfig", "SearchResult", "run_search", "search_config_from", "space_with_blocks"]
