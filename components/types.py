"""The custom artifact types (see ``components/__init__.py`` for why their names are class paths).

They declare no ``PROPERTIES``: Kubeflow compiles custom types to the generic artifact schema, which has
none, so the facts they carry (device, sha256, architecture string) are custom properties.
"""

from tfx.types.artifact import Artifact


class LatencyTable(Artifact):
    """A per-device latency lookup table: ``lut.json`` in the artifact's folder; custom properties
    ``device`` and ``sha256`` (of ``lut.json``)."""

    TYPE_NAME = "components.LatencyTable"


class Architecture(Artifact):
    """A searched architecture: ``result.json`` (architecture, predicted cost, search history) and
    ``space.json`` (the search space it belongs to); custom property ``arch`` (the architecture string)."""

    TYPE_NAME = "components.Architecture"


class RunReportFile(Artifact):
    """A run's self-contained HTML report: ``report.html`` in the artifact's folder (``components.report``)."""

    TYPE_NAME = "components.RunReportFile"
