"""Pipeline configurations are checked whole when they are loaded, through the CLI a user runs.

For every section: an unknown field (with the nearest name suggested), a value of the wrong type and a
value out of range. ``edgenas compile --config X`` must exit 2 with one ``error:`` line that names the file
and the dotted field, and write no spec; ``edgenas run`` refuses the same file the same way before it
creates anything. A valid file (the tiny e2e configuration and the shipped ones) still loads.
"""

import pytest
import yaml
from tiny_pipeline import TINY

from pipeline.cli import main
from pipeline.config import load

pytestmark = pytest.mark.e2e

BASE = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}

# (section overrides, the dotted field the error line must name, a piece of its reason)
CASES = [
    # top level: name, seed, an unknown section
    ({"name": "edgenas-vww-"}, "name", "ending with a letter or digit"),
    ({"name": "EdgeNAS"}, "name", "lowercase"),
    ({"name": 7}, "name", "must be a string"),
    ({"nmae": "x"}, "nmae", "is not a field (did you mean name?)"),
    ({"seed": "zero"}, "seed", "must be an integer"),
    ({"seed": -1}, "seed", "must be >= 0"),
    # data
    ({"data": {"synth_image": 100}}, "data.synth_image", "did you mean synth_images?"),
    ({"data": {"grayscale": "no"}}, "data.grayscale", "must be true or false"),
    ({"data": {"eval_fraction": 1.0}}, "data.eval_fraction", "between 0 and 1"),
    ({"data": {"area_threshold": 1.5}}, "data.area_threshold", "[0, 1)"),
    ({"data": {"resolution": 0}}, "data.resolution", "must be >= 8"),
    # space
    ({"space": {"resolutoin": 32}}, "space.resolutoin", "did you mean resolution?"),
    ({"space": {"resolution": "32px"}}, "space.resolution", "must be an integer"),
    ({"space": {"resolution": -32}}, "space.resolution", "must be >= 0"),
    # lut
    ({"lut": {"devcie": "cortex-m7"}}, "lut.devcie", "did you mean device?"),
    ({"lut": {"clock_mhz": "fast"}}, "lut.clock_mhz", "must be a number"),
    ({"lut": {"clock_mhz": -480}}, "lut.clock_mhz", "must be >= 0"),
    ({"lut": {"device": "cortex-m77", "file": ""}}, "lut.device", "did you mean cortex-m7?"),
    # a shipped table that lists its keys (timed on the emulated core) lacks a 64 px space's: refused at load
    ({"lut": {"device": "cortex-m7", "file": ""}, "space": {"resolution": 64}}, "lut.device",
     "operator keys of the space at 64 px"),
    ({"lut": {"device": "cortex-m7-emulated", "file": ""}, "space": {"resolution": 64}}, "lut.device",
     "lut.device cortex-m7-analytical (the analytical table, any shape)"),
    # a shipped alias is its device: the Cortex-M7's documented TFLM runtime (64 KiB) shares the flash budget
    ({"lut": {"device": "cortex-m7-analytical", "file": ""}, "budgets": {"flash_bytes": 65536}},
     "budgets.flash_bytes", "the TFLM runtime (65536 bytes on cortex-m7)"),
    # budgets
    ({"budgets": {"latency": 4.0}}, "budgets.latency", "did you mean latency_ms?"),
    ({"budgets": {"sram_bytes": "192k"}}, "budgets.sram_bytes", "must be an integer"),
    ({"budgets": {"latency_ms": -4.0}}, "budgets.latency_ms", "must be positive"),
    ({"budgets": {"latency_ms": float("nan")}}, "budgets.latency_ms", "must be a finite number"),
    ({"budgets": {"min_accuracy": 75}}, "budgets.min_accuracy", "[0, 1]"),
    # search: the library's SearchConfig
    ({"search": {"epoch": 3}}, "search.epoch", "is not a field (did you mean epochs?)"),
    ({"search": {"epochs": "3"}}, "search.epochs", "must be an integer"),
    ({"search": {"epochs": 0}}, "search.epochs", "integer >= 1"),
    ({"search": {"val_fraction": 1.2}}, "search.val_fraction", "(0, 1)"),
    ({"search": {"weight_lr": -0.1}}, "search.weight_lr", "positive"),
    ({"search": {"latency_ms": 3.0}}, "search.latency_ms", "set from budgets.latency_ms"),
    ({"search": {"budgets": {"latency_ms": 3.0}}}, "search.budgets", "set from the budgets section"),
    ({"search": {"runtime_flash_bytes": 65536}}, "search.runtime_flash_bytes", "is not a pipeline setting"),
    ({"lut": {"device": "my-board"}}, "lut.device", "has no documented TFLM runtime flash"),
    # train: the library's TrainConfig
    ({"train": {"learning_rate": 0.1}}, "train.learning_rate", "is not a field"),
    ({"train": {"augment": "yes please"}}, "train.augment", "must be true or false"),
    ({"train": {"lr": -1}}, "train.lr", "positive number"),
    ({"train": {"dropout": 1.0}}, "train.dropout", "[0, 1)"),
    ({"train": {"final_lr_fraction": 2}}, "train.final_lr_fraction", "[0, 1]"),
    # push
    ({"push": {"destination": "/tmp/x"}}, "push.destination", "did you mean dest?"),
    ({"push": {"model_name": ["a"]}}, "push.model_name", "must be a string"),
    ({"push": {"model_name": "vww/tiny"}}, "push.model_name", "letters, digits"),
    # beam_args
    ({"beam_args": "--runner=DirectRunner"}, None, None),  # one string is one option: accepted
    ({"beam_args": [3]}, "beam_args[0]", "must be a string"),
    ({"beam_args": ["runner=DirectRunner"]}, "beam_args[0]", "must be a Beam option"),
]


