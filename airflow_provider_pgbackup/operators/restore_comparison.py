"""The drill's comparison of a restored database with its backup: row counts, then the content record.

:class:`RestoreComparison` is what :class:`~airflow_provider_pgbackup.operators.pg_restore.PgRestoreOperator`
runs once the restore finished: the manifest's row counts against the restored tables, then (when the
backup recorded one and it is asked for) the content record (checksums, sequences, large objects, schema
inventory) against the same record measured on the copy. It keeps the verdict, identical or not, for the
XCom the "Backups" page reads, and fails the task naming every difference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.content import (
    INVENTORY_KINDS,
    STREAM_METHOD,
    ContentRecord,
    ContentRecordError,
    allow_sequences_ahead,
    compare_content,
    content_verdict,
    format_differences,
    restricted_to,
)
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.lineage import RESTORE_XCOM_KEY, restore_verdict
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.selection import RestoreSubset
from airflow_provider_pgbackup.storage import Location


def row_security(manifest: Manifest) -> bool:
    """Whether the dump read rows with ``--enable-row-security``: the drill then reads them so too."""
    extra = manifest.options.get("extra_args") if isinstance(manifest.options, dict) else None
    return isinstance(extra, list) and "--enable-row-security" in extra


def mismatch_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table of the tables whose restored row count differs from the manifest's."""
    bad = [r for r in rows if not r["ok"]]
    names = [f"{r['schema']}.{r['table']}" for r in bad]
    width = max([len("table"), *(len(n) for n in names)])
    lines = [f"  {'table':<{width}}  {'expected':>10}  {'restored':>10}"]
    for name, row in zip(names, bad, strict=True):
        restored = "missing" if row["restored"] is None else str(row["restored"])
        lines.append(f"  {name:<{width}}  {row['expected']:>10}  {restored:>10}")
    return "\n".join(lines)


