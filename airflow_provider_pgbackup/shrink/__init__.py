"""The shrink guard: a backup that is complete and valid, and much smaller than the one before it, is held.

A dump of an emptied or half-truncated database (an application bug, a wrong ``search_path``, a dropped
schema, the wrong connection) passes every check, and retention would then delete the good backups it
"replaces". Before a backup is published (the promote step, the upload) and in retention's view of a
folder, it is compared with the newest verified backup of the same database (same kind, database and
pg_dumpall mode) that finished before it, from their manifests:

- total rows: held when they dropped by more than ``max_total_row_drop`` (a fraction; default 0.5);
- per table, for tables that held at least ``min_table_rows`` rows: held when one vanished or lost more
  than ``max_table_row_drop`` of its rows (default 0.9);
- the artifact's size (only between backups of the same format, compression and encryption): held when it
  dropped by more than ``max_size_drop`` (default 0.5).

A held backup is not published (the task fails with :class:`BackupShrank`, a table of what shrank; no
retry: the same bytes shrink the same way) and is no keeper for retention. A person lets it through with
the operator's ``shrink_acknowledged=True`` or a marker object ``<artifact>.shrink-acknowledged`` beside
the artifact (:mod:`~airflow_provider_pgbackup.shrink.folder` has the searches).
``ShrinkGuard(enabled=False)``
(or ``shrink_guard=False``) turns it off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.options import InvalidOptionError


@dataclass(frozen=True)
class ShrinkGuard:
    """How much smaller than its predecessor a backup may be before it is held.

    :param enabled: False: every backup is published as it is (no comparison).
    :param max_total_row_drop: the fraction of all rows a backup may lose (0.5: half).
    :param max_table_row_drop: the fraction of one table's rows it may lose (0.9).
    :param min_table_rows: tables smaller than this in the earlier backup are not judged one by one.
    :param max_size_drop: the fraction of the artifact's size it may lose (same format and compression).
    """

    enabled: bool = True
    max_total_row_drop: float = 0.5
    max_table_row_drop: float = 0.9
    min_table_rows: int = 100
    max_size_drop: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InvalidOptionError(f"shrink guard enabled {self.enabled!r} must be True or False")
        for name in ("max_total_row_drop", "max_table_row_drop", "max_size_drop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InvalidOptionError(f"shrink guard {name} {value!r} must be a fraction from 0 to 1")
        rows = self.min_table_rows
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise InvalidOptionError(f"shrink guard min_table_rows {rows!r} must be a whole number >= 0")

    @classmethod
    def of(cls, value: Any) -> ShrinkGuard:
        """An operator's ``shrink_guard`` argument: a ``ShrinkGuard``, True / None (the defaults), False
        (off), or a mapping of its fields (``{"max_total_row_drop": 0.8}``)."""
        if isinstance(value, ShrinkGuard):
            return value
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise InvalidOptionError(
                    f"shrink_guard has no settings {unknown}; it has {sorted(cls.__dataclass_fields__)}"
                )
            return cls(**value)
        raise InvalidOptionError(
            f"shrink_guard {value!r} must be a ShrinkGuard, True, False, None or a mapping of its settings"
        )


@dataclass(frozen=True)
class Shrinkage:
    """One thing that shrank beyond its threshold: ``reason`` is total_rows, table_rows, vanished_table
    or size; ``what`` names it (a table, ``all tables``, ``artifact``)."""

    reason: str
    what: str
    before: int
    after: int

    @property
    def drop(self) -> float:
        return 1.0 if self.before <= 0 else (self.before - self.after) / self.before

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "what": self.what, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class ShrinkReport:
    """A backup compared with its baseline: what shrank beyond the thresholds (empty: it may be published)."""

    artifact: str
    baseline: str | None
    shrank: tuple[Shrinkage, ...] = ()
    acknowledged: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def held(self) -> bool:
        """Beyond a threshold and not acknowledged: not published, no keeper."""
        return bool(self.shrank) and not self.acknowledged

    @property
    def outcome(self) -> str:
        if not self.shrank:
            return "published"
        return "acknowledged" if self.acknowledged else "held"

    def table(self) -> str:
        """What shrank, one line each, aligned (the log and the exception)."""
        rows = [("what", "before", "after", "drop", "reason")]
        rows += [(s.what, str(s.before), str(s.after), f"{s.drop:.0%}", s.reason) for s in self.shrank]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)

    def to_dict(self) -> dict[str, Any]:
        """The asset-event ``shrink`` field and the XCom: outcome, baseline and what shrank."""
        return {
            "outcome": self.outcome,
            "held": self.held,
            "baseline": self.baseline,
            "shrank": [s.to_dict() for s in self.shrank],
        }


class BackupShrank(Exception):
    """A backup shrank beyond the guard's thresholds against the newest verified one: held, not published.
    Fail now (``failures.py``): the same backup shrinks the same way on a retry."""

    def __init__(self, report: ShrinkReport, what: str = "published") -> None:
        self.report = report
        super().__init__(
            f"backup {report.artifact} is held, not {what}: it shrank against the newest verified backup "
            f"{report.baseline}:\n{report.table()}\nIf this is expected (tables dropped or emptied on "
            f"purpose), acknowledge it: shrink_acknowledged=True on the task, or an object named "
            f"{report.artifact.rsplit('/', 1)[-1]}.shrink-acknowledged beside the artifact"
        )


def same_subject(a: Manifest, b: Manifest) -> bool:
    """Backups of the same thing: kind, database and pg_dumpall mode."""
    return (a.kind, a.database, a.mode) == (b.kind, b.database, b.mode)


def compare(
    candidate: Manifest,
    baseline: Manifest,
    guard: ShrinkGuard,
    *,
    artifact: str,
    baseline_name: str,
    acknowledged: bool = False,
) -> ShrinkReport:
    """What shrank from ``baseline`` to ``candidate`` beyond ``guard``'s thresholds."""
    shrank: list[Shrinkage] = []
    notes: list[str] = []
    if guard.enabled and candidate.row_counts is not None and baseline.row_counts is not None:
        before, after = baseline.row_count_map, candidate.row_count_map
        total_before, total_after = sum(before.values()), sum(after.values())
        if total_before > 0 and total_after < total_before * (1 - guard.max_total_row_drop):
            shrank.append(Shrinkage("total_rows", "all tables", total_before, total_after))
        for key, rows in sorted(before.items()):
            if rows < max(guard.min_table_rows, 1):
                continue
            name = f"{key[0]}.{key[1]}"
            if key not in after:
                shrank.append(Shrinkage("vanished_table", name, rows, 0))
            elif after[key] < rows * (1 - guard.max_table_row_drop):
                shrank.append(Shrinkage("table_rows", name, rows, after[key]))
    elif guard.enabled:
        notes.append("rows not compared: a manifest counts no rows")
    comparable = (candidate.format, candidate.compression, candidate.encryption is None) == (
        baseline.format,
        baseline.compression,
        baseline.encryption is None,
    )
    if guard.enabled and comparable:
        if baseline.size_bytes > 0 and candidate.size_bytes < baseline.size_bytes * (1 - guard.max_size_drop):
            shrank.append(Shrinkage("size", "artifact", baseline.size_bytes, candidate.size_bytes))
    elif guard.enabled:
        notes.append("sizes not compared: another format, compression or encryption")
    return ShrinkReport(artifact, baseline_name, tuple(shrank), acknowledged, tuple(notes))


__all__ = [
    "BackupShrank",
    "ShrinkGuard",
    "ShrinkReport",
    "Shrinkage",
    "compare",
    "same_subject",
]
