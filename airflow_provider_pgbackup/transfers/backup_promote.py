"""Publish a verified backup: promote it from a staging prefix to its final place, within one store.

On a distributed executor (Celery, Kubernetes) object storage is where tasks meet: the dump streams into
a staging prefix, a sensor verifies it there, :class:`PgBackupPromoteOperator` copies it to the final
prefix server-side (no bytes through the worker; the artifact first, the manifest last), and
:class:`PgBackupDiscardStagedOperator` deletes the staged copy once the promoted one is verified. A
backup is published only after it was verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jinja2
from airflow.sdk import BaseOperator

from airflow_provider_pgbackup.compat import AirflowException, AirflowFailException
from airflow_provider_pgbackup.failures import failure_policy
from airflow_provider_pgbackup.links import BackupConsoleLink
from airflow_provider_pgbackup.options import is_templated
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_RETRY_TIMEOUT,
    DEFAULT_WASB_CONN_ID,
    ArtifactMismatchError,
    Location,
    StorageSettings,
    discard_promoted,
    parse_location,
    publish_backup,
)
from airflow_provider_pgbackup.transfers.backup_to_gcs import XCOM_CONSOLE_URL
from airflow_provider_pgbackup.transfers.base import TransferOperator, static_folder_uri


class PgBackupPromoteOperator(TransferOperator):
    """Publish a verified backup to its final prefix: the artifact first, the manifest last.

    On ``gs://`` the copy is server-side (objects are rewritten by GCS; no bytes pass through the
    worker), with a create-only precondition per object and each copy's crc32c and size checked against
    its source. The artifact keeps its name under ``destination``. An identical object already at a
    destination name is kept, so a retried task is a no-op; a different one is never overwritten (the
    task fails without a retry). Local paths are copied file by file and checked against the manifest's
    sha256. A local source with a ``gs://`` destination is uploaded instead (as
    :class:`~airflow_provider_pgbackup.transfers.backup_to_gcs.PgBackupToGCSOperator` does): the
    single-machine variant of the same chain. Put a
    :class:`~airflow_provider_pgbackup.sensors.backup_artifact.PgBackupArtifactSensor` on ``source``
    before this task and one on the promoted copy after it: a backup is then published only after it
    was verified (fail-closed publishing).

    Returns (XCom) ``artifact_uri`` and ``manifest_uri`` of the promoted copy, ``source_uri``,
    ``object_uris``, ``copied_bytes``, ``skipped_objects``, ``console_url`` and the manifest. An
    :class:`~airflow.sdk.Asset` outlet for the destination folder is declared when ``destination`` is
    known at parse time (up to its first template marker), unless ``outlets`` is given.

    :param source: the verified artifact: ``gs://bucket/staging/name``, or a local path
        (``file://<worker>/<path>`` from the dump's XCom ``artifact_uri`` fails at once, saying so, on
        another worker); its manifest is beside it. Templated, e.g.
        ``"{{ ti.xcom_pull(task_ids='dump')['artifact_uri'] }}"``.
    :param destination: the folder (prefix) to promote into, in the same store, e.g.
        ``gs://bucket/postgres/shop``. Templated.
    :param expected_sha256: the sha256 the verification saw (the sensor's XCom ``sha256``); when set,
        a source whose manifest now says otherwise is not promoted. Templated.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for ``gs://`` (Application Default
        Credentials when the default connection does not exist; ``STORAGE_EMULATOR_HOST`` selects an
        emulator). Templated.
    :param aws_conn_id: Airflow ``aws`` connection for ``s3://`` (boto3's default chain when the default
        connection does not exist). Templated.
    :param wasb_conn_id: Airflow ``wasb`` connection for ``az://`` (``AZURE_STORAGE_CONNECTION_STRING`` /
        ``AZURE_STORAGE_ACCOUNT_URL`` when the default connection does not exist). Templated.
    :param kms_key_name: Cloud KMS key for the copies (default: the bucket's encryption). Templated.
    :param retry_timeout: seconds each request is retried on transient errors, with backoff.
    :param lock_for: publish the copy locked until the backup's finish time (its manifest's) plus this
        duration (timedelta, seconds, or ``"30d"``); s3://, az:// and gs:// only, the bucket/container checked
        before anything is copied; a date already past is refused. Templated.
    :param lock_mode: ``governance`` (default) / ``compliance`` on S3, ``unlocked`` (default) / ``locked``
        on Azure and GCS.
    :param lock_legal_hold: also put a legal hold on the objects (on GCS a temporary hold).
    :param shrink_guard: thresholds of the shrink guard (``shrink.ShrinkGuard``, a mapping of its
        settings, True: defaults, False: off): a backup much smaller than the newest verified one of its
        database at ``destination`` is held, not promoted.
    :param shrink_acknowledged: let a held backup through (and write its acknowledgement marker). Templated.
    """

    template_fields: Sequence[str] = (
        "lock_for",
        "source",
        "destination",
        "expected_sha256",
        "shrink_acknowledged",
        "gcp_conn_id",
        "aws_conn_id",
        "wasb_conn_id",
        "kms_key_name",
    )
    ui_color = "#b7e4c7"
    operator_extra_links = (BackupConsoleLink(name="Published backup", key=XCOM_CONSOLE_URL),)
    console_url_key = XCOM_CONSOLE_URL
    transfer_kind = "promote"

    def __init__(
        self,
        *,
        source: str,
        destination: str,
        expected_sha256: str | None = None,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        kms_key_name: str | None = None,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(outlet_uri=static_folder_uri(destination), **kwargs)
        self.source = source
        self.destination = destination
        self.expected_sha256 = expected_sha256
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        self.kms_key_name = kms_key_name
        self.retry_timeout = retry_timeout
        self._settings()  # retry_timeout is not templated
        if not is_templated(source):
            parse_location(source, what="source")
        if not is_templated(destination):
            parse_location(destination, what="destination", folder=True)

    def _settings(self) -> StorageSettings:
        return StorageSettings(
            gcp_conn_id=self.gcp_conn_id or None,
            aws_conn_id=self.aws_conn_id or None,
            wasb_conn_id=self.wasb_conn_id or None,
            retry_timeout=self.retry_timeout,
            kms_key_name=self.kms_key_name or None,
            lock=self._lock(None if is_templated(self.destination) else self._destination_location()),
        )

    def published_location(self, context: Any, staged: Location, *, staged_by: str) -> Location | None:
        """Where this promotion puts ``staged`` (the artifact keeps its name under ``destination``), the
        artifact the task ``staged_by`` wrote: when ``source`` renders to it, or (the dump asking before
        its XCom exists) is a template naming that task. None when it promotes another backup."""
        try:
            source = self.render_template(self.source, context)
        except jinja2.UndefinedError:  # the XCom it pulls does not exist yet: the dump is asking
            source = None
        if not (source == staged.uri or (is_templated(self.source) and _names_task(self.source, staged_by))):
            return None
        destination = self.render_template(self.destination, context)
        return parse_location(destination, what="destination", folder=True).child(staged.basename)

    def _destination_location(self) -> Location:
        return parse_location(self.destination, what="destination", folder=True)

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            with failure_policy():  # bad input, a changed backup, an object in the way: no retry
                return self._execute(context)
        except FileNotFoundError as err:
            raise AirflowException(f"nothing to promote at {self.source}: {err}") from err

    def _execute(self, context: Any) -> dict[str, Any]:
        settings = self._settings()
        staged, staged_manifest = self._read_source(self.source, settings)  # for both checks
        if self.expected_sha256 and staged_manifest.sha256 != self.expected_sha256:
            raise ArtifactMismatchError(
                f"the manifest of {staged.location.uri} now says sha256 {staged_manifest.sha256}, but the "
                f"verification saw {self.expected_sha256}: the staged backup changed after it was "
                "verified; not promoted"
            )
        self._check_shrink(staged, staged_manifest, parse_location(self.destination, folder=True), settings)
        source, result, manifest = publish_backup(
            self.source, self.destination, settings=settings, log=self.log, cancel=self._cancel
        )
        self.log.info(
            "Promoted %s to %s (%d bytes copied in %.1f s; %d objects already there)",
            source.location.uri,
            result.artifact_uri,
            result.transferred_bytes,
            result.duration_seconds,
            result.skipped_objects,
        )
        self._publish(
            context,
            result,
            manifest,
            source=source.location,
            verified=bool(self.expected_sha256) and manifest.sha256 == self.expected_sha256,
            settings=settings,
        )
        return {
            "artifact_uri": result.artifact_uri,
            "manifest_uri": result.manifest_uri,
            "source_uri": source.location.uri,
            "object_uris": list(result.object_uris),
            "copied_bytes": result.transferred_bytes,
            "skipped_objects": result.skipped_objects,
            "console_url": result.console_url,
            "manifest": manifest.to_dict(),
        }


def _names_task(template: str, task_id: str) -> bool:
    """Whether ``template`` pulls an XCom of ``task_id`` (``task_ids='dump'`` or ``task_ids="dump"``)."""
    return f"'{task_id}'" in template or f'"{task_id}"' in template


class PgBackupDiscardStagedOperator(BaseOperator):
    """Delete a staged backup once its promoted copy is there and identical.

    Identical: the same manifest bytes, and every staged artifact object (or file) with a promoted
    counterpart of the same size and checksum; otherwise nothing is deleted and the task fails without a
    retry. The staged manifest goes first (a half-deleted backup never looks finished) and, on an object
    store, every delete carries the generation that was compared, so nothing written since (and nothing
    the provider did not write) is ever deleted. A staged backup already gone is a no-op, so a retry
    finishes a partial delete. Run it after the promoted copy was verified.

    Returns (XCom) ``deleted``: the URIs deleted.

    :param staged: the staged artifact, e.g. ``gs://bucket/staging/shop/20260101T000000Z.dump``. Templated.
    :param promoted: the promoted artifact (the promote task's XCom ``artifact_uri``). Templated.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for ``gs://``. Templated.
    :param aws_conn_id: Airflow ``aws`` connection for ``s3://`` (boto3's default chain when the default
        connection does not exist). Templated.
    :param wasb_conn_id: Airflow ``wasb`` connection for ``az://`` (``AZURE_STORAGE_CONNECTION_STRING`` /
        ``AZURE_STORAGE_ACCOUNT_URL`` when the default connection does not exist). Templated.
    """

    template_fields: Sequence[str] = ("staged", "promoted", "gcp_conn_id", "aws_conn_id", "wasb_conn_id")
    ui_color = "#e9ecef"

    def __init__(
        self,
        *,
        staged: str,
        promoted: str,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.staged = staged
        self.promoted = promoted
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        if not is_templated(staged):
            parse_location(staged, what="staged")
        if not is_templated(promoted):
            parse_location(promoted, what="promoted")

    def execute(self, context: Any) -> dict[str, Any]:
        settings = StorageSettings(
            gcp_conn_id=self.gcp_conn_id or None,
            aws_conn_id=self.aws_conn_id or None,
            wasb_conn_id=self.wasb_conn_id or None,
        )
        try:
            with failure_policy():
                deleted = discard_promoted(self.staged, self.promoted, settings=settings, log=self.log)
        except AirflowFailException as err:
            raise AirflowFailException(f"staged backup {self.staged} not discarded: {err}") from err
        except FileNotFoundError as err:
            raise AirflowFailException(
                f"staged backup {self.staged} not discarded: its promoted copy {self.promoted} is not "
                f"there ({err})"
            ) from err
        return {"deleted": deleted}
