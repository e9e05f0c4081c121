"""Push a firmware bundle to a local folder or ``gs://bucket/prefix``, one immutable version per content.

Layout under the destination::

    DEST/<model-name>/<device>/<version>/...        the bundle's files, unchanged
    DEST/<model-name>/<device>/<version>/PUSHED.json  completion marker: files, sha256 of each, content hash
    DEST/<model-name>/<device>/LATEST                 {"version": ..., "uri": ..., ...}, written last
    DEST/<model-name>/<device>/.staging/...           in-flight uploads (leftovers of a crash are safe to delete)

Firmware teams read ``LATEST`` and fetch that version; nothing else needs to know how the pusher works.

Why this shape:
- A version is *complete or absent*. Files are uploaded under ``.staging/``, read back and checked against
  their sha256, and only then published under the version name, with ``PUSHED.json`` arriving last (a
  local folder is renamed in one step; GCS objects are copied server-side, the marker after the rest).
  A version folder without ``PUSHED.json`` is an interrupted push and is never pointed to by ``LATEST``.
- The version name is ``<UTC time to the minute>-<first 8 hex of the content hash>``: sortable by time,
  and two pushes of the same model are recognised by their hash. Pushing content that already has a
  complete version creates nothing new; it returns that version (and points ``LATEST`` back at it if
  needed, so ``LATEST`` is always the most recently pushed model).
- The content hash is the sha256 of the ``sha256sum``-style listing ``<sha256>  <relative path>``, sorted by
  path, of every file except the bundle's ``manifest.json``: that file is provenance (source path, git
  revision, tool versions) and differs between two runs that produce byte-identical firmware files, which
  must count as the same model. The manifest is still pushed, checked and listed in ``PUSHED.json``.
- If the bundle carries a ``manifest.json`` (edgenas_keras.tflite.bundle writes one) with ``{"files": {"<relative
  path>": "<sha256>"}}``, every listed file must exist and match before anything is uploaded: a corrupt
  bundle is never pushed.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from deploy.storage import open_store
from edgenas_keras._fs import sha256_file
from edgenas_keras.errors import UserError

MARKER = "PUSHED.json"
LATEST = "LATEST"
STAGING = ".staging"
BUNDLE_MANIFEST = "manifest.json"
VERSION_RE = re.compile(r"^(\d{8}T\d{4}Z)-([0-9a-f]{8})$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PushVerificationError(RuntimeError):
    """A staged copy does not match the bundle (corrupted in transit or by the store): nothing was published."""


@dataclass(frozen=True)
class PushResult:
    """The outcome of ``push_bundle`` (``to_dict`` is the ``--json`` output of ``edgenas push``).

    Attributes:
        uri: the version folder, e.g. ``gs://bucket/prefix/vww/cortex-m7/20261126T1712Z-1a2b3c4d``.
        version: its name, ``<UTC time to the minute>-<first 8 hex of content_sha256>``.
        created: True if this push published the version; False if identical content had already been pushed
            and this is that version (nothing was uploaded).
        files: the bundle's files, as paths relative to the version folder (``PUSHED.json`` not included).
        content_sha256: the content hash (``content_hash``: every file but ``manifest.json``), 64 hex digits.
        latest_uri: the ``LATEST`` file of this model and device, which names ``version`` after the push.
    """

    uri: str  # the version folder, e.g. gs://bucket/prefix/vww/cortex-m7/20261126T1712Z-1a2b3c4d
    version: str
    created: bool  # False: identical content was already pushed, this is that version
    files: tuple[str, ...]  # relative paths inside the version folder (PUSHED.json excluded)
    content_sha256: str
    latest_uri: str

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (``files`` as a list)."""
        return {
            "uri": self.uri,
            "version": self.version,
            "created": self.created,
            "files": list(self.files),
            "content_sha256": self.content_sha256,
            "latest_uri": self.latest_uri,
        }


def content_hash(files: dict[str, str]) -> str:
    """sha256 of the sorted ``sha256sum`` listing of ``{relative path: sha256}``, manifest.json excluded."""
    listing = "".join(f"{files[rel]}  {rel}\n" for rel in sorted(files) if rel != BUNDLE_MANIFEST)
    return hashlib.sha256(listing.encode()).hexdigest()


