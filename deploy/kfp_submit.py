"""Submit a compiled pipeline (KFP pipeline spec YAML) to Kubeflow Pipelines 2.x, once or on a schedule.

This is a thin layer over the real ``kfp`` 2.5 client that adds what a CI job needs:

- Parameters given as ``KEY=VALUE`` strings are checked against the pipeline's declared root parameters and
  converted to their declared types (a KFP server rejects ``"3"`` for an integer parameter), so a typo in
  a parameter name fails in CI with the list of valid names instead of in the cluster.
- Schedules: KFP's cron has six fields, seconds first (``0 0 3 * * 1`` = Mondays 03:00:00). A classic
  five-field cron (``0 3 * * 1``) is accepted and prefixed with ``0`` (at second 0); anything else is a user
  error. A recurring run with the same name in the same experiment is replaced (the new one is created
  first, then the old ones are deleted), so a CI job that re-submits on every merge keeps exactly one
  schedule. Recurring runs do not backfill runs missed while paused (``no_catchup``) and never overlap
  (``max_concurrency=1``).
- Credentials come from the environment, as ``kfp`` reads them, plus two variables of our own for the
  cases ``kfp`` only takes as arguments (see ``ENVIRONMENT``).
- ``kfp`` prints "Experiment details: URL" lines on stdout; they go to stderr here so ``--json`` output
  stays one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from edgenas_keras.errors import UserError

# What the submission reads from the environment (documented in README.md "Deploying" and deploy/ci/README.md).
ENVIRONMENT = {
    "KF_PIPELINES_ENDPOINT": "KFP API URL when --host is not given (kfp)",
    "KF_PIPELINES_UI_ENDPOINT": "base URL of the KFP UI for the printed links, if it differs from the API (kfp)",
    "KF_PIPELINES_TOKEN": "bearer token sent as Authorization (EdgeNAS; passed to kfp as existing_token)",
    "KF_PIPELINES_COOKIES": "cookie header, e.g. authservice_session=... behind Dex/oauth2-proxy (EdgeNAS; kfp cookies)",
    "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID": "OAuth client id of an IAP-protected endpoint (kfp)",
    "KF_PIPELINES_APP_OAUTH2_CLIENT_ID": "desktop OAuth client id used to obtain IAP tokens (kfp)",
    "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET": "its secret (kfp)",
    "KF_PIPELINES_SA_TOKEN_PATH": "projected service-account token file, default "
    "/var/run/secrets/kubeflow/pipelines/token, used when it exists and KF_PIPELINES_TOKEN is unset (kfp)",
    "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME": "experiment when --experiment is not given (kfp)",
    "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME": "experiment that overrides --experiment (kfp)",
}

DEFAULT_EXPERIMENT = "Default"


@dataclass(frozen=True)
class SubmitResult:
    """What ``submit_pipeline`` created on the Kubeflow Pipelines server (``to_dict`` is the ``--json``
    output).

    Attributes:
        kind: ``"run"`` (one run) or ``"recurring_run"`` (a schedule).
        id: the server's id of that run or recurring run.
        url: its page in the KFP UI (``KF_PIPELINES_UI_ENDPOINT``, else the API host).
        name: the run's name, or the recurring run's (one schedule per name and experiment).
        experiment_id: the id of the experiment it belongs to.
        schedule: the six-field cron sent to the server (seconds first); ``None`` for a one-off run.
        parameters: the root parameters passed, converted to their declared types.
        replaced: ids of the recurring runs of the same name this one replaced (deleted once it was created).
    """

    kind: str  # "run" or "recurring_run"
    id: str
    url: str
    name: str
    experiment_id: str
    schedule: str | None = None  # the six-field cron sent to the server
    parameters: dict = field(default_factory=dict)
    replaced: tuple[str, ...] = ()  # ids of recurring runs of the same name that this one replaced

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (``replaced`` as a list)."""
        return {
            "kind": self.kind,
            "id": self.id,
            "url": self.url,
            "name": self.name,
            "experiment_id": self.experiment_id,
            "schedule": self.schedule,
            "parameters": self.parameters,
            "replaced": list(self.replaced),
        }


