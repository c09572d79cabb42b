"""PgBackupFreshnessOperator (the dead-man switch) on local folders and gs:// prefixes in the GCS emulator."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import Manifest, manifest_path_for
from airflow_provider_pgbackup.operators.freshness import PgBackupFreshnessOperator
from airflow_provider_pgbackup.options import InvalidOptionError, PgDumpOptions
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator, synthetic_backup, upload_local_backup

UTC = datetime.timezone.utc
HOURS = datetime.timedelta(hours=1)


def backup(folder: Path, database: str, age: datetime.timedelta, name: str | None = None) -> Path:
    """A small backup of ``database`` that finished ``age`` ago (artifact and manifest)."""
    finished = datetime.datetime.now(UTC) - age
    name = name or f"{database}-{finished:%Y%m%dT%H%M%S}.dump"
    artifact, manifest = synthetic_backup(folder, name, size=64, finished_at=finished)
    manifest_path_for(artifact).write_text(dataclasses.replace(manifest, database=database).to_json())
    return artifact


def test_fresh_local_folder_passes_and_reports_each_database(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    # One real pg_dump backup, just made, beside older synthetic ones.
    PgDumpHook(airflow_conn(pg18, "postgres")).dump(PgDumpOptions.build(), str(folder / "real.dump"))
    backup(folder, "shop", 30 * HOURS)
    backup(folder, "shop", 2 * HOURS)
    backup(folder, "crm", 5 * HOURS)
    report = PgBackupFreshnessOperator(
        task_id="fresh", location=str(folder), max_age=datetime.timedelta(hours=25)
    ).execute(context={})
    assert set(report) == {"postgres", "shop", "crm"}
    assert all(entry["fresh"] for entry in report.values())
    assert report["postgres"]["newest"] == str(folder / "real.dump")
    assert 2 * 3600 - 60 < report["shop"]["age_seconds"] < 2 * 3600 + 60  # the newest one decides


def test_stale_local_folder_fails_naming_the_database_and_its_age(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    backup(folder, "shop", 2 * HOURS)
    backup(folder, "crm", datetime.timedelta(days=3, hours=2))
    operator = PgBackupFreshnessOperator(task_id="fresh", location=str(folder), max_age=25 * 3600)
    with pytest.raises(AirflowFailException) as failed:
        operator.execute(context={})
    message = str(failed.value)
    assert "'crm'" in message
    assert "3d 2h" in message
    assert "max_age 1d 1h 0m" in message
    assert "'shop'" not in message


def test_a_newer_broken_backup_does_not_count_as_fresh(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    backup(folder, "shop", datetime.timedelta(days=4))
    broken = backup(folder, "shop", HOURS)
    broken.write_bytes(b"truncated")  # the manifest records 64 bytes
    with pytest.raises(AirflowFailException, match=r"'shop': the newest verified backup.*4d"):
        PgBackupFreshnessOperator(task_id="fresh", location=str(folder), max_age=86400).execute(context={})


def test_only_broken_backups_fail_naming_the_problem(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    broken = backup(folder, "shop", HOURS)
    broken.unlink()
    with pytest.raises(AirflowFailException, match=r"'shop': no verified backup.*is missing"):
        PgBackupFreshnessOperator(task_id="fresh", location=str(folder), max_age=86400).execute(context={})


def test_an_expected_database_without_any_backup_fails(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    backup(folder, "shop", HOURS)
    operator = PgBackupFreshnessOperator(
        task_id="fresh", location=str(folder), max_age=86400, databases=["shop", "billing"]
    )
    with pytest.raises(AirflowFailException, match="'billing': no backup at all"):
        operator.execute(context={})


def test_an_empty_location_fails(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(AirflowFailException, match="holds no complete backup at all"):
        PgBackupFreshnessOperator(task_id="fresh", location=str(tmp_path / "empty"), max_age=60).execute(
            context={}
        )


def test_gs_prefixes_fresh_pass_and_stale_fail(gcs: GCSEmulator, gcs_bucket: str, tmp_path: Path) -> None:
    upload_local_backup(gcs, gcs_bucket, backup(tmp_path / "shop", "shop", 3 * HOURS), prefix="pg/shop")
    upload_local_backup(gcs, gcs_bucket, backup(tmp_path / "crm", "crm", 3 * HOURS), prefix="pg/crm")
    locations = [f"gs://{gcs_bucket}/pg/shop", f"gs://{gcs_bucket}/pg/crm"]
    report = PgBackupFreshnessOperator(task_id="fresh", location=locations, max_age=6 * 3600).execute(
        context={}
    )
    assert {name: entry["fresh"] for name, entry in report.items()} == {"shop": True, "crm": True}
    assert report["crm"]["newest"].startswith(f"gs://{gcs_bucket}/pg/crm/crm-")

    stale = backup(tmp_path / "old", "billing", datetime.timedelta(days=2))
    upload_local_backup(gcs, gcs_bucket, stale, prefix="pg/billing")
    operator = PgBackupFreshnessOperator(
        task_id="fresh", location=[*locations, f"gs://{gcs_bucket}/pg/billing"], max_age=6 * 3600
    )
    with pytest.raises(AirflowFailException, match=rf"'billing'.*gs://{gcs_bucket}/pg/billing/.*2d 0h"):
        operator.execute(context={})


def test_missing_bucket_fails_at_once(gcs: GCSEmulator) -> None:
    operator = PgBackupFreshnessOperator(
        task_id="fresh", location="gs://pgbackup-no-such-bucket/pg", max_age=60
    )
    with pytest.raises(AirflowFailException, match="pgbackup-no-such-bucket"):
        operator.execute(context={})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"location": "relative/folder", "max_age": 60}, "relative/folder"),
        ({"location": "/b", "max_age": 0}, "max_age 0 must be a positive"),
        ({"location": "/b", "max_age": "1 day"}, "max_age '1 day'"),
        ({"location": [], "max_age": 60}, "at least one"),
        ({"location": "s3://b/p", "max_age": 60}, "s3://"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        PgBackupFreshnessOperator(task_id="fresh", **kwargs)


def test_manifest_round_trip_keeps_database(tmp_path: Path) -> None:
    artifact = backup(tmp_path, "shop", HOURS)
    assert Manifest.from_json(manifest_path_for(artifact).read_bytes()).database == "shop"
