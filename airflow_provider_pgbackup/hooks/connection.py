"""The connection half of :class:`~airflow_provider_pgbackup.hooks.pg_dump.PgDumpHook`: the Airflow
``postgres`` connection as a libpq session, the *Test* button, and the server-wide questions every other
half asks (version, databases, which binary, where a backup comes from).

A mixin, as :mod:`~airflow_provider_pgbackup.hooks.restore` is: the hook provides ``postgres_conn_id``,
``pg_bin_dir``, ``get_connection`` and ``log``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg

from airflow_provider_pgbackup.binaries import PgBinary, choose_binary
from airflow_provider_pgbackup.catalog import (
    ServerInfo,
    list_databases,
    open_connection,
    server_info,
    system_identifier,
)
from airflow_provider_pgbackup.compat import AirflowException
from airflow_provider_pgbackup.libpq import LibpqSession, open_session
from airflow_provider_pgbackup.lineage import postgres_dataset


class HookHalf:
    """What the hook's other halves (:mod:`.databases`, :mod:`.plain_sql`, :mod:`.restore`) use of this one
    and of the hook: declared here once, for the type checker; :class:`ConnectionMixin` has them."""

    log: Any

    if TYPE_CHECKING:

        def session(self, database: str | None = None) -> contextlib.AbstractContextManager[LibpqSession]: ...

        def _maintenance_connection(
            self, database: str
        ) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]: ...


class ConnectionMixin:
    """Session, catalogue and connection-test methods of the hook."""

    postgres_conn_id: str
    pg_bin_dir: str | None
    log: Any

    if TYPE_CHECKING:

        def get_connection(self, conn_id: str) -> Any: ...

    _server_info = staticmethod(server_info)

    @contextlib.contextmanager
    def session(self, database: str | None = None) -> Iterator[LibpqSession]:
        """Read the connection and yield a :class:`LibpqSession`; its secret files are removed on exit."""
        conn = self.get_connection(self.postgres_conn_id)
        with open_session(
            conn, self.postgres_conn_id, database=database, pg_bin_dir=self.pg_bin_dir, log=self.log
        ) as session:
            yield session

    def get_conn(self) -> psycopg.Connection[Any]:
        """A psycopg connection to the connection's database (the caller closes it)."""
        with self.session() as session:
            return session.connect(autocommit=True)

    def lineage_dataset(self, database: str | None = None) -> tuple[str, str]:
        """OpenLineage's ``(namespace, name)`` of ``database`` (default: the connection's) on this server."""
        conn = self.get_connection(self.postgres_conn_id)
        return postgres_dataset(conn.host, conn.port, database or conn.schema or conn.login or "postgres")

    def test_connection(self) -> tuple[bool, str]:
        """Whether the server answers, its version, and which pg_dump a dump would use.

        What a connection form's *Test* button shows: ``(True, "...")`` or ``(False, reason)``. The
        message names host, port, user and binaries, never the password (it is also cut out of any
        error text, to be sure).
        """
        password: str | None = None
        try:
            conn = self.get_connection(self.postgres_conn_id)
            password = conn.password or None
            with open_session(
                conn, self.postgres_conn_id, pg_bin_dir=self.pg_bin_dir, log=self.log
            ) as session:
                with open_connection(session) as pg:
                    server = server_info(pg)
                    user = str(pg.info.user)
                    where = f"{pg.info.host}:{pg.info.port}"
                    database = str(pg.info.dbname)
                try:
                    binary = choose_binary("pg_dump", server.major, server.version, session.pg_bin_dir)
                    dump_with = f"pg_dump {binary.version} ({binary.path}) would be used"
                except Exception as err:  # the server answers; say why no dump could run yet
                    return False, self._scrub(
                        f"PostgreSQL {server.version} answers at {where}, but no usable pg_dump: {err}",
                        password,
                    )
        except Exception as err:
            return False, self._scrub(f"{type(err).__name__}: {err}", password)
        return True, (
            f"Connected to PostgreSQL {server.version} at {where} as {user!r}, database {database!r}; "
            f"{dump_with}"
        )

    @staticmethod
    def _scrub(message: str, secret: str | None) -> str:
        return message.replace(secret, "***") if secret else message

    @staticmethod
    @contextlib.contextmanager
    def _server_connection(session: LibpqSession) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection for server-wide questions. Without a database in the connection,
        connect as pg_dumpall does: to ``postgres``, else ``template1`` (libpq's own default, a
        database named after the user, rarely exists)."""
        if session.params.get("dbname"):
            with open_connection(session) as conn:
                yield conn
            return
        try:
            conn = open_connection(session, "postgres")
        except AirflowException as first:
            try:
                conn = open_connection(session, "template1")
            except AirflowException:
                raise first from None
        with conn:
            yield conn

    def get_server_version(self) -> ServerInfo:
        with self.session() as session, self._server_connection(session) as conn:
            return server_info(conn)

    def list_databases(self) -> list[str]:
        """Names of the databases that accept connections, excluding templates, sorted."""
        with self.session() as session, self._server_connection(session) as conn:
            return list_databases(conn)

    def find_binary(self, tool: str, server: ServerInfo, session: LibpqSession | None = None) -> PgBinary:
        """The ``tool`` for ``server`` (see :func:`~airflow_provider_pgbackup.binaries.choose_binary`).

        Pass the open ``session``: it already holds ``pg_bin_dir``, so the connection is not read again.
        """
        if session is None:
            with self.session() as own:
                return self.find_binary(tool, server, own)
        binary = choose_binary(tool, server.major, server.version, session.pg_bin_dir)
        self.log.info("Using %s for PostgreSQL server %s", binary, server.version)
        return binary

    def _source_record(self, session: LibpqSession, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        """Where a backup comes from, for its manifest: the connection id, host, port and the server's
        ``system_identifier`` (what tells a restore that its target is the very database dumped)."""
        port = session.params.get("port")
        return {
            "postgres_conn_id": self.postgres_conn_id,
            "host": session.params.get("host") or session.params.get("hostaddr"),
            "port": int(port) if port and str(port).isdigit() else None,
            "system_identifier": system_identifier(conn),
        }

    def server_identity(self) -> tuple[str | None, str | None]:
        """``(host:port, system_identifier)`` of the connection's server, as a manifest's ``source``
        records them."""
        with self.session() as session, self._server_connection(session) as conn:
            record = self._source_record(session, conn)
        return f"{record['host']}:{record['port'] or 5432}", record["system_identifier"]

    @contextlib.contextmanager
    def _maintenance_connection(self, database: str) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection for CREATE/DROP DATABASE ``database``: to the connection's own
        database, unless that is ``database`` itself (or unset), then to ``postgres``."""
        with self.session() as session:
            own = session.params.get("dbname")
            with open_connection(session, own if own and own != database else "postgres") as conn:
                yield conn
