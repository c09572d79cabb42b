"""Where bytes go and come from: the scheme registry, the only place a URI's scheme is looked at.

``BACKENDS`` maps a scheme to the module that serves it (imported on first use, so the Google, AWS and
Azure libraries load only when ``gs://``, ``s3://`` or ``az://`` is used). GCS, S3 and Azure share the
object-store machinery of :mod:`~airflow_provider_pgbackup.storage.objects`. Every backend module
provides the same functions:

- ``parse(text, *, what, folder) -> Location``: validate without any I/O;
- ``open_target(location, *, directory, overwrite, settings) -> ArtifactTarget``;
- ``open_source(location, *, settings) -> ArtifactSource``;
- ``open_store(location, *, settings) -> BackupStore``;
- ``upload(local_location, destination, *, settings, log, cancel) -> (TransferResult, Manifest)``;
- ``promote(source, destination, *, settings, log, cancel) -> (TransferResult, Manifest)``: a copy
  within the store (server-side where the store has it), artifact first, manifest last;
- ``discard_promoted(staged, promoted, *, log) -> list[str]``: delete a staged backup once an identical
  copy is promoted (manifest first; only what matches the promoted copy, never anything else).

Local paths may be written ``file://<host>/<path>`` (the dump's XCom ``artifact_uri``): the same path,
with the machine that wrote it, so a task on another worker says so at once
(:class:`ArtifactNotOnThisWorker`) instead of waiting for a file that will never come.

Adding a backend is one module with those functions plus one line in ``BACKENDS``
(see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_PARTS_IN_FLIGHT,
    DEFAULT_RETRY_TIMEOUT,
    DEFAULT_WASB_CONN_ID,
    ArtifactDigest,
    ArtifactInUse,
    ArtifactMismatchError,
    ArtifactNotOnThisWorker,
    ArtifactRefused,
    ArtifactSource,
    ArtifactTarget,
    BackupStore,
    CredentialsError,
    EntryChanged,
    Location,
    ObjectConflictError,
    StorageError,
    StorageSettings,
    StoredEntry,
    StoreNotFound,
    TransferResult,
    UnsafeObjectName,
    UploadCancelled,
)
from airflow_provider_pgbackup.storage.object_lock import (
    DeletionPlan,
    LockNotSupported,
    LockRequest,
    ObjectLock,
    ObjectLockedError,
    check_lock_destination,
    lock_request,
    plan_deletion,
)

#: scheme -> backend module ("" is a local absolute path; file://<host>/<path> names its writer too).
BACKENDS: dict[str, str] = {
    "": "airflow_provider_pgbackup.storage.local",
    "file": "airflow_provider_pgbackup.storage.local",
    "gs": "airflow_provider_pgbackup.storage.gcs",
    "s3": "airflow_provider_pgbackup.storage.s3",
    "az": "airflow_provider_pgbackup.storage.azure",
    "abfs": "airflow_provider_pgbackup.storage.azure",  # adlfs's names for the same blobs: read as az://
    "abfss": "airflow_provider_pgbackup.storage.azure",
}

LocationLike = str | os.PathLike[str] | Location


def default_settings() -> StorageSettings:
    """What a dump, verification or store uses when the caller passes no settings."""
    return StorageSettings()


def _scheme(text: str, what: str = "path") -> str:
    scheme, sep, _rest = text.partition("://")
    if not sep:
        return ""
    if scheme not in BACKENDS:
        supported = ", ".join(f"{s}://" for s in BACKENDS if s)
        raise InvalidOptionError(
            f"{what} {text!r} uses the scheme {scheme}://, which is not supported; use an absolute local "
            f"path or one of: {supported}"
        )
    return scheme


def _backend(scheme: str) -> Any:
    """The backend of ``scheme``: an object store's ``BACKEND`` (an ``ObjectBackend``), else the module."""
    module = importlib.import_module(BACKENDS[scheme])
    return getattr(module, "BACKEND", module)


