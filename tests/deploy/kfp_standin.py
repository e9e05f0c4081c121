"""A minimal stand-in of the Kubeflow Pipelines v2beta1 REST API, for submission tests (no Kubernetes here).

It implements exactly the endpoints the kfp 2.5 client (kfp_server_api 2.0.5) calls to submit a run or a
recurring run from a package, with the JSON field names that client parses, and it checks what the real
server checks and we could get wrong: an embedded pipeline spec of schema 2.1.0 with a valid pipeline name,
runtime parameters the spec declares, a six-field cron, an existing experiment, and the credentials it
was started with (a bearer ``token`` and/or a session ``cookie``).

    GET    /apis/v2beta1/healthz
    GET    /apis/v2beta1/experiments           (filter on display_name, namespace)
    POST   /apis/v2beta1/experiments
    GET    /apis/v2beta1/experiments/{id}
    POST   /apis/v2beta1/runs
    GET    /apis/v2beta1/runs/{id}
    POST   /apis/v2beta1/recurringruns
    GET    /apis/v2beta1/recurringruns         (experiment_id, filter on display_name)
    GET    /apis/v2beta1/recurringruns/{id}
    DELETE /apis/v2beta1/recurringruns/{id}
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"
PIPELINE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _display_name_filter(query: dict) -> str | None:
    raw = query.get("filter", [None])[0]
    if not raw:
        return None
    for pred in json.loads(raw).get("predicates", []):
        if pred.get("key") == "display_name" and pred.get("operation") in (1, "EQUALS"):
            return pred.get("stringValue", pred.get("string_value"))
    return None


def _listing(items: dict, query: dict, list_key: str, field: str) -> dict:
    """A list call's answer: the items whose display name and ``field`` match the query's filter and its
    ``field`` parameter (each when given), under ``list_key``; KFP answers ``{}`` when none match."""
    name = _display_name_filter(query)
    value = query.get(field, [None])[0]
    found = [x for x in items.values()
             if (name is None or x["display_name"] == name) and (not value or x[field] == value)]
    return {list_key: found, "total_size": len(found)} if found else {}


def _check_spec(body: dict) -> dict:
    spec = body.get("pipeline_spec")
    if not isinstance(spec, dict):
        raise ApiError(
            400, "pipeline_spec is required (no pipeline_version_reference support in the stand-in)"
        )
    if spec.get("schemaVersion") != "2.1.0":
        raise ApiError(400, f"unsupported pipeline spec schema version {spec.get('schemaVersion')!r}")
    name = spec.get("pipelineInfo", {}).get("name", "")
    if not PIPELINE_NAME_RE.match(name):
        raise ApiError(400, f"invalid pipeline name {name!r}")
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    params = (body.get("runtime_config") or {}).get("parameters") or {}
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ApiError(400, f"runtime parameters not declared by the pipeline: {unknown}")
    return spec


class KfpStandIn:
    """Start with ``start()``, stop with ``stop()``; state is kept in plain dicts for the tests to read."""

    def __init__(self, token: str | None = None, cookie: str | None = None, multi_user: bool = False):
        self.token = token
        self.cookie = cookie
        self.multi_user = multi_user
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with standin._lock:
                    standin.requests.append((self.command, url.path))
                    try:
                        if standin.token and self.headers.get("Authorization") != f"Bearer {standin.token}":
                            raise ApiError(401, "missing or wrong bearer token")
                        if standin.cookie and self.headers.get("Cookie") != standin.cookie:
                            raise ApiError(401, "missing or wrong session cookie")
                        body = json.loads(raw) if raw else {}
                        status, payload = standin.route(self.command, url.path, parse_qs(url.query), body)
                    except ApiError as exc:
                        status, payload = (
                            exc.status,
                            {"error": str(exc), "code": exc.status, "message": str(exc)},
                        )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> KfpStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        if not path.startswith(API + "/"):
            raise ApiError(404, f"no route {path}")
        parts = path[len(API) + 1 :].split("/")
        resource, ident = parts[0], (parts[1] if len(parts) > 1 else None)
        if (method, resource) == ("GET", "healthz"):
            return 200, {"multi_user": self.multi_user}
        if resource == "experiments":
            return self._experiments(method, ident, query, body)
        if resource == "runs":
            return self._runs(method, ident, body)
        if resource == "recurringruns":
            return self._recurring(method, ident, query, body)
        raise ApiError(404, f"no route {method} {path}")

    def _experiments(self, method, ident, query, body):
        if method == "POST" and ident is None:
            if not body.get("display_name"):
                raise ApiError(400, "experiment display_name is required")
            exp = {
                "experiment_id": str(uuid.uuid4()),
                "display_name": body["display_name"],
                "description": body.get("description") or "",
                "namespace": body.get("namespace") or "",
                "created_at": _now(),
                "storage_state": "AVAILABLE",
            }
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if method == "GET" and ident is None:
            return 200, _listing(self.experiments, query, "experiments", "namespace")
        if method == "GET" and ident in self.experiments:
            return 200, self.experiments[ident]
        raise ApiError(404, f"experiment {ident} not found")

    def _need_experiment(self, body) -> str:
        exp_id = body.get("experiment_id")
        if exp_id not in self.experiments:
            raise ApiError(404, f"experiment {exp_id} not found")
        return exp_id

    def _runs(self, method, ident, body):
        if method == "POST" and ident is None:
            exp_id = self._need_experiment(body)
            _check_spec(body)
            run = {
                **body,
                "run_id": str(uuid.uuid4()),
                "experiment_id": exp_id,
                "created_at": _now(),
                "state": "PENDING",
                "storage_state": "AVAILABLE",
            }
            self.runs[run["run_id"]] = run
            return 200, run
        if method == "GET" and ident in self.runs:
            return 200, self.runs[ident]
        raise ApiError(404, f"run {ident} not found")

    def _recurring(self, method, ident, query, body):
        if method == "POST" and ident is None:
            exp_id = self._need_experiment(body)
            _check_spec(body)
            cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron")
            periodic = (body.get("trigger") or {}).get("periodic_schedule")
            if not cron and not periodic:
                raise ApiError(400, "a recurring run needs a cron or periodic trigger")
            if cron and len(cron.split()) != 6:
                raise ApiError(400, f"cron {cron!r} must have six fields, seconds first")
            job = {
                **body,
                "recurring_run_id": str(uuid.uuid4()),
                "experiment_id": exp_id,
                "namespace": self.experiments[exp_id]["namespace"],
                "created_at": _now(),
                "updated_at": _now(),
                "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED",
            }
            self.recurring_runs[job["recurring_run_id"]] = job
            return 200, job
        if method == "GET" and ident is None:
            return 200, _listing(self.recurring_runs, query, "recurringRuns", "experiment_id")
        if ident in self.recurring_runs:
            if method == "GET":
                return 200, self.recurring_runs[ident]
            if method == "DELETE":
                del self.recurring_runs[ident]
                return 200, {}
        raise ApiError(404, f"recurring run {ident} not found")