def normalize_cron(expr: str) -> str:
    """Six space-separated fields, seconds first; a five-field cron gets ``0`` seconds prepended."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise UserError(
            f"schedule {expr!r} has {len(expr.split())} field(s); KFP cron needs six, seconds first "
            "(e.g. '0 0 3 * * 1' for Mondays 03:00), or give a classic five-field cron ('0 3 * * 1')"
        )
    return " ".join(fields)


def load_pipeline_spec(path: str | os.PathLike) -> dict:
    """The pipeline spec (first YAML document) of a compiled package, checked to be a KFP v2 spec."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"pipeline package {path} does not exist or is not a file; run `edgenas compile` first"
        )
    if p.suffix not in (".yaml", ".yml"):
        raise UserError(f"pipeline package {path} must be a .yaml file (a .json is a Vertex PipelineJob)")
    try:
        spec = next(yaml.safe_load_all(p.read_text()), None)
    except yaml.YAMLError as exc:
        raise UserError(f"pipeline package {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
        raise UserError(f"pipeline package {path} is not a KFP pipeline spec (no pipelineInfo/root)")
    if spec.get("schemaVersion") != "2.1.0":
        raise UserError(
            f"pipeline package {path} has schemaVersion {spec.get('schemaVersion')!r}; Kubeflow Pipelines 2.x "
            "accepts 2.1.0 only (compile with use_pipeline_spec_2_1=True, as `edgenas compile` does)"
        )
    return spec


def _convert(key: str, raw: str, ptype: str):
    try:
        if ptype == "NUMBER_INTEGER":
            return int(raw)
        if ptype == "NUMBER_DOUBLE":
            return float(raw)
        if ptype == "BOOLEAN":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return raw.lower() in ("true", "1")
        if ptype in ("STRUCT", "LIST"):
            value = json.loads(raw)
            if not isinstance(value, dict if ptype == "STRUCT" else list):
                raise ValueError(f"expected a JSON {'object' if ptype == 'STRUCT' else 'array'}")
            return value
    except ValueError as exc:
        raise UserError(f"--param {key}={raw}: not a valid {ptype} ({exc})") from exc
    return raw


def parse_params(pairs: list[str], spec: dict) -> dict:
    """``["k=v", ...]`` -> ``{k: value}`` typed by the spec's root input parameters."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param {pair!r} must be KEY=VALUE")
        if key not in declared:
            names = ", ".join(sorted(declared)) or "none"
            raise UserError(f"--param {key}: the pipeline has no such parameter (it declares: {names})")
        params[key] = _convert(key, raw, declared[key].get("parameterType", "STRING"))
    return params


def make_client(host: str, namespace: str | None):
    """A kfp.Client for ``host`` with the credentials the environment provides."""
    import kfp

    kwargs = {"host": host}
    if namespace:
        kwargs["namespace"] = namespace
    if os.environ.get("KF_PIPELINES_TOKEN"):
        kwargs["existing_token"] = os.environ["KF_PIPELINES_TOKEN"]
    else:
        # kfp reads a projected service-account token only when it finds the cluster itself (no host given);
        # with --host, pass it explicitly, re-read before every request as the kubelet rotates it.
        from kfp.client import KF_PIPELINES_SA_TOKEN_PATH
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or KF_PIPELINES_SA_TOKEN_PATH
        if os.path.isfile(path):
            kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path)
    if os.environ.get("KF_PIPELINES_COOKIES"):
        kwargs["cookies"] = os.environ["KF_PIPELINES_COOKIES"]
    with _kfp_errors(host):
        return kfp.Client(**kwargs)


@contextlib.contextmanager
def _kfp_errors(host: str):
    """kfp's stdout chatter to stderr; unreachable hosts and refused credentials to one-line user errors."""
    import kfp_server_api
    import urllib3

    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except kfp_server_api.ApiException as exc:
        detail = " ".join(str(exc.body or exc.reason or "").split())[:300]
        if exc.status in (401, 403):
            raise UserError(
                f"Kubeflow Pipelines at {host} refused the request ({exc.status}): set KF_PIPELINES_TOKEN or "
                f"KF_PIPELINES_COOKIES (see README.md, Deploying) [{detail}]"
            ) from exc
        if exc.status == 404:
            raise UserError(f"{host} has no Kubeflow Pipelines v2beta1 API (404); check --host") from exc
        raise UserError(
            f"Kubeflow Pipelines at {host} rejected the request ({exc.status}): {detail}"
        ) from exc
    except (urllib3.exceptions.HTTPError, TimeoutError, OSError) as exc:
        raise UserError(f"cannot reach Kubeflow Pipelines at {host}: {exc}") from exc


def submit_pipeline(
    package: str | os.PathLike,
    host: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    params: list[str] | None = None,
    schedule: str | None = None,
    namespace: str | None = None,
) -> SubmitResult:
    """Create a run of ``package`` or, with ``schedule`` (cron), a recurring run; return its id and URL."""
    spec = load_pipeline_spec(package)
    typed = parse_params(params or [], spec)
    cron = normalize_cron(schedule) if schedule else None
    pipeline_name = spec["pipelineInfo"]["name"]
    host = (host or os.environ.get("KF_PIPELINES_ENDPOINT") or "").rstrip("/")
    if not host:
        raise UserError("no Kubeflow Pipelines host: pass --host URL or set KF_PIPELINES_ENDPOINT")
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT", host).rstrip("/")
    experiment = (
        os.environ.get("KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME")
        or experiment
        or os.environ.get("KF_PIPELINES_DEFAULT_EXPERIMENT_NAME")
        or DEFAULT_EXPERIMENT
    )
    client = make_client(host, namespace)

    with _kfp_errors(host):
        if cron is None:
            name = run_name or f"{pipeline_name} {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}"
            run = client.create_run_from_pipeline_package(
                str(package), arguments=typed, run_name=name, experiment_name=experiment, namespace=namespace
            )
            return SubmitResult(
                kind="run",
                id=run.run_id,
                url=f"{ui}/#/runs/details/{run.run_id}",
                name=name,
                experiment_id=run.run_info.experiment_id,
                parameters=typed,
            )

        name = run_name or pipeline_name
        exp = client.create_experiment(name=experiment, namespace=namespace)
        previous = _recurring_runs_named(client, exp.experiment_id, name)
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=name,
            cron_expression=cron,
            params=typed,
            pipeline_package_path=str(package),
            max_concurrency=1,
            no_catchup=True,
            enabled=True,
        )
        for old in previous:
            client.delete_recurring_run(old)
        return SubmitResult(
            kind="recurring_run",
            id=job.recurring_run_id,
            url=f"{ui}/#/recurringrun/details/{job.recurring_run_id}",
            name=name,
            experiment_id=exp.experiment_id,
            schedule=cron,
            parameters=typed,
            replaced=tuple(previous),
        )


def _recurring_runs_named(client, experiment_id: str, name: str) -> list[str]:
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    ids, token = [], ""
    while True:
        page = client.list_recurring_runs(
            experiment_id=experiment_id, filter=flt, page_token=token, page_size=100
        )
        ids += [r.recurring_run_id for r in page.recurring_runs or [] if r.display_name == name]
        token = page.next_page_token
        if not token:
            return ids
