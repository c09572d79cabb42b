"""PgBackupToGCSOperator: upload a finished backup (artifact, then its manifest) to Google Cloud Storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink

from airflow_provider_pgbackup.failures import failure_policy
from airflow_provider_pgbackup.options import (
    InvalidOptionError,
    check_positive_number,
    is_templated,
    parse_flag,
)
from airflow_provider_pgbackup.storage import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_RETRY_TIMEOUT,
    Location,
    StorageSettings,
    check_settings,
    parse_location,
    remove_backup,
    upload_backup,
)
from airflow_provider_pgbackup.transfers.base import TransferOperator, static_folder_uri

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

XCOM_CONSOLE_URL = "gcs_console_url"


class GCSBackupLink(BaseOperatorLink):
    """Operator extra link: the uploaded backup in the Google Cloud Console."""

    name = "Published backup"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=XCOM_CONSOLE_URL)
        return str(url) if url else ""


def gcs_destination(bucket: str, prefix: str) -> Location:
    """``gs://<bucket>/<prefix>`` as a folder location, validated (raises naming ``destination``)."""
    if not isinstance(bucket, str) or not isinstance(prefix, str) or "/" in bucket:
        raise InvalidOptionError(
            f"destination bucket {bucket!r} / prefix {prefix!r} must be a bucket name and a path"
        )
    return parse_location(f"gs://{bucket}/{prefix.strip('/')}", what="destination", folder=True)


def static_asset_uri(bucket: str, prefix: str) -> str | None:
    """The ``gs://`` folder an upload lands in, up to the first template marker.

    None when the bucket itself is templated, or the prefix is only known at run time (an XComArg or
    a mapped argument): the caller then declares its own outlets.
    """
    if is_templated(bucket) or not isinstance(prefix, str):
        return None
    return static_folder_uri(f"gs://{bucket}/{prefix}")


