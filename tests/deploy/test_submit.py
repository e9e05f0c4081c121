"""Submission with the real kfp 2.5 client against a stand-in of the KFP v2beta1 REST API on 127.0.0.1.

Most tests use a small KFP v2 pipeline compiled here with kfp's own compiler (schema 2.1.0), so they do not
depend on the EdgeNAS pipeline's compiler; the last ones compile EdgeNAS's own pipeline with
``edgenas compile`` and submit it with its run-time parameters. What a CI user notices: the run or
recurring run exists on the server with our spec, typed parameters and a six-field cron; re-submitting a
schedule does not stack schedules; mistakes fail before reaching the cluster, as one line.
"""

# No `from __future__ import annotations` here: kfp reads the component's annotations as real types.
import functools
import json

import pytest
import yaml
from kfp_standin import KfpStandIn

from deploy.kfp_submit import normalize_cron, submit_pipeline
from edgenas_keras.errors import UserError


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.10-slim")
    def train(epochs: int, lr: float, device: str, quick: bool) -> str:
        return f"{device}:{epochs}:{lr}:{quick}"

    @dsl.pipeline(name="edgenas-tiny")
    def tiny(epochs: int = 1, lr: float = 0.1, device: str = "cortex-m7", quick: bool = False):
        train(epochs=epochs, lr=lr, device=device, quick=quick)

    path = tmp_path_factory.mktemp("pkg") / "pipeline.yaml"
    compiler.Compiler().compile(tiny, str(path))
    return path


@pytest.fixture
def kfp_api(monkeypatch):
    for var in (
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_TOKEN",
        "KF_PIPELINES_COOKIES",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
        "KF_PIPELINES_SA_TOKEN_PATH",
    ):
        monkeypatch.delenv(var, raising=False)
    server = KfpStandIn(token="s3cret").start()
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "s3cret")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def submit(package, kfp_api):
    """``submit_pipeline`` of the tiny pipeline to the stand-in: ``submit(**kwargs)``."""
    return functools.partial(submit_pipeline, package, host=kfp_api.url)


def test_run_reaches_the_server_with_our_spec_and_typed_parameters(package, kfp_api, submit):
    result = submit(
        experiment="edgenas-ci",
        run_name="nightly 42",
        params=["epochs=3", "lr=0.05", "device=cortex-m4", "quick=true"],
    )
    assert result.kind == "run"
    assert result.url == f"{kfp_api.url}/#/runs/details/{result.id}"
    run = kfp_api.runs[result.id]
    assert run["display_name"] == "nightly 42"
    assert run["pipeline_spec"] == yaml.safe_load(package.read_text())
    assert run["runtime_config"]["parameters"] == {
        "epochs": 3,
        "lr": 0.05,
        "device": "cortex-m4",
        "quick": True,
    }
    assert kfp_api.experiments[run["experiment_id"]]["display_name"] == "edgenas-ci"

    # A second run goes to the same experiment, not a new one.
    again = submit(experiment="edgenas-ci")
    assert kfp_api.runs[again.id]["experiment_id"] == run["experiment_id"] and len(kfp_api.experiments) == 1
    assert kfp_api.runs[again.id]["display_name"].startswith("edgenas-tiny ")


def test_recurring_run_with_cron_replaces_the_previous_schedule(kfp_api, submit):
    first = submit(
        experiment="edgenas-ci",
        run_name="weekly",
        params=["epochs=2"],
        schedule="0 3 * * 1",
    )
    assert first.kind == "recurring_run" and first.schedule == "0 0 3 * * 1"
    job = kfp_api.recurring_runs[first.id]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert job["mode"] == "ENABLE" and int(job["max_concurrency"]) == 1
    assert job["no_catchup"] is True
    assert job["pipeline_spec"]["pipelineInfo"]["name"] == "edgenas-tiny"
    assert job["runtime_config"]["parameters"] == {"epochs": 2}
    assert first.url == f"{kfp_api.url}/#/recurringrun/details/{first.id}"

    second = submit(experiment="edgenas-ci", run_name="weekly", schedule="30 0 4 * * *")
    assert second.replaced == (first.id,)
    assert list(kfp_api.recurring_runs) == [second.id]
    assert kfp_api.recurring_runs[second.id]["trigger"]["cron_schedule"]["cron"] == "30 0 4 * * *"


def test_namespace_reaches_the_experiment(kfp_api, submit):
    result = submit(experiment="team-a", namespace="edge-ml")
    exp = kfp_api.experiments[kfp_api.runs[result.id]["experiment_id"]]
    assert exp["namespace"] == "edge-ml"
    assert ("GET", "/apis/v2beta1/healthz") not in kfp_api.requests  # kfp skips it when a namespace is given


def test_host_and_experiment_from_the_environment(package, kfp_api, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", kfp_api.url)
    monkeypatch.setenv("KF_PIPELINES_DEFAULT_EXPERIMENT_NAME", "from-env")
    result = submit_pipeline(package)
    assert kfp_api.experiments[kfp_api.runs[result.id]["experiment_id"]]["display_name"] == "from-env"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"params": ["epochs=three"]}, "epochs=three: not a valid NUMBER_INTEGER"),
        ({"params": ["epoch=3"]}, "no such parameter .*epochs, lr, quick"),
        ({"params": ["epochs"]}, "must be KEY=VALUE"),
        ({"schedule": "0 3 * *"}, "has 4 field\\(s\\); KFP cron needs six"),
    ],
)
def test_mistakes_fail_before_anything_is_submitted(kfp_api, submit, kwargs, message):
    with pytest.raises(UserError, match=message):
        submit(**kwargs)
    assert kfp_api.requests == []


