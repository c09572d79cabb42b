"""PgDumpOperator and PgDumpAllOperator: translate arguments, validate them, and let the hook dump."""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.encryption import check_artifact_name, parse_recipients
from airflow_provider_pgbackup.failures import failure_policy
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.lineage import (
    backup_event_metadata,
    dumped_rows,
    operator_lineage,
    operator_link,
    publish_asset_events,
)
from airflow_provider_pgbackup.manifest import DEFAULT_FILE_MODE, Manifest
from airflow_provider_pgbackup.options import (
    InvalidOptionError,
    PgDumpAllOptions,
    PgDumpOptions,
    check_bin_dir,
    check_conn_id,
    check_optional_name,
    is_templated,
    parse_flag,
)
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    Location,
    StorageSettings,
    check_output_path,
    parse_location,
    portable_uri,
)

TimeoutValue = str | int | float | datetime.timedelta | None


def _storage_settings(operator: Any) -> StorageSettings:
    """Where the dump goes and how; raises InvalidOptionError naming a bad gcs_chunk_size or file_mode."""
    try:
        return StorageSettings(
            gcp_conn_id=operator.gcp_conn_id or None,
            aws_conn_id=operator.aws_conn_id or None,
            wasb_conn_id=operator.wasb_conn_id or None,
            chunk_size=operator.gcs_chunk_size,
            file_mode=operator.file_mode,
            impersonation_chain=None
            if is_templated(operator.impersonation_chain)
            else (operator.impersonation_chain or None),
        )
    except InvalidOptionError as err:
        raise InvalidOptionError(str(err).replace("chunk_size", "gcs_chunk_size", 1)) from err


def xcom_result(manifest: Manifest, output_path: str) -> dict[str, Any]:
    """The dump operators' XCom: the manifest plus where the artifact and manifest are. No secret.

    ``artifact_uri`` is what later tasks should read: the ``gs://`` URI, or for a local artifact
    ``file://<worker>/<path>``, naming the worker that wrote it (``artifact_path`` stays the plain path).
    """
    location = check_output_path(output_path, directory=manifest.format == "directory")
    result = manifest.to_dict()
    result["artifact_path"] = location.uri
    result["manifest_path"] = location.manifest_uri
    result["artifact_uri"] = portable_uri(location)
    return result


class StreamedBackupLink(BaseOperatorLink):
    """Operator extra link: a dump streamed to an object store, in its web console (GCS: Cloud Console)."""

    name = "Backup in console"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        result = XCom.get_value(ti_key=ti_key, key="return_value")
        artifact = result.get("artifact_path") if isinstance(result, dict) else None
        return operator_link(artifact, operator) if artifact else ""


