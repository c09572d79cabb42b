"""Measuring a database: the SQL, run in the caller's snapshot (source) or in a transaction of its own
(the restored copy)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from airflow_provider_pgbackup.content.inventory import FROM_RELATION, measure_inventory
from airflow_provider_pgbackup.content.record import (
    DETERMINISTIC_SETTINGS,
    MOD128,
    TWO64,
    ContentRecord,
    LargeObjectsContent,
    SequenceValue,
    TableContent,
)

# ------------------------------------------------------------------------------------------ measuring
_USER_TABLES_SQL = f"""
    SELECT n.nspname, c.relname {FROM_RELATION} AND c.relkind = 'r' ORDER BY 1, 2
"""
_SEQUENCES_SQL = f"""
    SELECT n.nspname, c.relname {FROM_RELATION} AND c.relkind = 'S' ORDER BY 1, 2
"""
_RELATION_EXISTS_SQL = """
    SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'm', 'f', 'v')
"""
# Sum of 128-bit md5 digests: both 64-bit halves as signed bigint sums (numeric: no overflow), plus
# how many low halves were negative, to read them back as unsigned.
_FOLD_SQL = """
    SELECT pg_catalog.count(*), coalesce(pg_catalog.sum(hi), 0), coalesce(pg_catalog.sum(lo), 0),
           pg_catalog.count(*) FILTER (WHERE lo < 0)
    FROM (SELECT ('x' || pg_catalog.substr(h, 1, 16))::pg_catalog.bit(64)::pg_catalog.int8 AS hi,
                 ('x' || pg_catalog.substr(h, 17, 16))::pg_catalog.bit(64)::pg_catalog.int8 AS lo
          FROM ({digests}) AS d(h)) AS f
"""
_ROW_DIGESTS = "SELECT pg_catalog.md5(ROW(t.*)::pg_catalog.text) FROM ONLY {table} AS t"
_LARGE_OBJECT_DIGESTS = """
    SELECT pg_catalog.md5(m.oid::pg_catalog.text || ':' || pg_catalog.md5(pg_catalog.lo_get(m.oid)))
    FROM pg_catalog.pg_largeobject_metadata m
"""


def fold_digests(hi_sum: Any, lo_sum: Any, negative_lo: Any) -> str:
    """Sum of 128-bit digests mod 2**128 as 32 hex digits, from :data:`_FOLD_SQL`'s signed half sums."""
    total = int(hi_sum) * TWO64 + int(lo_sum) + int(negative_lo) * TWO64
    return f"{total % MOD128:032x}"


def _fold(conn: psycopg.Connection[Any], digests: sql.Composable) -> tuple[int, str]:
    row = conn.execute(sql.SQL(_FOLD_SQL).format(digests=digests)).fetchone()
    assert row is not None
    return int(row[0]), fold_digests(row[1], row[2], row[3])