def test_refused_token_is_a_user_error(kfp_api, submit, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "wrong")
    with pytest.raises(UserError, match="refused the request \\(401\\).*KF_PIPELINES_TOKEN"):
        submit(namespace="edge-ml")
    assert kfp_api.runs == {}


def test_service_account_token_file_is_read(kfp_api, submit, monkeypatch, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    monkeypatch.delenv("KF_PIPELINES_TOKEN")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    result = submit(namespace="edge-ml")
    assert result.id in kfp_api.runs


def test_unreachable_host_is_a_user_error(kfp_api, submit):
    kfp_api.stop()  # nothing listens on its port any more
    with pytest.raises(UserError, match=f"cannot reach Kubeflow Pipelines at {kfp_api.url}"):
        submit()


def test_session_cookie_from_the_environment(package, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_TOKEN", raising=False)
    monkeypatch.setenv("KF_PIPELINES_COOKIES", "authservice_session=abc123")
    server = KfpStandIn(cookie="authservice_session=abc123").start()
    try:
        result = submit_pipeline(package, host=server.url, namespace="edge-ml")
        assert result.id in server.runs
    finally:
        server.stop()


def test_package_that_is_not_schema_2_1_is_rejected(package, tmp_path, kfp_api):
    spec = yaml.safe_load(package.read_text())
    spec["schemaVersion"] = "2.0.0"
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match="accepts 2.1.0 only"):
        submit_pipeline(old, host=kfp_api.url)
    as_json = tmp_path / "x.json"
    as_json.write_text("{}")
    with pytest.raises(UserError, match="must be a .yaml"):
        submit_pipeline(as_json, host=kfp_api.url)
    assert kfp_api.requests == []


def test_cron_normalization():
    assert normalize_cron("0 3 * * 1") == "0 0 3 * * 1"
    assert normalize_cron(" 0  0 3 * * 1 ") == "0 0 3 * * 1"
    with pytest.raises(UserError):
        normalize_cron("0 0 0 3 * * 1")


def test_cli_submit_json_is_the_only_stdout(package, kfp_api, capsys):
    from pipeline.cli import main

    rc = main(
        [
            "submit",
            str(package),
            "--host",
            kfp_api.url,
            "--experiment",
            "ci",
            "--param",
            "epochs=4",
            "--schedule",
            "0 0 2 * * *",
            "--json",
        ]
    )
    assert rc == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # kfp's "Experiment details: ..." line went to stderr
    assert out["kind"] == "recurring_run" and out["schedule"] == "0 0 2 * * *"
    assert kfp_api.recurring_runs[out["id"]]["runtime_config"]["parameters"] == {"epochs": 4}

    assert main(["submit", str(package), "--host", kfp_api.url, "--schedule", "daily"]) == 2
    assert capsys.readouterr().err.startswith("error: schedule 'daily' has 1 field(s)")


# ---- EdgeNAS's own compiled pipeline ------------------------------------------------------------------


@pytest.fixture(scope="module")
def edgenas_package(tmp_path_factory):
    """The default configuration compiled by the CLI, as a user does before submitting."""
    from pipeline.cli import main

    out = tmp_path_factory.mktemp("edgenas") / "pipeline.yaml"
    rc = main(["compile", "--out", str(out), "--image", "example.org/edgenas:test",
               "--pipeline-root", "gs://edgenas-root"])
    assert rc == 0
    return out


def test_edgenas_spec_takes_its_run_time_parameters(edgenas_package, kfp_api, capsys):
    from pipeline.cli import main

    images = '["/gcs/vww/train2014","/gcs/vww/val2014"]'
    rc = main(["submit", str(edgenas_package), "--host", kfp_api.url, "--experiment", "nightly", "--json",
               "--param", "budgets_latency_ms=30", "--param", "budgets_sram_bytes=131072",
               "--param", "budgets_flash_bytes=393216", "--param", "budgets_min_accuracy=0.8",
               "--param", "seed=7", "--param", f"data_images={images}",
               "--param", "data_minival_ids=/gcs/vww/minival_ids.txt",
               "--param", "push_dest=gs://firmware/releases"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads(captured.out)
    run = kfp_api.runs[out["id"]]
    # typed as the spec declares them: what the components receive in the cluster
    assert run["runtime_config"]["parameters"] == {
        "budgets_latency_ms": 30.0,
        "budgets_sram_bytes": 131072,
        "budgets_flash_bytes": 393216,
        "budgets_min_accuracy": 0.8,
        "seed": 7,
        "data_images": images,
        "data_minival_ids": "/gcs/vww/minival_ids.txt",
        "push_dest": "gs://firmware/releases",
    }
    assert isinstance(run["runtime_config"]["parameters"]["budgets_sram_bytes"], int)
    spec = run["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "edgenas-vww"
    # parameters not given keep the compiled configuration's values as defaults
    assert spec["root"]["inputDefinitions"]["parameters"]["data_annotations"]["defaultValue"] == "[]"
    assert spec["root"]["inputDefinitions"]["parameters"]["budgets_latency_ms"]["defaultValue"] == 45.0


def test_edgenas_spec_wrong_key_or_value_fails_clearly(edgenas_package, kfp_api, capsys):
    from pipeline.cli import main

    rc = main(["submit", str(edgenas_package), "--host", kfp_api.url, "--param", "latency_ms=30"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("error: --param latency_ms: the pipeline has no such parameter (it declares: ")
    assert "budgets_latency_ms" in err[0] and "push_dest" in err[0]
    rc = main(["submit", str(edgenas_package), "--host", kfp_api.url, "--param", "budgets_sram_bytes=192k"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: --param budgets_sram_bytes=192k: not a valid NUMBER_INTEGER "
                               "(invalid literal for int() with base 10: '192k')"]
    assert kfp_api.requests == []
