"""Moving finished backups into GCS: upload from a local folder, and promote (server-side copy) within GCS.

Both keep the artifact's name under the destination prefix, write every artifact object first and the
manifest object last, skip objects that already hold the same bytes (a retried task is a no-op) and
never overwrite a different object.
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.manifest import Manifest, read_manifest
from airflow_provider_pgbackup.storage.base import (
    HASH_CHUNK_BYTES,
    ArtifactMismatchError,
    Location,
    ObjectConflictError,
    StorageSettings,
    TransferResult,
    UploadCancelled,
    backup_metadata,
)
from airflow_provider_pgbackup.storage.files import walk_files
from airflow_provider_pgbackup.storage.gcs.location import GCSLocation, make_client, retry
from airflow_provider_pgbackup.storage.gcs.read import GCSArtifactSource
from airflow_provider_pgbackup.storage.gcs.write import GCSObjectWriter, put_small_object

if TYPE_CHECKING:
    from google.cloud import storage


def _crc32c_base64(path: Path) -> str:
    import google_crc32c

    checksum = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            checksum.update(chunk)  # type: ignore[no-untyped-call]
    return base64.b64encode(checksum.digest()).decode("ascii")  # type: ignore[no-untyped-call]


def _stopped(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def _upload_file(
    client: storage.Client,
    source: Path,
    location: GCSLocation,
    *,
    sha256: str,
    size: int,
    metadata: dict[str, str],
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> bool:
    """Upload one local file unless the identical object exists; True when bytes were sent."""
    bucket = client.bucket(location.bucket)
    existing = bucket.get_blob(location.name, retry=retry(settings))
    if existing is not None:
        remote_sha = (existing.metadata or {}).get("sha256")
        if remote_sha == sha256 and existing.size == size and existing.crc32c == _crc32c_base64(source):
            log.info("%s already holds these bytes (sha256 %s); not uploaded again", location.uri, sha256)
            return False
        raise ObjectConflictError(
            f"{location.uri} already exists with different content (sha256 {remote_sha or 'unknown'}, "
            f"{existing.size} bytes, generation {existing.generation}); the provider never overwrites an "
            "object: choose another prefix or delete it"
        )
    writer = GCSObjectWriter(
        client,
        location,
        settings=settings,
        metadata=metadata,
        expected_sha256=sha256,
        expected_size=size,
        log=log,
    )
    try:
        with open(source, "rb") as handle:
            while chunk := handle.read(settings.chunk_size):
                if _stopped(cancel):
                    raise UploadCancelled(
                        f"upload to {location.uri} was stopped; the object was not finalized"
                    )
                writer.write(chunk)
        if _stopped(cancel):
            raise UploadCancelled(f"upload to {location.uri} was stopped; the object was not finalized")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return True


def _check_local_backup(path: Path) -> tuple[Manifest, Path]:
    manifest_file = path.with_name(path.name + ".manifest.json")
    if not path.exists():
        raise ArtifactMismatchError(f"artifact {path} is missing")
    if not manifest_file.is_file():
        raise ArtifactMismatchError(
            f"{path} has no manifest ({manifest_file.name} is missing): it is not a finished backup"
        )
    manifest = read_manifest(manifest_file)
    if manifest.artifact != path.name:
        raise ArtifactMismatchError(
            f"manifest {manifest_file} describes artifact {manifest.artifact!r}, not {path.name!r}"
        )
    return manifest, manifest_file


def upload(
    source: Location,
    destination: GCSLocation,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
    client: storage.Client | None = None,
) -> tuple[TransferResult, Manifest]:
    """Upload a local backup (artifact file or folder, then its manifest, last) under a ``gs://`` prefix.

    Every byte read is checked against the manifest's sha256 before the object is finalized, and the
    client checks crc32c with the server. Reading the file and sending it overlap (a background
    upload thread). Objects that already exist with the same sha256 are skipped, so a retried upload
    is a no-op; a different object at a name is never overwritten.

    :param source: the local artifact; its manifest must be beside it.
    :param destination: bucket and prefix (the artifact keeps its name under the prefix).
    :param settings: connection, chunk size, retries, storage class, KMS key.
    :param log: logger for progress lines.
    :param cancel: when set (by ``on_kill``), the upload stops before the next chunk; no object or
        manifest is finalized.
    :param client: storage client (default: from ``settings``).
    :raises ArtifactMismatchError: the local bytes do not match the manifest.
    :raises ObjectConflictError: a different object is already at one of the names.
    """
    path = Path(source.name)
    manifest, manifest_file = _check_local_backup(path)
    client = client or make_client(settings)
    started = time.monotonic()
    artifact = destination.child(path.name)
    metadata = backup_metadata(manifest)
    uploads: list[tuple[Path, GCSLocation, str, int, dict[str, str]]] = []
    if path.is_dir():
        if manifest.files is None:
            raise ArtifactMismatchError(f"{path} is a folder but its manifest lists no files")
        local = {f.relative_to(path).as_posix(): f for f in walk_files(path)}
        listed = {f.path: f for f in manifest.files}
        if set(local) != set(listed):
            extra = sorted(set(local) - set(listed))
            missing = sorted(set(listed) - set(local))
            raise ArtifactMismatchError(
                f"{path} does not hold the files its manifest lists (missing: {missing[:5]}, "
                f"not listed: {extra[:5]})"
            )
        for rel in sorted(listed):
            entry = listed[rel]
            extra_meta = {"sha256": entry.sha256, "backup-sha256": manifest.sha256}
            uploads.append(
                (local[rel], artifact.child(rel), entry.sha256, entry.size_bytes, {**metadata, **extra_meta})
            )
    else:
        uploads.append((path, artifact, manifest.sha256, manifest.size_bytes, metadata))
    sent = skipped = 0
    for file, location, sha, size, object_metadata in uploads:
        sent_now = _upload_file(
            client, file, location, sha256=sha, size=size, metadata=object_metadata,
            settings=settings, log=log, cancel=cancel,
        )  # fmt: skip
        sent += size if sent_now else 0
        skipped += 0 if sent_now else 1
    manifest_location = artifact.manifest
    if _stopped(cancel):
        raise UploadCancelled(f"upload of {path.name} was stopped before its manifest was written")
    if not put_small_object(
        client, manifest_location, manifest_file.read_bytes(), settings=settings,
        metadata={"backup-sha256": manifest.sha256},
    ):  # fmt: skip
        skipped += 1
        log.info("%s already exists with the same content", manifest_location.uri)
    result = TransferResult(
        artifact=artifact,
        manifest=manifest_location,
        object_uris=(*(loc.uri for _, loc, _, _, _ in uploads), manifest_location.uri),
        transferred_bytes=sent,
        skipped_objects=skipped,
        duration_seconds=time.monotonic() - started,
        console_url=artifact.console_url if not path.is_dir() else artifact.console_folder_url,
    )
    return result, manifest


def promote(
    source: GCSArtifactSource,
    destination: GCSLocation,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Copy a backup to another prefix of the same store, server-side (no bytes through the worker).

    Copies exactly the object generations the source pinned when it was verified, each with a
    create-only precondition, checks every copy's crc32c against its source, and writes the manifest
    object last. An identical object already at a destination name is kept (a retry is a no-op).

    :param source: the (verified) backup; its pinned generations are what is copied.
    :param destination: the prefix the backup is promoted to (the artifact keeps its name).
    """
    from google.api_core import exceptions

    started = time.monotonic()
    manifest = Manifest.from_json(source.manifest_bytes())
    pinned = source.pinned_objects
    artifact = destination.child(source.location.basename)
    client = source.client
    src_bucket = source.bucket
    dst_bucket = client.bucket(destination.bucket)
    policy = retry(settings)
    copied = skipped = 0
    uris = []
    for name, generation in sorted(pinned.items()):
        if _stopped(cancel):
            raise UploadCancelled(
                f"promotion of {source.location.uri} was stopped; its manifest was not written"
            )
        relative = name[len(source.location.name) :]
        target = GCSLocation(destination.scheme, destination.bucket, artifact.name + relative)
        src_blob = src_bucket.get_blob(name, generation=generation, retry=policy)
        if src_blob is None:
            raise ArtifactMismatchError(
                f"gs://{source.location.bucket}/{name} (generation {generation}) is gone"
            )
        existing = dst_bucket.get_blob(target.name, retry=policy)
        if existing is not None:
            if existing.crc32c == src_blob.crc32c and existing.size == src_blob.size:
                log.info("%s already holds these bytes; not copied again", target.uri)
                skipped += 1
                uris.append(target.uri)
                continue
            raise ObjectConflictError(
                f"{target.uri} already exists with different content; the provider never overwrites an object"
            )
        new_blob = dst_bucket.blob(target.name, kms_key_name=settings.kms_key_name)
        token: str | None = None
        try:
            while True:
                token, _done, _total = new_blob.rewrite(
                    src_blob, token=token, if_generation_match=0, if_source_generation_match=generation,
                    retry=policy,
                )  # fmt: skip
                if token is None:
                    break
        except exceptions.PreconditionFailed as err:
            raise ObjectConflictError(f"{target.uri} was created by someone else; not overwritten") from err
        copy = dst_bucket.get_blob(target.name, retry=policy)
        if copy is None or copy.crc32c != src_blob.crc32c or copy.size != src_blob.size:
            raise ArtifactMismatchError(
                f"the copy {target.uri} does not match {src_blob.name}'s crc32c and size"
            )
        copied += int(src_blob.size)
        uris.append(target.uri)
    if _stopped(cancel):
        raise UploadCancelled(
            f"promotion of {source.location.uri} was stopped before its manifest was written"
        )
    if not put_small_object(
        client, artifact.manifest, source.manifest_bytes(), settings=settings,
        metadata={"backup-sha256": manifest.sha256},
    ):  # fmt: skip
        skipped += 1
    folder = source.is_folder
    result = TransferResult(
        artifact=artifact,
        manifest=artifact.manifest,
        object_uris=(*uris, artifact.manifest_uri),
        transferred_bytes=copied,
        skipped_objects=skipped,
        duration_seconds=time.monotonic() - started,
        console_url=artifact.console_folder_url if folder else artifact.console_url,
    )
    return result, manifest


