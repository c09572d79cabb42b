"""PgDumpOperator: translate arguments, validate them, and let the hook dump (``PgDumpAllOperator``, in
:mod:`.pg_dumpall`, is importable from here too)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.backup_base import (
    BackupOperator,
    TimeoutValue,
    storage_settings,
    xcom_result,
)
from airflow_provider_pgbackup.operators.pg_dumpall import PgDumpAllOperator
from airflow_provider_pgbackup.options import (
    PgDumpAllOptions,
    PgDumpOptions,
    check_optional_name,
    is_templated,
)
from airflow_provider_pgbackup.storage import (
    Location,
    check_output_path,
)

__all__ = ["PgDumpAllOperator", "PgDumpOperator", "xcom_result"]


class PgDumpOperator(BackupOperator):
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
    :param lock_for: publish the backup locked (write once, read many) until its finish time plus this
        duration: a timedelta, seconds, or text such as ``"30d"``. s3:// (S3 Object Lock), az://
        (version-level immutability) and gs:// (object retention) only; the bucket/container is checked
        before pg_dump starts. The
        manifest records the lock (``lock``: mode, until) and is locked the same. Templated.
    :param lock_mode: ``governance`` (default) or ``compliance`` on S3; ``unlocked`` (default) or
        ``locked`` on Azure and GCS. Compliance / locked cannot be lifted by anyone before the date.
    :param lock_legal_hold: also put a legal hold on the objects (no date: held until released; on GCS
        a temporary hold).
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
        "lock_for",
    )
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
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
        **kwargs: Any,
    ) -> None:
        # output_path, postgres_conn_id, pg_bin_dir, overwrite, the storage and encryption arguments:
        # BackupOperator's (documented above).
        super().__init__(**kwargs)
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
        storage_settings(self)  # gcs_chunk_size and file_mode are not templated
        self._check_connection_arguments()
        if not is_templated(format, compression, schemas, exclude_schemas, tables, exclude_tables):
            self._options()
        if not is_templated(self.output_path, format):
            check_output_path(self.output_path, directory=format == "directory")
        self._check_encryption_literal()

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

    def _dump(self, options: PgDumpOptions | PgDumpAllOptions, where: Location, **common: Any) -> Manifest:
        assert isinstance(options, PgDumpOptions)
        database = check_optional_name("database", self.database)
        return self.hook.dump(options, where, database=database, **common)
