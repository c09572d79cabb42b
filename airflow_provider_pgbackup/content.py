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
    ``standard_conforming_strings=on`` and ``row_security=off`` (a table hidden by a policy fails
    loudly instead of being counted short, as in pg_dump). ``md5`` hashes the bytes in the database
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

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

CONTENT_SCHEMA_VERSION = 1
CHECKSUM_METHOD = "md5-sum128"
INVENTORY_ITEMS_CAP = 200
IDENTICAL = "IDENTICAL"
DIFFERENT = "DIFFERENT"

# Settings that make row text and catalog deparsing the same in every session (transaction-local).
DETERMINISTIC_SETTINGS: tuple[tuple[str, str], ...] = (
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("search_path", "pg_catalog"),
    ("quote_all_identifiers", "off"),
    ("standard_conforming_strings", "on"),
    ("row_security", "off"),
)

_MOD128 = 1 << 128
_TWO64 = 1 << 64
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DEFINITION_MAX = 160  # longer definitions are kept in a record as a digest (the kind's sha256 sees all)


class ContentRecordError(ValueError):
    """A content record (JSON) is malformed: names the field, what it must be and what it was."""


# ------------------------------------------------------------------------------------------ the record
@dataclass(frozen=True)
class TableContent:
    """Rows of one table: count and order-independent checksum (``None``: table missing / not computed)."""

    schema: str
    table: str
    rows: int | None
    checksum: str | None


@dataclass(frozen=True)
class SequenceValue:
    """The state pg_dump restores with ``setval``."""

    schema: str
    sequence: str
    last_value: int
    is_called: bool


@dataclass(frozen=True)
class LargeObjectsContent:
    """All large objects of the database: count and checksum over (oid, md5 of content)."""

    count: int
    checksum: str | None


@dataclass(frozen=True)
class InventoryItem:
    """One object: schema-qualified name and a stable definition (or ``sha256:<16 hex>`` of a long one)."""

    name: str
    definition: str


@dataclass(frozen=True)
class InventoryKind:
    """Objects of one kind: count, sha256 over all sorted (name, definition) pairs, the first items."""

    kind: str
    count: int
    sha256: str
    items: tuple[InventoryItem, ...]

    @property
    def complete(self) -> bool:
        """Whether ``items`` lists every object (False when capped at :data:`INVENTORY_ITEMS_CAP`)."""
        return len(self.items) == self.count


