"""GCS object retention and holds for :class:`~airflow_provider_pgbackup.storage.gcs.objects.GCSObjectClient`:
whether a bucket can lock, an object's lock, locking it and deleting a locked generation.

Locks are GCS object retention (a per-object ``retention`` of mode ``Unlocked``/``Locked`` and a
``retainUntilTime``; the bucket must have object retention enabled) and, for ``lock_legal_hold``, the
object's *temporary hold*: like S3's legal hold it has no date, blocks deletion and replacement until
someone with ``storage.objects.update`` releases it, and releasing it changes nothing else (an event-based
hold would instead restart a bucket retention policy's clock on release). Either hold, set by anyone,
reads back as a legal hold, since either one blocks a deletion.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.storage.base import EntryChanged, StorageError, StorageSettings, StoreNotFound
from airflow_provider_pgbackup.storage.gcs.location import GCSLocation
from airflow_provider_pgbackup.storage.object_lock import (
    LockNotSupported,
    LockRequest,
    ObjectLock,
    ObjectLockedError,
)

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import storage


def lock_of_blob(blob: Any) -> ObjectLock | None:
    """The retention and holds of ``blob`` as the store reported them (None: neither)."""
    retention = blob._properties.get("retention") or {}  # what the SDK's Retention wraps
    until = blob.retention.retain_until_time if retention.get("retainUntilTime") else None
    hold = bool(blob.temporary_hold or blob.event_based_hold)  # either one blocks a deletion
    if until is None and not hold:
        return None
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=datetime.timezone.utc)
    mode = retention.get("mode") if until is not None else None
    return ObjectLock(str(mode).lower() if mode else None, until, hold, str(blob.generation))


class GCSLocks:
    """The retention and hold calls of the GCS object client (a base class: the client gives its
    ``gcs`` client, ``bucket``, ``location``, ``settings``, ``_retry``, :meth:`uri`, :meth:`_no_bucket`)."""

    gcs: storage.Client
    bucket: Any
    location: GCSLocation
    settings: StorageSettings
    _retry: Retry

    def uri(self, name: str) -> str:
        raise NotImplementedError

    def _no_bucket(self, err: Exception) -> StoreNotFound:
        raise NotImplementedError

    def check_locking(self, request: LockRequest) -> None:
        """The bucket has object retention enabled (``objectRetention.mode == "Enabled"``)."""
        from google.api_core import exceptions

        try:
            found = self.gcs.get_bucket(self.location.bucket, retry=self._retry)
        except exceptions.NotFound as err:
            raise self._no_bucket(err) from err
        except exceptions.Forbidden as err:
            raise LockNotSupported(
                f"connection {self.settings.gcp_conn_id!r} may not read bucket {self.location.bucket!r} "
                "(storage.buckets.get); lock_for needs it, with storage.objects.setRetention"
                + (" and storage.objects.update (the hold)" if request.legal_hold else "")
            ) from err
        if found.object_retention_mode != "Enabled":
            raise LockNotSupported(
                f"bucket {self.location.bucket!r} does not have object retention enabled; lock_for needs "
                "it: create the bucket with `gcloud storage buckets create gs://BUCKET "
                "--enable-per-object-retention`, or enable it on an existing bucket in the console "
                "(Protection -> Object retention)"
            )

    def lock_of(self, name: str) -> ObjectLock | None:
        blob = self.bucket.get_blob(name, retry=self._retry)
        return None if blob is None else lock_of_blob(blob)

    def set_lock(self, name: str, lock: ObjectLock) -> None:
        """Retention in the lock's mode, and the temporary hold, in one metadata patch of the current
        generation; the store's answer is read back, so a lock it did not keep fails here, not later."""
        from google.api_core import exceptions

        blob = self.bucket.get_blob(name, retry=self._retry)
        if blob is None:
            raise StorageError(f"{self.uri(name)} disappeared before it could be locked")
        before = lock_of_blob(blob)
        dated = lock.mode is not None and lock.until is not None
        if dated and (before is None or before.until is None or before.until != lock.until
                      or before.mode != lock.mode):  # fmt: skip
            blob.retention.mode = str(lock.mode).capitalize()  # Unlocked / Locked
            blob.retention.retain_until_time = lock.until
        if lock.legal_hold and not blob.temporary_hold:
            blob.temporary_hold = True
        if not blob._changes:  # a retry: already locked so
            return
        try:
            blob.patch(
                if_generation_match=blob.generation, if_metageneration_match=blob.metageneration,
                retry=self._retry,
            )  # fmt: skip
        except (exceptions.BadRequest, exceptions.Forbidden, exceptions.PreconditionFailed) as err:
            raise LockNotSupported(f"{self.uri(name)} could not be locked: {err}") from err
        kept = lock_of_blob(blob)  # the patch's response: what the store keeps now
        if (
            kept is None
            or (dated and (kept.until != lock.until or kept.mode != lock.mode))
            or (lock.legal_hold and not blob.temporary_hold)
        ):
            raise LockNotSupported(
                f"{self.uri(name)} could not be locked: {lock.to_dict()} was asked, the store kept "
                f"{kept.to_dict() if kept is not None else 'no lock'} (a store or emulator that does not "
                "keep object retention or temporary holds)"
            )

    def delete_locked(self, name: str, etag: str, *, bypass: bool) -> None:
        """Delete generation ``etag`` itself (in a versioned bucket a plain delete would only make it
        noncurrent, still stored); ``bypass``: its unlocked retention is removed first
        (``overrideUnlockedRetention``, which needs storage.objects.overrideUnlockedRetention; a patch of
        ``retention: null``, the JSON API's removal, which fake-gcs-server accepts but a real bucket's
        answer to was not tested)."""
        from google.api_core import exceptions

        blob = self.bucket.get_blob(name, retry=self._retry)
        if blob is None:
            return
        if str(blob.generation) != etag:
            raise EntryChanged(f"{self.uri(name)} changed since it was listed; not deleted")
        try:
            mode = (blob._properties.get("retention") or {}).get("mode")
            if bypass and mode == "Unlocked":
                blob._patch_property("retention", None)  # {"retention": null}: removed
                blob.patch(
                    if_generation_match=int(etag), if_metageneration_match=blob.metageneration,
                    override_unlocked_retention=True, retry=self._retry,
                )  # fmt: skip
            self.bucket.delete_blob(name, generation=int(etag), retry=self._retry)
        except exceptions.NotFound:
            return
        except exceptions.PreconditionFailed as err:
            raise EntryChanged(f"{self.uri(name)} changed since it was listed; not deleted") from err
        except exceptions.Forbidden as err:
            raise ObjectLockedError(
                f"GCS refused to delete {self.uri(name)} (generation {etag}): it is locked"
                + ("" if bypass else "; nothing more of this backup is deleted")
            ) from err
