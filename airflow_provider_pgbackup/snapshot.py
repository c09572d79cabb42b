"""What a dump records about the database in the dump's own snapshot: row counts, and with
``record_checksums`` the content record (checksums, sequences, large objects, schema inventory).
Plain functions over the connection whose snapshot pg_dump dumps; the hook runs them beside pg_dump."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from airflow_provider_pgbackup.catalog import dumped_tables, exact_count
from airflow_provider_pgbackup.content import ContentRecord, SequenceValue, measure_content
from airflow_provider_pgbackup.manifest import TableRowCount
from airflow_provider_pgbackup.options import PgDumpOptions
from airflow_provider_pgbackup.selection import TableSelection


def sequences_before_dump(
    conn: psycopg.Connection[Any], options: PgDumpOptions
) -> tuple[SequenceValue, ...] | None:
    """The sequences a whole-database content record holds, read before pg_dump starts.

    Sequences are not transactional: the snapshot does not freeze them. Read before pg_dump reads
    them, the recorded value is never ahead of the dumped one, so a sequence that advanced while
    pg_dump ran restores *ahead* of the record, which the drill accepts. Read after the table
    checksums (seconds later on a busy server), it was ahead and the drill saw a false difference.
    """
    if not (options.record_checksums and options.dumps_whole_database):
        return None
    early = measure_content(conn, [], checksums=False, large_objects=False, inventory=False)
    return early.sequences


def snapshot_facts(
    log: Any,
    conn: psycopg.Connection[Any],
    options: PgDumpOptions,
    sequences: tuple[SequenceValue, ...] | None = None,
) -> tuple[tuple[TableRowCount, ...] | None, ContentRecord | None]:
    """Row counts (and, with ``record_checksums``, the content record) of what pg_dump dumps, taken
    in the transaction whose snapshot pg_dump dumps.

    Only tables whose rows the dump holds are measured (none with ``--schema-only`` or
    ``--section=pre-data``); the schema inventory and sequences only for a whole-database dump (no
    patterns, every section), large objects only where pg_dump dumps them."""
    selection = TableSelection.from_options(options)
    tables = dumped_tables(conn, selection) if options.dumps_data else []
    if not options.record_checksums:
        counts = tuple(TableRowCount(s, t, exact_count(conn, s, t)) for s, t in tables)
        log.info("Counted rows of %d tables in the dump's snapshot", len(counts))
        return (counts if options.dumps_data else None), None
    whole = options.dumps_whole_database
    content = measure_content(
        conn,
        tables,
        checksums=True,
        sequences=None if whole and sequences is None else (),
        large_objects=options.dumps_large_objects,
        inventory=whole,
    )
    if not whole:
        content = dataclasses.replace(content, sequences=None)  # not measured: not compared
    elif sequences is not None:  # read before pg_dump started
        content = dataclasses.replace(content, sequences=sequences)
    counts = tuple(TableRowCount(t.schema, t.table, t.rows or 0) for t in content.tables)
    log.info(
        "Measured %d tables%s in the dump's snapshot in %.1f s (row counts and checksums)",
        len(content.tables),
        ", sequences, large objects and the schema inventory" if whole else "",
        content.duration_seconds,
    )
    return (counts if options.dumps_data else None), content
