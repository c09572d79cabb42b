"""What retention decides, apart from the operator that runs it: the grandfather-father-son keep-set
(:func:`select_kept`), whether a dropped backup may go now (:func:`lock_plan`, from the store's locks),
a held backup (:class:`HeldBackup`, the shrink guard's), where a backup's artifact is, and the newest
complete backup of a folder (:func:`newest_complete_backup`, what the restore drill restores). The
guards that stop a run before it deletes anything (:func:`check_held`, the shrink guard's, and
:func:`check_newest`, the newest backup's age and check) and the argument checks the operator shares
are here too."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pendulum

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.shrink import BackupShrank, ShrinkGuard, ShrinkReport
from airflow_provider_pgbackup.shrink.folder import held_backups
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    BackupStore,
    DeletionPlan,
    Location,
    StorageSettings,
    StoredEntry,
    object_locks,
    open_store,
    plan_deletion,
    portable_location,
)
from airflow_provider_pgbackup.storage.folder import (
    StoredBackup,
    acknowledged_names,
    artifact_problem,
    backup_uri,
    find_backups,
)


def _period_keys(tz: str) -> dict[str, Callable[[datetime.datetime], tuple[int, ...]]]:
    def local(moment: datetime.datetime) -> pendulum.DateTime:
        return pendulum.instance(moment).in_timezone(tz)

    def week(moment: datetime.datetime) -> tuple[int, ...]:
        iso = local(moment).isocalendar()
        return (iso[0], iso[1])

    return {
        "daily": lambda m: (local(m).year, local(m).month, local(m).day),
        "weekly": week,
        "monthly": lambda m: (local(m).year, local(m).month),
    }


def select_kept(
    finished: Sequence[datetime.datetime],
    *,
    keep_last: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    timezone: str = "UTC",
) -> dict[int, list[str]]:
    """Indexes of ``finished`` (backup end times) the GFS policy keeps, each with the rules that keep it.

    The newest backup is always kept. For each period rule, backups are walked from newest to oldest
    and the first (newest) one of each new period is kept, until N periods are covered.
    """
    order = sorted(range(len(finished)), key=lambda i: finished[i], reverse=True)
    kept: dict[int, list[str]] = {}
    if not order:
        return kept
    kept.setdefault(order[0], []).append("newest")
    for index in order[:keep_last]:
        kept.setdefault(index, []).append("last")
    keys = _period_keys(timezone)
    for rule, count in (("daily", keep_daily), ("weekly", keep_weekly), ("monthly", keep_monthly)):
        seen: set[tuple[int, ...]] = set()
        for index in order:
            if len(seen) >= count:
                break
            period = keys[rule](finished[index])
            if period not in seen:
                seen.add(period)
                kept.setdefault(index, []).append(f"{rule} {'-'.join(str(p) for p in period)}")
    return kept


@dataclass(frozen=True)
class HeldBackup:
    """A backup the shrink guard holds, with what shrank (retention keeps it and does not count it)."""

    backup: StoredBackup
    shrink: ShrinkReport

    @property
    def name(self) -> str:
        return self.backup.name


def check_held(
    store: BackupStore, entries: list[StoredEntry], backups: list[StoredBackup], guard: ShrinkGuard, log: Any
) -> dict[str, HeldBackup]:
    """The shrink guard's view: backups that shrank and are not acknowledged (kept, never counted).
    The newest backup of a database held fails the task: nothing is deleted until a person looks."""
    reports = held_backups(backups, acknowledged_names(entries), guard)
    held = {
        b.name: HeldBackup(b, reports[b.name]) for b in backups if b.name in reports and reports[b.name].held
    }
    for backup in held.values():
        log.warning("Keeping held backup %s (not counted):\n%s", backup.name, backup.shrink.table())
    newest: dict[tuple[str, str | None, str | None], StoredBackup] = {}
    for candidate in sorted(backups, key=lambda b: b.finished_at):  # the newest of each database
        newest[(candidate.manifest.kind, candidate.manifest.database, candidate.manifest.mode)] = candidate
    newest_held = [b for b in newest.values() if b.name in held]
    if newest_held:
        metrics.emit_retention(store.location.scheme, kept=len(backups), deleted=0, held=len(held))
        metrics.emit_retention_refused(store.location.scheme, "newest_held")
        first = newest_held[0]
        report = held[first.name].shrink
        raise BackupShrank(
            ShrinkReport(
                backup_uri(store, first),
                report.baseline,
                report.shrank,
            ),
            what="counted by retention, and nothing is deleted",
        )
    return held


def check_newest(
    store: BackupStore,
    backups: Sequence[StoredBackup],
    now: datetime.datetime,
    *,
    max_newest_age: datetime.timedelta | None,
    verify_newest: bool,
) -> StoredBackup:
    """The newest complete backup, once it is young enough and (``verify_newest``) passes its check;
    otherwise the task fails and nothing is deleted: backups have stopped working."""
    newest = max(backups, key=lambda b: b.finished_at)
    age = now - newest.finished_at
    if max_newest_age is not None and age > max_newest_age:
        metrics.emit_retention_refused(store.location.scheme, "newest_too_old")
        raise AirflowFailException(
            f"the newest complete backup in {store.location.uri} ({newest.name}, finished "
            f"{newest.manifest.finished_at}) is {age} old, more than "
            f"max_newest_age={max_newest_age}; deleting nothing"
        )
    if verify_newest:
        problem = artifact_problem(newest)
        if problem is not None:
            metrics.emit_retention_refused(store.location.scheme, "newest_unverified")
            raise AirflowFailException(
                f"the newest backup in {store.location.uri} ({newest.name}) is not verified: {problem}; "
                "deleting nothing"
            )
    return newest


def check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidOptionError(f"{name} {value!r} must be a whole number >= 0")
    return value


def check_duration(name: str, value: Any, *, allow_none: bool) -> datetime.timedelta | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            value = datetime.timedelta(seconds=value)
        except (OverflowError, ValueError) as err:  # NaN, infinity, beyond timedelta's range
            raise InvalidOptionError(f"{name} {value!r} must be a finite duration") from err
    if not isinstance(value, datetime.timedelta) or value < datetime.timedelta(0):
        raise InvalidOptionError(f"{name} {value!r} must be a timedelta (or seconds) >= 0")
    return value


def lock_plan(
    store: BackupStore, backup: StoredBackup, now: datetime.datetime, *, bypass_governance: bool = False
) -> DeletionPlan:
    """Whether a backup the GFS policy drops can be deleted now, from the locks the store reports on its
    manifest and artifact objects (one HEAD each; nothing on a store without locks): never before the
    last object's date, unless ``bypass_governance`` and every lock in force can be lifted."""
    locks = [lock for entry in (backup.manifest_entry, backup.artifact_entry) if entry is not None
             for lock in object_locks(store, entry)]  # fmt: skip
    return plan_deletion(locks, now, bypass_governance=bypass_governance)