def discard_promoted(staged: GCSArtifactSource, promoted: GCSArtifactSource, *, log: Any) -> list[str]:
    """Delete a staged backup whose promoted copy is identical; returns the URIs deleted.

    Identical: the promoted manifest has the same bytes as the staged one, and every staged artifact
    object has a promoted counterpart (same relative name) with the same size and crc32c. The staged
    manifest is deleted first, then the artifact objects, each with ``if_generation_match`` of the
    generation that was compared: an object written since is never deleted. A retry after a partial
    delete (manifest already gone) checks the remaining objects against the promoted copy the same way.
    """
    from google.api_core import exceptions

    policy = retry(staged.settings)
    promoted_manifest = promoted.manifest_bytes()  # FileNotFoundError: nothing was promoted
    manifest_blob = staged.bucket.get_blob(staged.manifest_location.name, retry=policy)
    if manifest_blob is not None and manifest_blob.download_as_bytes(retry=policy) != promoted_manifest:
        raise ArtifactMismatchError(
            f"{staged.manifest_location.uri} differs from {promoted.manifest_location.uri}: the staged "
            "backup is not the one that was promoted; nothing was deleted"
        )
    try:
        staged_objects = staged.pinned_objects
    except FileNotFoundError:
        staged_objects = {}
    copies = promoted.pinned_objects
    doomed: list[tuple[str, int]] = []
    for name, generation in sorted(staged_objects.items()):
        twin = promoted.location.name + name[len(staged.location.name) :]
        original = staged.bucket.get_blob(name, generation=generation, retry=policy)
        copy = (
            promoted.bucket.get_blob(twin, generation=copies[twin], retry=policy) if twin in copies else None
        )
        if original is None:
            continue
        if copy is None or copy.crc32c != original.crc32c or copy.size != original.size:
            raise ArtifactMismatchError(
                f"gs://{staged.location.bucket}/{name} has no identical copy at "
                f"gs://{promoted.location.bucket}/{twin}; nothing was deleted"
            )
        doomed.append((name, generation))
    if manifest_blob is not None:
        doomed.insert(0, (manifest_blob.name, int(manifest_blob.generation)))
    deleted = []
    for name, generation in doomed:
        try:
            staged.bucket.blob(name).delete(if_generation_match=generation, retry=policy)
        except exceptions.NotFound:
            continue
        except exceptions.PreconditionFailed as err:
            raise ObjectConflictError(
                f"gs://{staged.location.bucket}/{name} was replaced while being discarded; the new object "
                "is left alone"
            ) from err
        deleted.append(f"gs://{staged.location.bucket}/{name}")
    log.info("Discarded the staged backup %s (%d objects deleted)", staged.location.uri, len(deleted))
    return deleted