def parse_location(value: LocationLike, *, what: str = "path", folder: bool = False) -> Location:
    """The :class:`Location` of ``value``, validated without touching storage.

    :param value: an absolute local path, a URI of a supported scheme, or a Location.
    :param what: the argument's name, for error messages.
    :param folder: a folder (prefix) of backups rather than an artifact.
    :raises InvalidOptionError: naming the value and what is allowed.
    """
    if isinstance(value, Location):
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidOptionError(
            f"{what} {value!r} must be a string: an absolute local path or a URI such as gs://bucket/name"
        )
    text = os.fspath(value)
    if not isinstance(text, str):
        raise InvalidOptionError(f"{what} {text!r} must be a text path")
    location: Location = _backend(_scheme(text, what)).parse(text, what=what, folder=folder)
    return location


def is_local(value: LocationLike) -> bool:
    """True for a local path (decided here, like every other scheme question)."""
    return parse_location(value).is_local


def portable_location(value: LocationLike) -> Location:
    """``value`` as another task can use it: an object-store location as it is; a local path with the
    host that wrote it (this one unless recorded), whose :attr:`~Location.uri` is ``file://<host>/<path>``,
    so a task on another worker knows at once that it cannot read it."""
    location = parse_location(value)
    if not location.is_local:
        return location
    portable: Location = _backend(location.scheme).host_location(location)
    return portable


def portable_uri(value: LocationLike) -> str:
    """The URI of :func:`portable_location`: what a dump's XCom gives later tasks as ``artifact_uri``."""
    return portable_location(value).uri


def object_url(value: LocationLike, settings: StorageSettings | None = None) -> str | None:
    """Where a person looks at a stored backup in a browser: the store's web console (GCS: the object's
    Cloud Console page, its emulator's JSON metadata when the connection names one); None for a local
    path or a store without a page. Reads no credential."""
    location = parse_location(value)
    if location.is_local:
        return None
    backend = _backend(location.scheme)
    if hasattr(backend, "object_url"):
        url: str | None = backend.object_url(location, settings or default_settings())
        return url
    return location.console_url


def check_output_path(value: LocationLike, *, directory: bool = False, what: str = "output_path") -> Location:
    """Validate a dump's output location: directory-format artifacts need a backend that can stage a
    folder (local paths today). Raises :class:`InvalidOptionError` naming the value."""
    location = parse_location(value, what=what)
    if isinstance(value, str) and value.endswith("/") and not location.is_local and not directory:
        raise InvalidOptionError(f"{what} {value!r} must name an object, not a folder")
    if directory and not location.is_local:
        raise InvalidOptionError(
            f"{what} {location.uri!r} is an object-store URI, which cannot take format 'directory' (pg_dump "
            "writes a directory itself); dump to a local folder and upload it with PgBackupUploadOperator "
            "or PgBackupToGCSOperator, or use format 'custom', 'tar' or 'plain'"
        )
    return location


def check_settings(scheme: str, settings: StorageSettings) -> StorageSettings:
    """Check ``settings`` against what the backend of ``scheme`` (``"gs"``...) accepts (storage classes...),
    without touching storage; raises :class:`InvalidOptionError` naming the value."""
    if scheme not in BACKENDS:
        raise InvalidOptionError(f"scheme {scheme!r} is not one of {', '.join(repr(s) for s in BACKENDS)}")
    check = getattr(_backend(scheme), "check_settings", None)
    if check is not None:
        check(settings)
    return settings


def open_target(
    value: LocationLike,
    *,
    directory: bool = False,
    overwrite: bool = False,
    settings: StorageSettings | None = None,
) -> ArtifactTarget:
    """The target a dump writes into (nothing with the final name exists before its commit)."""
    location = check_output_path(value, directory=directory)
    check_lock_destination((settings or default_settings()).lock, location.scheme, location.uri)
    target: ArtifactTarget = _backend(location.scheme).open_target(
        location, directory=directory, overwrite=overwrite, settings=settings or default_settings()
    )
    return target


def open_source(
    value: LocationLike, *, what: str = "path", settings: StorageSettings | None = None
) -> ArtifactSource:
    """The source a verification or a restore reads a backup from."""
    location = parse_location(value, what=what)
    source: ArtifactSource = _backend(location.scheme).open_source(
        location, settings=settings or default_settings()
    )
    return source


def open_store(value: LocationLike, *, settings: StorageSettings | None = None) -> BackupStore:
    """A folder (prefix) of backups, for retention and for finding the newest backup."""
    location = parse_location(value, what="location", folder=True)
    store: BackupStore = _backend(location.scheme).open_store(
        location, settings=settings or default_settings()
    )
    return store


