"""TFX components of the EdgeNAS pipeline, and the custom artifact types they exchange.

Why the types are reachable as ``components.LatencyTable``, ``components.Architecture`` and
``components.RunReportFile``: on Kubeflow
Pipelines a custom artifact type is compiled into the pipeline spec with its ``TYPE_NAME`` as the schema
title, which must match ``^[a-z][a-z0-9-_]{2,20}\\.[A-Z][a-zA-Z0-9-_]{2,49}$``, and the TFX container
entrypoint imports that title as a Python class path to rebuild the artifact (DESIGN.md section 2).
``TYPE_NAME = "components.X"`` with ``X`` an attribute of this package satisfies both.

Why lazily: ``tfx.types`` imports TensorFlow (tens of seconds here), and Beam ingest workers import
``components.vww_ingest``, hence this package; they must not pay for it. The classes are defined in
``components.types`` and resolved here on first attribute access (PEP 562).

The component modules (``components.example_gen``, ``components.search`` ...) are thin adapters from
artifacts and parameters to library calls.
"""

_TYPES = ("LatencyTable", "Architecture", "RunReportFile")


def __getattr__(name: str):
    if name in _TYPES:
        from components import types

        return getattr(types, name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")


__all__ = list(_TYPES)
