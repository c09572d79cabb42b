"""The content record: what :func:`~airflow_provider_pgbackup.content.measure.measure_content` returns,
its JSON form in the manifest, and the strict reader that refuses anything malformed."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_pgbackup.content.fields import (
    ContentRecordError,
    is_checksum,
    is_count,
    is_int,
    is_str,
    list_at,
    need,
    object_at,
    optional,
)

__all__ = [
    "CHECKSUM_METHOD",
    "CHECKSUM_METHODS",
    "CONTENT_SCHEMA_VERSION",
    "COPY_SETTINGS",
    "DEFINITION_MAX",
    "DETERMINISTIC_SETTINGS",
    "DIFFERENT",
    "IDENTICAL",
    "INVENTORY_ITEMS_CAP",
    "INVENTORY_KINDS",
    "MOD128",
    "STREAM_METHOD",
    "TWO64",
    "ContentRecord",
    "ContentRecordError",
    "InventoryItem",
    "InventoryKind",
    "LargeObjectsContent",
    "SequenceValue",
    "TableContent",
]

#: 2 added ``copy_settings`` (and the method ``pgdump-copy-sha256``); records of version 1 are still read.
CONTENT_SCHEMA_VERSION = 2
#: Table checksums computed by the server in the dump's snapshot (a second read of every table).
CHECKSUM_METHOD = "md5-sum128"
#: Table checksums taken from the COPY data pg_dump writes (content.stream): no second read.
STREAM_METHOD = "pgdump-copy-sha256"
CHECKSUM_METHODS = (CHECKSUM_METHOD, STREAM_METHOD)
#: The session settings the server's output functions depend on and pg_dump does not set: the drill's
#: pg_dump runs with the values the dump had (the client encoding is the archive's).
COPY_SETTINGS = ("client_encoding", "TimeZone", "bytea_output", "lc_monetary", "quote_all_identifiers")
INVENTORY_ITEMS_CAP = 200
IDENTICAL = "IDENTICAL"
DIFFERENT = "DIFFERENT"

# Settings that make row text and catalog deparsing the same in every session (transaction-local).
# row_security is the session's (catalog.prepare_session: off, or on with --enable-row-security).
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
)

MOD128 = 1 << 128
TWO64 = 1 << 64
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: The kinds of the schema inventory, in the order they are measured and reported.
INVENTORY_KINDS: tuple[str, ...] = (
    "schemas",
    "tables",
    "partitions",
    "indexes",
    "constraints",
    "views",
    "materialized_views",
    "functions",
    "triggers",
    "sequences",
    "types",
    "extensions",
    "policies",
)
DEFINITION_MAX = 160  # longer definitions are kept in a record as a digest (the kind's sha256 sees all)


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
    #: :data:`COPY_SETTINGS` of the dump's session, for :data:`STREAM_METHOD` (None otherwise).
    copy_settings: tuple[tuple[str, str], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for a manifest or an XCom)."""
        return {
            "schema_version": self.schema_version,
            "checksum_method": self.checksum_method,
            "copy_settings": None if self.copy_settings is None else dict(self.copy_settings),
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
def _parse_record(data: Any) -> ContentRecord:
    top = object_at(
        data,
        "(record)",
        (
            "schema_version",
            "checksum_method",
            "copy_settings",
            "server_version_num",
            "encoding",
            "duration_seconds",
            "tables",
            "sequences",
            "large_objects",
            "inventory",
        ),
    )
    version = need(top, "schema_version", "", "an integer", is_int)
    if version < 1 or version > CONTENT_SCHEMA_VERSION:
        raise ContentRecordError(
            f"content record field schema_version is {version}; this provider reads 1 to "
            f"{CONTENT_SCHEMA_VERSION} (upgrade airflow-provider-pgbackup for newer records)"
        )
    tables: list[TableContent] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(list_at(need(top, "tables", "", "a list", lambda v: True), "tables")):
        where = f"tables[{index}]"
        item = object_at(entry, where, ("schema", "table", "rows", "checksum"))
        table = TableContent(
            need(item, "schema", where, "a string", is_str),
            need(item, "table", where, "a string", is_str),
            need(item, "rows", where, "a non-negative integer or null", optional(is_count)),
            need(item, "checksum", where, "32 lower-case hex digits or null", optional(is_checksum)),
        )
        if (table.schema, table.table) in seen:
            raise ContentRecordError(
                f"content record field {where} repeats table {table.schema}.{table.table}"
            )
        seen.add((table.schema, table.table))
        tables.append(table)
    sequences: list[SequenceValue] | None = None
    raw_sequences = need(top, "sequences", "", "a list or null", lambda v: True)
    if raw_sequences is not None:
        sequences = []
        for index, entry in enumerate(list_at(raw_sequences, "sequences")):
            where = f"sequences[{index}]"
            item = object_at(entry, where, ("schema", "sequence", "last_value", "is_called"))
            sequences.append(
                SequenceValue(
                    need(item, "schema", where, "a string", is_str),
                    need(item, "sequence", where, "a string", is_str),
                    need(item, "last_value", where, "an integer", is_int),
                    need(item, "is_called", where, "a boolean", lambda v: isinstance(v, bool)),
                )
            )
    large_objects: LargeObjectsContent | None = None
    raw_large_objects = need(top, "large_objects", "", "an object or null", lambda v: True)
    if raw_large_objects is not None:
        item = object_at(raw_large_objects, "large_objects", ("count", "checksum"))
        large_objects = LargeObjectsContent(
            need(item, "count", "large_objects", "a non-negative integer", is_count),
            need(
                item, "checksum", "large_objects", "32 lower-case hex digits or null", optional(is_checksum)
            ),
        )
    inventory: list[InventoryKind] | None = None
    raw_inventory = need(top, "inventory", "", "an object or null", lambda v: True)
    if raw_inventory is not None:
        inventory = []
        for kind, entry in object_at(raw_inventory, "inventory", INVENTORY_KINDS).items():
            where = f"inventory.{kind}"
            item = object_at(entry, where, ("count", "sha256", "items"))
            items = []
            for index, raw in enumerate(list_at(need(item, "items", where, "a list", lambda v: True), where)):
                at = f"{where}.items[{index}]"
                pair = object_at(raw, at, ("name", "definition"))
                items.append(
                    InventoryItem(
                        need(pair, "name", at, "a string", is_str),
                        need(pair, "definition", at, "a string", is_str),
                    )
                )
            count = need(item, "count", where, "a non-negative integer", is_count)
            if len(items) > count:
                raise ContentRecordError(f"content record field {where}.items lists more objects than count")
            inventory.append(
                InventoryKind(
                    kind,
                    count,
                    need(
                        item,
                        "sha256",
                        where,
                        "64 lower-case hex digits",
                        lambda v: is_str(v) and bool(_HEX64.match(v)),
                    ),
                    tuple(items),
                )
            )
    duration = need(
        top,
        "duration_seconds",
        "",
        "a finite non-negative number",
        lambda v: (is_int(v) or isinstance(v, float)) and math.isfinite(v) and v >= 0,
    )
    return ContentRecord(
        tables=tuple(tables),
        sequences=None if sequences is None else tuple(sequences),
        large_objects=large_objects,
        inventory=None if inventory is None else tuple(inventory),
        server_version_num=need(top, "server_version_num", "", "a non-negative integer", is_count),
        encoding=need(top, "encoding", "", "a string", is_str),
        duration_seconds=float(duration),
        checksum_method=need(
            top,
            "checksum_method",
            "",
            f"one of {', '.join(CHECKSUM_METHODS)}",
            lambda v: v in CHECKSUM_METHODS,
        ),
        schema_version=version,
        copy_settings=_parse_copy_settings(top.get("copy_settings")),
    )


def _parse_copy_settings(raw: Any) -> tuple[tuple[str, str], ...] | None:
    if raw is None:
        return None
    settings = object_at(raw, "copy_settings", COPY_SETTINGS)
    return tuple(
        (name, need(settings, name, "copy_settings", "a string", is_str))
        for name in COPY_SETTINGS
        if name in settings
    )
