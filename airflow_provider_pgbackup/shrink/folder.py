"""The shrink guard over a folder of backups: which are held (retention, the freshness watchdog), and the
check before a backup is published into a folder (the upload and promote operators)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.shrink import BackupShrank, ShrinkGuard, ShrinkReport, compare, same_subject
from airflow_provider_pgbackup.storage import Location, StorageSettings, open_store, open_target
from airflow_provider_pgbackup.storage.folder import (
    ACKNOWLEDGED_SUFFIX,
    StoredBackup,
    acknowledged_names,
    artifact_problem,
    backup_uri,
    find_backups,
)

log = logging.getLogger(__name__)


def held_backups(
    backups: Iterable[StoredBackup], acknowledged: set[str], guard: ShrinkGuard
) -> dict[str, ShrinkReport]:
    """The backups of a folder that shrank against the newest verified, not held backup of the same
    database before them, by name (acknowledged ones are in it too, with ``held`` False)."""
    reports: dict[str, ShrinkReport] = {}
    if not guard.enabled:
        return reports
    baselines: list[StoredBackup] = []
    for backup in sorted(backups, key=lambda b: b.finished_at):
        baseline = next((b for b in reversed(baselines) if same_subject(b.manifest, backup.manifest)), None)
        report = None
        if baseline is not None:
            report = compare(
                backup.manifest,
                baseline.manifest,
                guard,
                artifact=backup.name,
                baseline_name=baseline.name,
                acknowledged=backup.name in acknowledged,
            )
            if report.shrank:
                reports[backup.name] = report
        if artifact_problem(backup) is None and (report is None or not report.held):
            baselines.append(backup)
    return reports


def check_before_publishing(
    manifest: Manifest,
    artifact: Location,
    destination: Location,
    *,
    settings: StorageSettings,
    guard: ShrinkGuard,
    acknowledged: bool,
    logger: logging.Logger | Any = None,
) -> ShrinkReport | None:
    """Compare a backup about to be published as ``artifact`` in the folder ``destination`` with the
    newest verified backup of its database there; raise :class:`BackupShrank` when it is held.

    Acknowledged (``acknowledged``, or the marker beside ``artifact``): it passes, and an acknowledgement
    by argument is written as the marker, so retention sees it too. The report has no ``baseline`` when
    there was nothing to compare with; None when the guard is off.
    """
    logger = logger or log
    if not guard.enabled:
        return None
    store = open_store(destination, settings=settings)
    try:
        entries = store.entries()
    except FileNotFoundError:  # a local folder not made yet: nothing published there before
        entries = []
    backups, _incomplete, _protected = find_backups(store, entries, logger)
    marked = acknowledged_names(entries)
    held = held_backups(backups, marked, guard)
    candidates = [
        b
        for b in backups
        if b.name != artifact.basename
        and same_subject(b.manifest, manifest)
        and b.manifest.finished_at < manifest.finished_at
        and artifact_problem(b) is None
        and not (b.name in held and held[b.name].held)
    ]
    scheme = metrics.scheme_tag(destination.scheme)
    if not candidates:
        logger.info(
            "Shrink guard: no earlier verified backup of this database in %s to compare", destination.uri
        )
        metrics.emit_shrink(manifest, scheme, "published")
        return ShrinkReport(artifact.uri, None, notes=("no earlier verified backup of this database",))
    baseline = max(candidates, key=lambda b: b.finished_at)
    report = compare(
        manifest,
        baseline.manifest,
        guard,
        artifact=artifact.uri,
        baseline_name=backup_uri(store, baseline),
        acknowledged=acknowledged or artifact.basename in marked,
    )
    metrics.emit_shrink(manifest, scheme, report.outcome, (s.reason for s in report.shrank))
    if report.held:
        logger.error("Shrink guard: %s is held:\n%s", artifact.uri, report.table())
        raise BackupShrank(report)
    if report.shrank:
        logger.warning("Shrink guard: %s shrank, acknowledged:\n%s", artifact.uri, report.table())
        if acknowledged and artifact.basename not in marked:
            write_acknowledgement(artifact, settings=settings)
    else:
        logger.info("Shrink guard: %s did not shrink against %s", artifact.uri, report.baseline)
    return report


def write_acknowledgement(artifact: Location, *, settings: StorageSettings) -> Location:
    """The marker ``<artifact>.shrink-acknowledged`` beside ``artifact`` (created, never replaced)."""
    marker = artifact.sibling(artifact.basename + ACKNOWLEDGED_SUFFIX)
    target = open_target(marker, settings=settings)
    try:
        target.write(b"acknowledged by the shrink_acknowledged argument of the task that published it\n")
        target.commit()
    except BaseException:
        target.abort()
        raise
    return marker


__all__ = ["check_before_publishing", "held_backups", "write_acknowledgement"]