def scan_bundle(bundle_dir: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file, checked against the bundle's manifest if it has one."""
    if not bundle_dir.is_dir():
        raise UserError(f"bundle {bundle_dir} does not exist or is not a directory")
    files = {}
    for p in sorted(bundle_dir.rglob("*")):
        if p.is_symlink() or not p.is_file():
            if p.is_symlink():
                raise UserError(f"bundle file {p} is a symlink; copy the file into the bundle instead")
            continue
        files[p.relative_to(bundle_dir).as_posix()] = sha256_file(p)
    if not files:
        raise UserError(f"bundle {bundle_dir} is empty; nothing to push")
    if MARKER in files:
        raise UserError(
            f"bundle {bundle_dir} contains {MARKER}, a name the pusher reserves; rename that file"
        )
    manifest_path = bundle_dir / BUNDLE_MANIFEST
    if manifest_path.is_file():
        try:
            listed = json.loads(manifest_path.read_text()).get("files", {})
        except (json.JSONDecodeError, AttributeError) as exc:
            raise UserError(f"bundle manifest {manifest_path} is not a JSON object: {exc}") from exc
        if not isinstance(listed, dict):
            raise UserError(f"bundle manifest {manifest_path}: 'files' must map file names to sha256")
        for rel, want in listed.items():
            if rel not in files:
                raise UserError(
                    f"bundle {bundle_dir} lacks {rel}, listed in {BUNDLE_MANIFEST}; rebuild the bundle"
                )
            if files[rel] != want:
                raise UserError(
                    f"bundle file {bundle_dir / rel} does not match {BUNDLE_MANIFEST} (sha256 {files[rel][:12]}... "
                    f"vs {str(want)[:12]}...); the bundle is corrupt, rebuild it"
                )
    return files


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise UserError(f"{what} {value!r} must be 1-128 characters of letters, digits, '.', '_' or '-'")
    return value


def _json_object(data: bytes | None) -> dict:
    """``data`` parsed as a JSON object; ``{}`` for ``None`` or anything else (a hand-edited or damaged
    ``LATEST`` or ``PUSHED.json`` then names no version and no content)."""
    try:
        obj = json.loads(data) if data is not None else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _find_version(store, base: str, digest: str) -> str | None:
    """The complete version holding exactly this content, if any (newest first); a version whose
    ``PUSHED.json`` cannot be read as JSON does not count."""
    versions = set()
    for key in store.list_keys(base):
        parts = key[len(base) + 1 :].split("/")
        if len(parts) == 2 and parts[1] == MARKER:
            m = VERSION_RE.match(parts[0])
            if m and m.group(2) == digest[:8]:
                versions.add(parts[0])
    for version in sorted(versions, reverse=True):
        if _json_object(store.get_bytes(f"{base}/{version}/{MARKER}")).get("content_sha256") == digest:
            return version
    return None


def push_bundle(
    bundle_dir, dest: str, model_name: str, device: str, now: datetime | None = None
) -> PushResult:
    """Publish ``bundle_dir`` as a new version under ``dest/model_name/device`` (or return the identical one).

    ``now`` fixes the version's timestamp (default: the current UTC time). Raises UserError for a bad bundle,
    destination or name, a missing bucket, refused permission or credentials, and a version clash (the
    version name is taken by other content: same minute, same first 8 hex of the content hash);
    PushVerificationError when a staged copy does not read back identical; ``OSError`` when a local write
    fails and the storage client's error when a transient error outlasts the retries. In every failure case
    ``LATEST`` and the existing versions are untouched and no new version carries ``PUSHED.json``. A
    ``LATEST`` that is not a JSON object is overwritten.
    """
    bundle_dir = Path(bundle_dir)
    _check_name(model_name, "model name")
    _check_name(device, "device")
    files = scan_bundle(bundle_dir)
    digest = content_hash(files)
    store = open_store(dest)
    base = f"{model_name}/{device}"

    version = _find_version(store, base, digest)
    created = version is None
    if created:
        now = now or datetime.now(timezone.utc)
        version = f"{now.astimezone(timezone.utc):%Y%m%dT%H%MZ}-{digest[:8]}"
        final = f"{base}/{version}"
        staging = f"{base}/{STAGING}/{version}-{uuid.uuid4().hex[:8]}"
        if store.get_bytes(f"{final}/{MARKER}") is not None:  # same minute, different content, same 8 hex
            raise UserError(
                f"version {version} already exists at {store.url(final)} with other content (same minute, "
                "same first 8 hex of the content hash); nothing was pushed: push again in a minute"
            )
        try:
            for rel in files:
                store.put_file(bundle_dir / rel, f"{staging}/{rel}")
            for rel, want in files.items():
                got = store.get_bytes(f"{staging}/{rel}")
                if got is None or hashlib.sha256(got).hexdigest() != want:
                    raise PushVerificationError(
                        f"staged copy {store.url(f'{staging}/{rel}')} does not match {bundle_dir / rel}"
                    )
            marker = {
                "model_name": model_name,
                "device": device,
                "version": version,
                "content_sha256": digest,
                "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "files": {
                    rel: {"sha256": files[rel], "bytes": (bundle_dir / rel).stat().st_size} for rel in files
                },
            }
            store.put_bytes(f"{staging}/{MARKER}", json.dumps(marker, indent=2, sort_keys=True).encode())
            store.publish(staging, final, last=MARKER)
        finally:
            _best_effort_delete(store, staging)

    latest = {
        "version": version,
        "uri": store.url(f"{base}/{version}"),
        "content_sha256": digest,
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if _json_object(store.get_bytes(f"{base}/{LATEST}")).get("version") != version:
        store.put_bytes(f"{base}/{LATEST}", json.dumps(latest, indent=2, sort_keys=True).encode())
    return PushResult(
        uri=latest["uri"],
        version=version,
        created=created,
        files=tuple(files),
        content_sha256=digest,
        latest_uri=store.url(f"{base}/{LATEST}"),
    )


def _best_effort_delete(store, prefix: str) -> None:
    """Remove a staging prefix; a failure here must not hide the push's own outcome or error."""
    try:
        store.delete_prefix(prefix)
    except Exception:  # noqa: BLE001  (leftovers under .staging/ are harmless and documented)
        pass
