"""Comparing two content records: the differences a restore drill reports, and its verdict."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from airflow_provider_pgbackup.content.record import (
    DIFFERENT,
    IDENTICAL,
    INVENTORY_ITEMS_CAP,
    ContentRecord,
    InventoryKind,
    SequenceValue,
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


def allow_sequences_ahead(expected: ContentRecord, found: ContentRecord) -> tuple[ContentRecord, list[str]]:
    """``found`` with every sequence that is *ahead* of the recorded value set back to it, and a note each.

    Sequences are not transactional: the source's record reads a sequence when the snapshot is taken,
    pg_dump reads it a little later, so a busy source's sequence can be dumped (and restored) ahead of
    the record. Ahead is what a sequence advanced during the dump looks like; behind (or missing) is not,
    and stays a difference.
    """
    if expected.sequences is None or found.sequences is None:
        return found, []
    recorded = {(s.schema, s.sequence): s for s in expected.sequences}
    notes: list[str] = []
    adjusted = []
    for value in found.sequences:
        before = recorded.get((value.schema, value.sequence))
        if before is not None and value.last_value > before.last_value and before.is_called:
            notes.append(
                f"sequence {display_name(value.schema, value.sequence)} restored at {value.last_value}, "
                f"ahead of {before.last_value} recorded at the snapshot: advanced during the dump"
            )
            value = before
        adjusted.append(value)
    return replace(found, sequences=tuple(adjusted)), notes


def restricted_to(
    expected: ContentRecord, tables: Sequence[tuple[str, str]], *, schemas: Sequence[str] = ()
) -> ContentRecord:
    """The part of ``expected`` a subset restore brings back, to compare with the restored copy: the
    rows of ``tables`` only; the sequences of ``schemas`` (pg_restore ``--schema`` restores them,
    ``--table`` alone does not); no large objects and no schema inventory (a subset holds neither whole)."""
    chosen = set(tables)
    sequences = None
    if schemas and expected.sequences is not None:
        sequences = tuple(s for s in expected.sequences if s.schema in set(schemas))
    return replace(
        expected,
        tables=tuple(t for t in expected.tables if (t.schema, t.table) in chosen),
        sequences=sequences,
        large_objects=None,
        inventory=None,
    )
