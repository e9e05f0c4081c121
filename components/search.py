"""SupernetSearch: examples + LUT + budgets -> an architecture artifact (``result.json``, the search history).

The search itself is ``edgenas_keras.search.run_search``. This adapter:
- refuses to search data that ExampleValidator found anomalous (a broken ingest stops here, before hours
  of compute), naming the split and the features;
- rebuilds the search space, the LUT and the library's search configuration from the parameters; the
  space's head gets as many outputs as the examples have classes (``stats.json``'s ``classes``: the data
  wins over the space's ``num_classes``), and ``space.json`` in the artifact records that space;
- runs the search in a *stable* working folder keyed by its inputs (the examples' fingerprint, the LUT's
  sha256, the space and the configuration), not in the execution's output folder, which TFX renames per
  attempt: an interrupted run restarted with the same inputs resumes from the search's checkpoint;
- copies the finished result into the artifact and records the architecture string as a property.
"""

import hashlib
import json
import shutil
from pathlib import Path

from tfx import v1 as tfx

from components import Architecture, LatencyTable
from components._io import input_dir, is_remote, log, output_dir, write_json

SPACE_FILE = "space.json"


def check_anomalies(anomalies) -> None:
    """Raise UserError when ExampleValidator flagged any split, naming the split and the features."""
    from edgenas_keras.errors import UserError

    blessed = anomalies.get_json_value_custom_property("blessed") or {}
    bad = sorted(split for split, ok in dict(blessed).items() if not ok)
    if not bad:
        return
    details = []
    for split in bad:
        path = input_dir(anomalies.uri) / f"Split-{split}" / "SchemaDiff.pb"
        names = []
        if path.is_file():
            from tensorflow_metadata.proto.v0 import anomalies_pb2

            proto = anomalies_pb2.Anomalies.FromString(path.read_bytes())
            names = [f"{k} ({v.short_description})" for k, v in sorted(proto.anomaly_info.items())]
        details.append(f"{split}: {', '.join(names) or 'data set anomaly'}")
    raise UserError(
        f"ExampleValidator found anomalies in the examples ({'; '.join(details)}); fix the ingest and run again"
    )


def work_dir(output_uri: str, key: dict) -> Path:
    """A folder that survives retries of the same search: ``<pipeline root>/<node>/.work/<input hash>``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    base = Path(output_uri).parent.parent
    return base / ".work" / digest


@tfx.dsl.components.component
def SupernetSearch(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    lut: tfx.dsl.components.InputArtifact[LatencyTable],
    architecture: tfx.dsl.components.OutputArtifact[Architecture],
    space_config: tfx.dsl.components.Parameter[str],
    search_config: tfx.dsl.components.Parameter[str],
    latency_ms: tfx.dsl.components.Parameter[float],
    sram_bytes: tfx.dsl.components.Parameter[int],
    flash_bytes: tfx.dsl.components.Parameter[int],
    seed: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    """Search the space for the most accurate architecture within the budgets on the LUT's device.

    ``latency_ms``, ``sram_bytes``, ``flash_bytes`` (device budgets: flash counts model + TFLM runtime) and
    ``seed`` are the run-time parameters ``budgets_*`` and ``seed`` of a compiled spec."""
    from components import params
    from edgenas_keras import lut as lut_lib
    from edgenas_keras.data.classes import dataset_class_names, space_for_data
    from edgenas_keras.search import run_search, search_config_from, space_with_blocks
    from edgenas_keras.arch.space import SearchSpace

    budgets = params.budgets(latency_ms, sram_bytes, flash_bytes)
    seed = params.seed(seed)
    check_anomalies(anomalies)
    space = SearchSpace.from_dict(json.loads(space_config), source="pipeline config")
    data_dir = input_dir(examples.uri)
    # the head has as many outputs as the data has classes (the data wins over the space's num_classes)
    space = space_for_data(space, dataset_class_names(data_dir), warn=lambda m: log("SupernetSearch", m))
    table = lut_lib.load(input_dir(lut.uri) / "lut.json")
    # flash counts model + runtime here as in BudgetValidator; the search sets the device's runtime aside
    config = search_config_from(json.loads(search_config), budgets, seed)
    key = {
        "examples": examples.get_string_custom_property("fingerprint") or examples.uri,
        "lut": table.sha256,
        "space": space_config,
        "config": search_config,
        "budgets": budgets.as_dict(),
        "seed": seed,
    }
    if is_remote(architecture.uri):
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="edgenas-search-"))
    else:
        work = work_dir(architecture.uri, key)
    work.mkdir(parents=True, exist_ok=True)
    log("SupernetSearch", f"searching {space.name} at {space.resolution}px on {table.device} (work: {work})")
    result = run_search(str(data_dir), table, config, str(work), space=space)
    with output_dir(architecture.uri) as out:
        for p in sorted(work.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                shutil.copyfile(p, out / p.name)
        write_json(out / SPACE_FILE, space_with_blocks(space, config.num_blocks).to_dict())
    architecture.set_string_custom_property("arch", str(result.arch))
    log("SupernetSearch", f"found {result.arch}")