def artifact_location(store: BackupStore, backup: StoredBackup) -> Location:
    """Where a backup's artifact is, as the tasks that read it name it (a local one with its host)."""
    return portable_location(backup_uri(store, backup))


def newest_complete_backup(
    location: str,
    *,
    gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
    aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
    wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
    impersonation_chain: str | Sequence[str] | None = None,
) -> str | None:
    """URI of the newest backup in a folder or object-store prefix whose manifest and artifact are both there.

    What the restore drill restores; None when there is none.

    :param location: a local folder, ``gs://bucket/prefix``, ``s3://bucket/prefix`` or ``az://container/prefix``.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for gs:// locations.
    :param aws_conn_id: Airflow ``aws`` connection for s3:// locations.
    :param wasb_conn_id: Airflow ``wasb`` connection for az:// locations.
    :param impersonation_chain: service account(s) to impersonate for gs:// locations.
    """
    settings = StorageSettings(
        gcp_conn_id=gcp_conn_id,
        aws_conn_id=aws_conn_id,
        wasb_conn_id=wasb_conn_id,
        impersonation_chain=impersonation_chain,
    )
    store = open_store(location, settings=settings)
    backups, _incomplete, _protected = find_backups(store, store.entries())
    for backup in sorted(backups, key=lambda b: b.finished_at, reverse=True):
        if artifact_problem(backup) is None and backup.artifact_entry is not None:
            return store.location_of(backup.artifact_entry).uri
    return None
