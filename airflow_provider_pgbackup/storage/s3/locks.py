"""S3 Object Lock for :class:`~airflow_provider_pgbackup.storage.s3.client.S3ObjectClient`: whether a
bucket can lock, an object's lock, locking it (retain-until, legal hold) and deleting a locked version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.storage.base import EntryChanged, StorageSettings, StoreNotFound
from airflow_provider_pgbackup.storage.object_lock import (
    LockNotSupported,
    LockRequest,
    ObjectLock,
    ObjectLockedError,
)

if TYPE_CHECKING:
    from botocore.client import BaseClient


def error_code(err: Exception) -> str:
    """S3's error code of a botocore ``ClientError`` (else its HTTP status)."""
    response = getattr(err, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status or "")


class S3Locks:
    """The S3 Object Lock calls of the S3 object client (a base class: the client gives its ``s3``
    client, ``bucket``, ``settings``, :meth:`uri` and :meth:`_no_bucket`)."""

    s3: BaseClient
    bucket: str
    settings: StorageSettings

    def uri(self, name: str) -> str:
        raise NotImplementedError

    def _no_bucket(self) -> StoreNotFound:
        raise NotImplementedError

    def check_locking(self, request: LockRequest) -> None:
        """The bucket has Object Lock enabled (which implies versioning); else say how to enable it."""
        from botocore.exceptions import ClientError

        enable = (
            "lock_for needs a bucket with S3 Object Lock enabled (and so versioning): create it with "
            "`aws s3api create-bucket --object-lock-enabled-for-bucket`, or enable it on a versioned bucket "
            "with `aws s3api put-object-lock-configuration --object-lock-configuration "
            "ObjectLockEnabled=Enabled`"
        )
        try:
            found = self.s3.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as err:
            code = error_code(err)
            if code in ("NoSuchBucket", "404"):
                raise self._no_bucket() from err
            if code == "ObjectLockConfigurationNotFoundError":
                raise LockNotSupported(f"bucket {self.bucket!r} has no S3 Object Lock; {enable}") from err
            if code in ("AccessDenied", "403"):
                raise LockNotSupported(
                    f"connection {self.settings.aws_conn_id!r} may not read the Object Lock configuration "
                    f"of bucket {self.bucket!r} (s3:GetBucketObjectLockConfiguration); grant it, with "
                    "s3:PutObjectRetention" + (" and s3:PutObjectLegalHold" if request.legal_hold else "")
                ) from err
            raise
        if (found.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") != "Enabled":
            raise LockNotSupported(f"bucket {self.bucket!r} has S3 Object Lock disabled; {enable}")

    def lock_of(self, name: str) -> ObjectLock | None:
        from botocore.exceptions import ClientError

        try:
            found = self.s3.head_object(Bucket=self.bucket, Key=name)
        except ClientError as err:
            if error_code(err) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        mode = found.get("ObjectLockMode")
        hold = found.get("ObjectLockLegalHoldStatus") == "ON"
        if not mode and not hold:
            return None
        return ObjectLock(
            mode.lower() if mode else None,
            found.get("ObjectLockRetainUntilDate"),
            hold,
            found.get("VersionId"),
        )

    def set_lock(self, name: str, lock: ObjectLock) -> None:
        """Retain-until in the lock's mode (S3 never shortens a compliance date), then the legal hold."""
        from botocore.exceptions import ClientError

        try:
            if lock.mode is not None and lock.until is not None:
                self.s3.put_object_retention(
                    Bucket=self.bucket,
                    Key=name,
                    Retention={"Mode": lock.mode.upper(), "RetainUntilDate": lock.until},
                )
            if lock.legal_hold:
                self.s3.put_object_legal_hold(Bucket=self.bucket, Key=name, LegalHold={"Status": "ON"})
        except ClientError as err:
            if error_code(err) in ("InvalidRequest", "AccessDenied", "403"):
                raise LockNotSupported(
                    f"{self.uri(name)} could not be locked: {error_code(err)}: {err}"
                ) from err
            raise

    def delete_locked(self, name: str, etag: str, *, bypass: bool) -> None:
        """Delete the current version if it still has ``etag`` (a plain delete would only add a delete
        marker in front of it in a versioned bucket)."""
        from botocore.exceptions import ClientError

        try:
            found = self.s3.head_object(Bucket=self.bucket, Key=name)
        except ClientError as err:
            if error_code(err) in ("404", "NoSuchKey", "NotFound"):
                return
            raise
        if found["ETag"] != etag:
            raise EntryChanged(f"{self.uri(name)} changed since it was listed; not deleted")
        version = found.get("VersionId")
        extra: dict[str, Any] = {"VersionId": version} if version and version != "null" else {}
        if bypass:
            extra["BypassGovernanceRetention"] = True
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=name, **extra)
        except ClientError as err:
            if error_code(err) in ("AccessDenied", "403"):
                raise ObjectLockedError(
                    f"S3 refused to delete {self.uri(name)} (version {version}): it is locked"
                    + ("" if bypass else "; nothing more of this backup is deleted")
                ) from err
            raise
