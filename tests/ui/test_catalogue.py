"""What the Backups page makes of the asset events and verdicts: from a real run's events (what retention
deleted disappears), and the rules themselves on hand-made events (drops, copies, freshness, verdicts)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.lineage import CATALOGUE_GROUP
from airflow_provider_pgbackup.ui.catalogue import (
    Event,
    Origin,
    Verdict,
    build_catalogue,
    current_backups,
    mark_drops,
)
from devtools.pgcluster import PgCluster

NOW = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def recorded_events(run_ids: list[str]) -> list[Event]:
    """The catalogue group's asset events of these runs, as the page's app reads them."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetModel.group == CATALOGUE_GROUP, AssetEvent.source_run_id.in_(run_ids))
            .all()
        )
        return [
            Event(e.timestamp, dict(e.extra), Origin(e.source_dag_id, e.source_run_id, e.source_task_id))
            for e in rows
        ]


def test_a_backup_retention_deleted_disappears_from_the_catalogue(
    pg18: PgCluster, airflow_conn, airflow_db: str, tmp_path: Path
) -> None:
    from tests.dags.pgbackup_test_catalogue import dag

    database = "catalogue ü"
    pg18.drop_database(database)
    pg18.create_database(database)
    pg18.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 50) g", database)
    conn_id = airflow_conn(pg18, database)
    folder = tmp_path / "backups"
    conf = {"conn_id": conn_id, "folder": str(folder)}
    first, second = (dag.test(run_conf=conf) for _ in range(2))
    assert (first.state, second.state) == ("success", "success")

    events = recorded_events([first.run_id, second.run_id])
    verified = sorted((e for e in events if e.extra["event"] == "backup"), key=lambda e: e.timestamp)
    retentions = sorted((e for e in events if e.extra["event"] == "retention"), key=lambda e: e.timestamp)
    assert len(verified) == len(retentions) == 2
    older, newer = (e.extra["artifact_uri"] for e in verified)
    # The second retention deleted the first backup, named as the sensor named it (file://<host>/<path>).
    assert [d["artifact_uri"] for d in retentions[1].extra["deleted"]] == [older]
    assert retentions[1].extra["kept"] == [newer]
    assert len(list(folder.glob("*.manifest.json"))) == 1

    [backup] = current_backups(events)
    assert backup.uri == newer
    [group] = build_catalogue(
        events, [], [], now=datetime.datetime.now(datetime.timezone.utc), freshness_target=DAY
    )
    assert (group["connection"], group["database"]) == (conn_id, database)
    assert [b["artifact_uri"] for b in group["backups"]] == [newer]
    assert group["backups"][0]["verified"] is True
    assert group["backups"][0]["links"]["log"].endswith("/tasks/verify")
    pg18.drop_database(database)


def backup_event(
    uri: str,
    *,
    at: datetime.datetime,
    size: int = 1000,
    sha: str | None = None,
    verified: bool = True,
    **more: Any,
) -> Event:
    extra = {
        "event": "backup",
        "database": "shop",
        "postgres_conn_id": "pg",
        "format": "custom",
        "compression": "gzip:6",
        "size_bytes": size,
        "sha256": sha or uri,
        "encrypted": False,
        "finished_at": at.isoformat(),
        "duration_seconds": 1.5,
        "artifact_uri": uri,
        "verified": verified,
        "checks": ["size", "checksum"] if verified else [],
        **more,
    }
    return Event(at, extra, Origin("backups", f"run {uri}", "verify"))


def test_a_sudden_drop_is_marked_against_the_median_of_the_previous_backups() -> None:
    assert mark_drops([100, 110, 105, 40, 108]) == [None, None, None, 0.381, None]
    assert mark_drops([100]) == [None]
    events = [
        backup_event(f"gs://b/shop/{i}.dump", at=NOW - (4 - i) * DAY, size=s)
        for i, s in enumerate([9, 10, 3])
    ]
    [group] = build_catalogue(events, [], [], now=NOW, freshness_target=DAY)
    assert [b["size_drop"] for b in group["backups"]] == [0.316, None, None]  # newest first


def test_copies_of_the_same_bytes_show_once_as_the_newest_reported() -> None:
    staged = backup_event("gs://b/_staging/shop/1.dump", at=NOW - DAY, sha="same")
    published = backup_event("gs://b/shop/1.dump", at=NOW - DAY + datetime.timedelta(minutes=1), sha="same")
    assert [b.uri for b in current_backups([published, staged])] == ["gs://b/shop/1.dump"]


