"""The databases a restore works in: create a new target (from ``template0``), check an existing one is
empty, create the schemas a subset needs, drop what the drill created, and measure a restored copy as
its dump was measured (the drill's IDENTICAL verdict compares the two). A mixin of the hook's restore
half (:class:`~airflow_provider_pgbackup.hooks.restore.RestoreMixin`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

from psycopg import sql

from airflow_provider_pgbackup.binaries import choose_binary
from airflow_provider_pgbackup.catalog import count_tables, open_connection, server_info, table_sizes
from airflow_provider_pgbackup.content import STREAM_METHOD, ContentRecord, TableContent, measure_content
from airflow_provider_pgbackup.hooks.connection import HookHalf
from airflow_provider_pgbackup.hooks.copy_back import read_tables_back


class DatabaseMixin(HookHalf):
    """Create, check, drop and measure the restore's target database (the hook provides ``session``,
    ``_maintenance_connection`` and ``log``)."""

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
