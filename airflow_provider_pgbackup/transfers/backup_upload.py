"""PgBackupUploadOperator: upload a finished local backup (artifact, then manifest) to any object store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_pgbackup.failures import failure_policy
from airflow_provider_pgbackup.links import XCOM_LINK, BackupConsoleLink
from airflow_provider_pgbackup.options import (
    InvalidOptionError,
    check_positive_number,
    is_templated,
    parse_flag,
)
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_PARTS_IN_FLIGHT,
    DEFAULT_RETRY_TIMEOUT,
    DEFAULT_WASB_CONN_ID,
    Location,
    StorageSettings,
    check_settings,
    parse_location,
    remove_backup,
    upload_backup,
)
from airflow_provider_pgbackup.transfers.base import TransferOperator, static_folder_uri

XCOM_CONSOLE_URL = XCOM_LINK
__all__ = ["BackupConsoleLink", "PgBackupUploadOperator"]  # the link's old home (get_provider_info, imports)


class PgBackupUploadOperator(TransferOperator):
    """Upload a finished backup (artifact file or directory-format folder, then its manifest) to an
    object store: ``gs://bucket/prefix``, ``s3://bucket/prefix`` or ``az://container/prefix``.

    The artifact keeps its name under the destination; the manifest object is written last, so its
    presence marks a complete backup. Bytes stream through a resumable (GCS), multipart (S3) or block
    (Azure) upload that runs beside the file being read, every part with a checksum the store verifies,
    and the whole is checked against the manifest's sha256 before the object is completed: nothing
    appears on failure or kill. Objects are created only if the name is free (``If-None-Match: *``); one
    that already holds the same bytes is left alone (a retried task is a no-op), a different one is never
    overwritten. Returns (XCom) the URIs and the manifest.

    :param source_path: absolute local path of the artifact (its manifest must be beside it), e.g.
        ``{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}``. Templated.
    :param destination: the folder URI the backup goes into. Templated.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for ``gs://``. Templated.
    :param aws_conn_id: Airflow ``aws`` connection for ``s3://``, resolved by the Amazon provider's
        ``S3Hook`` (boto3's default chain when the default connection does not exist). Templated.
    :param wasb_conn_id: Airflow ``wasb`` connection for ``az://``, resolved by the Microsoft Azure
        provider's ``WasbHook`` (``AZURE_STORAGE_CONNECTION_STRING`` / ``AZURE_STORAGE_ACCOUNT_URL`` when
        the default connection does not exist). Templated.
    :param chunk_size: GCS only: bytes per resumable-upload request, a multiple of 256 KiB (default
        32 MiB); also the read size of the local file.
    :param part_size: S3 part / Azure block size before parts grow with large files (so S3's
        10,000-part limit is never reached); default 8 MiB on S3 (at least 5 MiB), 4 MiB on Azure.
    :param parts_in_flight: parts held and sent at once (default 4; GCS sends them in order through
        one session, holding at most 2): memory is about ``(parts_in_flight + 1) x`` the part size.
    :param storage_class: GCS storage class, S3 storage class (``STANDARD_IA``...) or Azure access tier
        (``Hot``, ``Cool``, ``Cold``, ``Archive``); default: the bucket's.
    :param kms_key_name: GCS Cloud KMS key name, or S3 KMS key id/ARN/alias (SSE-KMS). Templated.
    :param encryption_scope: Azure encryption scope. Templated.
    :param retry_timeout: seconds each request is retried on transient errors, with backoff.
    :param progress_interval: seconds between progress log lines (bytes, rate, parts).
    :param delete_local_copy: delete the local artifact and manifest after a verified upload.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (one e-mail, or a chain
        whose last account is impersonated; needs the ``google`` extra). Templated.
    :param lock_for: publish the copy locked until the backup's finish time (its manifest's) plus this
        duration (timedelta, seconds, or ``"30d"``); s3://, az:// and gs:// only, the bucket/container checked
        before anything is copied; a date already past is refused. Templated.
    :param lock_mode: ``governance`` (default) / ``compliance`` on S3, ``unlocked`` (default) / ``locked``
        on Azure and GCS.
    :param lock_legal_hold: also put a legal hold on the objects (on GCS a temporary hold).
    :param shrink_guard: thresholds of the shrink guard (``shrink.ShrinkGuard``, a mapping of its
        settings, True: defaults, False: off): a backup much smaller than the newest verified one of its
        database at ``destination`` is held, not uploaded.
    :param shrink_acknowledged: let a held backup through (and write its acknowledgement marker). Templated.
    """

    template_fields: Sequence[str] = (
        "lock_for",
        "source_path",
        "destination",
        "impersonation_chain",
        "gcp_conn_id",
        "aws_conn_id",
        "wasb_conn_id",
        "kms_key_name",
        "encryption_scope",
        "shrink_acknowledged",
    )
    ui_color = "#a8dadc"
    operator_extra_links = (BackupConsoleLink(name="Published backup", key=XCOM_CONSOLE_URL),)
    console_url_key = XCOM_CONSOLE_URL

    def __init__(
        self,
        *,
        source_path: str,
        destination: str,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        part_size: int | None = None,
        parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
        storage_class: str | None = None,
        kms_key_name: str | None = None,
        encryption_scope: str | None = None,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        progress_interval: float = 5.0,
        delete_local_copy: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(outlet_uri=static_folder_uri(destination), **kwargs)
        self.source_path = source_path
        self.destination = destination
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        self.impersonation_chain = impersonation_chain
        self.chunk_size = chunk_size
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self.storage_class = storage_class
        self.kms_key_name = kms_key_name
        self.encryption_scope = encryption_scope
        self.retry_timeout = retry_timeout
        self.progress_interval = progress_interval
        self.delete_local_copy = delete_local_copy
        if not is_templated(source_path):
            self._local_source()
        if not is_templated(destination, kms_key_name, encryption_scope):
            self._settings(self._destination())
        else:
            self._storage_settings()  # chunk_size, storage_class and retry_timeout are not templated

    def _local_source(self) -> Location:
        location = parse_location(self.source_path, what="source_path")
        if not location.is_local:
            raise InvalidOptionError(f"source_path {self.source_path!r} must be a local path")
        return location

    def _destination(self) -> Location:
        location = parse_location(self.destination, what="destination", folder=True)
        if location.is_local:
            raise InvalidOptionError(
                f"destination {self.destination!r} must be an object-store folder URI: gs://bucket/prefix, "
                "s3://bucket/prefix or az://container/prefix"
            )
        return location

    def _storage_settings(self) -> StorageSettings:
        check_positive_number("progress_interval", self.progress_interval, allow_zero=True)
        return StorageSettings(
            gcp_conn_id=self.gcp_conn_id or None,
            aws_conn_id=self.aws_conn_id or None,
            wasb_conn_id=self.wasb_conn_id or None,
            chunk_size=self.chunk_size,
            part_size=self.part_size,
            parts_in_flight=self.parts_in_flight,
            retry_timeout=self.retry_timeout,
            storage_class=self.storage_class,
            kms_key_name=self.kms_key_name or None,
            encryption_scope=self.encryption_scope or None,
            progress_interval=self.progress_interval,
            lock=self._lock(None),
            impersonation_chain=None
            if is_templated(self.impersonation_chain)
            else (self.impersonation_chain or None),
        )

    def _settings(self, destination: Location) -> StorageSettings:
        self._lock(destination)
        return check_settings(destination.scheme, self._storage_settings())

    def validate(self) -> None:
        """Check every argument without touching storage; raise :class:`InvalidOptionError` naming it."""
        self._local_source()
        self._settings(self._destination())
        parse_flag("delete_local_copy", self.delete_local_copy)

    def execute(self, context: Any) -> dict[str, Any]:
        with failure_policy():  # the one retry-or-fail-now table, as every other operator
            return self._execute(context)

    def _execute(self, context: Any) -> dict[str, Any]:
        self.validate()
        source = self._local_source()
        destination = self._destination()
        settings = self._settings(destination)
        self._check_shrink(*self._read_source(source, settings), destination, settings)
        result, manifest = upload_backup(
            source, destination, settings=settings, log=self.log, cancel=self._cancel
        )
        self.log.info(
            "Backup uploaded to %s (%d bytes sent in %.1f s, %.1f MiB/s; %d objects already present)",
            result.artifact_uri,
            result.transferred_bytes,
            result.duration_seconds,
            result.rate_bytes_per_second / (1024 * 1024),
            result.skipped_objects,
        )
        if parse_flag("delete_local_copy", self.delete_local_copy):
            remove_backup(source)
            self.log.info("Deleted the local copy %s and its manifest after the verified upload", source)
        self._publish(context, result, manifest, source=source, settings=settings)
        return {
            "artifact_uri": result.artifact_uri,
            "manifest_uri": result.manifest_uri,
            "object_uris": list(result.object_uris),
            "uploaded_bytes": result.transferred_bytes,
            "skipped_objects": result.skipped_objects,
            "console_url": result.console_url,
            "manifest": manifest.to_dict(),
        }
