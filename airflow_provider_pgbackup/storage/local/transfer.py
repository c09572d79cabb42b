"""Copying finished local backups: promote (and upload) into another local folder, discard a staged copy,
remove a backup. The artifact is copied first (staged, then renamed into place), the manifest last."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.storage.base import (
    ArtifactMismatchError,
    ArtifactSource,
    Location,
    StorageSettings,
    TransferResult,
    UploadCancelled,
)
from airflow_provider_pgbackup.storage.files import local_chunks, remove_path
from airflow_provider_pgbackup.storage.local.read import LocalArtifactSource
from airflow_provider_pgbackup.storage.local.write import LocalArtifactTarget


def remove_backup(location: Location) -> None:
    """Delete a local backup: the manifest first (so a half-deleted backup never looks finished)."""
    Path(location.manifest.name).unlink(missing_ok=True)
    remove_path(Path(location.name))


def promote(
    source: LocalArtifactSource,
    destination: Location,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Copy a finished local backup into the folder ``destination``: the artifact first (staged, then
    renamed into place), the manifest last. The copy keeps the artifact's name and must match the
    manifest's sha256, or nothing is promoted."""
    started = time.monotonic()
    src = source.path
    raw_manifest = source.manifest_bytes()
    manifest = Manifest.from_json(raw_manifest)
    artifact = destination.child(src.name)
    promoted = LocalArtifactSource(artifact)
    if (
        promoted.manifest_path.is_file()
        and promoted.manifest_path.read_bytes() == raw_manifest
        and promoted.digest().sha256 == manifest.sha256  # a retried promotion: already done
    ):
        log.info("%s already holds this backup; not copied again", artifact.uri)
        return _result(artifact, 0, 2, started), manifest
    target = LocalArtifactTarget(
        artifact, directory=src.is_dir(), overwrite=False, file_mode=settings.file_mode
    )
    try:
        if src.is_dir():
            assert target.staging_directory is not None
            shutil.copytree(src, target.staging_directory)
        else:
            for chunk in local_chunks(src):
                if cancel is not None and cancel.is_set():
                    raise UploadCancelled(f"copy of {source.location.uri} was stopped")
                target.write(chunk)
        digest = target.commit()
    except BaseException:
        target.abort()
        raise
    try:
        if digest.sha256 != manifest.sha256:
            raise ArtifactMismatchError(
                f"the copy of {source.location.uri} has sha256 {digest.sha256}, not {manifest.sha256} as "
                "its manifest says; nothing was promoted"
            )
        target.write_manifest(manifest)
    except BaseException:
        target.remove_committed()
        raise
    log.info("Copied %s to %s (%d bytes)", source.location.uri, artifact.uri, digest.size_bytes)
    return _result(artifact, digest.size_bytes, 0, started), manifest


def _result(artifact: Location, copied: int, skipped: int, started: float) -> TransferResult:
    return TransferResult(
        artifact=artifact,
        manifest=artifact.manifest,
        object_uris=(artifact.uri, artifact.manifest_uri),
        transferred_bytes=copied,
        skipped_objects=skipped,
        duration_seconds=time.monotonic() - started,
        console_url=None,
    )


def upload(
    source: Location,
    destination: Location,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """A local backup into another local folder: a promotion by copy."""
    return promote(LocalArtifactSource(source), destination, settings=settings, log=log, cancel=cancel)


def discard_promoted(staged: LocalArtifactSource, promoted: ArtifactSource, *, log: Any) -> list[str]:
    """Delete a staged local backup whose promoted copy (local, or uploaded to any store) has the same
    manifest bytes, once the local bytes still match that manifest's sha256; the manifest first.
    Returns the paths deleted (none when it is already gone)."""
    promoted_manifest = promoted.manifest_bytes()  # FileNotFoundError: nothing was promoted
    expected = Manifest.from_json(promoted_manifest).sha256
    path, manifest_path = staged.path, staged.manifest_path
    if manifest_path.exists() and manifest_path.read_bytes() != promoted_manifest:
        raise ArtifactMismatchError(
            f"{manifest_path} differs from {promoted.location.manifest_uri}: the staged backup is not "
            "the one that was promoted; nothing was deleted"
        )
    deleted = [str(p) for p in (manifest_path, path) if p.exists() or p.is_symlink()]
    if path.exists() and not path.is_symlink() and staged.digest().sha256 != expected:
        raise ArtifactMismatchError(f"{path} differs from its promoted copy; nothing was deleted")
    remove_backup(staged.location)
    log.info("Discarded the staged backup %s", path)
    return deleted