class PgBackupToGCSOperator(TransferOperator):
    """Upload a finished backup (artifact file or directory-format folder, then its manifest) to GCS.

    The artifact keeps its name under ``gs://<bucket>/<prefix>/``; the manifest object is written last,
    so its presence marks a complete backup. Bytes are streamed in resumable chunks, checked against the
    manifest's sha256 before each object is finalized, and crc32c-checked by the client. An object that
    already exists with the same sha256 is left alone (a retried task is a no-op); a different object
    at the same name is never overwritten. Returns (XCom) the ``gs://`` URIs and the manifest.

    An :class:`~airflow.sdk.Asset` outlet for the destination folder is declared when ``bucket`` is not
    templated (the prefix up to its first template marker), unless ``outlets`` is given.

    :param source_path: absolute local path of the artifact (its manifest must be beside it), e.g.
        ``{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}``. Templated.
    :param bucket: destination bucket name. Templated.
    :param prefix: object-name prefix (folder) inside the bucket; empty for the bucket root. Templated.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection; Application Default Credentials
        when the default connection does not exist; ``STORAGE_EMULATOR_HOST`` selects an emulator.
    :param chunk_size: bytes per resumable-upload request, a multiple of 256 KiB (default 32 MiB).
    :param storage_class: ``STANDARD``, ``NEARLINE``, ``COLDLINE`` or ``ARCHIVE`` (default: the bucket's).
    :param kms_key_name: Cloud KMS key for the objects (default: the bucket's encryption).
    :param retry_timeout: seconds each request is retried on transient errors, with backoff.
    :param progress_interval: seconds between progress log lines (bytes, rate).
    :param delete_local_copy: delete the local artifact and manifest after a verified upload.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (one e-mail, or a chain
        whose last account is impersonated; needs the ``google`` extra). Templated.
    :param shrink_guard: as for :class:`~.backup_upload.PgBackupUploadOperator`.
    :param shrink_acknowledged: as for :class:`~.backup_upload.PgBackupUploadOperator`. Templated.
    """

    template_fields: Sequence[str] = (
        "source_path",
        "bucket",
        "prefix",
        "gcp_conn_id",
        "kms_key_name",
        "impersonation_chain",
        "shrink_acknowledged",
    )
    ui_color = "#a8dadc"
    operator_extra_links = (GCSBackupLink(),)
    console_url_key = XCOM_CONSOLE_URL

    def __init__(
        self,
        *,
        source_path: str,
        bucket: str,
        prefix: str = "",
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        storage_class: str | None = None,
        kms_key_name: str | None = None,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        progress_interval: float = 5.0,
        delete_local_copy: bool = False,
        impersonation_chain: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(outlet_uri=static_asset_uri(bucket, prefix), **kwargs)
        self.source_path = source_path
        self.bucket = bucket
        self.prefix = prefix
        self.gcp_conn_id = gcp_conn_id
        self.chunk_size = chunk_size
        self.storage_class = storage_class
        self.kms_key_name = kms_key_name
        self.retry_timeout = retry_timeout
        self.progress_interval = progress_interval
        self.delete_local_copy = delete_local_copy
        self.impersonation_chain = impersonation_chain
        self._settings()  # chunk_size, storage_class and retry_timeout are not templated
        if not is_templated(source_path):
            self._local_source()
        if not is_templated(bucket) and not is_templated(prefix):
            gcs_destination(bucket, prefix)

    def _local_source(self) -> Location:
        location = parse_location(self.source_path, what="source_path")
        if not location.is_local:
            raise InvalidOptionError(f"source_path {self.source_path!r} must be a local path")
        return location

    def _settings(self) -> StorageSettings:
        return check_settings("gs", self._storage_settings())

    def validate(self) -> None:
        """Check every argument without touching storage; raise :class:`InvalidOptionError` naming it."""
        self._settings()
        self._local_source()
        gcs_destination(self.bucket, self.prefix or "")
        parse_flag("delete_local_copy", self.delete_local_copy)
        if self.kms_key_name is not None and not isinstance(self.kms_key_name, str):
            raise InvalidOptionError(
                f"kms_key_name {self.kms_key_name!r} must be a Cloud KMS key name or None"
            )

    def _storage_settings(self) -> StorageSettings:
        check_positive_number("progress_interval", self.progress_interval, allow_zero=True)
        return StorageSettings(
            gcp_conn_id=self.gcp_conn_id,
            chunk_size=self.chunk_size,
            retry_timeout=self.retry_timeout,
            storage_class=self.storage_class,
            kms_key_name=self.kms_key_name or None,
            progress_interval=self.progress_interval,
            impersonation_chain=None if is_templated(self.impersonation_chain) else self.impersonation_chain,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        with failure_policy():
            return self._execute(context)

    def _execute(self, context: Any) -> dict[str, Any]:
        self.validate()
        settings = self._settings()
        source = self._local_source()
        destination = gcs_destination(self.bucket, self.prefix or "")
        self._check_shrink(source, destination, settings)
        result, manifest = upload_backup(
            source, destination, settings=settings, log=self.log, cancel=self._cancel
        )
        rate = result.rate_bytes_per_second / (1024 * 1024)
        uploaded_bytes = result.transferred_bytes
        self.log.info(
            "Backup uploaded to %s (%d bytes sent in %.1f s, %.1f MiB/s; %d objects already present)",
            result.artifact_uri,
            uploaded_bytes,
            result.duration_seconds,
            rate,
            result.skipped_objects,
        )
        if self.delete_local_copy:
            remove_backup(source)
            self.log.info(
                "Deleted the local copy %s and its manifest after the verified upload", self.source_path
            )
        self._publish(context, result, manifest, source=source, settings=settings)
        return {
            "artifact_uri": result.artifact_uri,
            "manifest_uri": result.manifest_uri,
            "object_uris": list(result.object_uris),
            "uploaded_bytes": uploaded_bytes,
            "skipped_objects": result.skipped_objects,
            "console_url": result.console_url,
            "manifest": manifest.to_dict(),
        }