@dataclass(frozen=True)
class ContentRecord:
    """What a database held: per-table rows and checksums, sequences, large objects, schema inventory.

    ``sequences``, ``large_objects`` and ``inventory`` are ``None`` when not measured; a comparison
    skips a part either record lacks.
    """

    tables: tuple[TableContent, ...]
    sequences: tuple[SequenceValue, ...] | None
    large_objects: LargeObjectsContent | None
    inventory: tuple[InventoryKind, ...] | None
    server_version_num: int
    encoding: str
    duration_seconds: float
    checksum_method: str = CHECKSUM_METHOD
    schema_version: int = CONTENT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for a manifest or an XCom)."""
        return {
            "schema_version": self.schema_version,
            "checksum_method": self.checksum_method,
            "server_version_num": self.server_version_num,
            "encoding": self.encoding,
            "duration_seconds": self.duration_seconds,
            "tables": [
                {"schema": t.schema, "table": t.table, "rows": t.rows, "checksum": t.checksum}
                for t in self.tables
            ],
            "sequences": None
            if self.sequences is None
            else [
                {
                    "schema": s.schema,
                    "sequence": s.sequence,
                    "last_value": s.last_value,
                    "is_called": s.is_called,
                }
                for s in self.sequences
            ],
            "large_objects": None
            if self.large_objects is None
            else {"count": self.large_objects.count, "checksum": self.large_objects.checksum},
            "inventory": None
            if self.inventory is None
            else {
                k.kind: {
                    "count": k.count,
                    "sha256": k.sha256,
                    "items": [{"name": i.name, "definition": i.definition} for i in k.items],
                }
                for k in self.inventory
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> ContentRecord:
        """Parse :meth:`to_dict` output; any malformed input raises :class:`ContentRecordError`."""
        return _parse_record(data)

    @property
    def table_map(self) -> dict[tuple[str, str], TableContent]:
        return {(t.schema, t.table): t for t in self.tables}

    @property
    def inventory_map(self) -> dict[str, InventoryKind]:
        return {k.kind: k for k in self.inventory or ()}


# ------------------------------------------------------------------------------------- strict parsing
def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _need(data: Mapping[str, Any], key: str, where: str, expected: str, check: Callable[[Any], bool]) -> Any:
    path = f"{where}.{key}" if where else key
    if key not in data:
        raise ContentRecordError(f"content record field {path} is missing (must be {expected})")
    value = data[key]
    if not check(value):
        shown = repr(value) if isinstance(value, (int, float, str)) and len(repr(value)) <= 40 else ""
        raise ContentRecordError(
            f"content record field {path} must be {expected}, got {_type_name(value)}"
            + (f" {shown}" if shown else "")
        )
    return value


def _object(value: Any, where: str, keys: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ContentRecordError(f"content record field {where} must be an object, got {_type_name(value)}")
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise ContentRecordError(f"content record field {where} has unknown keys: {', '.join(unknown)[:200]}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ContentRecordError(f"content record field {where} must be a list, got {_type_name(value)}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_checksum(value: Any) -> bool:
    return isinstance(value, str) and _HEX32.match(value) is not None


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _parse_record(data: Any) -> ContentRecord:
    top = _object(
        data,
        "(record)",
        (
            "schema_version",
            "checksum_method",
            "server_version_num",
            "encoding",
            "duration_seconds",
            "tables",
            "sequences",
            "large_objects",
            "inventory",
        ),
    )
    version = _need(top, "schema_version", "", "an integer", _is_int)
    if version < 1 or version > CONTENT_SCHEMA_VERSION:
        raise ContentRecordError(
            f"content record field schema_version is {version}; this provider reads 1 to "
            f"{CONTENT_SCHEMA_VERSION} (upgrade airflow-provider-pgbackup for newer records)"
        )
    tables: list[TableContent] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(_list(_need(top, "tables", "", "a list", lambda v: True), "tables")):
        where = f"tables[{index}]"
        item = _object(entry, where, ("schema", "table", "rows", "checksum"))
        table = TableContent(
            _need(item, "schema", where, "a string", _is_str),
            _need(item, "table", where, "a string", _is_str),
            _need(item, "rows", where, "a non-negative integer or null", _optional(_is_count)),
            _need(item, "checksum", where, "32 lower-case hex digits or null", _optional(_is_checksum)),
        )
        if (table.schema, table.table) in seen:
            raise ContentRecordError(
                f"content record field {where} repeats table {table.schema}.{table.table}"
            )
        seen.add((table.schema, table.table))
        tables.append(table)
    sequences: list[SequenceValue] | None = None
    raw_sequences = _need(top, "sequences", "", "a list or null", lambda v: True)
    if raw_sequences is not None:
        sequences = []
        for index, entry in enumerate(_list(raw_sequences, "sequences")):
            where = f"sequences[{index}]"
            item = _object(entry, where, ("schema", "sequence", "last_value", "is_called"))
            sequences.append(
                SequenceValue(
                    _need(item, "schema", where, "a string", _is_str),
                    _need(item, "sequence", where, "a string", _is_str),
                    _need(item, "last_value", where, "an integer", _is_int),
                    _need(item, "is_called", where, "a boolean", lambda v: isinstance(v, bool)),
                )
            )
    large_objects: LargeObjectsContent | None = None
    raw_large_objects = _need(top, "large_objects", "", "an object or null", lambda v: True)
    if raw_large_objects is not None:
        item = _object(raw_large_objects, "large_objects", ("count", "checksum"))
        large_objects = LargeObjectsContent(
            _need(item, "count", "large_objects", "a non-negative integer", _is_count),
            _need(
                item, "checksum", "large_objects", "32 lower-case hex digits or null", _optional(_is_checksum)
            ),
        )
    inventory: list[InventoryKind] | None = None
    raw_inventory = _need(top, "inventory", "", "an object or null", lambda v: True)
    if raw_inventory is not None:
        inventory = []
        for kind, entry in _object(raw_inventory, "inventory", INVENTORY_KINDS).items():
            where = f"inventory.{kind}"
            item = _object(entry, where, ("count", "sha256", "items"))
            items = []
            for index, raw in enumerate(_list(_need(item, "items", where, "a list", lambda v: True), where)):
                at = f"{where}.items[{index}]"
                pair = _object(raw, at, ("name", "definition"))
                items.append(
                    InventoryItem(
                        _need(pair, "name", at, "a string", _is_str),
                        _need(pair, "definition", at, "a string", _is_str),
                    )
                )
            count = _need(item, "count", where, "a non-negative integer", _is_count)
            if len(items) > count:
                raise ContentRecordError(f"content record field {where}.items lists more objects than count")
            inventory.append(
                InventoryKind(
                    kind,
                    count,
                    _need(
                        item,
                        "sha256",
                        where,
                        "64 lower-case hex digits",
                        lambda v: _is_str(v) and bool(_HEX64.match(v)),
                    ),
                    tuple(items),
                )
            )
    duration = _need(
        top,
        "duration_seconds",
        "",
        "a finite non-negative number",
        lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v) and v >= 0,
    )
    return ContentRecord(
        tables=tuple(tables),
        sequences=None if sequences is None else tuple(sequences),
        large_objects=large_objects,
        inventory=None if inventory is None else tuple(inventory),
        server_version_num=_need(top, "server_version_num", "", "a non-negative integer", _is_count),
        encoding=_need(top, "encoding", "", "a string", _is_str),
        duration_seconds=float(duration),
        checksum_method=_need(top, "checksum_method", "", "a string", _is_str),
        schema_version=version,
    )


# ------------------------------------------------------------------------------------------ measuring
# Objects pg_dump dumps: not in a system schema ...
_USER_SCHEMA = (
    "{n}.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND {n}.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
)


def _user_schema(alias: str) -> str:
    return _USER_SCHEMA.format(n=alias)


def _not_extension_member(catalog: str, oid: str) -> str:
    """... and not created by an extension's script."""
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = '{catalog}'::pg_catalog.regclass"  # noqa: S608
        f" AND e.objid = {oid} AND e.deptype = 'e')"
    )


