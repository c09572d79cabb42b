"""Publishing locked: the bucket check before anything is written, the manifest that records the lock,
and locking each object once it exists (the artifact's objects first, the manifest last).

Called by the writer (a dump), the upload and the promotion when the client's settings carry a
:class:`~airflow_provider_pgbackup.storage.object_lock.LockRequest`; nothing happens without one.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.storage.base import ObjectConflictError
from airflow_provider_pgbackup.storage.object_lock import (
    LockNotSupported,
    ObjectLock,
    check_lock_destination,
    weakest,
)
from airflow_provider_pgbackup.storage.objects.client import LockingObjectClient, ObjectClient

_CALLS = ("check_locking", "lock_of", "set_lock", "delete_locked")


def can_lock(client: ObjectClient) -> bool:
    return all(callable(getattr(client, call, None)) for call in _CALLS)


def locking(client: ObjectClient) -> LockingObjectClient:
    """``client`` as a locking client; :class:`LockNotSupported` for a store that cannot lock."""
    if not can_lock(client):
        raise LockNotSupported(f"{client.location.uri}: this store cannot lock objects (lock_for)")
    return client  # type: ignore[return-value]


def check_locking(client: ObjectClient) -> None:
    """Before anything is written: the destination and its bucket/container can take the lock asked for."""
    request = client.settings.lock
    if request is None:
        return
    check_lock_destination(request, client.location.scheme, client.location.uri)
    locking(client).check_locking(request)


def refuse_replacing_locked(client: ObjectClient, names: Iterable[str], uri: str) -> None:
    """``overwrite=True`` never hides a backup whose lock is in force behind a new version."""
    locks = [lock for lock in locks_of(client, names) if lock is not None]
    now = datetime.datetime.now(datetime.timezone.utc)
    active = [lock for lock in locks if lock.active(now)]
    if active:
        until = max((lock.until for lock in active if lock.until is not None), default=None)
        raise ObjectConflictError(
            f"{uri} is a locked backup ({active[0].mode or 'legal hold'}"
            + (f" until {until.isoformat()}" if until is not None else "")
            + "): overwrite=True does not replace it; write to another name"
        )


def lock_to_record(client: ObjectClient, manifest: Manifest) -> ObjectLock | None:
    """The lock a backup with ``manifest`` gets (finished_at + lock_for); refused when already past."""
    request = client.settings.lock
    if request is None:
        return None
    lock = request.lock_for(client.location.scheme, manifest.finished_at)
    assert lock.until is not None
    if lock.until <= datetime.datetime.now(datetime.timezone.utc):
        raise LockNotSupported(
            f"lock_for {request.duration} from the backup's finish time {manifest.finished_at} ends "
            f"{lock.until.isoformat()}, which is already past: nothing was locked; give a longer lock_for"
        )
    return lock


def locked_manifest(manifest: Manifest, lock: ObjectLock | None) -> Manifest:
    return manifest if lock is None else dataclasses.replace(manifest, lock=lock.to_dict())


def lock_objects(client: ObjectClient, names: Iterable[str], lock: ObjectLock | None, log: Any) -> None:
    """Lock each object (idempotent: a retry asks for the same date)."""
    if lock is None:
        return
    locker = locking(client)
    names = list(names)
    for name in names:
        locker.set_lock(name, lock)
    if log is not None:
        log.info(
            "Locked %s until %s (%s%s)",
            ", ".join(f"{client.location.uri}/{name}" for name in names),
            lock.to_dict()["until"],
            lock.mode,
            ", legal hold" if lock.legal_hold else "",
        )


def locks_of(client: ObjectClient, names: Iterable[str]) -> list[ObjectLock | None]:
    """Each object's lock (empty for a store that cannot lock)."""
    if not can_lock(client):
        return []
    locker = locking(client)
    return [locker.lock_of(name) for name in names]


def backup_lock(client: ObjectClient, names: Iterable[str]) -> ObjectLock | None:
    """The lock in force now over every one of ``names`` (the weakest), None if any is unlocked."""
    return weakest(locks_of(client, names), datetime.datetime.now(datetime.timezone.utc))
