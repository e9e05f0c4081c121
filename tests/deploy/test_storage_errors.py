"""Each storage method, given a destination it cannot use, fails with one UserError line naming the bucket or
folder and what to do; the CLI prints it as one ``error:`` line with exit status 2.

GCS faults are real: a bucket the gcp-storage-emulator does not have, HTTP 403s from the FaultProxy in front
of it, a token endpoint on 127.0.0.1 that refuses a service-account key, a storage host nobody listens on.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from gcs_fault_proxy import BUCKET, free_port

from deploy import storage
from deploy.storage import open_store
from edgenas_keras.errors import UserError
from pipeline.cli import main

# One call of each public method that talks to the store (url() does not).
CALLS = {
    "put_file": lambda store, src: store.put_file(src, "x/a.bin"),
    "put_bytes": lambda store, src: store.put_bytes("x/a.bin", b"data"),
    "get_bytes": lambda store, src: store.get_bytes("x/a.bin"),
    "list_keys": lambda store, src: store.list_keys("x"),
    "delete_prefix": lambda store, src: store.delete_prefix("x"),
    "publish": lambda store, src: store.publish("x", "y", last="a.bin"),
}
# The request of each method that a 403 is injected into (list_keys, delete_prefix and publish list first).
REQUEST = {
    "put_file": ("POST", r"^/upload/"),
    "put_bytes": ("POST", r"^/upload/"),
    "get_bytes": ("GET", r"^/download/"),
    "list_keys": ("GET", rf"^/storage/v1/b/{BUCKET}/o\?"),
    "delete_prefix": ("DELETE", r"/o/releases%2Fx%2Fa\.bin"),
    "publish": ("POST", r"/copyTo/"),
}


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"data")
    return path


@pytest.mark.parametrize("method", CALLS)
def test_missing_bucket_is_one_user_error_line(gcs, src, method):
    # The name has no "bucket" in it: telling a missing bucket from a missing object must not read the message.
    store = open_store("gs://absent-firmware/releases")
    with pytest.raises(UserError, match=r"^bucket gs://absent-firmware does not exist; create it or fix --dest$"):
        CALLS[method](store, src)


@pytest.mark.parametrize("method", CALLS)
def test_refused_permission_is_one_user_error_line(gcs, src, method):
    store = open_store(f"gs://{BUCKET}/releases")
    store.put_bytes("x/a.bin", b"data")
    fault = gcs.fail(*REQUEST[method], status=403)
    with pytest.raises(UserError) as err:
        CALLS[method](store, src)
    assert fault.served == 1
    message = str(err.value)  # the server's reason in parentheses (google-cloud-storage adds the request)
    assert message.startswith(
        f"permission denied on gs://{BUCKET}: the account needs roles/storage.objectAdmin on the bucket ("
    )
    assert "injected" in message and "\n" not in message


def test_rejected_credentials_are_one_user_error_line(gcs):
    """A 401 (google-cloud-storage then tries to renew the credentials, which anonymous ones cannot)."""
    store = open_store(f"gs://{BUCKET}/releases")
    gcs.fail("GET", r"^/download/", status=401, times=5)
    with pytest.raises(UserError, match=rf"^Google Cloud refused the credentials to write gs://{BUCKET}: set "):
        store.get_bytes("x/a.bin")


def test_absent_objects_need_no_bucket_permission(gcs):
    """roles/storage.objectAdmin, the role the error names, lacks storage.buckets.get: an absent object (the
    first push's LATEST) must be told from an absent bucket without reading the bucket itself."""
    store = open_store(f"gs://{BUCKET}/releases")
    bucket_get = gcs.fail("GET", rf"^/storage/v1/b/{BUCKET}\?", status=403, times=100)
    assert store.get_bytes("vww/cortex-m7/LATEST") is None
    assert store.list_keys("vww") == []
    store.delete_prefix("vww/.staging/none")
    assert bucket_get.served == 0


def test_bad_destination_names_are_user_errors(tmp_path, gcs):
    with pytest.raises(UserError, match=r"^bucket name gs://bad_ is not valid \(.*\); fix --dest$"):
        open_store("gs://bad_/releases")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for dest in (a_file, a_file / "releases"):
        with pytest.raises(UserError, match=rf"^destination {dest}: {a_file} is a file, not a folder"):
            open_store(str(dest))


def push_argv(tmp_path, dest: str) -> list[str]:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.tflite").write_bytes(b"\x00" * 64)
    return ["push", str(bundle), "--dest", dest, "--model-name", "vww", "--device", "cortex-m7"]


def test_refused_credentials_are_one_error_line(tmp_path, monkeypatch, capsys):
    """A service-account key that Google's token endpoint refuses (revoked, or of a deleted account)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    token_requests = []

    class TokenEndpoint(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            token_requests.append(self.path)
            body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), TokenEndpoint)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "edgenas-test", "private_key_id": "1",
        "private_key": key.decode(), "client_email": "ci@edgenas-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"http://127.0.0.1:{server.server_address[1]}/token",
    }))  # fmt: skip
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    try:
        assert main(push_argv(tmp_path, "gs://firmware/releases")) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert token_requests
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: Google Cloud refused the credentials to write gs://firmware: ")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line and "invalid_grant" in line


def test_unreachable_storage_is_one_error_line_after_the_retries(tmp_path, monkeypatch, capsys):
    """Nothing listens at the storage host: the retries give up (``RetryError``, shortened here from 120 s to
    1 s) and the CLI says the push failed and LATEST is unchanged, without a traceback."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(
        storage, "_transient_retry", lambda: DEFAULT_RETRY.with_delay(0.05, 0.1).with_timeout(1.0)
    )
    assert main(push_argv(tmp_path, "gs://firmware/releases")) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: push of") and "gs://firmware/releases" in line
    assert "LATEST is unchanged" in line
