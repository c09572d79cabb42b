"""Version-level immutability (WORM) for the Azure object client
(:class:`~airflow_provider_pgbackup.storage.azure.client.AzureObjectClient`): whether a container can
lock, a blob's policy and legal hold, locking it, and deleting a locked version."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.storage.azure.location import AzureLocation
from airflow_provider_pgbackup.storage.base import EntryChanged, StoreNotFound
from airflow_provider_pgbackup.storage.object_lock import (
    LockNotSupported,
    LockRequest,
    ObjectLock,
    ObjectLockedError,
)

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient


class AzureLocks:
    """The immutability calls of the Azure object client (a base class: the client gives its
    ``container`` client, ``location``, the request ``_options``, :meth:`uri` and :meth:`_no_container`)."""

    container: ContainerClient
    location: AzureLocation
    _options: dict[str, Any]

    def uri(self, name: str) -> str:
        raise NotImplementedError

    def _no_container(self, err: Exception) -> StoreNotFound:
        raise NotImplementedError

    def check_locking(self, request: LockRequest) -> None:
        """The container has version-level immutability support (which needs blob versioning)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = self.container.get_container_properties(**self._options)
        except ResourceNotFoundError as err:
            raise self._no_container(err) from err
        if not getattr(found, "immutable_storage_with_versioning_enabled", False):
            raise LockNotSupported(
                f"container {self.location.container!r} does not have version-level immutability support; "
                "lock_for needs it (and blob versioning on the account): create the container with "
                "`az storage container-rm create --enable-vlw` (or enable it on the account), or migrate "
                "an existing container in the portal (Data protection -> Enable version-level immutability)"
            )

    def _blob_error(self, name: str, err: Exception) -> LockNotSupported:
        status = getattr(err, "status_code", None)
        if status == 501:
            return LockNotSupported(
                f"{self.uri(name)} could not be locked: the service does not implement immutability "
                "policies (Azurite does not)"
            )
        return LockNotSupported(f"{self.uri(name)} could not be locked: {err}")

    def lock_of(self, name: str) -> ObjectLock | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = self.container.get_blob_client(name).get_blob_properties(**self._options)
        except ResourceNotFoundError:
            return None
        policy = getattr(found, "immutability_policy", None)
        until = getattr(policy, "expiry_time", None)
        mode = getattr(policy, "policy_mode", None)
        hold = bool(getattr(found, "has_legal_hold", False))
        if until is None and not hold:
            return None
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=datetime.timezone.utc)
        return ObjectLock(
            str(mode).lower() if mode else None, until, hold, getattr(found, "version_id", None)
        )

    def set_lock(self, name: str, lock: ObjectLock) -> None:
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import ImmutabilityPolicy

        blob = self.container.get_blob_client(name)
        try:
            if lock.mode is not None and lock.until is not None:
                policy = ImmutabilityPolicy(expiry_time=lock.until, policy_mode=lock.mode.capitalize())
                blob.set_immutability_policy(policy, **self._options)
            if lock.legal_hold:
                blob.set_legal_hold(True, **self._options)
        except HttpResponseError as err:
            raise self._blob_error(name, err) from err

    def delete_locked(self, name: str, etag: str, *, bypass: bool) -> None:
        """Delete the current version if it still has ``etag`` (``bypass``: its unlocked policy first)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        blob = self.container.get_blob_client(name)
        try:
            found = blob.get_blob_properties(**self._options)
        except ResourceNotFoundError:
            return
        if found.etag != etag:
            raise EntryChanged(f"{self.uri(name)} changed since it was listed; not deleted")
        try:
            if bypass:
                blob.delete_immutability_policy(**self._options)
            blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified, **self._options)
            version = getattr(found, "version_id", None)
            if version:
                blob.delete_blob(version_id=version, **self._options)
        except ResourceNotFoundError:
            return
        except HttpResponseError as err:
            if getattr(err, "status_code", None) in (403, 409):
                raise ObjectLockedError(f"Azure refused to delete {self.uri(name)}: it is locked") from err
            raise
