"""Where bytes go and come from: every public name of the storage layer, importable from here.

The scheme registry (:mod:`~airflow_provider_pgbackup.storage.registry`, the only place a URI's scheme
is looked at): ``BACKENDS`` maps a scheme to the module that serves it (imported on first use, so the
Google, AWS and Azure libraries load only when ``gs://``, ``s3://`` or ``az://`` is used); moving backups
between places through it is :mod:`~airflow_provider_pgbackup.storage.transfer`. GCS, S3 and Azure share the
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
from airflow_provider_pgbackup.storage.registry import (
    BACKENDS,
    LocationLike,
    check_output_path,
    check_settings,
    default_settings,
    is_local,
    object_url,
    open_source,
    open_store,
    open_target,
    parse_location,
    portable_location,
    portable_uri,
    remove_backup,
)
from airflow_provider_pgbackup.storage.transfer import (
    check_on_this_worker,
    discard_promoted,
    promote_backup,
    publish_backup,
    upload_backup,
)


# --------------------------------------------------------------- what a store can do about its locks
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
