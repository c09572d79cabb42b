"""What the provider asks the server's catalogue: its version, its databases, and exact row counts.

Plain functions over an open ``psycopg`` connection; names are always quoted by psycopg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from airflow_provider_pgbackup.manifest import TableRowCount
from airflow_provider_pgbackup.selection import TableSelection


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
