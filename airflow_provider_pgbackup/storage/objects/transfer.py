"""Moving finished backups: upload from a local folder, and promote (server-side copy) within a store."""

import threading
import time
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest, read_manifest
from airflow_provider_pgbackup.storage.base import (
    ArtifactMismatchError,
    Location,
    ObjectConflictError,
    StorageError,
    TransferResult,
    UploadCancelled,
    backup_metadata,
)
from airflow_provider_pgbackup.storage.files import walk_files
from airflow_provider_pgbackup.storage.object_lock import same_but_lock
from airflow_provider_pgbackup.storage.objects.client import UPLOAD_ID_KEY, ObjectClient
from airflow_provider_pgbackup.storage.objects.locking import (
    check_locking,
    lock_objects,
    lock_to_record,
    locked_manifest,
)
from airflow_provider_pgbackup.storage.objects.read import ObjectArtifactSource
from airflow_provider_pgbackup.storage.objects.write import PartedObjectWriter, put_small_object


# ----------------------------------------------------------------------------------------- transfers
def _stopped(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


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


def _upload_file(
    client: ObjectClient,
    source: Path,
    location: Location,
    *,
    sha256: str,
    size: int,
    metadata: dict[str, str],
    log: Any,
    cancel: threading.Event | None,
) -> bool:
    """Upload one local file unless the identical object exists; True when bytes were sent."""
    existing = client.head(location.name)
    if existing is not None:
        remote_sha = (existing.metadata or {}).get("sha256")
        if remote_sha == sha256 and existing.size == size:
            log.info("%s already holds these bytes (sha256 %s); not uploaded again", location.uri, sha256)
            return False
        raise ObjectConflictError(
            f"{location.uri} already exists with different content (sha256 {remote_sha or 'unknown'}, "
            f"{existing.size} bytes); the provider never overwrites an object: choose another prefix or "
            "delete it"
        )
    writer = PartedObjectWriter(
        client, location, metadata=metadata, expected_sha256=sha256, expected_size=size, log=log
    )
    stop = f"upload to {location.uri} was stopped; the object was not finalized"
    try:
        with open(source, "rb") as handle:
            while chunk := handle.read(client.settings.chunk_size):
                if _stopped(cancel):
                    raise UploadCancelled(stop)
                writer.write(chunk)
        if _stopped(cancel):
            raise UploadCancelled(stop)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return True


def upload_backup(
    client: ObjectClient,
    source: Location,
    destination: Location,
    *,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Upload a local backup (artifact file or folder, then its manifest, last) under a prefix.

    Every byte read is checked against the manifest's sha256 before an object is completed; each part
    carries a checksum the store verifies. Objects already holding the same bytes (sha256 metadata and
    size) are skipped, so a retried upload is a no-op; a different object is never overwritten.
    """
    path = Path(source.name)
    manifest, manifest_file = _check_local_backup(path)
    check_locking(client)
    lock = lock_to_record(client, manifest)  # None unless lock_for; refused before any upload when past
    started = time.monotonic()
    artifact = destination.child(path.name)
    metadata = backup_metadata(manifest)
    uploads: list[tuple[Path, Location, str, int, dict[str, str]]] = []
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
            client, file, location, sha256=sha, size=size, metadata=object_metadata, log=log, cancel=cancel
        )
        sent += size if sent_now else 0
        skipped += 0 if sent_now else 1
    if _stopped(cancel):
        raise UploadCancelled(f"upload of {path.name} was stopped before its manifest was written")
    lock_objects(client, [loc.name for _, loc, _, _, _ in uploads], lock, log)
    manifest = locked_manifest(manifest, lock)
    raw_manifest = manifest_file.read_bytes() if lock is None else manifest.to_json().encode("utf-8")
    if not put_small_object(
        client, artifact.manifest, raw_manifest, metadata={"backup-sha256": manifest.sha256}
    ):
        skipped += 1
        log.info("%s already exists with the same content", artifact.manifest_uri)
    lock_objects(client, [artifact.manifest.name], lock, None)
    result = TransferResult(
        artifact=artifact,
        manifest=artifact.manifest,
        object_uris=(*(loc.uri for _, loc, _, _, _ in uploads), artifact.manifest_uri),
        transferred_bytes=sent,
        skipped_objects=skipped,
        duration_seconds=time.monotonic() - started,
        console_url=artifact.console_folder_url if path.is_dir() else artifact.console_url,
    )
    return result, manifest


def promote_backup(
    source: ObjectArtifactSource,
    client: ObjectClient,
    destination: Location,
    *,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Copy a (verified) backup to another prefix of the same store, server-side, manifest last.

    Copies exactly the objects (ETags) the source pinned when it was verified, create-only; each copy
    gets the sha256 its manifest records as metadata, so an identical object already at a destination
    name is recognised and kept (a retry is a no-op), and a different one is never overwritten.
    """
    started = time.monotonic()
    raw_manifest = source.manifest_bytes()
    manifest = Manifest.from_json(raw_manifest)
    check_locking(client)
    lock = lock_to_record(client, manifest)  # None unless lock_for; refused before any copy when past
    if lock is not None:
        manifest = locked_manifest(manifest, lock)
        raw_manifest = manifest.to_json().encode("utf-8")
    expected = {f.path: f.sha256 for f in manifest.files or ()}
    artifact = destination.child(source.location.basename)
    copied = skipped = 0
    uris = []
    names: list[str] = []
    for name, info in sorted(source.pinned_objects.items()):
        if _stopped(cancel):
            raise UploadCancelled(f"promotion of {source.location.uri} was stopped; no manifest was written")
        relative = name[len(source.location.name) :]
        target = artifact.sibling(artifact.basename + relative) if relative else artifact
        sha = expected.get(relative.lstrip("/"), manifest.sha256) if relative else manifest.sha256
        existing = client.head(target.name)
        if existing is not None:
            if (existing.metadata or {}).get("sha256") == sha and existing.size == info.size:
                log.info("%s already holds these bytes; not copied again", target.uri)
                skipped += 1
                uris.append(target.uri)
                names.append(target.name)
                continue
            raise ObjectConflictError(
                f"{target.uri} already exists with different content; the provider never overwrites an object"
            )
        metadata = {**(info.metadata or {}), **backup_metadata(manifest), "sha256": sha}
        metadata.pop(UPLOAD_ID_KEY, None)
        client.copy(info, source.location.container, target.name, metadata=metadata)
        copy = client.head(target.name)
        if copy is None or copy.size != info.size:
            raise ArtifactMismatchError(f"the copy {target.uri} does not have the size of {name}")
        copied += info.size
        uris.append(target.uri)
        names.append(target.name)
    if _stopped(cancel):
        raise UploadCancelled(
            f"promotion of {source.location.uri} was stopped before its manifest was written"
        )
    lock_objects(client, names, lock, log)
    if not put_small_object(
        client, artifact.manifest, raw_manifest, metadata={"backup-sha256": manifest.sha256}
    ):
        skipped += 1
    lock_objects(client, [artifact.manifest.name], lock, None)
    result = TransferResult(
        artifact=artifact,
        manifest=artifact.manifest,
        object_uris=(*uris, artifact.manifest_uri),
        transferred_bytes=copied,
        skipped_objects=skipped,
        duration_seconds=time.monotonic() - started,
        console_url=artifact.console_folder_url if source.is_folder else artifact.console_url,
    )
    return result, manifest


def discard_promoted(staged: ObjectArtifactSource, promoted: ObjectArtifactSource, *, log: Any) -> list[str]:
    """Delete a staged backup whose promoted copy is identical; returns the URIs deleted.

    Identical: the same manifest bytes, and every staged artifact object with a promoted counterpart
    (same relative name) of the same size. The staged manifest goes first, then the artifact objects,
    each deleted only if it still has the ETag that was compared (an object written since is kept). A
    retry after a partial delete checks what is left the same way.
    """
    promoted_manifest = promoted.manifest_bytes()  # FileNotFoundError: nothing was promoted
    client = staged.client
    manifest_info = client.head(staged.manifest_location.name)
    if manifest_info is not None:
        data = b"".join(client.stream(manifest_info.name, manifest_info.etag, max(manifest_info.size, 1)))
        if not same_but_lock(data, promoted_manifest):
            raise ArtifactMismatchError(
                f"{staged.manifest_location.uri} differs from {promoted.manifest_location.uri}: the staged "
                "backup is not the one that was promoted; nothing was deleted"
            )
    try:
        staged_objects = staged.pinned_objects
    except FileNotFoundError:
        staged_objects = {}
    copies = promoted.pinned_objects
    doomed = [] if manifest_info is None else [manifest_info]
    for name, info in sorted(staged_objects.items()):
        twin = promoted.location.name + name[len(staged.location.name) :]
        if twin not in copies or copies[twin].size != info.size:
            raise ArtifactMismatchError(
                f"{staged.location.uri}: {name} has no copy of the same size at {twin}; nothing was deleted"
            )
        doomed.append(info)
    deleted = []
    for info in doomed:
        try:
            client.delete(info.name, info.etag)
        except StorageError as err:
            raise ObjectConflictError(f"{err}: the new object is left alone") from err
        where = staged.location
        deleted.append(type(where)(where.scheme, where.container, info.name).uri)
    log.info("Discarded the staged backup %s (%d objects deleted)", staged.location.uri, len(deleted))
    return deleted