def write(tmp_path, overrides: dict):
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    cfg["lut"] = {"device": "cortex-m7", "file": str(tmp_path / "lut.json")}
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("overrides, field, reason", CASES, ids=[f"{c[1]}:{c[2]}" for c in CASES])
def test_compile_refuses_the_file_naming_the_field(tmp_path, capsys, overrides, field, reason):
    path = write(tmp_path, overrides)
    out = tmp_path / "out" / "pipeline.yaml"
    if field is None:
        load(path)  # valid
        return
    rc = main(["compile", "--config", str(path), "--out", str(out), "--image", "example.org/edgenas:t"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}: {field} "), err[0]
    assert reason in err[0], err[0]
    assert not out.exists() and not out.parent.exists()  # nothing written, not even the folder


def test_run_refuses_before_creating_its_output(tmp_path, capsys):
    path = write(tmp_path, {"search": {"epoch": 3}})
    out = tmp_path / "run"
    rc = main(["run", "--config", str(path), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"error: {path}: search.epoch is not a field (did you mean epochs?)"]
    assert not out.exists()


@pytest.mark.parametrize("kind", ["folder", "latin-1"])
def test_a_config_that_is_a_folder_or_not_utf8_is_one_error_line(kind, tmp_path, capsys):
    path = tmp_path / "cfg"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    out = tmp_path / "run"
    assert main(["run", "--config", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    want = "does not exist or is not a file" if kind == "folder" else "cannot be read as UTF-8 text"
    assert len(err) == 1 and err[0].startswith(f"error: config {path} ") and want in err[0]
    assert not out.exists()


def test_valid_files_load_with_their_values(tmp_path):
    cfg = load(write(tmp_path, {"search": {"steps_per_epoch": None, "tau_end": 1}, "train": {"warmup_epochs": 0}}))
    assert cfg.search["steps_per_epoch"] is None and cfg.search["tau_end"] == 1.0
    assert isinstance(cfg.search["tau_end"], float) and cfg.train["warmup_epochs"] == 0.0
    default = load()
    assert default.name == "edgenas-vww" and default.search["fitness"] == "trained" and default.train["epochs"] == 15
    # the main job prices with the shipped Cortex-M7 table, the one timed on the emulated core
    assert default.lut.device == "cortex-m7" and not default.lut.file
    from edgenas_keras.lut import load_device

    assert load_device(default.lut.device).metadata["method"] == "emulated"
    for name in ("cortex-m7-emulated", "cortex-m7-analytical"):   # older configs' name; the cycle model
        assert load(write(tmp_path, {"lut": {"device": name, "file": ""}, "space": {"resolution": 96}})
                    ).lut.device == name
    # the analytical table prices any shape: a 64 px space is fine
    assert load(write(tmp_path, {"lut": {"device": "cortex-m7-analytical", "file": ""},
                                 "space": {"resolution": 64}})).space.resolution == 64
    from pathlib import Path

    import pipeline

    coco = load(Path(pipeline.__file__).parent / "configs" / "coco_kubeflow.yaml")
    assert coco.data.source == "coco" and len(coco.data.images) == 2
    assert (coco.lut.device, coco.lut.clock_mhz) == ("cortex-m7", 480.0)


def test_run_time_values_and_their_checks_in_the_components():
    """What a compiled spec's parameters carry for the shipped COCO config, and how a component refuses a
    value given at submission (it never went through the load-time check)."""
    from pathlib import Path

    import pipeline
    from components import params
    from edgenas_keras.errors import UserError
    from pipeline.config import runtime_values

    coco = load(Path(pipeline.__file__).parent / "configs" / "coco_kubeflow.yaml")
    values = runtime_values(coco)
    assert values["budgets_latency_ms"] == 150.0 and values["budgets_sram_bytes"] == 262144
    assert values["push_dest"] == "gs://my-bucket/edgenas/models" and values["seed"] == 0
    data = params.data_section({"source": "coco"}, values["data_images"], values["data_annotations"],
                               values["data_minival_ids"])
    assert data["images"] == list(coco.data.images) and data["annotations"] == list(coco.data.annotations)
    assert data["minival_ids"] == coco.data.minival_ids
    assert params.paths("/gcs/vww", "data.images") == ["/gcs/vww"]  # one folder needs no JSON

    with pytest.raises(UserError, match=r"^budgets.latency_ms \(run-time parameter budgets_latency_ms\) must be "
                                        r"a positive number, got -1.0$"):
        params.budgets(-1.0, 1024, 1024)
    with pytest.raises(UserError, match=r"budgets.min_accuracy \(run-time parameter budgets_min_accuracy\)"):
        params.budgets(10.0, 1024, 1024, 80.0)
    with pytest.raises(UserError, match=r"data.annotations \(run-time parameter data_annotations\) must list one "
                                        r"instances file per data.images folder \(coco\), got 1 for 2"):
        params.data_section({"source": "coco"}, values["data_images"], '["/a.json"]', "")
    with pytest.raises(UserError, match=r"data.images \(run-time parameter data_images\) is not a JSON list"):
        params.paths('["/a", ', "data.images")
    with pytest.raises(UserError, match=r"push.dest \(run-time parameter push_dest\) must name a folder"):
        params.push_dest(" ")
