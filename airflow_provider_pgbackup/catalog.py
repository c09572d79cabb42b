"""What the provider asks the server's catalogue: its version, its databases, and exact row counts; and
the session settings every provider connection runs with (those pg_dump sets for its own session).

Plain functions over an open ``psycopg`` connection; names are always quoted by psycopg.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_pgbackup.libpq import LibpqSession
from airflow_provider_pgbackup.manifest import TableRowCount
from airflow_provider_pgbackup.selection import TableSelection

#: What pg_dump sets for its own session (pg_dump.c ``setup_connection`` and ``ConnectDatabase``), so that
#: settings a role or database gives its sessions (``ALTER ROLE ... SET statement_timeout``) cannot cancel,
#: time out or change what the provider's sessions read, and so that values print as in pg_dump's COPY.
#: ``lock_timeout`` and ``row_security`` follow the dump's options; ``transaction_timeout`` exists on 17+.
PG_DUMP_SESSION_SETTINGS: tuple[tuple[str, str], ...] = (
    ("statement_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("synchronize_seqscans", "off"),
    ("search_path", ""),
)
TRANSACTION_TIMEOUT_SINCE = 170000


def session_settings(
    server_version_num: int, *, lock_timeout: str | None = None, row_security: bool = False
) -> list[tuple[str, str]]:
    """The settings :func:`prepare_session` applies, for a server of ``server_version_num``."""
    settings = [*PG_DUMP_SESSION_SETTINGS, ("lock_timeout", lock_timeout or "0")]
    if server_version_num >= TRANSACTION_TIMEOUT_SINCE:
        settings.append(("transaction_timeout", "0"))
    settings.append(("row_security", "on" if row_security else "off"))
    return settings


def prepare_session(
    conn: psycopg.Connection[Any], *, lock_timeout: str | None = None, row_security: bool = False
) -> None:
    """Apply :func:`session_settings` for the whole session (one round trip).

    :param lock_timeout: the dump's ``lock_wait_timeout`` (a PostgreSQL duration), else no limit, as
        pg_dump without ``--lock-wait-timeout``.
    :param row_security: ``on`` as pg_dump ``--enable-row-security`` (rows hidden by a policy are left
        out), else ``off``: a table a policy applies to fails loudly instead of being read short.
    """
    settings = session_settings(
        conn.info.server_version, lock_timeout=lock_timeout, row_security=row_security
    )
    conn.execute(
        "SELECT pg_catalog.set_config(name, value, false)"
        " FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) AS s(name, value)",
        ([name for name, _ in settings], [value for _, value in settings]),
    )


def open_connection(
    session: LibpqSession,
    dbname: str | None = None,
    *,
    autocommit: bool = True,
    lock_timeout: str | None = None,
    row_security: bool = False,
) -> psycopg.Connection[Any]:
    """A connection of ``session`` prepared with :func:`prepare_session` (the caller closes it)."""
    conn = session.connect(dbname, autocommit=autocommit)
    try:
        prepare_session(conn, lock_timeout=lock_timeout, row_security=row_security)
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass(frozen=True)
class ServerInfo:
    version: str  # "18.6"
    version_num: int  # 180006

    @property
    def major(self) -> int:
        return self.version_num // 10000


def server_info(conn: psycopg.Connection[Any]) -> ServerInfo:
    num = conn.info.server_version
    version = str(conn.info.parameter_status("server_version") or "").split(" ")[0]
    return ServerInfo(version or f"{num // 10000}.{num % 10000}", num)


def system_identifier(conn: psycopg.Connection[Any]) -> str | None:
    """The cluster's ``system_identifier`` (``pg_control_system()``): the same on every connection to one
    server, whatever host name or address reaches it. None where the role may not read it."""
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT system_identifier::text FROM pg_catalog.pg_control_system()"
            ).fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row and row[0] is not None else None


def server_object_names(conn: psycopg.Connection[Any]) -> dict[str, set[str]]:
    """The names of the server's databases, roles and tablespaces (readable by any user)."""
    queries = {
        "database": "SELECT datname FROM pg_catalog.pg_database",
        "role": "SELECT rolname FROM pg_catalog.pg_roles",
        "tablespace": "SELECT spcname FROM pg_catalog.pg_tablespace",
    }
    return {kind: {str(row[0]) for row in conn.execute(query)} for kind, query in queries.items()}


