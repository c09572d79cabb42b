"""PgBackupArtifactSensor: wait for a backup, then prove it is complete and readable."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from functools import cached_property
from typing import Any, NoReturn

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_pgbackup.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    conf,
)
from airflow_provider_pgbackup.failures import failure_policy
from airflow_provider_pgbackup.hooks.pg_dump import load_identities
from airflow_provider_pgbackup.lineage import (
    backup_event_metadata,
    operator_lineage,
    publish_asset_events,
)
from airflow_provider_pgbackup.links import XCOM_LINK, BackupConsoleLink, published_link, push_link
from airflow_provider_pgbackup.manifest import Manifest, ManifestError
from airflow_provider_pgbackup.options import (
    InvalidOptionError,
    check_bin_dir,
    check_conn_id,
    is_templated,
    parse_flag,
)
from airflow_provider_pgbackup.process import PgProcessRunner
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    ArtifactSource,
    Location,
    StorageSettings,
    StoreNotFound,
    backup_lock,
    open_source,
    parse_location,
    portable_location,
)
from airflow_provider_pgbackup.triggers.backup_artifact import PgBackupArtifactTrigger
from airflow_provider_pgbackup.verify import (
    SWITCHES,
    ArtifactCorrupt,
    ArtifactMissing,
    VerificationReport,
    VerificationUnavailable,
    check_min_size,
    parse_max_age,
    verify_backup,
)


class PgBackupArtifactSensor(BaseSensorOperator):
    """Wait for a backup (artifact and manifest) and verify it; fail at once when it is there but bad.

    While the artifact or its manifest is missing the sensor keeps poking (``poke`` or ``reschedule``
    mode, or deferred to the triggerer with ``deferrable=True``). Once both are there it runs the checks
    of :mod:`airflow_provider_pgbackup.verify` (size, sha256, ``pg_restore --list`` or the SQL trailer,
    tables) and raises :class:`~airflow.sdk.exceptions.AirflowFailException` naming the failed check
    when one fails: no retry and no waiting for the timeout. Returns (XCom) the verification report:
    checks run with their timings, the archive's TOC entry counts and the tables found in it.

    A ``gs://bucket/path/name`` (or ``s3://``, ``az://``) path is verified in the store, without a local
    copy of a file artifact: the object and ``name.manifest.json`` must exist; the size is the object's; the
    sha256 is computed while the object streams through memory (the download is crc32c-checked by the
    client); ``pg_restore --list`` reads a custom or tar archive on its stdin, and plain SQL is
    decompressed on the fly up to its completion trailer. A directory-format artifact (a ``name/``
    folder of objects) is downloaded into a private temporary folder for ``pg_restore --list`` and
    removed afterwards. Errors talking to GCS (network, permissions) fail the poke with a normal,
    retryable exception.

    :param path: the artifact (file or folder) on a local or mounted filesystem, or a
        ``gs://bucket/path/name`` URI; the manifest is ``<path>.manifest.json``. Templated, typically
        ``"{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}"``.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for a ``gs://`` path (Application
        Default Credentials when the default connection does not exist; ``STORAGE_EMULATOR_HOST``
        selects an emulator). Unused for a local path. Templated.
    :param aws_conn_id: Airflow ``aws`` connection for an ``s3://`` path, resolved by the Amazon
        provider's ``S3Hook`` (boto3's default credential chain when the default connection does not
        exist). Templated.
    :param wasb_conn_id: Airflow ``wasb`` connection for an ``az://`` path, resolved by the Microsoft
        Azure provider's ``WasbHook`` (``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL``
        when the default connection does not exist). Templated.
    :param verify_checksum: compare the artifact's sha256 with the manifest's (reads every byte).
    :param verify_contents: parse the content: ``pg_restore --list`` for archives; for plain SQL,
        decompress the stream and check pg_dump's completion trailer.
    :param verify_tables: archives: fail when the TOC lacks data for a table the manifest counted.
    :param min_size_bytes: smallest acceptable artifact size in bytes (>= 1).
    :param max_age: fail when the manifest's ``finished_at`` is older than this (timedelta or seconds).
    :param pg_bin_dir: folder searched first for ``pg_restore``.
    :param deferrable: wait in the triggerer instead of a worker slot; the verification itself runs on
        a worker when the trigger fires. For a ``gs://`` path the trigger looks for the two objects
        (metadata requests only, run in a thread so the triggerer's event loop never blocks), with the
        same ``gcp_conn_id``. A local path is never handed to the triggerer, which may run on another
        machine and cannot see it: the sensor then waits on its worker, in its ``mode``, and says so in
        the log. Re-deferring (the backup vanished between the trigger and the verification) keeps the
        sensor's ``timeout`` counted from the first start. Default: ``[operators] default_deferrable``.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (one e-mail, or a chain
        whose last account is impersonated; needs the ``google`` extra). Templated.
    :param decryption_conn_id: for an age-encrypted backup: an Airflow connection whose password holds
        an ``AGE-SECRET-KEY-1...`` identity. With it the backup is decrypted in the stream (every byte
        authenticated, the plaintext's sha256 compared, then the contents and tables checks); without
        it only the ciphertext is checked (size, sha256, a well-formed age header matching the recorded
        recipients). A key of none of the recipients fails non-retryably, never as "corrupt". Templated.
    """

    template_fields: Sequence[str] = (
        "path",
        "gcp_conn_id",
        "aws_conn_id",
        "wasb_conn_id",
        "impersonation_chain",
        "decryption_conn_id",
    )
    operator_extra_links = (BackupConsoleLink(name="Backup in console", key=XCOM_LINK),)
    _verified: Location | None = None  # the backup the checks passed, for lineage
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        path: str,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        verify_checksum: bool = True,
        verify_contents: bool = True,
        verify_tables: bool = True,
        min_size_bytes: int = 1,
        max_age: datetime.timedelta | float | None = None,
        pg_bin_dir: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        decryption_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.decryption_conn_id = decryption_conn_id
        check_min_size(min_size_bytes)
        parse_max_age(max_age)
        self.path = path
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        self.verify_checksum = verify_checksum
        self.verify_contents = verify_contents
        self.verify_tables = verify_tables
        self.min_size_bytes = min_size_bytes
        self.max_age = max_age
        self.pg_bin_dir = pg_bin_dir
        self.deferrable = deferrable
        self.impersonation_chain = impersonation_chain
        self._check_switches()
        if not is_templated(path):
            parse_location(path)

    def _check_switches(self) -> None:
        for name in SWITCHES:
            setattr(self, name, parse_flag(name, getattr(self, name)))
        check_bin_dir(self.pg_bin_dir)
        StorageSettings(gcp_conn_id=self.gcp_conn_id or None)

    def validate(self) -> None:
        """Check every argument without touching storage; raise :class:`InvalidOptionError` naming it."""
        self._check_switches()
        check_min_size(self.min_size_bytes)
        parse_max_age(self.max_age)
        parse_location(self.path, what="path")

    @cached_property
    def runner(self) -> PgProcessRunner:
        """Runs pg_restore --list (and lz4/zstd decompressors) with output in this task's log."""
        return PgProcessRunner(self.log)

    def on_kill(self) -> None:
        self.runner.kill()

    def _check_path(self) -> str:
        """The rendered path, checked (absolute local path or gs:// URI) without touching storage."""
        try:
            return parse_location(self.path if self.path is not None else "").uri
        except InvalidOptionError as err:
            raise AirflowFailException(str(err)) from err

    def _settings(self) -> StorageSettings:
        return StorageSettings(
            gcp_conn_id=self.gcp_conn_id or None,
            aws_conn_id=self.aws_conn_id or None,
            wasb_conn_id=self.wasb_conn_id or None,
            impersonation_chain=self.impersonation_chain or None,
        )

    def _source(self) -> ArtifactSource:
        return open_source(self._check_path(), settings=self._settings())

    def _verify(self, context: Any = None) -> VerificationReport:
        """Run the checks; ArtifactMissing propagates, ArtifactCorrupt becomes AirflowFailException.
        When they pass, the outlets' asset events get the backup's metadata (``verified: true``)."""
        source = self._source()
        identities = None
        if self.decryption_conn_id:
            identities = load_identities(check_conn_id("decryption_conn_id", self.decryption_conn_id))
        try:
            report = verify_backup(
                source,
                switches={name: bool(getattr(self, name)) for name in SWITCHES},
                min_size_bytes=self.min_size_bytes,
                max_age=self.max_age,
                pg_bin_dir=self.pg_bin_dir,
                runner=self.runner,
                identities=identities,
            )
        except ArtifactCorrupt as err:
            raise AirflowFailException(
                f"backup {source.location.uri} is corrupt: check {err.check!r} failed: {err.reason}"
            ) from err
        except VerificationUnavailable as err:  # a missing tool: no verdict on the bytes, fail now
            raise AirflowFailException(f"cannot verify backup {source.location.uri}: {err}") from err
        except StoreNotFound as err:  # waiting will not create it
            raise AirflowFailException(str(err)) from err
        for check in report.checks:
            self.log.info(
                "check %-9s %-7s %8.1f ms  %s", check.name, check.status, check.duration_ms, check.detail
            )
        lock = backup_lock(source)  # what the store says now of the objects it verified, and the manifest
        report.lock = lock.to_dict() if lock is not None else None
        self.log.info("lock: %s", report.lock or "none (the store does not hold the backup locked)")
        self._verified = portable_location(source.location)
        if context is not None:
            push_link(context, XCOM_LINK, published_link(self, context, self._verified))
        if context is not None and self.outlets:
            self._publish(context, source, self._verified, report)
        return report

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the verified backup, as this task's input."""
        return operator_lineage([self._verified.dataset] if self._verified is not None else [], [])

    def _publish(
        self, context: Any, source: ArtifactSource, artifact: Location, report: VerificationReport
    ) -> None:
        """Asset-event metadata of the verified backup, from its manifest (read again: the report does
        not keep it), marked verified only if it still states the sha256 the checks saw."""
        try:
            manifest = Manifest.from_json(source.manifest_bytes())
        except (OSError, ManifestError) as err:
            self.log.warning("verified, but could not read the manifest again for the asset event: %s", err)
            return
        checks = [check.name for check in report.checks if check.status == "ok"]
        metadata = backup_event_metadata(
            manifest,
            artifact,
            verified=manifest.sha256 == report.sha256,
            settings=self._settings(),
            checks=checks,
        )
        publish_asset_events(context, self.outlets, metadata)

    def poke(self, context: Any) -> bool | PokeReturnValue:
        try:
            with failure_policy():
                report = self._verify(context)
        except ArtifactMissing as err:
            self.log.info("%s", err)
            return False
        return PokeReturnValue(is_done=True, xcom_value=report.to_dict())

    def _trigger(self) -> PgBackupArtifactTrigger:
        return PgBackupArtifactTrigger(
            path=self._check_path(),
            poll_interval=self.poke_interval,
            gcp_conn_id=self.gcp_conn_id,
            aws_conn_id=self.aws_conn_id,
            wasb_conn_id=self.wasb_conn_id,
            impersonation_chain=self._chain(),
        )

    def _chain(self) -> list[str] | None:
        """The rendered impersonation_chain as a list (what a trigger can serialize), or None."""
        chain = self.impersonation_chain
        if not chain:
            return None
        return [chain] if isinstance(chain, str) else [str(c) for c in chain]

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if parse_location(self._check_path()).is_local:
            self.log.info(
                "%s is a local path: the triggerer may run on another machine and cannot see it, so this "
                "sensor waits here on its worker (mode=%s) instead of deferring",
                self.path,
                self.mode,
            )
            return super().execute(context)
        started_at = datetime.datetime.now(datetime.timezone.utc)
        result = self.poke(context)
        if isinstance(result, PokeReturnValue):
            return result.xcom_value
        self._defer(started_at)

    def _defer(self, started_at: datetime.datetime) -> NoReturn:
        """Hand the wait to the triggerer for what is left of ``timeout`` since ``started_at``."""
        elapsed = datetime.datetime.now(datetime.timezone.utc) - started_at
        remaining = datetime.timedelta(seconds=self.timeout) - elapsed
        if remaining <= datetime.timedelta(0):
            raise AirflowSensorTimeout(
                f"backup {self.path} was not there and verified within timeout={self.timeout} s "
                f"(waiting since {started_at.isoformat()})"
            )
        self.defer(
            trigger=self._trigger(),
            method_name="execute_complete",
            kwargs={"started_at": started_at.isoformat()},
            timeout=remaining,
        )

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, started_at: str | None = None
    ) -> Any:
        """Back on a worker after the trigger saw the backup: run the full verification.

        :param started_at: when the sensor first deferred (ISO-8601), so waiting again does not reset
            the timeout.
        """
        if event and event.get("status") == "error":
            # The trigger could not look (GCS unreachable, credentials refused): retryable.
            raise AirflowException(f"backup trigger for {self.path} failed: {event.get('message')}")
        if not event or event.get("status") != "present":
            raise AirflowFailException(f"backup trigger for {self.path} ended without the backup: {event!r}")
        try:
            with failure_policy():
                report = self._verify(context)
        except ArtifactMissing as err:
            # Seen by the trigger, gone now (removed by retention or being replaced): wait again.
            self.log.info("%s; waiting again", err)
            first = (
                datetime.datetime.fromisoformat(started_at)
                if started_at
                else datetime.datetime.now(datetime.timezone.utc)
            )
            self._defer(first)
        return report.to_dict()
