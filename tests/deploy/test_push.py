"""The pusher on a local folder and on a real GCS emulator: complete versions, idempotence, interruptions.

What a firmware engineer relies on: ``LATEST`` names a version whose files are byte-identical to the bundle
and listed with their sha256 in ``PUSHED.json``; a failed push never moves ``LATEST`` and never leaves a
folder with ``PUSHED.json`` in it. Destinations are read back here with plain file reads or the raw
google-cloud-storage client, not through our storage layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from gcs_fault_proxy import BUCKET

from deploy.push import PushVerificationError, content_hash, push_bundle, scan_bundle
from edgenas_keras.errors import UserError

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 26, 17, 12, tzinfo=timezone.utc)


def make_bundle(root: Path, seed: int, big: int = 0, source: str = "run-1/model.tflite") -> Path:
    """A small bundle in the layout of edgenas_keras.tflite.bundle (manifest.json: provenance + sha256 of each file);
    ``big`` adds a file of that many bytes sorted after the others."""
    root.mkdir(parents=True)
    (root / "model.tflite").write_bytes(bytes((seed * 7 + i) % 256 for i in range(3000)))
    (root / "src").mkdir()
    (root / "src" / "model_data.cc").write_text(
        f"// seed {seed}\nconst unsigned char g_model[] = {{1, 2, 3}};\n"
    )
    if big:
        (root / "zz_large.bin").write_bytes(os.urandom(big))
    files = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }
    (root / "manifest.json").write_text(json.dumps({"model": {"source": source}, "files": files}))
    return root


def read_tree(dest: str) -> dict[str, bytes]:
    """Every object under ``dest`` as {relative key: bytes}, read without our storage code."""
    if dest.startswith("gs://"):
        from google.cloud import storage

        bucket, _, prefix = dest[5:].partition("/")
        client = storage.Client()
        return {
            b.name[len(prefix) + 1 :]: b.download_as_bytes()
            for b in client.list_blobs(bucket, prefix=prefix + "/")
        }
    root = Path(dest)
    return (
        {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        if root.exists()
        else {}
    )


def write_object(dest: str, key: str, data: bytes) -> None:
    """Put ``data`` at ``key`` under ``dest``, without our storage code (a hand-made destination)."""
    if dest.startswith("gs://"):
        from google.cloud import storage

        bucket, _, prefix = dest[5:].partition("/")
        storage.Client().bucket(bucket).blob(f"{prefix}/{key}").upload_from_string(data)
    else:
        path = Path(dest, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def complete_versions(tree: dict[str, bytes], base: str = "vww/cortex-m7") -> set[str]:
    return {
        k.split("/")[2]
        for k in tree
        if k.startswith(base + "/") and k.endswith("/PUSHED.json") and k.count("/") == 3
    }


@pytest.fixture(params=["local", "gcs"])
def dest(request, tmp_path):
    if request.param == "gcs":
        request.getfixturevalue("gcs")
        return f"gs://{BUCKET}/releases"
    return str(tmp_path / "releases")


def test_push_publishes_a_complete_version_and_latest(tmp_path, dest):
    bundle = make_bundle(tmp_path / "bundle", seed=1)
    result = push_bundle(bundle, dest, "vww", "cortex-m7", now=T0)

    assert result.created
    assert result.version.startswith("20261126T1712Z-") and len(result.version) == len("20261126T1712Z-") + 8
    assert result.uri == f"{dest}/vww/cortex-m7/{result.version}"
    tree = read_tree(dest)
    prefix = f"vww/cortex-m7/{result.version}/"
    for rel in ("model.tflite", "src/model_data.cc", "manifest.json"):
        assert tree[prefix + rel] == (bundle / rel).read_bytes()
    marker = json.loads(tree[prefix + "PUSHED.json"])
    assert {rel: e["sha256"] for rel, e in marker["files"].items()} == {
        rel: hashlib.sha256(tree[prefix + rel]).hexdigest() for rel in result.files
    }
    listing = "".join(
        f"{marker['files'][r]['sha256']}  {r}\n" for r in sorted(marker["files"]) if r != "manifest.json"
    )
    assert marker["content_sha256"] == hashlib.sha256(listing.encode()).hexdigest() == result.content_sha256
    assert result.version.endswith(result.content_sha256[:8])
    latest = json.loads(tree["vww/cortex-m7/LATEST"])
    assert latest["version"] == result.version and latest["uri"] == result.uri
    assert not [k for k in tree if "/.staging/" in k], "staging leftovers after a clean push"


def test_identical_content_is_pushed_once(tmp_path, dest):
    first = push_bundle(make_bundle(tmp_path / "a", seed=1), dest, "vww", "cortex-m7", now=T0)
    again = push_bundle(
        make_bundle(tmp_path / "a_copy", seed=1), dest, "vww", "cortex-m7", now=T0.replace(hour=18)
    )
    assert (again.created, again.version, again.uri) == (False, first.version, first.uri)
    assert complete_versions(read_tree(dest)) == {first.version}

    second = push_bundle(
        make_bundle(tmp_path / "b", seed=2), dest, "vww", "cortex-m7", now=T0.replace(hour=19)
    )
    assert second.created and second.version != first.version
    assert json.loads(read_tree(dest)["vww/cortex-m7/LATEST"])["version"] == second.version

    # Re-pushing the first model makes it the latest again without a third version.
    back = push_bundle(tmp_path / "a", dest, "vww", "cortex-m7", now=T0.replace(hour=20))
    tree = read_tree(dest)
    assert (back.created, back.version) == (False, first.version)
    assert complete_versions(tree) == {first.version, second.version}
    assert json.loads(tree["vww/cortex-m7/LATEST"])["version"] == first.version


def test_same_files_with_other_provenance_are_the_same_model(tmp_path, dest):
    """Two pipeline runs bundling the same model differ only in manifest.json's provenance: one version."""
    first = push_bundle(
        make_bundle(tmp_path / "a", seed=1, source="run-1/m.tflite"), dest, "vww", "cortex-m7"
    )
    again = push_bundle(
        make_bundle(tmp_path / "b", seed=1, source="run-2/m.tflite"), dest, "vww", "cortex-m7"
    )
    assert (again.created, again.version) == (False, first.version)
    assert complete_versions(read_tree(dest)) == {first.version}


