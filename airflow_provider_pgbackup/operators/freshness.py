"""PgBackupFreshnessOperator: the dead-man switch. Fail when backups have silently stopped.

A backup job that stopped days ago raises no error of its own: nothing runs, so nothing fails. This
operator looks at what is actually stored. For every database with backups in the given locations it
finds the newest *verified* backup (a readable manifest, and the artifact present with the size(s)
and, on object stores, the sha256 metadata its manifest records; the same check retention applies
before deleting anything) and fails when that backup finished longer ago than ``max_age``.
A newer backup that is broken does not count: the newest *good* one decides. Nor does one the shrink
guard holds (:mod:`airflow_provider_pgbackup.shrink`: much smaller than the verified one before it, not
acknowledged): it is reported per database (``held`` in the XCom, the metric ``pgbackup.freshness.held``)
beside the age of the newest verified backup (``pgbackup.freshness.age``).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.options import InvalidOptionError, is_templated, parse_flag
from airflow_provider_pgbackup.shrink import ShrinkGuard
from airflow_provider_pgbackup.shrink.folder import held_backups
from airflow_provider_pgbackup.storage import (
    DEFAULT_GCP_CONN_ID,
    DEFAULT_RETRY_TIMEOUT,
    BackupStore,
    StorageSettings,
    StoreNotFound,
    object_locks,
    open_store,
    parse_location,
)
from airflow_provider_pgbackup.storage.folder import (
    StoredBackup,
    acknowledged_names,
    artifact_problem,
    backup_uri,
    find_backups,
)
from airflow_provider_pgbackup.storage.object_lock import ObjectLock, weakest


def backup_subject(backup: StoredBackup) -> str:
    """What a backup is of: its database, or ``pg_dumpall (<mode>)`` for a server-wide dump."""
    manifest = backup.manifest
    if manifest.database:
        return manifest.database
    return f"pg_dumpall ({manifest.mode or 'full'})"


def backup_lock_now(store: BackupStore, backup: StoredBackup, now: datetime.datetime) -> ObjectLock | None:
    """The lock in force now over a stored backup's manifest and artifact objects (the weakest)."""
    entries = [e for e in (backup.manifest_entry, backup.artifact_entry) if e is not None]
    locks = [lock for entry in entries for lock in object_locks(store, entry)]
    if len(locks) < sum(len(entry.objects) for entry in entries):
        return None  # a store without locks
    return weakest(locks, now)


def check_max_age(value: Any) -> datetime.timedelta:
    """``max_age`` as a positive timedelta (a timedelta, or seconds); raises naming the value."""
    age = value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        age = datetime.timedelta(seconds=value)
    if not isinstance(age, datetime.timedelta) or age <= datetime.timedelta(0):
        raise InvalidOptionError(f"max_age {value!r} must be a positive timedelta (or seconds)")
    return age


