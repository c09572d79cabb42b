"""How the provider talks to object storage: :class:`StorageSettings` and its defaults."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_provider_pgbackup.manifest import DEFAULT_FILE_MODE
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.object_lock import LockRequest

#: Object stores take upload chunks in multiples of 256 KiB (GCS resumable uploads require it).
CHUNK_MULTIPLE = 256 * 1024
DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024
DEFAULT_PARTS_IN_FLIGHT = 4
DEFAULT_RETRY_TIMEOUT = 300.0
DEFAULT_GCP_CONN_ID = "google_cloud_default"
DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_WASB_CONN_ID = "wasb_default"
_ENCRYPTION_SCOPE = re.compile(r"^[A-Za-z0-9]{3,63}$")


def has_control(text: str) -> bool:
    """A control character (a newline, NUL...) in ``text``."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


@dataclass(frozen=True)
class StorageSettings:
    """How the provider talks to object storage (ignored for local paths).

    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for ``gs://`` (else Application
        Default Credentials; ``STORAGE_EMULATOR_HOST`` selects an emulator).
    :param aws_conn_id: Airflow ``aws`` connection for ``s3://``, resolved by the Amazon provider's
        ``S3Hook`` (keys, assume-role, web identity, ``endpoint_url`` extra...); None, or the default id
        when no such connection exists: boto3's default credential chain.
    :param wasb_conn_id: Airflow ``wasb`` connection for ``az://``, resolved by the Microsoft Azure
        provider's ``WasbHook`` (connection string, account key, SAS, service principal, managed
        identity...); None, or the default id when no such connection exists:
        ``AZURE_STORAGE_CONNECTION_STRING``, else ``AZURE_STORAGE_ACCOUNT_URL`` with
        ``DefaultAzureCredential``.
    :param chunk_size: bytes per request on GCS (a multiple of 256 KiB): the resumable upload's chunk
        (its part) and every store's download read size. S3 and Azure size their parts with
        ``part_size``.
    :param part_size: bytes of an S3 part / Azure block before parts grow with the stream (None: the
        store's default, 8 MiB on S3, 4 MiB on Azure); each store checks its own limits (S3: 5 MiB to
        5 GiB, 10,000 parts; Azure: up to 4000 MiB, 50,000 blocks). Unused on GCS.
    :param parts_in_flight: parts an upload holds at once, sent beside the producer (pg_dump, or a file
        being read): S3 and Azure send that many at once; GCS's resumable upload takes its bytes in
        order, so there one is sent while one more waits (at most 2). Memory is bounded by about
        ``(parts_in_flight + 1) x part size``.
    :param retry_timeout: seconds a request (or chunk) is retried on transient errors, with backoff.
    :param storage_class: storage class of new objects (``STANDARD``, ``NEARLINE``, ``COLDLINE``,
        ``ARCHIVE`` on GCS; ``STANDARD``, ``STANDARD_IA``, ``INTELLIGENT_TIERING``... on S3), or the
        access tier of new blobs on Azure (``Hot``, ``Cool``, ``Cold``, ``Archive``); each backend checks
        its own list. None keeps the bucket's (account's) default.
    :param kms_key_name: KMS key for new objects: a Cloud KMS key name on GCS; a KMS key id, ARN or
        alias on S3 (SSE-KMS). None keeps the bucket's default encryption. Unused on Azure.
    :param encryption_scope: Azure encryption scope for new blobs (the account's default when None).
    :param progress_interval: seconds between progress log lines of an upload.
    :param file_mode: mode of a finished local backup's files (artifact, manifest); its folders get
        the matching search bits (0o600 -> 0o700). Default owner-only; 0o640 shares with the group.
    :param impersonation_chain: ``gs://``: service account(s) to impersonate with the connection's
        credentials (the Google provider's ``impersonation_chain``: one account, or a chain whose last
        account is impersonated, each granting the previous the Token Creator role). Needs
        ``apache-airflow-providers-google``. Stored as a tuple.
    :param lock: publish the backup locked (:mod:`~airflow_provider_pgbackup.storage.object_lock`): its
        objects and its manifest, until its finish time + ``lock.duration``; s3://, az:// and gs:// only.
    """

    gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID
    chunk_size: int = DEFAULT_CHUNK_SIZE
    retry_timeout: float = DEFAULT_RETRY_TIMEOUT
    storage_class: str | None = None
    kms_key_name: str | None = None
    progress_interval: float = 5.0
    parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT
    part_size: int | None = None
    file_mode: int = DEFAULT_FILE_MODE
    aws_conn_id: str | None = DEFAULT_AWS_CONN_ID
    wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID
    encryption_scope: str | None = None
    impersonation_chain: str | Sequence[str] | None = None
    lock: LockRequest | None = None

    def __post_init__(self) -> None:
        size = self.chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % CHUNK_MULTIPLE:
            raise InvalidOptionError(
                f"chunk_size {size!r} must be a positive multiple of 256 KiB ({CHUNK_MULTIPLE} bytes)"
            )
        timeout = self.retry_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidOptionError(f"retry_timeout {timeout!r} must be a positive number of seconds")
        for field in ("gcp_conn_id", "aws_conn_id", "wasb_conn_id"):
            conn_id = getattr(self, field)
            if conn_id is not None and not isinstance(conn_id, str):
                raise InvalidOptionError(f"{field} {conn_id!r} must be a connection id (a string)")
        for field in ("storage_class", "kms_key_name"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value or has_control(value)):
                raise InvalidOptionError(f"{field} {value!r} must be a non-empty string on one line")
        scope = self.encryption_scope
        if scope is not None and (not isinstance(scope, str) or not _ENCRYPTION_SCOPE.match(scope)):
            raise InvalidOptionError(
                f"encryption_scope {scope!r} must be an Azure encryption scope name (3 to 63 letters and "
                "digits)"
            )
        mode = self.file_mode
        if isinstance(mode, bool) or not isinstance(mode, int) or mode & ~0o666 or mode & 0o600 != 0o600:
            raise InvalidOptionError(
                f"file_mode {mode!r} must be a file mode that lets the owner read and write (0o600) and "
                "grants nothing more than read/write (at most 0o666), e.g. 0o600 or 0o640"
            )
        for field, optional in (("parts_in_flight", False), ("part_size", True)):
            value = getattr(self, field)
            if (value is not None or not optional) and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidOptionError(f"{field} {value!r} must be a whole number >= 1")
        object.__setattr__(self, "impersonation_chain", check_impersonation_chain(self.impersonation_chain))
        if self.lock is not None and not isinstance(self.lock, LockRequest):
            raise InvalidOptionError(
                f"lock {self.lock!r} must be a LockRequest (see storage.object_lock.lock_request)"
            )


def check_impersonation_chain(value: object) -> tuple[str, ...] | None:
    """None, or a non-empty tuple of service-account e-mails; raises naming a bad value."""
    if value is None or value == "" or value == ():
        return None
    accounts = [value] if isinstance(value, str) else value
    if not isinstance(accounts, (list, tuple)) or not all(
        isinstance(a, str) and a.strip() and "@" in a and not any(c in a for c in " \n\r\t,")
        for a in accounts
    ):
        raise InvalidOptionError(
            f"impersonation_chain {value!r} must be a service account e-mail "
            "(name@project.iam.gserviceaccount.com) or a list of them"
        )
    return tuple(a.strip() for a in accounts)