_COLUMNS = """
    (SELECT pg_catalog.string_agg(
         pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
         || CASE WHEN a.attcollation <> t.typcollation
                 THEN ' COLLATE ' || pg_catalog.quote_ident(co.collname) ELSE '' END
         || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
         || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                               WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
         || CASE WHEN a.attgenerated = 's'
                 THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                 WHEN a.attgenerated <> '' THEN ' GENERATED ALWAYS AS ('
                      || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) || ')'
                 ELSE coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '') END,
         ', ' ORDER BY a.attnum)
     FROM pg_catalog.pg_attribute a
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
     LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
"""

_RELATION = "pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
_FROM_RELATION = f"""
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_class", "c.oid")}
"""
_INDEX = _RELATION.replace("c.relname", "ic.relname")
_FROM_SEQUENCE = _FROM_RELATION.replace(
    "FROM pg_catalog.pg_class c",
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid",
)

# kind -> query returning (name, definition) rows. Every name is unique within its kind. The queries are
# composed of this module's constants only (never of a value from outside): hence the S608 waivers.
_INVENTORY_SQL: dict[str, str] = {
    "schemas": f"""
        SELECT pg_catalog.quote_ident(n.nspname), ''
        FROM pg_catalog.pg_namespace n
        WHERE {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_namespace", "n.oid")}""",  # noqa: S608
    "tables": f"""
        SELECT {_RELATION},
               CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END
               || CASE WHEN c.relkind = 'p' THEN 'PARTITIONED ' ELSE '' END
               || 'TABLE (' || coalesce({_COLUMNS}, '') || ')'
               || CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || pg_catalog.pg_get_partkeydef(c.oid)
                       ELSE '' END
               || CASE WHEN c.relrowsecurity THEN ' ROW LEVEL SECURITY' ELSE '' END
        {_FROM_RELATION} AND c.relkind IN ('r', 'p') AND NOT c.relispartition""",
    "partitions": f"""
        SELECT {_RELATION},
               CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END
               || CASE WHEN c.relkind = 'p' THEN 'PARTITIONED ' ELSE '' END
               || 'PARTITION OF ' || (SELECT pg_catalog.quote_ident(pn.nspname) || '.'
                                             || pg_catalog.quote_ident(pc.relname)
                                      FROM pg_catalog.pg_inherits i
                                      JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
                                      JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
                                      WHERE i.inhrelid = c.oid)
               || ' ' || coalesce(pg_catalog.pg_get_expr(c.relpartbound, c.oid), '')
               || ' (' || coalesce({_COLUMNS}, '') || ')'
               || CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || pg_catalog.pg_get_partkeydef(c.oid)
                       ELSE '' END
               || CASE WHEN c.relrowsecurity THEN ' ROW LEVEL SECURITY' ELSE '' END
        {_FROM_RELATION} AND c.relkind IN ('r', 'p') AND c.relispartition""",  # noqa: S608
    "indexes": f"""
        SELECT {_INDEX},
               pg_catalog.pg_get_indexdef(x.indexrelid)
               || CASE WHEN x.indisclustered THEN ' CLUSTERED' ELSE '' END
        FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
        JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
        WHERE {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_class", "c.oid")}
          AND (x.indisvalid OR ic.relkind = 'I')""",  # noqa: S608
    "constraints": f"""
        SELECT {_RELATION} || '.' || pg_catalog.quote_ident(k.conname),
               pg_catalog.pg_get_constraintdef(k.oid)
               || CASE WHEN k.convalidated THEN '' ELSE ' (not validated)' END
        FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_class", "c.oid")}
        UNION ALL
        SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) || '.'
               || pg_catalog.quote_ident(k.conname),
               pg_catalog.pg_get_constraintdef(k.oid)
               || CASE WHEN k.convalidated THEN '' ELSE ' (not validated)' END
        FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_type t ON t.oid = k.contypid
        JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_type", "t.oid")}""",  # noqa: S608
    "views": f"""
        SELECT {_RELATION}, pg_catalog.pg_get_viewdef(c.oid)
        {_FROM_RELATION} AND c.relkind = 'v'""",
    "materialized_views": f"""
        SELECT {_RELATION},
               pg_catalog.pg_get_viewdef(c.oid)
               || CASE WHEN c.relispopulated THEN '' ELSE ' (not populated)' END
        {_FROM_RELATION} AND c.relkind = 'm'""",
    "functions": f"""
        SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname)
               || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
               CASE WHEN p.prokind = 'a'
                    THEN 'AGGREGATE RETURNS ' || pg_catalog.pg_get_function_result(p.oid)
                    ELSE pg_catalog.pg_get_functiondef(p.oid) END
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_proc", "p.oid")}""",  # noqa: S608
    "triggers": f"""
        SELECT {_RELATION} || '.' || pg_catalog.quote_ident(g.tgname),
               pg_catalog.pg_get_triggerdef(g.oid)
               || CASE g.tgenabled WHEN 'O' THEN ''
                  ELSE ' (enabled: ' || g.tgenabled::pg_catalog.text || ')' END
        FROM pg_catalog.pg_trigger g
        JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT g.tgisinternal
          AND {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_class", "c.oid")}""",  # noqa: S608
    "sequences": f"""
        SELECT {_RELATION},
               pg_catalog.format('%s START %s INCREMENT %s MINVALUE %s MAXVALUE %s CACHE %s%s%s%s',
                   pg_catalog.format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                   s.seqcache, CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END,
                   CASE WHEN c.relpersistence = 'u' THEN ' UNLOGGED' ELSE '' END,
                   (SELECT ' OWNED BY ' || pg_catalog.quote_ident(rn.nspname) || '.'
                           || pg_catalog.quote_ident(rc.relname) || '.' || pg_catalog.quote_ident(ra.attname)
                    FROM pg_catalog.pg_depend d
                    JOIN pg_catalog.pg_class rc ON rc.oid = d.refobjid
                    JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
                    JOIN pg_catalog.pg_attribute ra ON ra.attrelid = d.refobjid AND ra.attnum = d.refobjsubid
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.deptype IN ('a', 'i')
                    LIMIT 1))
        {_FROM_SEQUENCE} AND c.relkind = 'S'""",  # noqa: S608
    "types": f"""
        SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname),
               CASE t.typtype
               WHEN 'e' THEN 'ENUM (' || coalesce((SELECT pg_catalog.string_agg(pg_catalog.quote_literal(
                                     e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                 FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
               WHEN 'd' THEN 'DOMAIN ' || pg_catalog.format_type(t.typbasetype, t.typtypmod)
                             || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                             || coalesce(' DEFAULT ' || t.typdefault, '')
               WHEN 'r' THEN 'RANGE OF ' || (SELECT pg_catalog.format_type(r.rngsubtype, NULL)
                                            FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid)
               ELSE 'COMPOSITE (' || coalesce((SELECT pg_catalog.string_agg(pg_catalog.format('%I %s',
                                     a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)),
                                     ', ' ORDER BY a.attnum)
                                 FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
                    || ')'
               END
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_type", "t.oid")}
          AND (t.typtype IN ('e', 'd', 'r')
               OR (t.typtype = 'c'
                   AND (SELECT r.relkind FROM pg_catalog.pg_class r WHERE r.oid = t.typrelid) = 'c'))""",  # noqa: S608
    "extensions": """
        SELECT pg_catalog.quote_ident(x.extname),
               x.extversion || ' IN SCHEMA ' || pg_catalog.quote_ident(n.nspname)
        FROM pg_catalog.pg_extension x JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace""",
    "policies": f"""
        SELECT {_RELATION} || '.' || pg_catalog.quote_ident(p.polname),
               pg_catalog.format('%s FOR %s TO %s USING (%s) WITH CHECK (%s)',
                   CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, p.polcmd,
                   (SELECT pg_catalog.string_agg(
                               CASE WHEN r.role = 0 THEN 'PUBLIC'
                                    ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.role)) END,
                               ', ' ORDER BY 1)
                    FROM pg_catalog.unnest(p.polroles) AS r(role)),
                   pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                   pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
        FROM pg_catalog.pg_policy p
        JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {_user_schema("n")} AND {_not_extension_member("pg_catalog.pg_class", "c.oid")}""",  # noqa: S608
}
INVENTORY_KINDS: tuple[str, ...] = tuple(_INVENTORY_SQL)

