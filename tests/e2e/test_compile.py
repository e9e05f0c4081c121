"""The compiled Kubeflow spec: golden file, schema 2.1.0, importable executors and artifact types.

Regenerate the golden file after an intended change to the pipeline or the default config::

    EDGENAS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/e2e/test_compile.py

Volatile fields are stripped before comparing: the SDK version line and the header comment naming the TFX
version. Everything else (DAG, parameters, executor class paths, artifact schemas) must match.
"""

import importlib
import json
import os
import re
from pathlib import Path

import pytest
import yaml

GOLDEN = Path(__file__).parent / "golden" / "pipeline.yaml"
IMAGE = "example.org/edgenas:golden"
ROOT = "gs://edgenas-golden/root"
TITLE_RE = re.compile(r"^[a-z][a-z0-9-_]{2,20}\.[A-Z][a-zA-Z0-9-_]{2,49}$")

pytestmark = pytest.mark.e2e


def normalize(text: str) -> dict:
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert len(docs) == 1, "the spec must be one YAML document"
    spec = docs[0]
    spec.pop("sdkVersion", None)
    return spec


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[str, dict]:
    from pipeline.commands.run import compile_pipeline
    from pipeline.config import load

    out = tmp_path_factory.mktemp("compile") / "pipeline.yaml"
    compile_pipeline(load(), out, IMAGE, ROOT)
    text = out.read_text()
    return text, normalize(text)


def test_matches_golden(compiled):
    text, spec = compiled
    if os.environ.get("EDGENAS_UPDATE_GOLDEN"):
        GOLDEN.write_text(yaml.safe_dump(spec, sort_keys=True))
    assert GOLDEN.is_file(), f"no golden file; create it with EDGENAS_UPDATE_GOLDEN=1 pytest {__file__}"
    assert spec == yaml.safe_load(GOLDEN.read_text()), (
        "compiled pipeline differs from tests/e2e/golden/pipeline.yaml; if intended, regenerate with "
        "EDGENAS_UPDATE_GOLDEN=1"
    )


def test_schema_name_image_and_root(compiled):
    _, spec = compiled
    assert spec["schemaVersion"] == "2.1.0"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", spec["pipelineInfo"]["name"])
    pusher = spec["root"]["dag"]["tasks"]["TfliteMicroPusher"]["inputs"]["parameters"]
    assert pusher["dest"]["componentInputParameter"] == "push_dest"
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert root["push_dest"]["defaultValue"] == f"{ROOT}/pushed"  # "{output}" -> the pipeline root
    images = {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}
    tasks = set(spec["root"]["dag"]["tasks"])
    assert tasks == {"VwwExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "LutImporter",
                     "SupernetSearch", "QatTrainer", "BudgetValidator", "TfliteMicroPusher", "RunReport"}


def test_every_executor_and_artifact_type_imports(compiled):
    _, spec = compiled
    paths = []
    for ex in spec["deploymentSpec"]["executors"].values():
        args = ex["container"]["args"]
        paths.append(args[args.index("--executor_class_path") + 1])
    assert "components.search.SupernetSearch_Executor" in paths
    titles = set(re.findall(r"title: ([\w.-]+)", yaml.safe_dump(spec)))
    custom = {t for t in titles if not t.startswith("tfx.")}
    assert custom == {"components.LatencyTable", "components.Architecture", "components.RunReportFile"}
    for path in paths + sorted(custom):
        mod, name = path.rsplit(".", 1)
        getattr(importlib.import_module(mod), name)
    for title in custom:
        assert TITLE_RE.match(title), title
        cls = getattr(importlib.import_module("components"), title.split(".")[1])
        assert cls.TYPE_NAME == title


