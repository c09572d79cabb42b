"""Writing to GCS: one object through a resumable upload that runs beside its producer, and the target.

A :class:`GCSObjectWriter` hands chunks to a :class:`~airflow_provider_pgbackup.pipeline.BackgroundWriter`
whose thread feeds the resumable upload, so pg_dump (or a file being read) keeps producing while
earlier chunks are sent. GCS makes an object visible only when its upload is finalized, which
:meth:`GCSObjectWriter.commit` alone does; :meth:`~GCSObjectWriter.abort` cancels the session, so nothing
with the final name appears.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.pipeline import BackgroundWriter
from airflow_provider_pgbackup.storage.base import (
    ArtifactDigest,
    ArtifactMismatchError,
    ObjectConflictError,
    Sha256Counter,
    StorageError,
    StorageSettings,
    backup_metadata,
)
from airflow_provider_pgbackup.storage.gcs.location import UPLOAD_ID_KEY, GCSLocation, make_client, retry
from airflow_provider_pgbackup.storage.ownership import check_object_replaceable
from airflow_provider_pgbackup.units import format_bytes

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)


class GCSObjectWriter:
    """One object written through a resumable upload; it exists on GCS only after :meth:`commit`.

    Bytes are hashed (sha256) as they are written; crc32c is computed by the client and compared with
    the server's at finalize. ``if_generation_match`` is 0 (create only) unless replacing a known object.
    Memory: the upload's own ``chunk_size`` buffer plus ``queue_chunks`` queued chunks.

    :param client: storage client.
    :param location: object to write.
    :param settings: chunk size, queue, retries, storage class, KMS key.
    :param metadata: custom object metadata (strings).
    :param content_type: the object's content type.
    :param if_generation_match: generation precondition of the finalize (0: the name must be free).
    :param expected_sha256: refuse to finalize unless the bytes written have this sha256.
    :param expected_size: the same for the size (and the total shown in progress lines).
    :param log: logger for progress lines every ``settings.progress_interval`` seconds (None: silent).
    """

    def __init__(
        self,
        client: storage.Client,
        location: GCSLocation,
        *,
        settings: StorageSettings,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
        if_generation_match: int = 0,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        log: Any | None = None,
    ) -> None:
        import secrets

        from google.cloud.storage.fileio import BlobWriter

        self.client = client
        self.location = location
        self.settings = settings
        self.expected_sha256 = expected_sha256
        self.expected_size = expected_size
        self.log = log
        self.upload_id = secrets.token_hex(8)
        self.bucket = client.bucket(location.bucket)
        blob = self.bucket.blob(
            location.name, chunk_size=settings.chunk_size, kms_key_name=settings.kms_key_name
        )
        blob.metadata = {**(metadata or {}), UPLOAD_ID_KEY: self.upload_id}
        if settings.storage_class:
            blob.storage_class = settings.storage_class
        self.blob = blob
        self._writer = BlobWriter(
            blob,
            chunk_size=settings.chunk_size,
            retry=retry(settings),
            content_type=content_type,
            if_generation_match=if_generation_match,
            checksum="crc32c",
        )
        self._background = BackgroundWriter(
            self._writer.write,
            max_queued_bytes=settings.queue_chunks * settings.chunk_size,
            name=f"upload-{location.basename}"[:40],
        )
        self._lock = threading.RLock()
        self._hash = Sha256Counter()
        self._finished = False
        self._started = time.monotonic()
        self._last_progress = self._started
        self.generation: int | None = None
        self.crc32c: str | None = None

    @property
    def bytes_written(self) -> int:
        return self._hash.size

    @property
    def sha256(self) -> str:
        return self._hash.sha256

    def write(self, chunk: bytes) -> None:
        if self._finished:
            raise RuntimeError(f"upload to {self.location.uri} was already committed or aborted")
        self._background.write(chunk)
        self._hash.update(chunk)
        now = time.monotonic()
        if self.log is not None and now - self._last_progress >= self.settings.progress_interval:
            self._last_progress = now
            self.log.info("%s", self.progress_line(now - self._started))

    def progress_line(self, elapsed: float) -> str:
        written = self._hash.size
        rate = written / elapsed if elapsed > 0 else 0.0
        total = f" of {format_bytes(self.expected_size)}" if self.expected_size is not None else ""
        return (
            f"Uploading {self.location.uri}: {format_bytes(written)}{total} in {elapsed:.0f} s "
            f"({format_bytes(rate)}/s)"
        )

    def commit(self) -> ArtifactDigest:
        """Check sha256/size, finalize the upload (the object appears), and check the server's size."""
        from google.api_core import exceptions

        with self._lock:
            if self._finished:
                raise RuntimeError(f"upload to {self.location.uri} was already committed or aborted")
            sha, written = self.sha256, self._hash.size
            if self.expected_sha256 is not None and sha != self.expected_sha256:
                self.abort()
                raise ArtifactMismatchError(
                    f"bytes read for {self.location.uri} have sha256 {sha}, not {self.expected_sha256} as "
                    "the manifest says; the local artifact is corrupt or was changed, nothing was uploaded"
                )
            if self.expected_size is not None and written != self.expected_size:
                self.abort()
                raise ArtifactMismatchError(
                    f"{written} bytes read for {self.location.uri}, not {self.expected_size} as the "
                    "manifest says; nothing was uploaded"
                )
            try:
                self._background.close()  # every queued chunk handed to the resumable upload
            except BaseException:
                self.abort()
                raise
            self._finished = True
            try:
                self._writer.close()  # sends the last chunk: the object appears now, not earlier
            except exceptions.PreconditionFailed as err:
                raise ObjectConflictError(
                    f"{self.location.uri} was created by someone else during the upload; not overwritten"
                ) from err
            except BaseException:
                self.delete_if_ours()
                raise
            try:
                blob = self.bucket.get_blob(self.location.name, retry=retry(self.settings))
                if blob is None or (blob.metadata or {}).get(UPLOAD_ID_KEY) != self.upload_id:
                    raise StorageError(f"{self.location.uri} is not the object just uploaded")
                if blob.size != written:
                    raise ArtifactMismatchError(
                        f"{self.location.uri} holds {blob.size} bytes after upload, not {written}"
                    )
                self.generation = blob.generation
                self.crc32c = blob.crc32c
            except BaseException:
                self.delete_if_ours()
                raise
            elapsed = max(time.monotonic() - self._started, 1e-9)
            if self.log is not None:
                self.log.info("Uploaded %s", self.progress_line(elapsed).split(" ", 1)[1])
            return ArtifactDigest(written, sha)

    def abort(self) -> None:
        """Cancel the resumable session: no object appears. Safe to call more than once."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._background.abort()
            with contextlib.suppress(Exception):
                self._writer.terminate()

    def delete_if_ours(self) -> None:
        """Delete the object if it is the one this writer uploaded (used to undo a commit)."""
        with contextlib.suppress(Exception):
            blob = self.bucket.get_blob(self.location.name, retry=retry(self.settings))
            if blob is not None and (blob.metadata or {}).get(UPLOAD_ID_KEY) == self.upload_id:
                blob.delete(if_generation_match=blob.generation, retry=retry(self.settings))

    def set_metadata(self, metadata: dict[str, str]) -> None:
        """Add metadata to the committed object (only if it is still the generation written)."""
        if self.generation is None:
            raise RuntimeError(f"upload to {self.location.uri} is not committed")
        blob = self.bucket.get_blob(self.location.name, retry=retry(self.settings))
        if blob is None or blob.generation != self.generation:
            raise StorageError(f"{self.location.uri} changed after it was uploaded")
        blob.metadata = {**(blob.metadata or {}), **metadata}
        blob.patch(
            if_generation_match=self.generation,
            if_metageneration_match=blob.metageneration,
            retry=retry(self.settings),
        )


def put_small_object(
    client: storage.Client,
    location: GCSLocation,
    data: bytes,
    *,
    settings: StorageSettings,
    content_type: str = "application/json",
    metadata: dict[str, str] | None = None,
) -> bool:
    """Create a small object (a manifest) unless an identical one exists; True when it was written.

    :raises ObjectConflictError: a different object already has the name.
    """
    from google.api_core import exceptions

    counter = Sha256Counter()
    counter.update(data)
    sha = counter.sha256
    bucket = client.bucket(location.bucket)
    existing = bucket.get_blob(location.name, retry=retry(settings))
    if existing is not None:
        if (existing.metadata or {}).get("sha256") == sha and existing.size == len(data):
            return False
        raise ObjectConflictError(
            f"{location.uri} already exists with different content (generation {existing.generation}); "
            "the provider never overwrites an object"
        )
    blob = bucket.blob(location.name, kms_key_name=settings.kms_key_name)
    blob.metadata = {**(metadata or {}), "sha256": sha}
    if settings.storage_class:
        blob.storage_class = settings.storage_class
    try:
        blob.upload_from_string(
            data, content_type=content_type, if_generation_match=0, checksum="crc32c", retry=retry(settings)
        )
    except exceptions.PreconditionFailed as err:
        again = bucket.get_blob(location.name, retry=retry(settings))
        if again is not None and (again.metadata or {}).get("sha256") == sha:
            return False
        raise ObjectConflictError(f"{location.uri} was created by someone else; not overwritten") from err
    return True


class GCSArtifactTarget:
    """A single-file artifact streamed into ``gs://bucket/name`` (the ``ArtifactTarget`` for GCS).

    Nothing appears under the name before :meth:`commit`; :meth:`write_manifest` then adds the backup's
    metadata to the object and creates ``<name>.manifest.json``, the mark of a complete backup.

    :param location: ``gs://bucket/path/name``.
    :param overwrite: replace a finished backup at that name (its manifest is deleted first); otherwise
        an existing object or manifest is an error, checked before anything runs.
    :param settings: connection, chunk size, retries, storage class, KMS key.
    :param client: storage client (default: built from ``settings.gcp_conn_id``).
    """

    staging_directory: Path | None = None

    def __init__(
        self,
        location: GCSLocation,
        *,
        overwrite: bool = False,
        settings: StorageSettings | None = None,
        client: storage.Client | None = None,
    ) -> None:
        self._location = location
        self.manifest_location = location.manifest
        self.settings = settings or StorageSettings()
        self.client = client or make_client(self.settings)
        bucket = self.client.bucket(location.bucket)
        policy = retry(self.settings)
        existing = bucket.get_blob(location.name, retry=policy)
        self._old_manifest = bucket.get_blob(self.manifest_location.name, retry=policy)
        ours = existing is not None and UPLOAD_ID_KEY in (existing.metadata or {})
        if ours and self._old_manifest is None:
            # An object this provider wrote whose manifest never came: not a finished backup (a run
            # stopped between the two). A retry replaces it, with a generation precondition.
            log.warning(
                "Replacing %s: an object this provider wrote without its manifest (a run stopped "
                "between the two)",
                location.uri,
            )
        elif existing is not None or self._old_manifest is not None:
            old = self._old_manifest
            check_object_replaceable(
                location,
                overwrite=overwrite,
                existing=existing,
                manifest=(lambda: old.download_as_bytes(retry=policy)) if old is not None else None,
            )
        self._writer = GCSObjectWriter(
            self.client,
            location,
            settings=self.settings,
            if_generation_match=existing.generation if existing is not None else 0,
        )

    @property
    def location(self) -> GCSLocation:
        return self._location

    @property
    def bytes_written(self) -> int:
        return self._writer.bytes_written

    def write(self, chunk: bytes) -> None:
        self._writer.write(chunk)

    def commit(self) -> ArtifactDigest:
        if self._old_manifest is not None:
            # An old manifest must never describe new bytes: it goes before the new object appears.
            with contextlib.suppress(Exception):
                self._old_manifest.delete(
                    if_generation_match=self._old_manifest.generation, retry=retry(self.settings)
                )
        return self._writer.commit()

    def abort(self) -> None:
        self._writer.abort()

    def write_manifest(self, manifest: Manifest) -> str:
        """Record the backup's metadata on the object, then create the manifest object (last)."""
        self._writer.set_metadata(backup_metadata(manifest))
        put_small_object(
            self.client,
            self.manifest_location,
            manifest.to_json().encode("utf-8"),
            settings=self.settings,
            metadata={"backup-sha256": manifest.sha256},
        )
        return self.manifest_location.uri

    def remove_committed(self) -> None:
        self._writer.delete_if_ours()


def open_target(
    location: GCSLocation, *, directory: bool, overwrite: bool, settings: StorageSettings
) -> GCSArtifactTarget:
    if directory:
        raise InvalidOptionError(
            f"output_path {location.uri!r} is a gs:// URI, which cannot take format 'directory' (pg_dump "
            "writes a directory itself); dump to a local folder and upload it with PgBackupToGCSOperator, "
            "or use format 'custom', 'tar' or 'plain'"
        )
    return GCSArtifactTarget(location, overwrite=overwrite, settings=settings)
