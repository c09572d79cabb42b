"""PgBackupToGCSOperator: upload a finished backup (artifact, then its manifest) to Google Cloud Storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_pgbackup.links import BackupConsoleLink
from airflow_provider_pgbackup.options import InvalidOptionError, is_templated
from airflow_provider_pgbackup.storage import Location, StorageSettings, check_settings, parse_location
from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator
from airflow_provider_pgbackup.transfers.base import static_folder_uri

XCOM_CONSOLE_URL = "gcs_console_url"


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


class PgBackupToGCSOperator(PgBackupUploadOperator):
    """Upload a finished backup (artifact file or directory-format folder, then its manifest) to GCS:
    :class:`~airflow_provider_pgbackup.transfers.backup_upload.PgBackupUploadOperator` with
    ``destination=gs://<bucket>/<prefix>``, its arguments as they always were.

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
    :param lock_for: publish the copy locked (GCS object retention) until the backup's finish time plus
        this duration, with ``lock_mode`` (``unlocked``, the default, or ``locked``) and
        ``lock_legal_hold`` (a temporary hold), as
        :class:`~airflow_provider_pgbackup.transfers.backup_upload.PgBackupUploadOperator` takes them;
        the bucket must have object retention enabled (checked before anything is copied). Templated.
    :param kwargs: the :class:`~airflow.sdk.BaseOperator` arguments (and ``parts_in_flight``: on GCS
        one chunk is sent while at most one more waits).
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
        "lock_for",
    )
    ui_color = "#a8dadc"
    operator_extra_links = (BackupConsoleLink(name="Published backup", key=XCOM_CONSOLE_URL),)
    console_url_key = XCOM_CONSOLE_URL

    def __init__(self, *, bucket: str, prefix: str = "", **kwargs: Any) -> None:
        text = isinstance(bucket, str) and isinstance(prefix, str)
        if text and not is_templated(bucket, prefix):
            gcs_destination(bucket, prefix)
        # What the upload operator checks now and declares as the outlet (up to a template marker); at
        # run time the destination is made again from the rendered bucket and prefix (_destination).
        destination = f"gs://{bucket}/{prefix.strip('/')}" if text else "gs://{{ bucket }}/{{ prefix }}"
        super().__init__(destination=destination, **kwargs)
        self.bucket = bucket
        self.prefix = prefix

    def _destination(self) -> Location:
        if "bucket" not in vars(self):  # during construction: the destination made from the arguments
            return super()._destination()
        return gcs_destination(self.bucket, self.prefix or "")

    def _storage_settings(self) -> StorageSettings:
        return check_settings("gs", super()._storage_settings())