def test_run_time_parameters_are_root_inputs_with_the_config_defaults(compiled):
    """The knobs a scheduled run changes are root parameters, typed, defaulting to the configuration, and
    every component that uses one reads it from the root (not a constant baked in at compile time)."""
    from pipeline.config import RUNTIME_PARAMETERS, load

    _, spec = compiled
    root = spec["root"]["inputDefinitions"]["parameters"]
    kinds = {float: "NUMBER_DOUBLE", int: "NUMBER_INTEGER", str: "STRING"}
    assert {name: p["parameterType"] for name, p in root.items()} == {
        name: kinds[ptype] for name, (_field, ptype) in RUNTIME_PARAMETERS.items()
    }
    assert all(p["isOptional"] is True for p in root.values())
    cfg = load()
    assert root["budgets_latency_ms"]["defaultValue"] == cfg.budgets.latency_ms == 45.0
    assert root["budgets_sram_bytes"]["defaultValue"] == 196608
    assert root["budgets_flash_bytes"]["defaultValue"] == 524288
    assert root["budgets_min_accuracy"]["defaultValue"] == 0.75
    assert root["seed"]["defaultValue"] == 0
    assert root["data_images"]["defaultValue"] == "[]" and root["data_minival_ids"]["defaultValue"] == ""

    tasks = spec["root"]["dag"]["tasks"]

    def wired(task):
        params = tasks[task]["inputs"]["parameters"]
        return {k: v["componentInputParameter"] for k, v in params.items() if "componentInputParameter" in v}

    budgets = {"latency_ms": "budgets_latency_ms", "sram_bytes": "budgets_sram_bytes",
               "flash_bytes": "budgets_flash_bytes"}
    floor = {"min_accuracy": "budgets_min_accuracy"}
    assert wired("VwwExampleGen") == {"images": "data_images", "annotations": "data_annotations",
                                      "minival_ids": "data_minival_ids"}
    assert wired("SupernetSearch") == {**budgets, "seed": "seed"}
    assert wired("QatTrainer") == {"seed": "seed"}
    assert wired("BudgetValidator") == {**budgets, **floor}
    assert wired("TfliteMicroPusher") == {**budgets, **floor, "dest": "push_dest"}
    # the data section travels without its paths (they are parameters now): one source for each value
    data = json.loads(tasks["VwwExampleGen"]["inputs"]["parameters"]["data_config"]["runtimeValue"]["constant"])
    assert not {"images", "annotations", "minival_ids"} & set(data) and data["synth_images"] == 2000


def test_local_runners_bind_every_run_time_parameter_to_the_config(tmp_path):
    """LocalDagRunner/BeamDagRunner get the pipeline IR with each RuntimeParameter replaced by the config's
    value, falsy ones included (TFX's compiler drops a 0 / "" default, which would leave it unresolved)."""
    from tiny_pipeline import write_config

    from pipeline.config import load
    from pipeline.pipeline import create_pipeline
    from pipeline.runners import bind_runtime_parameters

    cfg = load(write_config(tmp_path, budgets={"min_accuracy": 0.0}, seed=0)).with_output(tmp_path)
    p = create_pipeline(cfg, str(tmp_path / "root"), str(tmp_path / "m.sqlite"))
    from pipeline.config import runtime_values

    ir = bind_runtime_parameters(p, runtime_values(cfg))
    nodes = {n.pipeline_node.node_info.id: n.pipeline_node.parameters.parameters for n in ir.nodes}

    def value(node, key):
        v = nodes[node][key]
        assert v.WhichOneof("value") == "field_value", (node, key, v)  # no runtime parameter left
        f = v.field_value
        return getattr(f, f.WhichOneof("value"))

    assert value("SupernetSearch", "latency_ms") == cfg.budgets.latency_ms == 500.0
    assert value("SupernetSearch", "seed") == 0
    assert value("BudgetValidator", "min_accuracy") == 0.0 and value("BudgetValidator", "sram_bytes") == 1024 * 1024
    assert value("QatTrainer", "seed") == 0
    assert value("TfliteMicroPusher", "dest") == f"{tmp_path}/pushed"
    assert value("VwwExampleGen", "images") == "[]" and value("VwwExampleGen", "minival_ids") == ""