class PgBackupFreshnessOperator(BaseOperator):
    """Fail when the newest verified backup of a database in ``location`` is older than ``max_age``.

    Backups are grouped by their manifest's ``database`` (pg_dumpall backups as
    ``pg_dumpall (<mode>)``). The task fails, naming every stale or missing database with its newest
    verified backup and age, when:

    - a database's newest verified backup finished more than ``max_age`` ago;
    - a database has backups but none of them is verified (artifact missing or of the wrong size);
    - a database listed in ``databases`` has no backup at all;
    - a location holds no complete backup at all (give one location per database folder to check
      that each has backups).

    The failure is an :class:`~airflow.sdk.exceptions.AirflowFailException` (retrying does not make
    an old backup newer): wire ``on_failure_callback`` (a notifier) to it to be told. Returns (XCom)
    per database the newest verified backup, when it finished, its age in seconds and whether it is
    fresh.

    :param location: a local folder or ``gs://bucket/prefix`` holding backups and their manifests, or
        a list of them (e.g. one folder per database). Templated.
    :param max_age: the oldest acceptable newest backup: a timedelta or seconds. Give the schedule
        some slack: a daily backup that takes an hour is fine at 25 hours.
    :param databases: databases that must have a backup (catches a database whose backups never
        started); None checks only those found. Templated.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for ``gs://`` locations. Templated.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (needs the ``google``
        extra): one account, or a chain whose last one is impersonated. Templated.
    :param retry_timeout: seconds each object-store request is retried on transient errors.
    :param require_locked: also fail when a database's newest verified backup is not locked in the store
        now (S3 Object Lock / Azure immutability on its manifest and every artifact object: see
        ``lock_for`` on the dump and transfer operators); the XCom gives each one's ``lock``.
    :param shrink_guard: thresholds of the shrink guard (``shrink.ShrinkGuard``, a mapping of its settings,
        True: defaults, False: off); a held backup is not the newest verified one.
    """

    template_fields: Sequence[str] = ("location", "databases", "gcp_conn_id", "impersonation_chain")
    ui_color = "#fdebd0"

    def __init__(
        self,
        *,
        location: str | Sequence[str],
        max_age: datetime.timedelta | float,
        databases: Sequence[str] | None = None,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        require_locked: bool = False,
        shrink_guard: ShrinkGuard | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.require_locked = parse_flag("require_locked", require_locked)
        self.shrink_guard = ShrinkGuard.of(shrink_guard)
        self.location = location
        self.max_age = check_max_age(max_age)
        self.databases = databases
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.retry_timeout = retry_timeout
        if not is_templated(location):
            self._locations()

    def _locations(self) -> list[str]:
        values = [self.location] if isinstance(self.location, str) else list(self.location or ())
        if not values:
            raise InvalidOptionError("location must name at least one folder or gs:// prefix")
        return [parse_location(v, what="location", folder=True).uri for v in values]

    def _store(self, location: str) -> BackupStore:
        settings = StorageSettings(
            gcp_conn_id=self.gcp_conn_id or None,
            retry_timeout=self.retry_timeout,
            impersonation_chain=self.impersonation_chain or None,
        )
        return open_store(location, settings=settings)

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            locations = self._locations()
            expected = [str(d) for d in (self.databases or ())]
        except InvalidOptionError as err:
            raise AirflowFailException(str(err)) from err
        now = datetime.datetime.now(datetime.timezone.utc)
        by_subject: dict[str, list[tuple[BackupStore, StoredBackup]]] = {}
        empty: list[str] = []
        held: set[tuple[str, str]] = set()  # (location, name) of the backups the shrink guard holds
        for location in locations:
            try:
                store = self._store(location)
                entries = store.entries()
                backups, _incomplete, _protected = find_backups(store, entries, self.log)
            except (InvalidOptionError, StoreNotFound) as err:
                raise AirflowFailException(str(err)) from err
            for name, shrink in held_backups(backups, acknowledged_names(entries), self.shrink_guard).items():
                if shrink.held:
                    held.add((store.location.uri, name))
                    self.log.warning(
                        "%s/%s is held by the shrink guard:\n%s", store.location.uri, name, shrink.table()
                    )
            self.log.info("%s holds %d complete backups", store.location.uri, len(backups))
            if not backups:
                empty.append(store.location.uri)
            for backup in backups:
                by_subject.setdefault(backup_subject(backup), []).append((store, backup))
        report: dict[str, Any] = {}
        problems = [f"{uri}: holds no complete backup at all" for uri in empty]
        for subject in sorted(set(by_subject) | set(expected)):
            found = sorted(by_subject.get(subject, []), key=lambda item: item[1].finished_at, reverse=True)
            if not found:
                problems.append(f"{subject!r}: no backup at all in {', '.join(locations)}")
                report[subject] = {"newest": None, "finished_at": None, "age_seconds": None, "fresh": False}
                continue
            held_here = [(s, b) for s, b in found if (s.location.uri, b.name) in held]
            verified = [(s, b) for s, b in found if artifact_problem(b) is None and (s, b) not in held_here]
            if not verified:
                store, newest = found[0]
                where = store.location_of(newest.manifest_entry).uri
                why = artifact_problem(newest) or "it is held by the shrink guard (it shrank)"
                problems.append(f"{subject!r}: no verified backup; the newest, {where}, is not usable: {why}")
                report[subject] = {"newest": None, "finished_at": None, "age_seconds": None, "fresh": False}
                continue
            store, best = verified[0]
            uri = store.location_of(best.artifact_entry).uri if best.artifact_entry else best.name
            age = now - best.finished_at
            fresh = age <= self.max_age
            report[subject] = {
                "newest": uri,
                "finished_at": best.manifest.finished_at,
                "age_seconds": round(age.total_seconds(), 1),
                "fresh": fresh,
                "held": [backup_uri(s, b) for s, b in held_here],
            }
            if self.require_locked:
                lock = backup_lock_now(store, best, now)
                report[subject]["lock"] = lock.to_dict() if lock is not None else None
                if lock is None:
                    problems.append(
                        f"{subject!r}: the newest verified backup, {uri}, is not locked in the store "
                        "(require_locked): publish with lock_for on an s3:// bucket with Object Lock, "
                        "an az:// container with version-level immutability or a gs:// bucket with "
                        "object retention"
                    )
            metrics.emit_freshness(
                store.location.scheme, [(best.manifest, age.total_seconds(), len(held_here))]
            )
            skipped = len(found) - len(verified)
            self.log.info(
                "%s: newest verified backup %s finished %s (%s ago)%s",
                subject,
                uri,
                best.manifest.finished_at,
                _short(age),
                f"; {skipped} newer or other backups are not verified" if skipped else "",
            )
            if not fresh:
                problems.append(
                    f"{subject!r}: the newest verified backup, {uri}, finished {best.manifest.finished_at}, "
                    f"{_short(age)} ago (max_age {_short(self.max_age)})"
                )
        if problems:
            raise AirflowFailException(
                f"backups are stale or missing ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        self.log.info("All %d databases have a verified backup younger than %s", len(report), self.max_age)
        return report


def _short(delta: datetime.timedelta) -> str:
    """``2d 3h 4m`` (whole minutes): readable in a log line and an alert."""
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m")
    return " ".join(parts)
