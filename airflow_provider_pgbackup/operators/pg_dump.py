"""PgDumpOperator and PgDumpAllOperator: translate arguments, validate them, and let the hook dump."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX, Manifest, manifest_path_for
from airflow_provider_pgbackup.options import InvalidOptionError, PgDumpAllOptions, PgDumpOptions
from airflow_provider_pgbackup.storage import check_output_path, is_gcs_uri

TimeoutValue = str | int | float | datetime.timedelta | None


def _is_templated(*values: Any) -> bool:
    """True when a value still holds Jinja; such values are validated in ``execute`` once rendered."""

    def has_jinja(value: Any) -> bool:
        if isinstance(value, str):
            return "{{" in value or "{%" in value
        if isinstance(value, (list, tuple)):
            return any(has_jinja(v) for v in value)
        return False

    return any(has_jinja(v) for v in values)


def xcom_result(manifest: Manifest, artifact_path: str) -> dict[str, Any]:
    """The dump operators' XCom: the manifest plus where the artifact and manifest are. No secret."""
    result = manifest.to_dict()
    result["artifact_path"] = artifact_path
    # pathlib would turn "gs://" into "gs:/": a gs:// manifest is named by plain string concatenation.
    result["manifest_path"] = (
        artifact_path + MANIFEST_SUFFIX
        if is_gcs_uri(artifact_path)
        else str(manifest_path_for(artifact_path))
    )
    return result


class PgDumpOperator(BaseOperator):
    """Dump one PostgreSQL database with ``pg_dump`` into an atomic artifact with a JSON manifest beside it.

    The artifact is written under a temporary name and renamed when complete; the manifest
    (``<output_path>.manifest.json``) is written last. Returns (XCom) the manifest plus
    ``artifact_path`` and ``manifest_path``.

    :param postgres_conn_id: Airflow ``postgres`` connection to dump from. Templated.
    :param output_path: absolute path of the artifact (a file, or a folder for ``format="directory"``).
        Templated, e.g. ``/backups/{{ dag.dag_id }}/{{ ts_nodash }}.dump``.
    :param database: database to dump; None or empty uses the connection's schema. Templated.
    :param format: ``custom`` (default), ``directory``, ``tar`` or ``plain``. Templated.
    :param compression: ``none``, ``gzip[:1-9]``, ``lz4[:1-12]`` or ``zstd[:1-22]`` (lz4/zstd need a
        pg_dump 16+ built with them; ``tar`` is never compressed). Templated.
    :param jobs: parallel dump workers; only with ``format="directory"``.
    :param schemas: ``--schema`` patterns to include. Templated.
    :param exclude_schemas: ``--exclude-schema`` patterns. Templated.
    :param tables: ``--table`` patterns to include. Templated.
    :param exclude_tables: ``--exclude-table`` patterns. Templated.
    :param lock_wait_timeout: give up (fail, retryable) when a table lock is not granted within this
        duration: ``"5min"``, ``"30s"``, seconds as a number, or a timedelta.
    :param record_row_counts: count every dumped table's rows in the dump's own snapshot and record
        them in the manifest (the restore drill compares against them).
    :param extra_args: additional pg_dump flags from a documented allow-list (see README).
    :param pg_bin_dir: folder searched first for ``pg_dump``.
    :param overwrite: replace a finished backup already at ``output_path`` (default: fail).
    """

    template_fields: Sequence[str] = (
        "postgres_conn_id",
        "output_path",
        "database",
        "format",
        "compression",
        "schemas",
        "exclude_schemas",
        "tables",
        "exclude_tables",
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
        record_row_counts: bool = True,
        extra_args: Sequence[str] = (),
        pg_bin_dir: str | None = None,
        overwrite: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.output_path = output_path
        self.database = database
        self.format = format
        self.compression = compression
        self.jobs = jobs
        self.schemas = schemas
        self.exclude_schemas = exclude_schemas
        self.tables = tables
        self.exclude_tables = exclude_tables
        self.lock_wait_timeout = lock_wait_timeout
        self.record_row_counts = record_row_counts
        self.extra_args = extra_args
        self.pg_bin_dir = pg_bin_dir
        self.overwrite = overwrite
        if not _is_templated(format, compression, schemas, exclude_schemas, tables, exclude_tables):
            self._options()
        if not _is_templated(output_path):
            check_output_path(output_path, directory=format == "directory")

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
            record_row_counts=self.record_row_counts,
            extra_args=self.extra_args,
        )

    @cached_property
    def hook(self) -> PgDumpHook:
        return PgDumpHook(postgres_conn_id=self.postgres_conn_id, pg_bin_dir=self.pg_bin_dir)

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            options = self._options()
            check_output_path(self.output_path, directory=options.format == "directory")
            manifest = self.hook.dump(
                options, self.output_path, database=self.database, overwrite=self.overwrite
            )
        except InvalidOptionError as err:
            raise AirflowFailException(str(err)) from err
        return xcom_result(manifest, self.output_path)

    def on_kill(self) -> None:
        self.hook.kill()


