"""Backups moved between places through the registry: uploaded from a local folder, promoted (copied within
a store), published (either), and a staged copy discarded once promoted. Each step checks the
destination's lock settings before the backend of the destination does the work."""

from __future__ import annotations

import os
import threading
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import ArtifactSource, Location, StorageSettings, TransferResult
from airflow_provider_pgbackup.storage.object_lock import check_lock_destination
from airflow_provider_pgbackup.storage.registry import (
    LocationLike,
    backend_of,
    default_settings,
    open_source,
    parse_location,
)

__all__ = ["check_on_this_worker", "discard_promoted", "promote_backup", "publish_backup", "upload_backup"]


def upload_backup(
    source: LocationLike,
    destination: LocationLike,
    *,
    settings: StorageSettings | None = None,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Copy a finished local backup (artifact, then manifest) into the folder ``destination``."""
    settings = settings or default_settings()
    local = parse_location(source, what="source_path")
    if not local.is_local:
        raise InvalidOptionError(
            f"source_path {local.uri!r} must be a local path; use promote_backup within a store"
        )
    check_on_this_worker(local)
    folder = parse_location(destination, what="destination", folder=True)
    check_lock_destination(settings.lock, folder.scheme, folder.uri)
    result: tuple[TransferResult, Manifest] = backend_of(folder.scheme).upload(
        local, folder, settings=settings, log=log, cancel=cancel
    )
    return result


def check_on_this_worker(source: LocationLike) -> None:
    """Raise :class:`ArtifactNotOnThisWorker` when the local backup ``source`` is not on this machine
    (written on another worker, or never written); an object-store location is everywhere."""
    location = parse_location(source, what="source_path")
    if location.is_local:
        missing = backend_of(location.scheme).not_on_this_worker(location, waiting=False)
        if missing is not None:
            raise missing


def promote_backup(
    source: ArtifactSource | LocationLike,
    destination: LocationLike,
    *,
    settings: StorageSettings | None = None,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Copy a (verified) backup to the folder ``destination`` in the same store: the artifact first,
    the manifest last; server-side where the store can (no bytes through the worker)."""
    settings = settings or default_settings()
    if isinstance(source, (str, os.PathLike, Location)):
        source = open_source(source, what="source", settings=settings)
    folder = parse_location(destination, what="destination", folder=True)
    if folder.scheme != source.location.scheme:
        raise InvalidOptionError(
            f"cannot promote {source.location.uri} to {folder.uri}: a promotion copies within one kind of "
            "store (gs:// to gs://, s3:// to s3://, local to local); use upload_backup from a local folder"
        )
    check_lock_destination(settings.lock, folder.scheme, folder.uri)
    result: tuple[TransferResult, Manifest] = backend_of(folder.scheme).promote(
        source, folder, settings=settings, log=log, cancel=cancel
    )
    return result


def publish_backup(
    source: LocationLike,
    destination: LocationLike,
    *,
    settings: StorageSettings | None = None,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[ArtifactSource, TransferResult, Manifest]:
    """Put a verified backup into the folder ``destination``, the manifest last: a promotion (server-side
    copy) within one store, or an upload from a local folder into an object store. Returns the source
    that was read, what was done, and the manifest."""
    settings = settings or default_settings()
    location = parse_location(source, what="source")
    folder = parse_location(destination, what="destination", folder=True)
    if location.is_local and not folder.is_local:
        result = upload_backup(location, folder, settings=settings, log=log, cancel=cancel)
        return open_source(location, what="source", settings=settings), *result
    opened = open_source(location, what="source", settings=settings)
    return opened, *promote_backup(opened, folder, settings=settings, log=log, cancel=cancel)


def discard_promoted(
    staged: LocationLike,
    promoted: LocationLike,
    *,
    settings: StorageSettings | None = None,
    log: Any,
) -> list[str]:
    """Delete the staged backup ``staged`` once ``promoted`` holds an identical copy (same manifest, every
    artifact object or file with the same size and checksum); returns the names deleted.

    The manifest goes first, so a half-deleted staged backup never looks finished; on an object store
    each delete carries the generation that was compared, so an object written since is never deleted.
    A retry after a partial delete finishes it. Nothing is deleted when the two differ
    (:class:`ArtifactMismatchError`) or when ``promoted`` has no manifest (``FileNotFoundError``).
    """
    settings = settings or default_settings()
    source = open_source(staged, what="staged", settings=settings)
    copy = open_source(promoted, what="promoted", settings=settings)
    if source.location.scheme != copy.location.scheme and not source.location.is_local:
        raise InvalidOptionError(
            f"{source.location.uri} and {copy.location.uri} are in different kinds of store; a staged "
            "object-store backup is discarded only against its promoted copy in the same store"
        )
    deleted: list[str] = backend_of(source.location.scheme).discard_promoted(source, copy, log=log)
    return deleted