class RestoreComparison:
    """Compare the restored ``database`` with the backup's manifest; :attr:`verdict` is what was found
    (None until a comparison ran).

    :param hook: the hook connected to the server restored into.
    :param subset: the tables / schemas restored (None: the whole backup): only those are compared.
    :param compare_row_counts: compare the manifest's row counts.
    :param compare_content: compare the manifest's content record, when it has one.
    :param jobs: connections measuring the restored tables in parallel.
    """

    def __init__(
        self,
        hook: PgDumpHook,
        log: logging.Logger | Any,
        *,
        subset: RestoreSubset | None,
        compare_row_counts: bool,
        compare_content: bool,
        jobs: int | None,
    ) -> None:
        self.hook = hook
        self.log = log
        self.subset = subset
        self.compare_row_counts = compare_row_counts
        self.compare_content = compare_content
        self.jobs = jobs
        self.verdict: dict[str, Any] | None = None

    def compare(
        self, manifest: Manifest, database: str
    ) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
        """Row counts (always, when recorded), then the content record (when recorded and asked).

        A record taken from pg_dump's COPY data is measured first: reading the restored tables back
        gives their row counts too, so they are not counted a second time."""
        expected = self._expected_content(manifest)
        found = None
        if expected is not None and expected.checksum_method == STREAM_METHOD:
            found = self._measure(manifest, database, expected)
        rows = self._compare_row_counts(manifest, database, found)
        if expected is None:
            return rows, None
        return rows, self._compare_content(
            database, expected, found or self._measure(manifest, database, expected)
        )

    def _expected_content(self, manifest: Manifest) -> ContentRecord | None:
        if not self.compare_content or manifest.content is None:
            return None
        try:
            expected = ContentRecord.from_dict(manifest.content)
        except ContentRecordError as err:  # verification parsed it already; this is belt and braces
            raise AirflowFailException(f"the manifest's content record is unreadable: {err}") from err
        subset = self.subset
        if subset is not None:
            expected = restricted_to(
                expected,
                subset.selected([(t.schema, t.table) for t in expected.tables]),
                schemas=subset.schemas,
            )
            self.log.info("Comparing only what the subset restored: %d tables", len(expected.tables))
        return expected

    def _measure(self, manifest: Manifest, database: str, expected: ContentRecord) -> ContentRecord:
        return self.hook.measure_restored(
            database, expected, row_security=row_security(manifest), jobs=self.jobs
        )

    def _compare_row_counts(
        self, manifest: Manifest, database: str, found: ContentRecord | None
    ) -> list[dict[str, Any]] | None:
        if not self.compare_row_counts:
            return None
        if manifest.row_counts is None:
            self.log.info("The manifest has no row counts (pg_dumpall, or record='none')")
            return None
        subset = self.subset
        counted = [r for r in manifest.row_counts if subset is None or subset.restores(r.schema, r.table)]
        names = [(r.schema, r.table) for r in counted]
        if found is not None:
            measured = {(t.schema, t.table): t.rows for t in found.tables}
            restored = {name: measured.get(name) for name in names}
        else:
            restored = self.hook.count_table_rows(database, names, row_security=row_security(manifest))
        rows = [
            {
                "schema": r.schema,
                "table": r.table,
                "expected": r.rows,
                "restored": restored[(r.schema, r.table)],
                "ok": restored[(r.schema, r.table)] == r.rows,
            }
            for r in counted
        ]
        bad = [r for r in rows if not r["ok"]]
        self._record_verdict(
            "ROW COUNTS DIFFER" if bad else "ROW COUNTS MATCH",
            [
                {
                    "kind": "rows",
                    "object": f"{r['schema']}.{r['table']}",
                    "expected": str(r["expected"]),
                    "found": "missing" if r["restored"] is None else str(r["restored"]),
                }
                for r in bad
            ],
            len(rows),
        )
        if bad:
            raise AirflowFailException(
                f"restored row counts differ from the manifest in {len(bad)} of {len(rows)} tables:\n"
                + mismatch_table(rows)
            )
        self.log.info("Row counts of all %d tables match the manifest", len(rows))
        return rows

    def _compare_content(
        self, database: str, expected: ContentRecord, found: ContentRecord
    ) -> dict[str, Any]:
        """Checksums, sequences, large objects and inventory of the restored database vs the manifest."""
        found, notes = allow_sequences_ahead(expected, found)
        for note in notes:
            self.log.info("%s", note)
        differences = compare_content(expected, found)
        skipped = []
        source_major, target_major = expected.server_version_num // 10000, found.server_version_num // 10000
        if source_major != target_major:
            kinds = set(INVENTORY_KINDS)
            differences = [d for d in differences if d.kind not in kinds]
            skipped.append(
                f"schema inventory not compared: dumped from PostgreSQL {source_major}, restored into "
                f"{target_major} (definitions are deparsed per version)"
            )
            self.log.info("%s", skipped[-1])
        verdict = content_verdict(differences)
        table = format_differences(differences)
        result = {
            "verdict": verdict,
            "differences": [d.to_dict() for d in differences],
            "tables": len(found.tables),
            "sequences": len(found.sequences) if found.sequences is not None else None,
            "large_objects": found.large_objects.count if found.large_objects is not None else None,
            "inventory_kinds": len(found.inventory) if found.inventory is not None else None,
            "notes": [*notes, *skipped],
            "seconds": found.duration_seconds,
        }
        self._record_verdict(
            verdict, [d.to_dict() for d in differences], len(found.tables), [*notes, *skipped]
        )
        if differences:
            raise AirflowFailException(
                f"the restored database {database!r} is not identical to the backup:\n{table}"
            )
        self.log.info("Restored database compared with the manifest's content record:\n%s", table)
        return result

    def _record_verdict(
        self,
        verdict: str,
        differences: Sequence[dict[str, Any]],
        tables_compared: int | None,
        notes: Any = (),
    ) -> None:
        self.verdict = {
            "verdict": verdict,
            "differences": list(differences),
            "tables_compared": tables_compared,
            "notes": list(notes),
        }

    def push_verdict(
        self,
        context: Any,
        manifest: Manifest,
        artifact: Location,
        database: str,
        *,
        dropped: bool,
        restore_seconds: float | None = None,
    ) -> None:
        """The comparison's verdict as the XCom :data:`RESTORE_XCOM_KEY`, identical or not (a failed
        task emits no asset event; the "Backups" page reads this), and as the drill's metrics."""
        if self.verdict is not None:
            metrics.emit_drill(manifest, artifact.scheme, self.verdict, restore_seconds)
        getter = context.get if hasattr(context, "get") else None
        ti = getter("ti") if getter else None
        if self.verdict is None or ti is None:
            return
        verdict = restore_verdict(
            manifest,
            artifact,
            restored_into=database,
            dropped_after=dropped,
            subset=self.subset.to_dict() if self.subset is not None else None,
            **self.verdict,
        )
        try:
            ti.xcom_push(key=RESTORE_XCOM_KEY, value=verdict)
        except Exception:  # the restore's own outcome (and its exception) matters more than this record
            self.log.exception("Could not keep the restore's verdict as the XCom %s", RESTORE_XCOM_KEY)