def test_freshness_is_the_newest_verified_backups_age_against_the_target() -> None:
    events = [
        backup_event("gs://b/shop/old.dump", at=NOW - 2 * DAY),
        backup_event("gs://b/shop/new.dump", at=NOW - datetime.timedelta(hours=1), verified=False),
    ]
    [group] = build_catalogue(events, [], [], now=NOW, freshness_target=DAY)
    assert group["freshness"]["newest_verified"] == (NOW - 2 * DAY).isoformat()
    assert group["freshness"]["age_seconds"] == 2 * 86400
    assert group["freshness"]["fresh"] is False


def test_a_retention_run_drops_what_its_folder_no_longer_holds() -> None:
    kept = backup_event("gs://b/shop/2.dump", at=NOW - DAY)
    gone = backup_event("gs://b/shop/1.dump", at=NOW - 2 * DAY)  # deleted by hand, or a lifecycle rule
    elsewhere = backup_event("gs://b/crm/1.dump", at=NOW - 2 * DAY)
    retention = Event(
        NOW - datetime.timedelta(hours=1),
        {
            "event": "retention",
            "location": "gs://b/shop",
            "kept": [kept.extra["artifact_uri"]],
            "deleted": [],
        },
        Origin("backups", "r", "retention"),
    )
    later = backup_event("gs://b/shop/3.dump", at=NOW)
    uris = {b.uri for b in current_backups([kept, gone, elsewhere, retention, later])}
    assert uris == {"gs://b/shop/2.dump", "gs://b/crm/1.dump", "gs://b/shop/3.dump"}


def test_the_newest_verdict_of_a_backup_shows_with_its_differences() -> None:
    event = backup_event("gs://b/shop/1.dump", at=NOW - DAY)
    older = Verdict(
        NOW - datetime.timedelta(hours=5),
        {"sha256": "gs://b/shop/1.dump", "verdict": "IDENTICAL"},
        Origin("drill", "r1", "restore"),
    )
    newer = Verdict(
        NOW - datetime.timedelta(hours=1),
        {
            "sha256": "gs://b/shop/1.dump",
            "verdict": "DIFFERENT",
            "restored_into": "drill_x",
            "dropped_after": True,
            "differences": [{"kind": "rows", "object": "shop.orders", "expected": "10", "found": "9"}],
            "differences_count": 1,
        },
        Origin("drill", "r2", "restore"),
    )
    [group] = build_catalogue([event], [older, newer], [], now=NOW, freshness_target=DAY)
    restore = group["backups"][0]["restore"]
    assert restore["verdict"] == "DIFFERENT"
    assert restore["differences"] == [
        {"kind": "rows", "object": "shop.orders", "expected": "10", "found": "9"}
    ]
    assert restore["links"]["log"] == "dags/drill/runs/r2/tasks/restore"


def test_an_event_cannot_put_a_script_link_on_the_page() -> None:
    event = backup_event("gs://b/shop/1.dump", at=NOW, object_url="javascript:alert(document.cookie)")
    [group] = build_catalogue([event], [], [], now=NOW, freshness_target=DAY)
    assert group["backups"][0]["object_url"] is None


def test_a_backup_the_shrink_guard_holds_shows_as_held_and_is_not_the_newest_verified() -> None:
    good = backup_event("gs://b/shop/1.dump", at=NOW - 2 * DAY)
    emptied = backup_event("gs://b/shop/2.dump", at=NOW - DAY, size=10)
    retention = Event(
        NOW - datetime.timedelta(hours=1),
        {
            "event": "retention",
            "location": "gs://b/shop",
            "kept": [good.extra["artifact_uri"], emptied.extra["artifact_uri"]],
            "held": [emptied.extra["artifact_uri"]],
            "deleted": [],
        },
        Origin("backups", "r", "retention"),
    )
    [group] = build_catalogue([good, emptied, retention], [], [], now=NOW, freshness_target=DAY)
    assert [(b["artifact_uri"], b["held"]) for b in group["backups"]] == [
        ("gs://b/shop/2.dump", True),
        ("gs://b/shop/1.dump", False),
    ]
    assert group["freshness"]["newest_verified"] == (NOW - 2 * DAY).isoformat()
