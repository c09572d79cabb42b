"""The Backups page's data: every backup the caller may see, per connection and database, from what
tasks reported to Airflow (no storage is read here, so the api-server needs no storage credentials).

Three inputs, all read from Airflow's metadata database by :mod:`~airflow_provider_pgbackup.ui.app`:

- the **asset events** of the assets in the group
  :data:`~airflow_provider_pgbackup.lineage.CATALOGUE_GROUP`, oldest first: a ``backup`` event (a dump,
  an upload, a verification, a restore) makes a backup known or adds to what is known about it; a
  ``retention`` event removes what it deleted and whatever its folder no longer holds (a retention run
  lists the folder with the credentials the api-server does not have), and marks the backups the shrink
  guard holds (``held``: shown as held, never the newest verified one);
- the **restore verdicts** (XCom :data:`~airflow_provider_pgbackup.lineage.RESTORE_XCOM_KEY`), pushed
  whether the restored copy was identical or not;
- the **restore runs** of the restore DAG, so a requested restore shows before it has a verdict.

Pure functions over plain rows: no Airflow import, tested without a server.
"""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: A backup is marked as a sudden drop when it is smaller than this share of the median of the
#: previous :data:`DROP_WINDOW` backups of its database (rows deleted, a table emptied, a wrong database).
DROP_RATIO = 0.5
DROP_WINDOW = 5
#: The event fields a page row shows (nothing else from an event's extra reaches the browser).
BACKUP_FIELDS = (
    "database",
    "kind",
    "mode",
    "format",
    "compression",
    "size_bytes",
    "sha256",
    "encrypted",
    "server_version",
    "finished_at",
    "duration_seconds",
    "artifact_uri",
    "postgres_conn_id",
    "server",
)
UNKNOWN_CONNECTION = "(not recorded)"


@dataclass(frozen=True)
class Origin:
    """The task instance that reported something: where its run and log are."""

    dag_id: str | None
    run_id: str | None
    task_id: str | None
    map_index: int | None = -1

    def links(self) -> dict[str, str]:
        """Paths of the run and of the task's log, relative to the Airflow UI's base."""
        if not (self.dag_id and self.run_id):
            return {}
        run = f"dags/{self.dag_id}/runs/{self.run_id}"
        links = {"run": run}
        if self.task_id:
            log = f"{run}/tasks/{self.task_id}"
            if self.map_index is not None and self.map_index >= 0:
                log += f"/mapped/{self.map_index}"
            links["log"] = log
        return links


@dataclass(frozen=True)
class Event:
    """One asset event of the catalogue group."""

    timestamp: datetime.datetime
    extra: Mapping[str, Any]
    origin: Origin
    asset: str = ""


@dataclass(frozen=True)
class Verdict:
    """One restore verdict (the XCom a restore pushes)."""

    timestamp: datetime.datetime
    value: Mapping[str, Any]
    origin: Origin


@dataclass(frozen=True)
class RestoreRun:
    """A run of the restore DAG, with what its conf asked (never the whole conf)."""

    run_id: str
    state: str
    artifact_uri: str | None
    target_database: str | None
    queued_at: datetime.datetime | None
    origin: Origin


@dataclass
class Backup:
    """What is known about one artifact, merged from every event that named it."""

    fields: dict[str, Any]
    first_seen: datetime.datetime
    last_seen: datetime.datetime
    verified: bool = False
    checks: list[str] = field(default_factory=list)
    reported_by: Origin | None = None  # the task whose event verified it (else the first one)
    object_url: str | None = None
    held: bool = False  # the shrink guard holds it (the last retention event of its folder says so)

    @property
    def uri(self) -> str:
        return str(self.fields["artifact_uri"])


def _is_backup_event(extra: Mapping[str, Any]) -> bool:
    event = extra.get("event")
    return (
        (event == "backup" or event is None) and bool(extra.get("artifact_uri")) and bool(extra.get("sha256"))
    )


def _web_url(value: Any) -> str | None:
    """Only http(s) links reach the page (an event's extra is data, not markup)."""
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return None


