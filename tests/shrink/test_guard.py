"""The shrink guard against real dumps of a real PostgreSQL: a database emptied between two runs is held (not
uploaded; retention keeps every older backup and fails), one that grew or shrank within the thresholds is
published, and an acknowledged shrink passes (the operator's argument, or the marker beside the artifact).
Local folders and the GCS emulator."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import Manifest, TableRowCount
from airflow_provider_pgbackup.operators.freshness import PgBackupFreshnessOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.options import InvalidOptionError, PgDumpOptions
from airflow_provider_pgbackup.shrink import ShrinkGuard, compare
from airflow_provider_pgbackup.transfers.backup_promote import PgBackupPromoteOperator
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator
from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator, upload_local_backup

DB = "shrink guard ü"
_counter = itertools.count()


@pytest.fixture
def shop(pg18: PgCluster, airflow_conn) -> tuple[PgCluster, str]:
    pg18.drop_database(DB)
    pg18.create_database(DB)
    pg18.execute(
        "CREATE TABLE orders AS SELECT g AS id, repeat('x', 50) AS note FROM generate_series(1, 5000) g", DB
    )
    pg18.execute("CREATE TABLE customers AS SELECT g AS id FROM generate_series(1, 800) g", DB)
    return pg18, airflow_conn(pg18, DB)


def _dump(pg: PgCluster, conn_id: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"shop-{next(_counter):03d}.dump"
    PgDumpHook(conn_id).dump(PgDumpOptions.build(format="custom"), str(out))
    return out


def _retention(location: str, **kwargs) -> PgBackupRetentionOperator:
    args = {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, **kwargs}
    return PgBackupRetentionOperator(task_id="retention", location=location, **args)


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_an_emptied_database_is_held_and_retention_keeps_every_older_backup(shop, tmp_path: Path) -> None:
    pg, conn_id = shop
    folder = tmp_path / "backups"
    first, second = _dump(pg, conn_id, folder), _dump(pg, conn_id, folder)
    pg.execute("TRUNCATE orders, customers", DB)
    emptied = _dump(pg, conn_id, folder)
    before = _names(folder)

    with pytest.raises(AirflowFailException, match="held") as caught:
        _retention(str(folder)).execute(context={})

    message = str(caught.value)
    for shown in (emptied.name, second.name, "public.orders", "5000", "all tables"):  # held, baseline, table
        assert shown in message
    assert _names(folder) == before  # nothing deleted
    assert {first.name, second.name} <= before

    # Acknowledged by the marker: it counts again, and keep_last=1 keeps it, the older ones go.
    (folder / f"{emptied.name}.shrink-acknowledged").write_text("dropped on purpose\n")
    result = _retention(str(folder)).execute(context={})
    assert [k["name"] for k in result["kept"]] == [emptied.name]
    assert result["held"] == []
    assert f"{emptied.name}.shrink-acknowledged" in _names(folder)  # the user's marker stays
    assert not {first.name, second.name} & _names(folder)


def test_a_held_backup_is_no_keeper_and_cannot_push_out_a_verified_one(shop, tmp_path: Path) -> None:
    pg, conn_id = shop
    folder = tmp_path / "backups"
    oldest, good = _dump(pg, conn_id, folder), _dump(pg, conn_id, folder)
    pg.execute("CREATE TABLE orders_saved AS TABLE orders", DB)
    pg.execute("TRUNCATE orders", DB)
    held = _dump(pg, conn_id, folder)
    pg.execute("INSERT INTO orders SELECT * FROM orders_saved", DB)  # the application is fixed
    pg.execute("DROP TABLE orders_saved", DB)
    newest = _dump(pg, conn_id, folder)

    result = _retention(str(folder), keep_last=2).execute(context={})

    # keep_last=2 counts the newest and the good one before the held one; the held one stays, uncounted.
    assert [k["name"] for k in result["kept"]] == [newest.name, good.name]
    assert [h["name"] for h in result["held"]] == [held.name]
    assert {r["reason"] for r in result["held"][0]["shrank"]} >= {"table_rows"}
    assert _names(folder) >= {newest.name, good.name, held.name}
    assert oldest.name not in _names(folder)


def test_a_database_that_grew_or_shrank_within_the_thresholds_is_published(shop, tmp_path: Path) -> None:
    pg, conn_id = shop
    folder = tmp_path / "backups"
    _dump(pg, conn_id, folder)
    pg.execute("DELETE FROM orders WHERE id % 5 = 0", DB)  # 20% of one table
    within = _dump(pg, conn_id, folder)
    pg.execute("INSERT INTO orders SELECT g, 'new' FROM generate_series(10001, 20000) g", DB)
    grew = _dump(pg, conn_id, folder)

    result = _retention(str(folder), keep_last=3).execute(context={})

    assert result["held"] == []
    assert {within.name, grew.name} <= {k["name"] for k in result["kept"]}


def test_a_shrunk_backup_is_not_uploaded_until_acknowledged(
    shop, tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    pg, conn_id = shop
    destination = f"gs://{gcs_bucket}/shop"

    def upload(artifact: Path, **kwargs) -> dict:
        return PgBackupUploadOperator(
            task_id="upload", source_path=str(artifact), destination=destination, **kwargs
        ).execute(context={})

    first = _dump(pg, conn_id, tmp_path / "a")
    upload(first)
    pg.execute("TRUNCATE orders", DB)
    emptied = _dump(pg, conn_id, tmp_path / "b")

    with pytest.raises(AirflowFailException, match=r"held, not published[\s\S]*public\.orders"):
        upload(emptied)
    names = {b.name for b in gcs.client().list_blobs(gcs_bucket)}
    assert names == {f"shop/{first.name}", f"shop/{first.name}.manifest.json"}  # nothing of it uploaded

    result = upload(emptied, shrink_acknowledged="True")  # as a rendered template passes it
    assert result["artifact_uri"] == f"{destination}/{emptied.name}"
    names = {b.name for b in gcs.client().list_blobs(gcs_bucket)}
    assert f"shop/{emptied.name}.shrink-acknowledged" in names  # retention sees the acknowledgement too

    kept = _retention(destination).execute(context={})
    assert [k["name"] for k in kept["kept"]] == [emptied.name]
    assert kept["held"] == []
    names = {b.name for b in gcs.client().list_blobs(gcs_bucket)}
    assert f"shop/{emptied.name}.shrink-acknowledged" in names  # a backup's marker is part of it


def test_the_guard_switched_off_uploads_a_shrunk_backup(
    shop, tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    pg, conn_id = shop
    destination = f"gs://{gcs_bucket}/shop"
    for step in ("full", "empty"):
        if step == "empty":
            pg.execute("TRUNCATE orders, customers", DB)
        artifact = _dump(pg, conn_id, tmp_path / step)
        PgBackupUploadOperator(
            task_id="upload", source_path=str(artifact), destination=destination, shrink_guard=False
        ).execute(context={})
    assert len([b for b in gcs.client().list_blobs(gcs_bucket) if b.name.endswith(".manifest.json")]) == 2


def test_a_shrunk_staged_backup_is_not_promoted_until_acknowledged(
    shop, tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    pg, conn_id = shop
    final = f"gs://{gcs_bucket}/final/shop"
    good = upload_local_backup(gcs, gcs_bucket, _dump(pg, conn_id, tmp_path / "a"), prefix="staging/shop")
    PgBackupPromoteOperator(task_id="promote", source=good, destination=final).execute(context={})
    pg.execute("DROP TABLE orders", DB)  # a dropped table: it vanished
    emptied = upload_local_backup(gcs, gcs_bucket, _dump(pg, conn_id, tmp_path / "b"), prefix="staging/shop")

    with pytest.raises(
        AirflowFailException, match=r"held, not published[\s\S]*public\.orders +5000 +0 .*vanished_table"
    ):
        PgBackupPromoteOperator(task_id="promote", source=emptied, destination=final).execute(context={})
    promoted = {b.name for b in gcs.client().list_blobs(gcs_bucket, prefix="final/")}
    assert len(promoted) == 2  # the first backup and its manifest only

    result = PgBackupPromoteOperator(
        task_id="promote", source=emptied, destination=final, shrink_acknowledged=True
    ).execute(context={})
    assert result["artifact_uri"].startswith(final)


def test_the_gcs_upload_operator_holds_a_shrunk_backup_too(
    shop, tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    pg, conn_id = shop

    def upload(artifact: Path) -> dict:
        return PgBackupToGCSOperator(
            task_id="upload", source_path=str(artifact), bucket=gcs_bucket, prefix="shop"
        ).execute(context={})

    upload(_dump(pg, conn_id, tmp_path / "a"))
    pg.execute("TRUNCATE orders, customers", DB)
    with pytest.raises(AirflowFailException, match="held, not published"):
        upload(_dump(pg, conn_id, tmp_path / "b"))


def test_the_freshness_watchdog_reports_a_held_backup_and_counts_the_older_verified_one(
    shop, tmp_path: Path
) -> None:
    pg, conn_id = shop
    folder = tmp_path / "backups"
    good = _dump(pg, conn_id, folder)
    pg.execute("TRUNCATE orders, customers", DB)
    held = _dump(pg, conn_id, folder)

    report = PgBackupFreshnessOperator(task_id="fresh", location=str(folder), max_age=3600).execute(
        context={}
    )

    assert report[DB]["newest"] == str(good)
    assert report[DB]["held"] == [str(held)]


def _manifest(rows: dict[str, int], size: int = 1000) -> Manifest:
    return Manifest(
        kind="pg_dump",
        artifact="x.dump",
        format="custom",
        compression="gzip:6",
        database="shop",
        server_version="18",
        server_version_num=180000,
        client_tool="pg_dump",
        client_version="18",
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01+00:00",
        duration_seconds=1.0,
        size_bytes=size,
        sha256="0" * 64,
        row_counts=tuple(TableRowCount("public", t, n) for t, n in rows.items()),
    )


def test_thresholds_decide_what_shrank() -> None:
    base = _manifest({"orders": 10_000, "tiny": 50})
    guard = ShrinkGuard()

    def reasons(candidate: Manifest, g: ShrinkGuard = guard) -> set[str]:
        return {s.reason for s in compare(candidate, base, g, artifact="b", baseline_name="a").shrank}

    assert reasons(_manifest({"orders": 6_000, "tiny": 50}, 700)) == set()
    assert reasons(_manifest({"orders": 6_000})) == set()  # a table below min_table_rows may vanish
    assert reasons(_manifest({"tiny": 50})) == {"vanished_table", "total_rows"}
    assert reasons(_manifest({"orders": 10_000, "tiny": 50}, 400)) == {"size"}
    assert reasons(_manifest({"orders": 6_000}), ShrinkGuard(max_total_row_drop=0.3)) == {"total_rows"}
    assert reasons(_manifest({}, 1), ShrinkGuard(enabled=False)) == set()
    acknowledged = compare(_manifest({}), base, guard, artifact="b", baseline_name="a", acknowledged=True)
    assert acknowledged.shrank
    assert (acknowledged.held, acknowledged.outcome) == (False, "acknowledged")


@pytest.mark.parametrize(
    ("value", "named"),
    [({"max_total_row_drop": 2}, "max_total_row_drop 2"), ({"nope": 1}, "nope"), ("yes", "'yes'")],
)
def test_bad_guard_settings_are_named(value, named: str) -> None:
    with pytest.raises(InvalidOptionError, match=named):
        ShrinkGuard.of(value)