def list_databases(conn: psycopg.Connection[Any]) -> list[str]:
    """Names of the databases that accept connections, excluding templates, sorted."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"
    ).fetchall()
    return [r[0] for r in rows]


def exact_count(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    """``count(*)`` of one table, names quoted by psycopg (the manifest's and the drill's row counts)."""
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def table_exists(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    found = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, table)
    ).fetchone()
    return bool(found and found[0])


def dumped_tables(conn: psycopg.Connection[Any], selection: TableSelection) -> list[tuple[str, str]]:
    """``(schema, table)`` of every ordinary table whose rows pg_dump dumps with this selection."""
    candidates = conn.execute(
        """
        SELECT n.nspname, c.relname, c.relpersistence = 'u', pg_catalog.pg_table_is_visible(c.oid)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                            AND d.deptype = 'e')
        ORDER BY 1, 2
        """
    ).fetchall()
    return [
        (schema, table)
        for schema, table, unlogged, visible in candidates
        if selection.dumps_data_of(schema, table, unlogged=unlogged, visible=visible)
    ]


def count_rows(conn: psycopg.Connection[Any], selection: TableSelection) -> tuple[TableRowCount, ...]:
    """Exact ``count(*)`` of every table pg_dump dumps data for, in the connection's transaction."""
    return tuple(
        TableRowCount(schema, table, exact_count(conn, schema, table))
        for schema, table in dumped_tables(conn, selection)
    )


def table_sizes(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str]]
) -> list[tuple[tuple[str, str], int]]:
    """``((schema, table), bytes on disk)`` of each of ``tables`` that exists (one query)."""
    rows = conn.execute(
        """
        SELECT t.schema, t.name, pg_catalog.pg_relation_size(c.oid)
        FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) AS t(schema, name)
        JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema
        JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
        WHERE c.relkind IN ('r', 'p', 'm', 'f')
        """,
        ([s for s, _ in tables], [t for _, t in tables]),
    ).fetchall()
    return [((str(schema), str(name)), int(size)) for schema, name, size in rows]


#: A table smaller than this is not worth a pg_dump of its own.
OWN_READER_BYTES = 16 * 1024 * 1024


def copy_groups(
    sizes: dict[tuple[str, str], int], jobs: int
) -> list[tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """How to read tables back with up to ``jobs`` pg_dump processes: ``(tables, exclude_tables)`` each.

    The ``jobs - 1`` largest tables (of at least :data:`OWN_READER_BYTES`) get a process each; one more
    reads everything else (all tables but those). One process when nothing is large."""
    largest = sorted(sizes, key=lambda name: sizes[name], reverse=True)[: max(0, jobs - 1)]
    own = [name for name in largest if sizes[name] >= OWN_READER_BYTES]
    return [([], own), *(([name], []) for name in own)]


#: Tables counted per round trip (``UNION ALL`` of their ``count(*)``).
COUNT_BATCH = 200


def count_tables(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int | None]:
    """Exact ``count(*)`` of each table (None: it does not exist), :data:`COUNT_BATCH` per round trip."""
    present = {name for name, _size in table_sizes(conn, tables)}
    counts: dict[tuple[str, str], int | None] = {name: None for name in tables}
    names = [name for name in tables if name in present]
    for start in range(0, len(names), COUNT_BATCH):
        batch = names[start : start + COUNT_BATCH]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}, count(*) FROM {}").format(sql.Literal(index), sql.Identifier(schema, table))
            for index, (schema, table) in enumerate(batch)
        )
        for index, count in conn.execute(query).fetchall():
            counts[batch[int(index)]] = int(count)
    return counts