def _parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def _record(backups: dict[str, Backup], event: Event) -> None:
    extra = event.extra
    uri = str(extra["artifact_uri"])
    known = backups.get(uri)
    if known is None or known.fields.get("sha256") != extra.get("sha256"):
        known = backups[uri] = Backup(fields={}, first_seen=event.timestamp, last_seen=event.timestamp)
    known.fields.update({k: extra[k] for k in BACKUP_FIELDS if extra.get(k) is not None})
    known.last_seen = event.timestamp
    known.object_url = _web_url(extra.get("object_url")) or known.object_url
    if extra.get("verified") is True:
        first_verification = not known.verified
        known.verified = True
        for check in extra.get("checks") or ():
            if isinstance(check, str) and check not in known.checks:
                known.checks.append(check)
        if first_verification or known.reported_by is None:
            known.reported_by = event.origin
    elif known.reported_by is None:
        known.reported_by = event.origin


def _forget(backups: dict[str, Backup], retention: Mapping[str, Any]) -> None:
    """What a retention run deleted, and what its folder no longer holds, is gone."""
    for deleted in retention.get("deleted") or ():
        if isinstance(deleted, Mapping):
            backups.pop(str(deleted.get("artifact_uri")), None)
    location = retention.get("location")
    kept = {str(uri) for uri in retention.get("kept") or ()}
    if isinstance(location, str):
        for uri in [u for u in backups if _parent(u) == location.rstrip("/") and u not in kept]:
            del backups[uri]
        held = {str(uri) for uri in retention.get("held") or ()}
        for uri, backup in backups.items():
            if _parent(uri) == location.rstrip("/"):
                backup.held = uri in held


def current_backups(events: Iterable[Event]) -> list[Backup]:
    """The backups that exist after ``events`` (oldest first), one per sha256: of several copies of the
    same bytes (a staged and a published one) the most recently reported."""
    backups: dict[str, Backup] = {}
    for event in sorted(events, key=lambda e: e.timestamp):
        if event.extra.get("event") == "retention":
            _forget(backups, event.extra)
        elif _is_backup_event(event.extra):
            _record(backups, event)
    newest: dict[str, Backup] = {}
    for backup in backups.values():
        sha = str(backup.fields.get("sha256"))
        if sha not in newest or backup.last_seen > newest[sha].last_seen:
            newest[sha] = backup
    return list(newest.values())


def _subject(fields: Mapping[str, Any]) -> str:
    if fields.get("database"):
        return str(fields["database"])
    return f"pg_dumpall ({fields.get('mode') or 'full'})"


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _verdict_view(verdict: Verdict) -> dict[str, Any]:
    value = verdict.value
    differences = [
        {k: str(d.get(k, "")) for k in ("kind", "object", "expected", "found")}
        for d in value.get("differences") or ()
        if isinstance(d, Mapping)
    ]
    subset = value.get("subset") if isinstance(value.get("subset"), Mapping) else None
    return {
        "verdict": str(value.get("verdict", "")),
        "restored_into": value.get("restored_into"),
        "dropped_after": bool(value.get("dropped_after")),
        "finished_at": value.get("finished_at") or verdict.timestamp.isoformat(),
        "differences": differences,
        "differences_count": value.get("differences_count", len(differences)),
        "tables_compared": value.get("tables_compared"),
        "subset": {k: [str(n) for n in subset.get(k) or ()] for k in ("tables", "schemas")}
        if subset
        else None,
        "links": verdict.origin.links(),
    }


def latest_verdicts(verdicts: Iterable[Verdict]) -> dict[str, Verdict]:
    """The newest verdict per backup, by sha256 (the bytes restored, wherever they were read from)."""
    newest: dict[str, Verdict] = {}
    for verdict in verdicts:
        sha = verdict.value.get("sha256")
        if isinstance(sha, str) and (sha not in newest or verdict.timestamp > newest[sha].timestamp):
            newest[sha] = verdict
    return newest