class _BackupOperator(BaseOperator):
    """What both dump operators share: the hook, validation errors as non-retryable failures, on_kill."""

    postgres_conn_id: str
    pg_bin_dir: str | None
    output_path: str
    operator_extra_links = (StreamedBackupLink(),)
    encryption_recipients: str | Sequence[str] | None
    _finished: tuple[Manifest, Location] | None = None  # what execute wrote, for lineage

    @cached_property
    def hook(self) -> PgDumpHook:
        return PgDumpHook(postgres_conn_id=self.postgres_conn_id, pg_bin_dir=self.pg_bin_dir)

    def _backup(self) -> Manifest:
        raise NotImplementedError

    def _check_connection_arguments(self) -> None:
        """postgres_conn_id, pg_bin_dir and overwrite (and database where there is one)."""
        if not is_templated(self.postgres_conn_id):
            check_conn_id("postgres_conn_id", self.postgres_conn_id)
        if not is_templated(getattr(self, "database", None)):
            check_optional_name("database", getattr(self, "database", None))
        check_bin_dir(self.pg_bin_dir)
        parse_flag("overwrite", self.overwrite)  # type: ignore[attr-defined]

    def validate(self) -> None:
        """Check every argument without touching a server or storage; raise :class:`InvalidOptionError`
        naming the first bad value. Run at construction for literal values, and again at the start of
        ``execute`` once templates are rendered."""
        raise NotImplementedError

    def execute(self, context: Any) -> dict[str, Any]:
        with failure_policy(self.postgres_conn_id):
            return self._execute(context)

    def _execute(self, context: Any) -> dict[str, Any]:
        manifest = self._backup()
        result = xcom_result(manifest, self.output_path)
        self._finished = (manifest, parse_location(result["artifact_uri"]))
        metrics.emit_dump(manifest, self._finished[1].scheme)
        publish_asset_events(
            context,
            self.outlets,
            backup_event_metadata(
                manifest, self._finished[1], verified=False, settings=_storage_settings(self)
            ),
        )
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the dumped database in, the artifact out (with its size and dumped rows).
        ``pg_dumpall`` reads a whole server, not one database: no input dataset."""
        if self._finished is None:
            return operator_lineage([], [])
        manifest, artifact = self._finished
        inputs = [self.hook.lineage_dataset(manifest.database)] if manifest.kind == "pg_dump" else []
        return operator_lineage(
            inputs,
            [artifact.dataset],
            output_size_bytes=manifest.size_bytes,
            output_rows=dumped_rows(manifest),
        )

    def on_kill(self) -> None:
        self.hook.kill()

    def _check_encryption_literal(self) -> None:
        """At parse time: literal recipients are checked (a malformed one is named), and with a literal
        output_path its ``.age`` suffix."""
        recipients = self.encryption_recipients
        if is_templated(recipients):
            return
        parsed = parse_recipients(recipients)
        if not is_templated(self.output_path):
            check_artifact_name(self.output_path, parsed)


class PgDumpOperator(_BackupOperator):
    """Dump one PostgreSQL database with ``pg_dump`` into an atomic artifact with a JSON manifest beside it.

    The artifact is written under a temporary name and renamed when complete; the manifest
    (``<output_path>.manifest.json``) is written last. Returns (XCom) the manifest plus
    ``artifact_path``, ``manifest_path`` and ``artifact_uri`` (``file://<worker>/<path>`` for a local
    artifact: pass it to the sensor, the upload or the drill, so that one running on another worker
    fails at once saying so, instead of waiting for a file that is not on its disk).

    With a ``gs://bucket/name``, ``s3://bucket/key`` or ``az://container/name`` output_path, pg_dump's
    output streams straight into a resumable (GCS), multipart (S3) or block (Azure) upload that runs
    beside pg_dump (a few ``gcs_chunk_size`` chunks in memory, no local file): the
    object appears only when the dump succeeded, and ``<name>.manifest.json`` is written after it. Only
    the single-file formats (``custom``, ``tar``, ``plain``) can be streamed; ``format="directory"``
    with a ``gs://`` path is refused with an error (dump to a local folder and upload it with
    :class:`~airflow_provider_pgbackup.transfers.backup_to_gcs.PgBackupToGCSOperator` instead).

    :param postgres_conn_id: Airflow ``postgres`` connection to dump from. Templated.
    :param output_path: absolute path of the artifact (a file, or a folder for ``format="directory"``),
        or ``gs://bucket/path/name`` for a single-file format. Templated, e.g.
        ``/backups/{{ dag.dag_id }}/{{ ts_nodash }}.dump``.
    :param database: database to dump; None or empty uses the connection's schema. Templated.
    :param format: ``custom`` (default), ``directory``, ``tar`` or ``plain``. Templated.
    :param compression: ``none``, ``gzip[:1-9]``, ``lz4[:1-12]`` or ``zstd[:1-22]`` (lz4/zstd need a
        pg_dump 16+ built with them; ``tar`` is never compressed). Default: what ``pg_dump`` does for
        the format: ``gzip:6`` for custom and directory, ``none`` for tar and plain. Templated.
    :param jobs: parallel dump workers; only with ``format="directory"``.
    :param schemas: ``--schema`` patterns to include. Templated.
    :param exclude_schemas: ``--exclude-schema`` patterns. Templated.
    :param tables: ``--table`` patterns to include. Templated.
    :param exclude_tables: ``--exclude-table`` patterns. Templated.
    :param lock_wait_timeout: give up (fail, retryable) when a table lock is not granted within this
        duration: ``"5min"``, ``"30s"``, seconds as a number, or a timedelta.
    :param record: what the manifest records about the data dumped, taken in the dump's own snapshot:
        ``"content"`` (the default) the row count and a checksum of every dumped table's rows and, for
        a whole-database dump, the sequences' values, the large objects' checksum and a schema inventory
        (tables, indexes, constraints, functions, triggers...): the restore drill then proves the
        restored database IDENTICAL, not just equal in row counts; ``"row_counts"`` the row counts only;
        ``"none"`` nothing. Rows are counted and checksummed from the COPY data pg_dump writes, as it
        streams through the provider (custom and tar archives, plain SQL; a directory archive's files
        once written): the server reads nothing twice. lz4/zstd archives and ``--inserts`` dumps are
        measured by the server instead (one more read of every table). Cost: see ``make bench``.
    :param record_row_counts: deprecated, use ``record``: ``False`` is ``record="none"``.
    :param record_checksums: deprecated, use ``record``: ``False`` is ``record="row_counts"``.
    :param statistics: also dump the planner statistics (``pg_dump --statistics``, PostgreSQL 18+;
        refused before dumping by a pg_dump without it), so a restore with ``restore_statistics``
        needs no ANALYZE.
    :param extra_args: additional pg_dump flags from a documented allow-list (see README).
    :param pg_bin_dir: folder searched first for ``pg_dump``.
    :param overwrite: replace a finished backup already at ``output_path`` (default: fail).
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for a ``gs://`` output_path
        (Application Default Credentials when the default connection does not exist;
        ``STORAGE_EMULATOR_HOST`` selects an emulator). Unused for a local path. Templated.
    :param gcs_chunk_size: bytes per upload request (resumable-upload chunk on GCS, first part size of an
        S3 multipart upload (at least 5 MiB) or an Azure block (at least 1 MiB)), a multiple of 256 KiB
        (default 32 MiB); a few are held in memory. Unused for a local path.
    :param file_mode: mode of a local backup's files (default ``0o600``, owner only; its folders get
        ``0o700``). ``0o640`` lets the owner's group read it. Unused for object storage.
    :param aws_conn_id: Airflow ``aws`` connection for an ``s3://`` output_path, resolved by the Amazon
        provider's ``S3Hook`` (boto3's default credential chain when the default connection does not
        exist). Templated.
    :param wasb_conn_id: Airflow ``wasb`` connection for an ``az://`` output_path, resolved by the Microsoft
        Azure provider's ``WasbHook`` (``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL``
        when the default connection does not exist). Templated.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (one e-mail, or a chain
        whose last account is impersonated; needs the ``google`` extra). Templated.
    :param encryption_recipients: age public keys (``age1...``, ``ssh-ed25519 ...``, ``ssh-rsa ...``),
        one string or a list: the artifact is encrypted to every one of them before it leaves the
        worker (any one of their identities decrypts it; keep an offline break-glass key beside the
        daily one). ``output_path`` must then end with ``.age`` (and must not without them). A malformed
        key fails at parse time, named. Needs the ``[age]`` extra. Templated (e.g. from a Variable).
        With the directory format every file of the folder is encrypted (``toc.dat.age``...).
    """

    template_fields: Sequence[str] = (
        "postgres_conn_id",
        "output_path",
        "gcp_conn_id",
        "aws_conn_id",
        "wasb_conn_id",
        "impersonation_chain",
        "database",
        "format",
        "compression",
        "schemas",
        "exclude_schemas",
        "tables",
        "exclude_tables",
        "encryption_recipients",
    )
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        output_path: str,
        postgres_conn_id: str = PgDumpHook.default_conn_name,
        database: str | None = None,
        format: str = "custom",
        compression: str | None = None,
        jobs: int | None = None,
        schemas: Sequence[str] = (),
        exclude_schemas: Sequence[str] = (),
        tables: Sequence[str] = (),
        exclude_tables: Sequence[str] = (),
        lock_wait_timeout: TimeoutValue = "5min",
        record: str | None = None,
        record_row_counts: bool | None = None,
        record_checksums: bool | None = None,
        statistics: bool = False,
        extra_args: Sequence[str] = (),
        pg_bin_dir: str | None = None,
        overwrite: bool = False,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        gcs_chunk_size: int = DEFAULT_CHUNK_SIZE,
        file_mode: int = DEFAULT_FILE_MODE,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        encryption_recipients: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.encryption_recipients = encryption_recipients
        self.postgres_conn_id = postgres_conn_id
        self.output_path = output_path
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        self.gcs_chunk_size = gcs_chunk_size
        self.file_mode = file_mode
        self.impersonation_chain = impersonation_chain
        self.database = database
        self.format = format
        self.compression = compression
        self.jobs = jobs
        self.schemas = schemas
        self.exclude_schemas = exclude_schemas
        self.tables = tables
        self.exclude_tables = exclude_tables
        self.lock_wait_timeout = lock_wait_timeout
        self.record = record
        self.record_row_counts = record_row_counts
        self.record_checksums = record_checksums
        if record_row_counts is not None or record_checksums is not None:
            warnings.warn(
                "record_row_counts and record_checksums are deprecated: use record='content' (the default), "
                "'row_counts' or 'none'",
                DeprecationWarning,
                stacklevel=2,
            )
        self.statistics = statistics
        self.extra_args = extra_args
        self.pg_bin_dir = pg_bin_dir
        self.overwrite = overwrite
        _storage_settings(self)  # gcs_chunk_size and file_mode are not templated
        self._check_connection_arguments()
        if not is_templated(format, compression, schemas, exclude_schemas, tables, exclude_tables):
            self._options()
        if not is_templated(output_path, format):
            check_output_path(output_path, directory=format == "directory")
        self._check_encryption_literal()

    def validate(self) -> None:
        self._check_connection_arguments()
        options = self._options()
        check_output_path(self.output_path, directory=options.format == "directory")
        _storage_settings(self)
        check_artifact_name(self.output_path, parse_recipients(self.encryption_recipients))

    def _options(self) -> PgDumpOptions:
        return PgDumpOptions.build(
            format=self.format,
            compression=self.compression,
            jobs=self.jobs,
            schemas=self.schemas,
            exclude_schemas=self.exclude_schemas,
            tables=self.tables,
            exclude_tables=self.exclude_tables,
            lock_wait_timeout=self.lock_wait_timeout,
            record=self.record,
            record_row_counts=self.record_row_counts,
            record_checksums=self.record_checksums,
            statistics=self.statistics,
            extra_args=self.extra_args,
        )

    def _backup(self) -> Manifest:
        self.validate()
        options = self._options()
        return self.hook.dump(
            options,
            self.output_path,
            database=check_optional_name("database", self.database),
            overwrite=parse_flag("overwrite", self.overwrite),
            storage_settings=_storage_settings(self),
            encryption_recipients=parse_recipients(self.encryption_recipients),
        )


class PgDumpAllOperator(_BackupOperator):
    """Dump a whole server (or only its roles and tablespaces) with ``pg_dumpall`` into a plain SQL artifact.

    As with :class:`PgDumpOperator`, a ``gs://bucket/name`` output_path streams the (optionally
    gzipped) SQL straight into a resumable Google Cloud Storage upload, with the manifest object
    written after it; nothing is stored locally.

    :param postgres_conn_id: Airflow ``postgres`` connection (a superuser, or a role that may read
        what the chosen mode needs). Templated.
    :param output_path: absolute path of the SQL artifact, or ``gs://bucket/path/name``. Templated.
    :param mode: ``full`` (every database), ``globals`` (roles and tablespaces, ``--globals-only``) or
        ``roles`` (``--roles-only``). Templated.
    :param no_role_passwords: leave role passwords out (``--no-role-passwords``); managed services such
        as Cloud SQL, RDS and Azure forbid reading ``pg_authid`` and need this. Templated (a rendered
        ``"True"``/``"False"`` is accepted).
    :param compression: ``none`` or ``gzip[:1-9]``; the provider gzips pg_dumpall's output stream.
    :param lock_wait_timeout: as for :class:`PgDumpOperator` (``full`` mode only).
    :param extra_args: additional pg_dumpall flags from a documented allow-list (see README).
    :param pg_bin_dir: folder searched first for ``pg_dumpall``.
    :param overwrite: replace a finished backup already at ``output_path`` (default: fail).
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for a ``gs://`` output_path, as
        for :class:`PgDumpOperator`. Unused for a local path. Templated.
    :param gcs_chunk_size: bytes per upload request for an object-store output_path, as for
        :class:`PgDumpOperator`. Unused for a local path.
    :param file_mode: as for :class:`PgDumpOperator` (default ``0o600``: a pg_dumpall holds role
        password hashes).
    :param aws_conn_id: Airflow ``aws`` connection for an ``s3://`` output_path, resolved by the Amazon
        provider's ``S3Hook`` (boto3's default credential chain when the default connection does not
        exist). Templated.
    :param wasb_conn_id: Airflow ``wasb`` connection for an ``az://`` output_path, resolved by the Microsoft
        Azure provider's ``WasbHook`` (``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL``
        when the default connection does not exist). Templated.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (one e-mail, or a chain
        whose last account is impersonated; needs the ``google`` extra). Templated.
    :param encryption_recipients: age public keys (``age1...``, ``ssh-ed25519 ...``, ``ssh-rsa ...``),
        one string or a list: the artifact is encrypted to every one of them before it leaves the
        worker (any one of their identities decrypts it; keep an offline break-glass key beside the
        daily one). ``output_path`` must then end with ``.age`` (and must not without them). A malformed
        key fails at parse time, named. Needs the ``[age]`` extra. Templated (e.g. from a Variable).
    """

    template_fields: Sequence[str] = (
        "postgres_conn_id",
        "output_path",
        "mode",
        "no_role_passwords",
        "compression",
        "gcp_conn_id",
        "aws_conn_id",
        "wasb_conn_id",
        "impersonation_chain",
        "encryption_recipients",
    )
    ui_color = "#b0d4f1"

    def __init__(
        self,
        *,
        output_path: str,
        postgres_conn_id: str = PgDumpHook.default_conn_name,
        mode: str = "full",
        no_role_passwords: bool | str = False,
        compression: str | None = None,
        lock_wait_timeout: TimeoutValue = "5min",
        extra_args: Sequence[str] = (),
        pg_bin_dir: str | None = None,
        overwrite: bool = False,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        gcs_chunk_size: int = DEFAULT_CHUNK_SIZE,
        file_mode: int = DEFAULT_FILE_MODE,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        encryption_recipients: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.encryption_recipients = encryption_recipients
        self.postgres_conn_id = postgres_conn_id
        self.output_path = output_path
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        self.gcs_chunk_size = gcs_chunk_size
        self.file_mode = file_mode
        self.impersonation_chain = impersonation_chain
        self.mode = mode
        self.no_role_passwords = no_role_passwords
        self.compression = compression
        self.lock_wait_timeout = lock_wait_timeout
        self.extra_args = extra_args
        self.pg_bin_dir = pg_bin_dir
        self.overwrite = overwrite
        _storage_settings(self)  # gcs_chunk_size and file_mode are not templated
        self._check_connection_arguments()
        if not is_templated(mode, compression, no_role_passwords):
            self._options()
        if not is_templated(output_path):
            check_output_path(output_path)
        self._check_encryption_literal()

    def validate(self) -> None:
        self._check_connection_arguments()
        self._options()
        check_output_path(self.output_path)
        _storage_settings(self)
        check_artifact_name(self.output_path, parse_recipients(self.encryption_recipients))

    def _options(self) -> PgDumpAllOptions:
        return PgDumpAllOptions.build(
            mode=self.mode,
            no_role_passwords=self.no_role_passwords,
            compression=self.compression,
            lock_wait_timeout=self.lock_wait_timeout,
            extra_args=self.extra_args,
        )

    def _backup(self) -> Manifest:
        self.validate()
        options = self._options()
        return self.hook.dumpall(
            options,
            self.output_path,
            overwrite=parse_flag("overwrite", self.overwrite),
            storage_settings=_storage_settings(self),
            encryption_recipients=parse_recipients(self.encryption_recipients),
        )
