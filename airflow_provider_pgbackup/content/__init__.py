"""What a database holds, measured by the server: the evidence a restore drill compares.

:func:`measure_content` returns a :class:`ContentRecord`; :func:`compare_content` lists the
:class:`ContentDifference` between two records (none: the restored copy is IDENTICAL). Pure functions
over a psycopg 3 connection: no Airflow, no hook.

Where to measure
    On the source, inside the very ``REPEATABLE READ`` snapshot pg_dump dumps (the caller opened
    ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`` and exported the snapshot to ``pg_dump
    --snapshot``); this module neither commits nor rolls back that transaction, and gives the session
    settings it changes back before returning. On the restored copy, with a connection that is idle
    (autocommit or not): the measurement then runs in its own ``REPEATABLE READ, READ ONLY``
    transaction and ends it. A connection already inside a ``READ COMMITTED`` transaction is refused:
    each query would see another snapshot.

Tables: row count and checksum
    The caller passes the tables whose data the dump holds (``(schema, table)``): :func:`user_tables`
    filtered with ``TableSelection.dumps_data_of`` (which also drops unlogged tables for
    ``--no-unlogged-table-data``; by default pg_dump dumps unlogged tables' rows and they are measured).
    pg_dump dumps data per *leaf* table (``relkind 'r'``, a partition too), never for a partitioned
    parent: pass leaves. Pass the same list when measuring the restored copy.
    Rows are read with ``FROM ONLY`` (inheritance children are counted in their own entry, as pg_dump
    copies them). A table that does not exist is recorded with ``rows = None``.

    The checksum (method ``md5-sum128``) is computed by the server: the text of each row
    (``ROW(t.*)::text``) is hashed with ``md5``, the 128-bit digest read as an unsigned integer, and the
    digests summed modulo 2**128 (``sum(bigint)`` of both halves: no overflow). A sum does not depend on
    row order, keeps duplicated rows (unlike XOR) and changes when any value of any row changes.
    Row text is made deterministic for the measurement with transaction-local settings:
    ``DateStyle=ISO, YMD``, ``IntervalStyle=postgres``, ``TimeZone=UTC``, ``extra_float_digits=1``,
    ``bytea_output=hex``, ``lc_monetary=C`` (money), ``search_path=pg_catalog`` (``reg*`` values and
    catalog deparsing print schema-qualified names), ``quote_all_identifiers=off``,
    ``standard_conforming_strings=on``; ``row_security`` is the session's (off, as in pg_dump: a table
    hidden by a policy fails loudly instead of being counted short; on with ``--enable-row-security``,
    counting the rows pg_dump dumps). ``md5`` hashes the bytes in the database
    encoding: the record keeps the encoding and a comparison reports a change of it first.
    Cost: one sequential scan per table plus the row-to-text conversion and one md5 per row.

Sequences
    ``last_value`` and ``is_called`` of every sequence pg_dump dumps (not in a system schema, not a
    member of an extension), read with ``SELECT last_value, is_called FROM seq``. Sequences are not
    transactional: pg_dump and this function read the value of the moment, not of the snapshot. A
    sequence advanced by ``nextval`` while the dump runs can therefore differ between the source's
    record and the restored copy: that difference is real (the restored sequence is behind the
    source's) and is reported, not hidden.

Large objects
    Count and checksum over ``(oid, md5(lo_get(oid)))`` (pg_dump keeps large-object OIDs), summed as
    above. ``lo_get`` needs SELECT on each large object (superuser, owner, granted, or
    ``lo_compat_privileges``), as pg_dump does, and reads one object into memory (at most 1 GB each).
    Owners and ACLs are not compared. Pass ``large_objects=False`` when the dump has none (pg_dump
    leaves them out with ``--schema``, ``--table`` or ``--schema-only`` unless ``--large-objects``).

Schema inventory
    Per kind of object (:data:`INVENTORY_KINDS`) a count, a sha256 over the sorted
    ``(name, definition)`` pairs, and the first :data:`INVENTORY_ITEMS_CAP` pairs so a difference can
    name the object. Names are schema-qualified (``quote_ident``); definitions come from the server's
    deparsers (``pg_get_indexdef``, ``pg_get_constraintdef``, ``pg_get_triggerdef``,
    ``pg_get_functiondef``, ``pg_get_viewdef``...) and never contain OIDs or owners (a ``--no-owner``
    restore changes owners). Left out, as pg_dump leaves them out: system schemas (``pg_catalog``,
    ``information_schema``, ``pg_toast*``, ``pg_temp*``), members of an extension (``pg_depend``
    deptype ``'e'``) and what hangs off them, internal triggers (foreign keys), invalid
    non-partitioned indexes (pg_dump skips them), table row types and array types. Not compared at
    all: owners, privileges, comments, statistics, the contents of materialized views (pg_dump
    re-computes them with ``REFRESH``; pass one in ``tables`` to compare its rows anyway). Deparsed
    definitions can differ between major versions: compare records of the same major version.
"""

from __future__ import annotations

from airflow_provider_pgbackup.content.compare import (
    ContentDifference,
    allow_sequences_ahead,
    compare_content,
    content_verdict,
    display_name,
    format_differences,
    restricted_to,
)
from airflow_provider_pgbackup.content.directory import digest_directory
from airflow_provider_pgbackup.content.measure import fold_digests, measure_content, user_tables
from airflow_provider_pgbackup.content.record import (
    CHECKSUM_METHOD,
    CHECKSUM_METHODS,
    CONTENT_SCHEMA_VERSION,
    COPY_SETTINGS,
    DETERMINISTIC_SETTINGS,
    DIFFERENT,
    IDENTICAL,
    INVENTORY_ITEMS_CAP,
    INVENTORY_KINDS,
    STREAM_METHOD,
    ContentRecord,
    ContentRecordError,
    InventoryItem,
    InventoryKind,
    LargeObjectsContent,
    SequenceValue,
    TableContent,
)
from airflow_provider_pgbackup.content.stream import CopyDigest, StreamResult, TableDigest

__all__ = [
    "CHECKSUM_METHOD",
    "CHECKSUM_METHODS",
    "CONTENT_SCHEMA_VERSION",
    "COPY_SETTINGS",
    "DETERMINISTIC_SETTINGS",
    "DIFFERENT",
    "IDENTICAL",
    "INVENTORY_ITEMS_CAP",
    "INVENTORY_KINDS",
    "STREAM_METHOD",
    "ContentDifference",
    "ContentRecord",
    "ContentRecordError",
    "CopyDigest",
    "InventoryItem",
    "InventoryKind",
    "LargeObjectsContent",
    "SequenceValue",
    "StreamResult",
    "TableContent",
    "TableDigest",
    "allow_sequences_ahead",
    "compare_content",
    "content_verdict",
    "digest_directory",
    "display_name",
    "fold_digests",
    "format_differences",
    "measure_content",
    "restricted_to",
    "user_tables",
]