def mark_drops(sizes: Sequence[int]) -> list[float | None]:
    """For each size (oldest first), its ratio to the median of the previous :data:`DROP_WINDOW` when
    below :data:`DROP_RATIO` (a sudden drop), else None."""
    marks: list[float | None] = []
    for index, size in enumerate(sizes):
        previous = sizes[max(0, index - DROP_WINDOW) : index]
        median = statistics.median(previous) if previous else 0
        marks.append(round(size / median, 3) if median and size < DROP_RATIO * median else None)
    return marks


def _backup_view(backup: Backup, verdict: Verdict | None, restores: Sequence[RestoreRun]) -> dict[str, Any]:
    view: dict[str, Any] = {k: backup.fields.get(k) for k in BACKUP_FIELDS}
    view.update(
        {
            "verified": backup.verified,
            "held": backup.held,
            "checks": list(backup.checks),
            "object_url": backup.object_url,
            "links": backup.reported_by.links() if backup.reported_by else {},
            "restore": _verdict_view(verdict) if verdict is not None else None,
            "restore_runs": [
                {
                    "run_id": r.run_id,
                    "state": r.state,
                    "target_database": r.target_database,
                    "links": r.origin.links(),
                }
                for r in restores
                if r.artifact_uri == backup.uri
                and (verdict is None or r.queued_at is None or r.queued_at > verdict.timestamp)
            ][:3],
            "restorable_in_part": backup.fields.get("format") in ("custom", "directory", "tar"),
        }
    )
    return view


def build_catalogue(
    events: Iterable[Event],
    verdicts: Iterable[Verdict],
    restores: Sequence[RestoreRun],
    *,
    now: datetime.datetime,
    freshness_target: datetime.timedelta,
) -> list[dict[str, Any]]:
    """Per connection and database (newest backup first inside each): the backups, the newest
    verified one's age against ``freshness_target``, and the chart's series (size, duration, drops)."""
    verdict_by_sha = latest_verdicts(verdicts)
    groups: dict[tuple[str, str], list[Backup]] = {}
    for backup in current_backups(events):
        key = (str(backup.fields.get("postgres_conn_id") or UNKNOWN_CONNECTION), _subject(backup.fields))
        groups.setdefault(key, []).append(backup)
    catalogue = []
    for (connection, database), backups in sorted(groups.items()):
        backups.sort(key=lambda b: str(b.fields.get("finished_at") or ""))
        drops = mark_drops([int(b.fields.get("size_bytes") or 0) for b in backups])
        views = []
        for backup, drop in zip(backups, drops, strict=True):
            view = _backup_view(backup, verdict_by_sha.get(str(backup.fields.get("sha256"))), restores)
            view["size_drop"] = drop
            views.append(view)
        views.reverse()  # newest first
        made_by = backups[-1].reported_by
        verified = [v for v in views if v["verified"] and not v["held"]]
        newest = _parse_time(verified[0]["finished_at"]) if verified else None
        age = (now - newest).total_seconds() if newest is not None else None
        catalogue.append(
            {
                "connection": connection,
                "database": database,
                "server": next((v["server"] for v in views if v.get("server")), None),
                "freshness": {
                    "newest_verified": verified[0]["finished_at"] if verified else None,
                    "age_seconds": round(age) if age is not None else None,
                    "target_seconds": round(freshness_target.total_seconds()),
                    "fresh": age is not None and age <= freshness_target.total_seconds(),
                },
                "backups": views,
                # The DAG run that reported the newest backup: what "Back up now" runs again.
                "backup_dag": {"dag_id": made_by.dag_id, "run_id": made_by.run_id} if made_by else None,
            }
        )
    return catalogue


def find_backup(
    catalogue: Sequence[Mapping[str, Any]], artifact_uri: str
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The group and the backup of ``artifact_uri`` in a catalogue (what a caller may see), or None."""
    for group in catalogue:
        for backup in group["backups"]:
            if backup["artifact_uri"] == artifact_uri:
                return group, backup
    return None
