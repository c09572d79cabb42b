"""The restore half of :class:`~airflow_provider_pgbackup.hooks.pg_dump.PgDumpHook`: scratch databases,
``pg_restore``/``psql`` fed from any storage source (decrypted and decompressed on the fly), and the
measurement of a restored copy for the drill. A mixin: the hook composes it with its dump half, and it
uses only the hook's session, runner and log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from airflow_provider_pgbackup.binaries import (
    PgBinary,
    choose_binary,
    restore_binary,
    supports_option,
)
from airflow_provider_pgbackup.catalog import (
    count_tables,
    open_connection,
    server_info,
    server_object_names,
    table_sizes,
)
from airflow_provider_pgbackup.commands import (
    pg_restore_argv,
    psql_restore_argv,
)
from airflow_provider_pgbackup.compat import BaseHook
from airflow_provider_pgbackup.content import (
    STREAM_METHOD,
    ContentRecord,
    TableContent,
    measure_content,
)
from airflow_provider_pgbackup.encryption import (
    IdentityError,
    parse_identities,
)
from airflow_provider_pgbackup.hooks.copy_back import read_tables_back
from airflow_provider_pgbackup.libpq import LibpqSession
from airflow_provider_pgbackup.manifest import (
    Manifest,
)
from airflow_provider_pgbackup.options import (
    Compression,
)
from airflow_provider_pgbackup.pipeline import decompressed_chunks
from airflow_provider_pgbackup.process import CommandResult, PgProcessRunner
from airflow_provider_pgbackup.selection import RestoreSubset
from airflow_provider_pgbackup.sqlscript import ALWAYS_EXISTING_ROLES, SqlScript, SqlScriptRefused, scan_sql
from airflow_provider_pgbackup.storage import (
    ArtifactSource,
    Location,
    LocationLike,
    open_source,
)
from airflow_provider_pgbackup.verify.decrypt import decrypted_copy, decrypted_stream


def load_identities(conn_id: str) -> list[Any]:
    """The age identities in the password of Airflow connection ``conn_id``, masked in the task log
    first. Errors never contain the secret."""
    conn = BaseHook.get_connection(conn_id)
    secret = conn.password or ""
    if secret:
        from airflow_provider_pgbackup.compat import mask_secret

        mask_secret(secret)
        for line in secret.splitlines():
            if line.strip():
                mask_secret(line.strip())
    return parse_identities(secret, what=f"connection {conn_id!r}")


#: Objects and statements a refusal names at most; the rest are counted.
REFUSAL_ENTRIES_SHOWN = 20


def script_refusals(
    script: SqlScript, kind: str, existing: dict[str, set[str]]
) -> tuple[list[str], list[str]]:
    """What in a ``kind`` (``pg_dump`` / ``pg_dumpall``) script may not run on a server whose databases,
    roles and tablespaces are ``existing``: ``(objects, statements)``. An object is refused when it
    exists (the script did not create it, so the restore may not drop, alter or write into it); in a
    pg_dump script any other database is (only ``--create`` writes one: the script would restore
    there, not into the target). A statement is refused whatever exists (``script.refused``)."""
    objects = []
    for (object_kind, name), statements in script.touches.items():
        exists = name in existing.get(object_kind, set()) or (
            object_kind == "role" and name in ALWAYS_EXISTING_ROLES
        )
        if exists or (kind == "pg_dump" and object_kind == "database"):
            state = "exists" if exists else "not the target"
            objects.append(f"{object_kind} {name!r} ({', '.join(statements)}; {state})")
    return objects, list(script.refused)


def _shown(entries: list[str]) -> str:
    more = len(entries) - REFUSAL_ENTRIES_SHOWN
    return "; ".join(entries[:REFUSAL_ENTRIES_SHOWN]) + (f"; and {more} more" if more > 0 else "")


class RestoreMixin:
    """Restore methods of the hook (it provides ``session``, ``runner`` and ``log``)."""

    runner: PgProcessRunner
    log: Any
    #: the pg_dump processes reading a restored copy back beside ``runner`` (the hook's kill stops them)
    _copy_runners: list[PgProcessRunner]

    if TYPE_CHECKING:

        def session(self, database: str | None = None) -> contextlib.AbstractContextManager[LibpqSession]: ...

    # -------------------------------------------------------------------------------------- restore
    @contextlib.contextmanager
    def _maintenance_connection(self, database: str) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection for CREATE/DROP DATABASE ``database``: to the connection's own
        database, unless that is ``database`` itself (or unset), then to ``postgres``."""
        with self.session() as session:
            own = session.params.get("dbname")
            with open_connection(session, own if own and own != database else "postgres") as conn:
                yield conn

    def database_exists(self, database: str) -> bool:
        """Whether ``database`` exists on the connection's server."""
        with self._maintenance_connection(database) as conn:
            row = conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (database,))
            return row.fetchone() is not None

    def database_is_empty(self, database: str) -> bool:
        """True when ``database`` has no relation (table, view, sequence...) outside the system schemas."""
        with self.session(database) as session, open_connection(session) as conn:
            row = conn.execute(
                """
                SELECT EXISTS (
                    SELECT 1 FROM pg_catalog.pg_class c
                    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                      AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)')
                """
            ).fetchone()
        return not (row and row[0])

    def create_database(self, database: str) -> None:
        """``CREATE DATABASE`` from ``template0`` (a restore target must not inherit template1's objects)."""
        with self._maintenance_connection(database) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(database)))
        self.log.info("Created database %s", database)

    def create_schemas(self, database: str, schemas: Iterable[str]) -> list[str]:
        """Create the schemas ``database`` lacks (``CREATE SCHEMA IF NOT EXISTS``: nothing existing is
        touched) for a subset restore: pg_restore's ``--table`` / ``--schema`` do not create them.
        Returns the schemas created."""
        created = []
        with self.session(database) as session, session.connect(autocommit=True) as conn:
            for schema in sorted(set(schemas)):
                found = conn.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,))
                if found.fetchone() is None:
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                    created.append(schema)
        if created:
            self.log.info("Created schemas %s in %s for the subset restore", ", ".join(created), database)
        return created

    def drop_database(self, database: str) -> None:
        """``DROP DATABASE IF EXISTS`` (``WITH (FORCE)`` on 13+). Callers drop only what they created."""
        with self._maintenance_connection(database) as conn:
            force = sql.SQL(" WITH (FORCE)" if server_info(conn).major >= 13 else "")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(database), force))
        self.log.info("Dropped database %s", database)

    def measure_restored(
        self,
        database: str,
        expected: ContentRecord,
        *,
        row_security: bool = False,
        jobs: int | None = None,
    ) -> ContentRecord:
        """Measure ``database`` (a restored copy) the way ``expected`` was measured at the dump: the same
        tables with the same method, and sequences, large objects and inventory only where the dump
        recorded them.

        :param row_security: as the dump's ``--enable-row-security`` (else ``row_security=off``).
        :param jobs: pg_dump processes reading the tables back (``pgdump-copy-sha256``); default: 2.
        """
        started = time.monotonic()
        stream = expected.checksum_method == STREAM_METHOD
        with (
            self.session(database) as session,
            open_connection(session, row_security=row_security) as conn,
        ):
            found = measure_content(
                conn,
                [] if stream else [(t.schema, t.table) for t in expected.tables],
                checksums=any(t.checksum is not None for t in expected.tables)
                or (expected.large_objects is not None and expected.large_objects.checksum is not None),
                sequences=None if expected.sequences is not None else (),
                large_objects=expected.large_objects is not None,
                inventory=expected.inventory is not None,
            )
            if not stream:
                return found
            sizes = dict(table_sizes(conn, [(t.schema, t.table) for t in expected.tables]))
            binary = choose_binary(
                "pg_dump", server_info(conn).major, server_info(conn).version, session.pg_bin_dir
            )
            read = read_tables_back(
                session, binary, expected, sizes, row_security=row_security, jobs=jobs or 2, hook=self
            )
        tables = tuple(
            read.get((t.schema, t.table), TableContent(t.schema, t.table, None, None))
            for t in expected.tables
        )
        return dataclasses.replace(
            found,
            tables=tables,
            checksum_method=STREAM_METHOD,
            copy_settings=expected.copy_settings,
            duration_seconds=round(time.monotonic() - started, 6),
        )

    def count_table_rows(
        self, database: str, tables: Iterable[tuple[str, str]], *, row_security: bool = False
    ) -> dict[tuple[str, str], int | None]:
        """Exact ``count(*)`` of each ``(schema, table)`` in ``database``; None for a missing table.

        :param row_security: as the dump's ``--enable-row-security`` (else ``row_security=off``)."""
        with (
            self.session(database) as session,
            open_connection(session, row_security=row_security) as conn,
        ):
            return count_tables(conn, list(tables))

    def _restore_features(
        self, pg_restore: PgBinary, transaction_size: int | None, statistics: bool
    ) -> dict[str, Any]:
        """The PostgreSQL 17/18 pg_restore options asked for that this binary has (probed)."""
        features: dict[str, Any] = {}
        for flag, key, value in (
            ("--transaction-size", "transaction_size", transaction_size),
            ("--statistics", "statistics", statistics),
        ):
            if not value:
                continue
            if supports_option(pg_restore, flag):
                features[key] = value
            else:
                self.log.info("%s has no %s: restoring without it", pg_restore, flag)
        return features

    def restore_client(self, manifest: Manifest) -> PgBinary:
        """The ``psql`` (plain SQL) or ``pg_restore`` (archives) :meth:`restore` runs for this backup. The
        drill asks before it creates a database: a client older than the archive's ``client_version``
        fails first, naming both versions (:class:`~airflow_provider_pgbackup.binaries.PgBinaryNotFound`)."""
        tool = "psql" if manifest.format == "plain" else "pg_restore"
        with self.session() as session:
            return restore_binary(tool, manifest.client_tool, manifest.client_version, session.pg_bin_dir)

    @contextlib.contextmanager
    def _plain_sql(
        self, source: ArtifactSource, manifest: Manifest, identities: Sequence[Any] | None
    ) -> Iterator[Iterator[bytes]]:
        """The SQL of a plain backup, decrypted and decompressed on the fly; closing it on exit also
        stops a zstd/lz4 decompressor whose reader stopped early (an error, a kill)."""
        method = Compression.parse(manifest.compression).method
        if manifest.encryption is None:
            chunks = decompressed_chunks(source.chunks(), method, runner_log=self.log)
            try:
                yield chunks
            finally:
                chunks.close()
            return
        plain = decrypted_stream(source, manifest, identities or [])
        chunks = decompressed_chunks(plain, method, runner_log=self.log)
        try:
            yield chunks
        finally:
            chunks.close()
            plain.close()

    def guard_sql_script(
        self,
        source: ArtifactSource,
        manifest: Manifest,
        database: str,
        *,
        script: SqlScript | None = None,
        identities: Sequence[Any] | None = None,
    ) -> SqlScript:
        """Refuse, before anything runs, a plain SQL backup that would drop, alter or write into what
        exists on the server beyond ``database``: databases, roles and tablespaces it names that exist
        (the script did not create them), another database in a pg_dump script (``--create``), and
        what no restore may run (:mod:`~airflow_provider_pgbackup.sqlscript`).

        :param script: what verification's contents check found (``VerificationReport.sql_script``);
            None: the script is read here, once more, to its end.
        :raises SqlScriptRefused: naming the objects and statements; nothing of the script ran.
        """
        if script is None:
            self.log.info("Reading %s to see what it would do beyond %s", source.location.uri, database)
            with self._plain_sql(source, manifest, identities) as chunks:
                script = scan_sql(chunks)
        with self._maintenance_connection(database) as conn:
            existing = server_object_names(conn)
        objects, statements = script_refusals(script, manifest.kind, existing)
        if objects or statements:
            parts = [f"refusing to restore {source.location.uri} into {database!r}; nothing of it ran."]
            if objects:
                parts.append(f"It would drop, alter or write into what it did not create: {_shown(objects)}.")
            if statements:
                parts.append(f"It holds what no restore may run: {_shown(statements)}.")
            if manifest.kind == "pg_dumpall":
                parts.append(
                    "A pg_dumpall script creates its roles and databases server-wide (a full one also "
                    "writes into template1 and postgres): restore it on a server that has none of them."
                )
            elif any(kind == "database" for kind, _name in script.touches):
                parts.append(
                    "A pg_dump script written with --create restores into the database it names: dump "
                    "without --create (or in the custom, tar or directory format, whose --clean and "
                    "--create pg_restore ignores)."
                )
            raise SqlScriptRefused(" ".join(parts))
        touched = sorted({kind for kind, _name in script.touches})
        self.log.info(
            "%s touches nothing that exists on this server beyond %s%s",
            source.location.uri,
            database,
            f" (the {' and '.join(kind + 's' for kind in touched)} it names are new here)" if touched else "",
        )
        return script

    def restore(
        self,
        source: ArtifactSource | LocationLike,
        manifest: Manifest,
        database: str,
        *,
        jobs: int | None = None,
        no_owner: bool = True,
        no_acl: bool = True,
        transaction_size: int | None = None,
        statistics: bool = False,
        identities: Sequence[Any] | None = None,
        subset: RestoreSubset | None = None,
        script: SqlScript | None = None,
    ) -> CommandResult:
        """Restore a (verified) backup into the existing database ``database``.

        custom / tar / directory archives go through ``pg_restore --exit-on-error`` (``jobs`` in parallel
        for custom and directory); plain pg_dump and pg_dumpall SQL through ``psql -v ON_ERROR_STOP=1``,
        decompressed on the fly (pg_dump's plain SQL in one transaction). The client is chosen by the
        manifest's ``client_version``: its major version or newer.

        Where the bytes come from is the ``source``. A local artifact is read in place. A remote one
        (``gs://``) is streamed: plain SQL into psql's stdin, custom and tar archives into pg_restore's
        stdin, with no local copy. pg_restore cannot read a directory-format artifact, or a custom
        archive with ``jobs`` > 1, from a stream: those are downloaded into a private temporary folder
        (mode 0700, under ``TMPDIR``) for the restore and removed afterwards, also on failure or kill.

        :param source: the artifact: an :class:`~airflow_provider_pgbackup.storage.ArtifactSource`, or
            an absolute local path / object-store URI (read with the default storage settings).
        :param manifest: its manifest.
        :param database: the target database; it must exist.
        :param jobs: parallel pg_restore workers (custom and directory archives only).
        :param no_owner: ``--no-owner`` (archives only; plain SQL keeps what pg_dump wrote).
        :param no_acl: ``--no-acl`` (archives only).
        :param transaction_size: ``pg_restore --transaction-size`` (PostgreSQL 17+: commit every N
            objects, much faster for large schemas); ignored, with a log line, by a pg_restore without it.
        :param statistics: ``pg_restore --statistics`` (PostgreSQL 18+): restore the planner statistics
            the archive holds (dumped with ``statistics=True``); ignored, logged, where unsupported.
        :param identities: age identities (:func:`load_identities`) for an encrypted backup: it is
            decrypted on the fly into psql / pg_restore; a directory archive, or a custom one with
            ``jobs`` > 1, is decrypted into a private temporary folder (0700) removed afterwards.
        :param subset: only these tables / schemas (pg_restore ``--table`` / ``--schema``; archive formats
            only: plain SQL cannot be restored in part). Create the schemas first (:meth:`create_schemas`).
        :param script: plain SQL: what the script would do beyond ``database`` (from verification),
            checked against the server by :meth:`guard_sql_script` before psql starts; None: the
            script is read once more for that check.
        """
        if subset is not None:
            subset.check_format(manifest.format)
        if isinstance(source, (str, os.PathLike, Location)):
            source = open_source(source, what="artifact_path")
        if manifest.format == "plain":
            self.guard_sql_script(source, manifest, database, script=script, identities=identities)
        if manifest.encryption is not None:
            if not identities:
                raise IdentityError(
                    f"{source.location.uri} is encrypted (age): give decryption_conn_id, a connection "
                    "whose password holds an AGE-SECRET-KEY-1... identity"
                )
            return self._restore_encrypted(
                source,
                manifest,
                database,
                identities,
                jobs=jobs,
                no_owner=no_owner,
                no_acl=no_acl,
                transaction_size=transaction_size,
                statistics=statistics,
                subset=subset,
            )
        with self.session(database) as session:
            if manifest.format == "plain":
                psql = restore_binary(
                    "psql", manifest.client_tool, manifest.client_version, session.pg_bin_dir
                )
                self.log.info("Restoring %s into %s with %s", source.location.uri, database, psql)
                with self._plain_sql(source, manifest, None) as chunks:
                    return self.runner.run(psql_restore_argv(psql, manifest), session.env, stdin=chunks)
            pg_restore = restore_binary(
                "pg_restore", manifest.client_tool, manifest.client_version, session.pg_bin_dir
            )
            flags = {
                "no_owner": no_owner,
                "no_acl": no_acl,
                "subset": subset,
                **self._restore_features(pg_restore, transaction_size, statistics),
            }
            parallel = bool(jobs and jobs > 1 and manifest.format == "custom")
            if source.local_path is None and manifest.format != "directory" and not parallel:
                self.log.info(
                    "Restoring %s into %s with %s, streamed into its stdin",
                    source.location.uri,
                    database,
                    pg_restore,
                )
                argv = pg_restore_argv(pg_restore, manifest, None, jobs=None, **flags)
                return self.runner.run(argv, session.env, stdin=source.chunks())
            if source.local_path is None:
                self.log.info(
                    "Downloading %s into a private temporary folder: pg_restore reads a %s archive%s only "
                    "from a local %s",
                    source.location.uri,
                    manifest.format,
                    f" with jobs={jobs}" if parallel else "",
                    "folder" if manifest.format == "directory" else "file",
                )
            with source.local_copy() as artifact:
                self.log.info("Restoring %s into %s with %s", source.location.uri, database, pg_restore)
                argv = pg_restore_argv(pg_restore, manifest, artifact, jobs=jobs, **flags)
                return self.runner.run(argv, session.env)

    def _restore_encrypted(
        self,
        source: ArtifactSource,
        manifest: Manifest,
        database: str,
        identities: Sequence[Any],
        *,
        jobs: int | None,
        no_owner: bool,
        no_acl: bool,
        transaction_size: int | None,
        statistics: bool,
        subset: RestoreSubset | None = None,
    ) -> CommandResult:
        """:meth:`restore` of an age-encrypted backup: decrypted on the fly (plain, custom, tar), or into
        a private temporary folder where pg_restore needs local files (directory, custom with jobs > 1)."""
        with self.session(database) as session:
            if manifest.format == "plain":
                psql = restore_binary(
                    "psql", manifest.client_tool, manifest.client_version, session.pg_bin_dir
                )
                self.log.info(
                    "Restoring %s into %s with %s, decrypted on the fly", source.location.uri, database, psql
                )
                with self._plain_sql(source, manifest, identities) as chunks:
                    return self.runner.run(psql_restore_argv(psql, manifest), session.env, stdin=chunks)
            pg_restore = restore_binary(
                "pg_restore", manifest.client_tool, manifest.client_version, session.pg_bin_dir
            )
            flags = {
                "no_owner": no_owner,
                "no_acl": no_acl,
                "subset": subset,
                **self._restore_features(pg_restore, transaction_size, statistics),
            }
            parallel = bool(jobs and jobs > 1 and manifest.format == "custom")
            if manifest.format != "directory" and not parallel:
                self.log.info(
                    "Restoring %s into %s with %s, decrypted on the fly into its stdin",
                    source.location.uri,
                    database,
                    pg_restore,
                )
                argv = pg_restore_argv(pg_restore, manifest, None, jobs=None, **flags)
                plain = decrypted_stream(source, manifest, identities)
                try:
                    return self.runner.run(argv, session.env, stdin=plain)
                finally:
                    plain.close()
            self.log.info(
                "Decrypting %s into a private temporary folder: pg_restore reads a %s archive%s only from "
                "local files",
                source.location.uri,
                manifest.format,
                f" with jobs={jobs}" if parallel else "",
            )
            with decrypted_copy(source, manifest, identities) as artifact:
                argv = pg_restore_argv(pg_restore, manifest, artifact, jobs=jobs, **flags)
                return self.runner.run(argv, session.env)