def _qualified(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


@contextmanager
def _measuring_transaction(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """The caller's snapshot transaction, else one of our own; deterministic settings for its duration."""
    status = conn.info.transaction_status
    if status == TransactionStatus.INTRANS:
        row = conn.execute("SELECT pg_catalog.current_setting('transaction_isolation')").fetchone()
        isolation = str(row[0]) if row else ""
        if isolation not in ("repeatable read", "serializable"):
            raise ValueError(
                f"measure_content needs a REPEATABLE READ transaction (the dump's snapshot) or an idle "
                f"connection; this connection is inside a {isolation!r} transaction"
            )
        with _deterministic_settings(conn):
            yield
    elif status == TransactionStatus.IDLE:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with _deterministic_settings(conn):
                yield
    else:
        raise ValueError(f"measure_content cannot use a connection in transaction state {status.name}")


_SET_CONFIG = (
    "SELECT pg_catalog.set_config(name, value, true)"
    " FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) AS s(name, value)"
)


@contextmanager
def _deterministic_settings(conn: psycopg.Connection[Any]) -> Iterator[None]:
    names = [name for name, _ in DETERMINISTIC_SETTINGS]
    saved = conn.execute(
        "SELECT pg_catalog.current_setting(name)"
        " FROM pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS s(name, i) ORDER BY i",
        (names,),
    ).fetchall()
    conn.execute(_SET_CONFIG, (names, [value for _, value in DETERMINISTIC_SETTINGS]))
    yield
    # Only reached when the measurement succeeded: a failed transaction cannot run anything anyway.
    conn.execute(_SET_CONFIG, (names, [str(row[0]) for row in saved]))


def user_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Every ordinary table (leaf: ``relkind 'r'``, partitions included) outside system schemas and
    extensions: the tables an unfiltered pg_dump dumps data for (filter with ``TableSelection``)."""
    return [(str(s), str(t)) for s, t in conn.execute(_USER_TABLES_SQL).fetchall()]


def _measure_table(conn: psycopg.Connection[Any], schema: str, table: str, checksums: bool) -> TableContent:
    if conn.execute(_RELATION_EXISTS_SQL, (schema, table)).fetchone() is None:
        return TableContent(schema, table, None, None)
    if not checksums:
        query = sql.SQL("SELECT pg_catalog.count(*) FROM ONLY {}").format(_qualified(schema, table))
        row = conn.execute(query).fetchone()
        return TableContent(schema, table, int(row[0]) if row else 0, None)
    rows, checksum = _fold(conn, sql.SQL(_ROW_DIGESTS).format(table=_qualified(schema, table)))
    return TableContent(schema, table, rows, checksum)


def _measure_sequences(
    conn: psycopg.Connection[Any], sequences: Sequence[tuple[str, str]] | None
) -> tuple[SequenceValue, ...]:
    names = (
        [(str(s), str(n)) for s, n in conn.execute(_SEQUENCES_SQL).fetchall()]
        if sequences is None
        else sorted(sequences)
    )
    values = []
    for start in range(0, len(names), 200):  # one round trip per 200 sequences
        chunk = names[start : start + 200]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {i}, last_value, is_called FROM {seq}").format(
                i=sql.Literal(start + i), seq=_qualified(schema, name)
            )
            for i, (schema, name) in enumerate(chunk)
        )
        for index, last_value, is_called in conn.execute(query).fetchall():
            schema, name = names[int(index)]
            values.append(SequenceValue(schema, name, int(last_value), bool(is_called)))
    return tuple(values)


def _measure_large_objects(conn: psycopg.Connection[Any], checksums: bool) -> LargeObjectsContent:
    if not checksums:
        row = conn.execute("SELECT pg_catalog.count(*) FROM pg_catalog.pg_largeobject_metadata").fetchone()
        return LargeObjectsContent(int(row[0]) if row else 0, None)
    count, checksum = _fold(conn, sql.SQL(_LARGE_OBJECT_DIGESTS))
    return LargeObjectsContent(count, checksum)


def measure_content(
    conn: psycopg.Connection[Any],
    tables: Sequence[tuple[str, str]],
    *,
    checksums: bool = True,
    sequences: Sequence[tuple[str, str]] | None = None,
    large_objects: bool = True,
    inventory: bool = True,
) -> ContentRecord:
    """Measure what the database behind ``conn`` holds, in one snapshot.

    :param conn: a psycopg 3 connection. Inside a REPEATABLE READ transaction (the snapshot exported to
        pg_dump): measured there, the transaction is left open. Idle: measured in a REPEATABLE READ,
        READ ONLY transaction of its own, which is ended.
    :param tables: ``(schema, table)`` of each table whose rows the dump holds: leaf tables, never a
        partitioned parent (see :func:`user_tables`). A missing table is recorded with ``rows=None``.
    :param checksums: compute row and large-object checksums (else counts only: cheaper).
    :param sequences: ``(schema, sequence)`` to read; None reads every sequence pg_dump dumps.
    :param large_objects: measure large objects (False when the dump leaves them out).
    :param inventory: take the schema inventory.
    """
    started = time.monotonic()
    with _measuring_transaction(conn):
        row = conn.execute("SELECT pg_catalog.current_setting('server_encoding')").fetchone()
        encoding = str(row[0]) if row else ""
        measured_tables = tuple(_measure_table(conn, schema, table, checksums) for schema, table in tables)
        measured_sequences = _measure_sequences(conn, sequences)
        measured_large_objects = _measure_large_objects(conn, checksums) if large_objects else None
        measured_inventory = measure_inventory(conn) if inventory else None
    return ContentRecord(
        tables=measured_tables,
        sequences=measured_sequences,
        large_objects=measured_large_objects,
        inventory=measured_inventory,
        server_version_num=int(conn.info.server_version),
        encoding=encoding,
        duration_seconds=round(time.monotonic() - started, 6),
    )