def upload_backup(
    source: LocationLike,
    destination: LocationLike,
    *,
    settings: StorageSettings | None = None,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Copy a finished local backup (artifact, then manifest) into the folder ``destination``."""
    local = parse_location(source, what="source_path")
    if not local.is_local:
        raise InvalidOptionError(
            f"source_path {local.uri!r} must be a local path; use promote_backup within a store"
        )
    check_on_this_worker(local)
    folder = parse_location(destination, what="destination", folder=True)
    check_lock_destination((settings or default_settings()).lock, folder.scheme, folder.uri)
    result: tuple[TransferResult, Manifest] = _backend(folder.scheme).upload(
        local, folder, settings=settings or default_settings(), log=log, cancel=cancel
    )
    return result


def check_on_this_worker(source: LocationLike) -> None:
    """Raise :class:`ArtifactNotOnThisWorker` when the local backup ``source`` is not on this machine
    (written on another worker, or never written); an object-store location is everywhere."""
    location = parse_location(source, what="source_path")
    if location.is_local:
        missing = _backend(location.scheme).not_on_this_worker(location, waiting=False)
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
    result: tuple[TransferResult, Manifest] = _backend(folder.scheme).promote(
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
    deleted: list[str] = _backend(source.location.scheme).discard_promoted(source, copy, log=log)
    return deleted


def backup_lock(source: ArtifactSource) -> ObjectLock | None:
    """The lock in force now over a backup (its artifact objects and manifest: the weakest of them);
    None when a part of it is not locked, or the store cannot lock (a local folder)."""
    lock = getattr(source, "lock_in_force", None)
    found: ObjectLock | None = lock() if callable(lock) else None
    return found


def object_locks(store: BackupStore, entry: StoredEntry) -> list[ObjectLock | None]:
    """The lock of each object of a listed entry (also expired ones); empty where the store cannot lock."""
    locks = getattr(store, "object_locks", None)
    return list(locks(entry)) if callable(locks) else []


def delete_locked(store: BackupStore, entry: StoredEntry, *, bypass: bool = False) -> None:
    """Delete the exact versions of an entry that is (or was) locked; ``bypass`` lifts a governance /
    unlocked lock first (:class:`ObjectLockedError` when the store refuses)."""
    delete = getattr(store, "delete_locked", None)
    if not callable(delete):
        store.delete(entry)
        return
    delete(entry, bypass=bypass)


def remove_backup(value: LocationLike) -> None:
    """Delete a backup the provider wrote: the manifest first, so a half-deleted backup never looks
    finished. Local paths only (object stores are cleaned by retention, with generation preconditions)."""
    location = parse_location(value)
    if not location.is_local:
        raise InvalidOptionError(f"remove_backup takes a local path, not {location.uri!r}")
    from airflow_provider_pgbackup.storage.local import remove_backup as remove_local

    remove_local(location)


__all__ = [
    "BACKENDS",
    "DEFAULT_AWS_CONN_ID",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_GCP_CONN_ID",
    "DEFAULT_PARTS_IN_FLIGHT",
    "DEFAULT_RETRY_TIMEOUT",
    "DEFAULT_WASB_CONN_ID",
    "ArtifactDigest",
    "ArtifactInUse",
    "ArtifactMismatchError",
    "ArtifactNotOnThisWorker",
    "ArtifactRefused",
    "ArtifactSource",
    "ArtifactTarget",
    "BackupStore",
    "CredentialsError",
    "DeletionPlan",
    "EntryChanged",
    "Location",
    "LocationLike",
    "LockNotSupported",
    "LockRequest",
    "ObjectConflictError",
    "ObjectLock",
    "ObjectLockedError",
    "StorageError",
    "StorageSettings",
    "StoreNotFound",
    "StoredEntry",
    "TransferResult",
    "UnsafeObjectName",
    "UploadCancelled",
    "backup_lock",
    "check_lock_destination",
    "check_on_this_worker",
    "check_output_path",
    "check_settings",
    "default_settings",
    "delete_locked",
    "discard_promoted",
    "is_local",
    "lock_request",
    "object_locks",
    "object_url",
    "open_source",
    "open_store",
    "open_target",
    "parse_location",
    "plan_deletion",
    "portable_location",
    "portable_uri",
    "promote_backup",
    "publish_backup",
    "remove_backup",
    "upload_backup",
]