class PgDumpAllOperator(BaseOperator):
    """Dump a whole server (or only its roles and tablespaces) with ``pg_dumpall`` into a plain SQL artifact.

    :param postgres_conn_id: Airflow ``postgres`` connection (a superuser, or a role that may read
        what the chosen mode needs). Templated.
    :param output_path: absolute path of the SQL artifact. Templated.
    :param mode: ``full`` (every database), ``globals`` (roles and tablespaces, ``--globals-only``) or
        ``roles`` (``--roles-only``). Templated.
    :param no_role_passwords: leave role passwords out (``--no-role-passwords``); managed services such
        as Cloud SQL, RDS and Azure forbid reading ``pg_authid`` and need this.
    :param compression: ``none`` or ``gzip[:1-9]``; the provider gzips pg_dumpall's output stream.
    :param lock_wait_timeout: as for :class:`PgDumpOperator` (``full`` mode only).
    :param extra_args: additional pg_dumpall flags from a documented allow-list (see README).
    :param pg_bin_dir: folder searched first for ``pg_dumpall``.
    :param overwrite: replace a finished backup already at ``output_path`` (default: fail).
    """

    template_fields: Sequence[str] = ("postgres_conn_id", "output_path", "mode", "compression")
    ui_color = "#b0d4f1"

    def __init__(
        self,
        *,
        output_path: str,
        postgres_conn_id: str = PgDumpHook.default_conn_name,
        mode: str = "full",
        no_role_passwords: bool = False,
        compression: str | None = None,
        lock_wait_timeout: TimeoutValue = "5min",
        extra_args: Sequence[str] = (),
        pg_bin_dir: str | None = None,
        overwrite: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.output_path = output_path
        self.mode = mode
        self.no_role_passwords = no_role_passwords
        self.compression = compression
        self.lock_wait_timeout = lock_wait_timeout
        self.extra_args = extra_args
        self.pg_bin_dir = pg_bin_dir
        self.overwrite = overwrite
        if not _is_templated(mode, compression):
            self._options()
        if not _is_templated(output_path):
            check_output_path(output_path)

    def _options(self) -> PgDumpAllOptions:
        return PgDumpAllOptions.build(
            mode=self.mode,
            no_role_passwords=self.no_role_passwords,
            compression=self.compression,
            lock_wait_timeout=self.lock_wait_timeout,
            extra_args=self.extra_args,
        )

    @cached_property
    def hook(self) -> PgDumpHook:
        return PgDumpHook(postgres_conn_id=self.postgres_conn_id, pg_bin_dir=self.pg_bin_dir)

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            options = self._options()
            check_output_path(self.output_path)
            manifest = self.hook.dumpall(options, self.output_path, overwrite=self.overwrite)
        except InvalidOptionError as err:
            raise AirflowFailException(str(err)) from err
        return xcom_result(manifest, self.output_path)

    def on_kill(self) -> None:
        self.hook.kill()