def test_bundle_that_contradicts_its_manifest_is_not_pushed(tmp_path, dest):
    bundle = make_bundle(tmp_path / "bundle", seed=3)
    (bundle / "model.tflite").write_bytes(b"truncated")
    with pytest.raises(UserError, match="model.tflite does not match manifest.json"):
        push_bundle(bundle, dest, "vww", "cortex-m7")
    assert read_tree(dest) == {}


def test_bad_destinations_and_names_are_user_errors(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", seed=4)
    with pytest.raises(UserError, match="s3://x"):
        push_bundle(bundle, "s3://x/y", "vww", "cortex-m7")
    with pytest.raises(UserError, match="device 'cortex m7'"):
        push_bundle(bundle, str(tmp_path / "out"), "vww", "cortex m7")
    with pytest.raises(UserError, match="does not exist"):
        push_bundle(tmp_path / "nope", str(tmp_path / "out"), "vww", "cortex-m7")


def test_missing_bucket_is_a_user_error(tmp_path, gcs):
    with pytest.raises(UserError, match="bucket gs://no-such-bucket does not exist"):
        push_bundle(make_bundle(tmp_path / "bundle", seed=5), "gs://no-such-bucket/x", "vww", "cortex-m7")


def test_local_push_interrupted_by_a_refused_write_leaves_latest_alone(tmp_path):
    """A real OS failure mid-push: the file-size limit (RLIMIT_FSIZE) makes the largest file's write fail
    with EFBIG after the other three were staged, as a full disk would."""
    dest = str(tmp_path / "releases")
    first = push_bundle(make_bundle(tmp_path / "v1", seed=1), dest, "vww", "cortex-m7", now=T0)
    latest_before = read_tree(dest)["vww/cortex-m7/LATEST"]
    bundle = make_bundle(tmp_path / "v2", seed=2, big=400_000)

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    cmd = [sys.executable, "-m", "pipeline.cli", "push", str(bundle), "--dest", dest,
           "--model-name", "vww", "--device", "cortex-m7"]  # fmt: skip
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, preexec_fn=limit_file_size, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: push of") and "File too large" in proc.stderr
    assert "LATEST is unchanged" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

    tree = read_tree(dest)
    assert tree["vww/cortex-m7/LATEST"] == latest_before
    assert complete_versions(tree) == {first.version}
    assert not [k for k in tree if "/.staging/" in k], "the failed push did not clean its staging"

    # Once the destination accepts writes again, the same bundle pushes normally.
    retry = push_bundle(bundle, dest, "vww", "cortex-m7")
    assert retry.created and json.loads(read_tree(dest)["vww/cortex-m7/LATEST"])["version"] == retry.version


@pytest.mark.parametrize(
    "phase, method, path_re",
    [
        ("upload", "POST", r"^/upload/storage/v1/b/firmware/o"),  # the second staged upload is refused
        ("publish", "POST", r"/copyTo/"),  # the second server-side copy into the version is refused
    ],
)
def test_gcs_push_interrupted_between_files_leaves_no_complete_version(tmp_path, gcs, phase, method, path_re):
    dest = f"gs://{BUCKET}/releases"
    first = push_bundle(make_bundle(tmp_path / "v1", seed=1), dest, "vww", "cortex-m7", now=T0)
    latest_before = read_tree(dest)["vww/cortex-m7/LATEST"]

    fault = gcs.fail(method, path_re, status=403, skip=1)
    bundle = make_bundle(tmp_path / "v2", seed=2)
    with pytest.raises(UserError, match="permission denied"):
        push_bundle(bundle, dest, "vww", "cortex-m7", now=T0.replace(hour=18))
    assert fault.served == 1

    tree = read_tree(dest)
    assert tree["vww/cortex-m7/LATEST"] == latest_before
    assert complete_versions(tree) == {first.version}
    if phase == "publish":  # one file reached the version folder, but without its marker it is not a version
        partial = [k for k in tree if k.startswith("vww/cortex-m7/20261126T1812Z-")]
        assert partial and not any(k.endswith("PUSHED.json") for k in partial)

    # Pushing again (same minute, so the same version name) completes the version over any leftover.
    done = push_bundle(bundle, dest, "vww", "cortex-m7", now=T0.replace(hour=18))
    tree = read_tree(dest)
    assert done.created and complete_versions(tree) == {first.version, done.version}
    assert json.loads(tree["vww/cortex-m7/LATEST"])["version"] == done.version
    assert tree[f"vww/cortex-m7/{done.version}/model.tflite"] == (bundle / "model.tflite").read_bytes()


def test_gcs_transient_errors_are_retried(tmp_path, gcs):
    dest = f"gs://{BUCKET}/releases"
    faults = [
        gcs.fail("POST", r"^/upload/storage/v1/b/firmware/o", status=503, skip=1, times=2),
        gcs.fail("GET", r"^/download/.*model\.tflite", status=500),
        gcs.fail("POST", r"/copyTo/", status=429),
    ]
    bundle = make_bundle(tmp_path / "bundle", seed=6)
    result = push_bundle(bundle, dest, "vww", "cortex-m7")
    assert [f.served for f in faults] == [2, 1, 1]
    tree = read_tree(dest)
    assert tree[f"vww/cortex-m7/{result.version}/model.tflite"] == (bundle / "model.tflite").read_bytes()
    assert json.loads(tree["vww/cortex-m7/LATEST"])["version"] == result.version


def test_staged_copy_that_reads_back_different_is_not_published(tmp_path, gcs):
    """A store that silently corrupts: the read-back check catches it before anything is published."""
    dest = f"gs://{BUCKET}/releases"
    bundle = make_bundle(tmp_path / "bundle", seed=7)
    gcs.corrupt_downloads = r"model\.tflite"
    with pytest.raises(PushVerificationError, match="model.tflite"):
        push_bundle(bundle, dest, "vww", "cortex-m7")
    gcs.corrupt_downloads = None
    tree = read_tree(dest)
    assert complete_versions(tree) == set() and "vww/cortex-m7/LATEST" not in tree


def test_cli_push_prints_one_json_object_and_errors_are_one_line(tmp_path, capsys):
    from pipeline.cli import main

    bundle = make_bundle(tmp_path / "bundle", seed=8)
    dest = str(tmp_path / "releases")
    argv = ["push", str(bundle), "--dest", dest, "--model-name", "vww", "--device", "cortex-m7", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["created"] is True and Path(out["uri"], "PUSHED.json").is_file()
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["version"] == out["version"]

    assert (
        main(["push", str(tmp_path / "missing"), "--dest", dest, "--model-name", "vww", "--device", "m7"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: bundle") and "missing" in err and len(err.strip().splitlines()) == 1


def test_version_clash_is_one_error_line_and_leaves_the_destination_as_it_was(tmp_path, dest):
    """Other content already holds the version name this push computes (the same minute and the same first 8
    hex of the content hash): the real CLI exits 2 with one line naming that version, and writes nothing."""
    bundle = make_bundle(tmp_path / "bundle", seed=9)
    digest = content_hash(scan_bundle(bundle))
    minute = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    # The CLI picks its own minute: take this one and the next two, so the clash holds if a minute turns.
    taken = [f"{minute + timedelta(minutes=m):%Y%m%dT%H%MZ}-{digest[:8]}" for m in range(3)]
    for version in taken:
        other = {"version": version, "content_sha256": digest[:8] + "0" * 56}
        write_object(dest, f"vww/cortex-m7/{version}/model.tflite", b"another model")
        write_object(dest, f"vww/cortex-m7/{version}/PUSHED.json", json.dumps(other).encode())
    before = read_tree(dest)

    cmd = [str(Path(sys.executable).with_name("edgenas")), "push", str(bundle), "--dest", dest,
           "--model-name", "vww", "--device", "cortex-m7"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    version = line.removeprefix("error: version ").split()[0]
    assert version in taken and f"{dest}/vww/cortex-m7/{version}" in line and "push again in a minute" in line
    assert read_tree(dest) == before, "the refused push wrote or removed something"


def test_damaged_latest_and_marker_do_not_stop_a_push(tmp_path, dest):
    """A hand-edited LATEST (not JSON) is rewritten; a version whose PUSHED.json is damaged does not count as
    this content, so the push publishes a new complete version."""
    bundle = make_bundle(tmp_path / "bundle", seed=10)
    first = push_bundle(bundle, dest, "vww", "cortex-m7", now=T0)
    write_object(dest, "vww/cortex-m7/LATEST", f"{first.version}\n".encode())
    write_object(dest, f"vww/cortex-m7/{first.version}/PUSHED.json", b'{"content_sha256": "trunc')

    again = push_bundle(bundle, dest, "vww", "cortex-m7", now=T0.replace(hour=18))
    tree = read_tree(dest)
    assert again.created and complete_versions(tree) == {first.version, again.version}
    assert json.loads(tree["vww/cortex-m7/LATEST"])["version"] == again.version
    assert tree[f"vww/cortex-m7/{again.version}/model.tflite"] == (bundle / "model.tflite").read_bytes()