_USER_TABLES_SQL = f"""
    SELECT n.nspname, c.relname {_FROM_RELATION} AND c.relkind = 'r' ORDER BY 1, 2
"""
_SEQUENCES_SQL = f"""
    SELECT n.nspname, c.relname {_FROM_RELATION} AND c.relkind = 'S' ORDER BY 1, 2
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
    total = int(hi_sum) * _TWO64 + int(lo_sum) + int(negative_lo) * _TWO64
    return f"{total % _MOD128:032x}"


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


def _short_definition(definition: str) -> str:
    if len(definition) <= _DEFINITION_MAX:
        return definition
    return "sha256:" + hashlib.sha256(definition.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _inventory_kind(kind: str, pairs: Sequence[tuple[str, str]]) -> InventoryKind:
    ordered = sorted(pairs)  # code-point order: independent of the database's collation
    digest = hashlib.sha256()
    for name, definition in ordered:
        digest.update(json.dumps([name, definition], ensure_ascii=True).encode("ascii") + b"\n")
    items = tuple(InventoryItem(name, _short_definition(d)) for name, d in ordered[:INVENTORY_ITEMS_CAP])
    return InventoryKind(kind, len(ordered), digest.hexdigest(), items)


def _measure_inventory(conn: psycopg.Connection[Any]) -> tuple[InventoryKind, ...]:
    kinds = []
    for kind, query in _INVENTORY_SQL.items():
        pairs = [(str(name), str(definition or "")) for name, definition in conn.execute(query).fetchall()]
        kinds.append(_inventory_kind(kind, pairs))
    return tuple(kinds)


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
        measured_inventory = _measure_inventory(conn) if inventory else None
    return ContentRecord(
        tables=measured_tables,
        sequences=measured_sequences,
        large_objects=measured_large_objects,
        inventory=measured_inventory,
        server_version_num=int(conn.info.server_version),
        encoding=encoding,
        duration_seconds=round(time.monotonic() - started, 6),
    )


# ----------------------------------------------------------------------------------------- comparing
@dataclass(frozen=True)
class ContentDifference:
    """One way the found database differs from the expected one.

    ``kind``: ``record``, ``database``, ``table``, ``sequence``, ``large_objects`` or an inventory kind
    (:data:`INVENTORY_KINDS`); ``object``: what differs (``shop.orders_2025``, an index name...).
    """

    kind: str
    object: str
    expected: str
    found: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "object": self.object, "expected": self.expected, "found": self.found}


_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")


def display_name(schema: str, name: str) -> str:
    """``shop.orders``, ``"Ünïcode schéma"."Tâble"``: quoted as psql would show them (keywords aside)."""

    def quote(part: str) -> str:
        return part if _PLAIN_NAME.match(part) else '"' + part.replace('"', '""') + '"'

    return f"{quote(schema)}.{quote(name)}"


def _short(checksum: str | None) -> str:
    return "checksum " + checksum[:12] if checksum else "checksum n/a"


def _rows(count: int | None) -> str:
    return "missing" if count is None else f"{count} rows"


def _compare_tables(expected: ContentRecord, found: ContentRecord) -> list[ContentDifference]:
    diffs = []
    found_map = found.table_map
    for table in expected.tables:
        name = display_name(table.schema, table.table)
        other = found_map.get((table.schema, table.table))
        if other is None:
            diffs.append(ContentDifference("table", name, _rows(table.rows), "not measured"))
        elif table.rows != other.rows:
            diffs.append(ContentDifference("table", name, _rows(table.rows), _rows(other.rows)))
        elif table.checksum and other.checksum and table.checksum != other.checksum:
            diffs.append(
                ContentDifference(
                    "table",
                    name,
                    f"{_rows(table.rows)}, {_short(table.checksum)}",
                    f"{_short(other.checksum)}",
                )
            )
    expected_names = {(t.schema, t.table) for t in expected.tables}
    for table in found.tables:
        if (table.schema, table.table) not in expected_names and table.rows is not None:
            diffs.append(
                ContentDifference(
                    "table", display_name(table.schema, table.table), "not measured", _rows(table.rows)
                )
            )
    return diffs


def _compare_sequences(expected: ContentRecord, found: ContentRecord) -> list[ContentDifference]:
    if expected.sequences is None or found.sequences is None:
        return []

    def state(value: SequenceValue | None) -> str:
        if value is None:
            return "missing"
        return f"last_value {value.last_value}" + ("" if value.is_called else " (not called)")

    before = {(s.schema, s.sequence): s for s in expected.sequences}
    after = {(s.schema, s.sequence): s for s in found.sequences}
    diffs = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            diffs.append(
                ContentDifference(
                    "sequence", display_name(*key), state(before.get(key)), state(after.get(key))
                )
            )
    return diffs


def _compare_large_objects(expected: ContentRecord, found: ContentRecord) -> list[ContentDifference]:
    before, after = expected.large_objects, found.large_objects
    if before is None or after is None:
        return []
    if before.count != after.count:
        return [
            ContentDifference("large_objects", "(all)", f"{before.count} objects", f"{after.count} objects")
        ]
    if before.checksum and after.checksum and before.checksum != after.checksum:
        return [
            ContentDifference(
                "large_objects",
                "(all)",
                f"{before.count} objects, {_short(before.checksum)}",
                _short(after.checksum),
            )
        ]
    return []


def _compare_inventory_kind(before: InventoryKind, after: InventoryKind) -> list[ContentDifference]:
    if before.count == after.count and before.sha256 == after.sha256:
        return []
    kind = before.kind
    old = {i.name: i.definition for i in before.items}
    new = {i.name: i.definition for i in after.items}
    names = old.keys() | new.keys()
    if not (before.complete and after.complete):
        # Both lists are the first names in sorted order: compare only up to the shorter list's end.
        ends = [
            items[-1].name
            for items in (before.items, after.items)
            if items and len(items) == INVENTORY_ITEMS_CAP
        ]
        if ends:
            names = {name for name in names if name <= min(ends)}
    diffs = []
    for name in sorted(names):
        if name not in new:
            diffs.append(ContentDifference(kind, name, old[name] or "present", "missing"))
        elif name not in old:
            diffs.append(ContentDifference(kind, name, "missing", new[name] or "present"))
        elif old[name] != new[name]:
            diffs.append(ContentDifference(kind, name, old[name], new[name]))
    if not diffs:  # capped lists, or a change the listed items do not show
        diffs.append(
            ContentDifference(
                kind,
                "(all)",
                f"{before.count} objects, sha256 {before.sha256[:12]}",
                f"{after.count} objects, sha256 {after.sha256[:12]}",
            )
        )
    return diffs


def compare_content(expected: ContentRecord, found: ContentRecord) -> list[ContentDifference]:
    """Every difference between the source's record and the restored copy's; empty: IDENTICAL.

    Parts either record lacks (``None``) are skipped; checksums only when both sides have them.
    """
    if expected.checksum_method != found.checksum_method:
        return [
            ContentDifference("record", "checksum_method", expected.checksum_method, found.checksum_method)
        ]
    diffs = []
    if expected.encoding != found.encoding:
        diffs.append(ContentDifference("database", "encoding", expected.encoding, found.encoding))
    diffs += _compare_tables(expected, found)
    diffs += _compare_sequences(expected, found)
    diffs += _compare_large_objects(expected, found)
    if expected.inventory is not None and found.inventory is not None:
        after = found.inventory_map
        for before in expected.inventory:
            other = after.get(before.kind)
            if other is not None:
                diffs += _compare_inventory_kind(before, other)
    return diffs


def content_verdict(differences: Sequence[ContentDifference]) -> str:
    """``IDENTICAL`` when there is no difference, else ``DIFFERENT``."""
    return DIFFERENT if differences else IDENTICAL


def format_differences(differences: Sequence[ContentDifference], *, width: int = 60) -> str:
    """A plain-text table for a task log (cells cut at ``width`` characters); says IDENTICAL when empty."""
    if not differences:
        return f"{IDENTICAL}: no difference in rows, checksums, sequences, large objects or schema"

    def cut(text: str) -> str:
        text = text.replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    header = ("KIND", "OBJECT", "EXPECTED", "FOUND")
    rows = [header] + [tuple(cut(v) for v in (d.kind, d.object, d.expected, d.found)) for d in differences]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{DIFFERENT}: {len(differences)} difference{'s' if len(differences) != 1 else ''}"]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
