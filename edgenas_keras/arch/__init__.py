"""Architectures and the search space, pure Python: the block codec, ``SearchSpace`` and its YAML files."""
