"""Storage backends for the pusher: a local folder, or a Google Cloud Storage bucket and prefix.

The pusher (deploy/push.py) needs only a handful of operations, and the two backends differ in the one that
matters for "a version is complete or absent": a local folder can publish a staged directory with one
atomic rename, whereas GCS has no rename, so publishing copies the staged objects one by one and writes the
completion marker last. Both are hidden behind ``publish(staging, final, last)``.

Keys are '/'-separated paths relative to the destination root, as in an object store.

GCS calls retry transient errors (429, 5xx, connection resets, timeouts) with bounded exponential backoff
(``TRANSIENT_RETRY``). We pass the retry explicitly on every call because google-cloud-storage retries an
upload by default only when it carries a generation precondition; our uploads go to fresh staging names or
overwrite an object with identical content, so repeating them is safe. ``STORAGE_EMULATOR_HOST`` is honoured
by google-cloud-storage itself (anonymous credentials, no project needed), which is how the tests run
against ``gcp-storage-emulator``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgenas_keras._fs import atomic_write_bytes
from edgenas_keras.errors import UserError

GCS_SCHEME = "gs://"


def _transient_retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    # Delays 0.25 s, 0.5 s, 1 s ... capped at 8 s; give up after 120 s of trying one call.
    return DEFAULT_RETRY.with_delay(initial=0.25, maximum=8.0, multiplier=2.0).with_timeout(120.0)


def _norm_prefix(prefix: str) -> str:
    return prefix.strip("/")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _first_line(value) -> str:
    """The first line of a message; of an exception's first argument (google-auth's exceptions print as a
    tuple)."""
    if isinstance(value, BaseException) and value.args:
        value = value.args[0]
    lines = str(value).strip().splitlines()
    return lines[0] if lines else ""


class LocalStore:
    """A destination folder on a local or mounted file system."""

    def __init__(self, root: str | os.PathLike):
        """Raises ``UserError`` if ``root``, or the nearest of its parents that exists, is not a folder."""
        self.root = Path(root).expanduser().resolve()
        existing = next(p for p in (self.root, *self.root.parents) if p.exists())
        if not existing.is_dir():
            raise UserError(
                f"destination {root}: {existing} is a file, not a folder; give a folder or gs://bucket/prefix"
            )

    def url(self, key: str = "") -> str:
        """The path of ``key`` under the root, as a string (the root itself for ``""``); it need not exist."""
        return str(self.root / key) if key else str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def put_file(self, src: Path, key: str) -> None:
        """Copy the local file ``src`` to ``key``, creating the parent folders and overwriting an existing
        file.

        Not atomic: the file is written in place (the pusher writes under a staging prefix, then ``publish``).
        """
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key`` atomically (``edgenas_keras._fs``): readers never see half a file.
        ``OSError`` (full disk, refused permission) propagates and leaves ``key`` as it was."""
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dst, data)

    def get_bytes(self, key: str) -> bytes | None:
        """The content of the file ``key``, or ``None`` if there is no such file (other OS errors
        propagate)."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list_keys(self, prefix: str) -> list[str]:
        """Every file below the folder ``prefix``, as sorted keys relative to the root (``prefix`` included,
        not stripped); ``[]`` if ``prefix`` is not a folder."""
        base = self._path(_norm_prefix(prefix))
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def delete_prefix(self, prefix: str) -> None:
        """Remove the folder ``prefix`` and everything in it (no error if it is absent or partly undeletable),
        then its parent folder if that is now empty. An empty ``prefix`` names the root itself."""
        path = self._path(_norm_prefix(prefix))
        shutil.rmtree(path, ignore_errors=True)
        try:  # drop the parent too once empty (the .staging folder), so a clean push leaves a clean tree
            path.parent.rmdir()
        except OSError:
            pass

    def publish(self, staging: str, final: str, last: str) -> None:
        """Rename the staged folder to ``final`` in one step (``last`` is already inside it)."""
        src, dst = self._path(_norm_prefix(staging)), self._path(_norm_prefix(final))
        if (dst / last).exists():  # a concurrent push of the same content (same name) finished first
            shutil.rmtree(src)
            return
        if dst.exists():
            shutil.rmtree(dst)  # an incomplete leftover of this version name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)


class GcsStore:
    """A ``gs://bucket/prefix`` destination through google-cloud-storage.

    Every storage call goes through ``_call``, the one place that turns the user's problems into a
    ``UserError`` of one line: a bucket that does not exist, a refused permission, credentials that are
    missing or refused. An object that is not there stays ``google.api_core.exceptions.NotFound`` for the
    method to handle; other errors (a transient error that outlasted the retries: ``RetryError``)
    propagate.
    """

    def __init__(self, bucket: str, prefix: str = "", client=None):
        """Raises ``UserError`` if there are no Google Cloud credentials or ``bucket`` is not a valid name."""
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage

        self.bucket_name = bucket
        self.prefix = _norm_prefix(prefix)
        self.retry = _transient_retry()
        try:
            self.client = client or storage.Client()
        except DefaultCredentialsError as exc:
            raise UserError(self._credentials_hint(exc, "no Google Cloud credentials")) from exc
        try:
            self.bucket = self.client.bucket(bucket)
        except ValueError as exc:  # google-cloud-storage checks the name's first and last character
            raise UserError(f"bucket name gs://{bucket} is not valid ({exc}); fix --dest") from exc

    def _credentials_hint(self, exc, what: str) -> str:
        return (
            f"{what} to write gs://{self.bucket_name}: set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
            f"key file or run `gcloud auth application-default login` ({_first_line(exc)})"
        )

    def url(self, key: str = "") -> str:
        """``gs://bucket/<store prefix>/<key>`` (the destination itself for ``""``), without a trailing
        ``/``."""
        return f"{GCS_SCHEME}{self.bucket_name}/{_join(self.prefix, key)}".rstrip("/")

    def _name(self, key: str) -> str:
        return _join(self.prefix, key)

    def _bucket_exists(self) -> bool:
        # Listing at most one object needs storage.objects.list, which roles/storage.objectAdmin grants;
        # Bucket.exists() would need storage.buckets.get, which it does not.
        from google.api_core import exceptions as gexc

        try:
            next(iter(self.client.list_blobs(self.bucket_name, max_results=1, retry=self.retry)), None)
        except gexc.NotFound:
            return False
        return True

    def _call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, one storage call. Raises ``UserError`` if the bucket does not exist, the
        account may not do this or its credentials are missing or refused; ``NotFound`` if the bucket exists
        but the object does not; other errors of the call propagate."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        try:
            return fn(*args, **kwargs)
        except gexc.NotFound:
            if self._call(self._bucket_exists):
                raise
            raise UserError(f"bucket gs://{self.bucket_name} does not exist; create it or fix --dest") from None
        except gexc.Forbidden as exc:
            raise UserError(
                f"permission denied on gs://{self.bucket_name}: the account needs roles/storage.objectAdmin "
                f"on the bucket ({_first_line(exc)})"
            ) from exc
        except (gexc.Unauthorized, auth_exc.RefreshError, auth_exc.DefaultCredentialsError) as exc:
            raise UserError(self._credentials_hint(exc, "Google Cloud refused the credentials")) from exc

    def put_file(self, src: Path, key: str) -> None:
        """Upload the local file ``src`` as the object ``key`` (replacing it), retrying transient errors.

        GCS makes an object visible only once it is whole. Raises ``UserError`` as ``_call`` does.
        """
        blob = self.bucket.blob(self._name(key))
        self._call(blob.upload_from_filename, str(src), retry=self.retry)

    def put_bytes(self, key: str, data: bytes) -> None:
        """One object upload: GCS makes an object visible only once it is whole. Raises ``UserError`` as
        ``_call`` does."""
        blob = self.bucket.blob(self._name(key))
        self._call(blob.upload_from_string, data, content_type="application/octet-stream", retry=self.retry)

    def get_bytes(self, key: str) -> bytes | None:
        """The content of the object ``key``, or ``None`` if there is no such object. Raises ``UserError`` as
        ``_call`` does (a missing bucket is an error, not ``None``)."""
        from google.api_core import exceptions as gexc

        try:
            return self._call(self.bucket.blob(self._name(key)).download_as_bytes, retry=self.retry)
        except gexc.NotFound:
            return None

    def list_keys(self, prefix: str) -> list[str]:
        """The objects whose names start with ``<store prefix>/<prefix>/``, as sorted keys relative to the
        store's prefix (``prefix`` included, not stripped); ``[]`` if there are none. Raises ``UserError`` as
        ``_call`` does."""
        name_prefix = _join(self.prefix, prefix) + "/"
        blobs = self._call(
            lambda: list(self.client.list_blobs(self.bucket_name, prefix=name_prefix, retry=self.retry))
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(b.name[strip:] for b in blobs)

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object ``list_keys(prefix)`` finds, one at a time (not atomic); objects already gone
        are skipped. Raises ``UserError`` as ``_call`` does."""
        from google.api_core import exceptions as gexc

        for key in self.list_keys(prefix):
            try:
                self._call(self.bucket.blob(self._name(key)).delete, retry=self.retry)
            except gexc.NotFound:
                pass

    def publish(self, staging: str, final: str, last: str) -> None:
        """Server-side copy of every staged object to ``final``, the ``last`` key after all the others.

        Raises ``UserError`` as ``_call`` does, and if ``last`` is not staged (the staging prefix was
        deleted during the push)."""
        staging, final = _norm_prefix(staging), _norm_prefix(final)
        keys = self.list_keys(staging)
        last_key = _join(staging, last)
        if last_key not in keys:
            raise UserError(
                f"staging {self.url(staging)} lacks {last}: it was deleted during the push; push again"
            )
        for key in [k for k in keys if k != last_key] + [last_key]:
            rel = key[len(staging) + 1 :]
            src = self.bucket.blob(self._name(key))
            self._call(
                self.bucket.copy_blob, src, self.bucket, self._name(_join(final, rel)), retry=self.retry
            )


def open_store(dest: str) -> LocalStore | GcsStore:
    """``gs://bucket[/prefix]`` -> GcsStore; a path -> LocalStore; any other URL scheme is a user error."""
    if dest.startswith(GCS_SCHEME):
        bucket, _, prefix = dest[len(GCS_SCHEME) :].partition("/")
        if not bucket:
            raise UserError(f"destination {dest} names no bucket; use gs://BUCKET/PREFIX")
        return GcsStore(bucket, prefix)
    if "://" in dest:
        raise UserError(f"destination {dest}: only local folders and gs://bucket/prefix are supported")
    return LocalStore(dest)
