"""A local backup read on a machine that does not have it: the sensor, the upload and the drill say
"not on this worker" at once instead of waiting or calling it "not a finished backup".

The other worker is named in a ``file://<host>/<path>`` URI (the dump's XCom ``artifact_uri``); the
two-worker Celery test (tests/dags/test_celery_two_workers.py) shows the same on real separate disks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.pg_dump import xcom_result
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.storage import ArtifactNotOnThisWorker, parse_location, portable_uri
from airflow_provider_pgbackup.storage.local import this_host
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator
from airflow_provider_pgbackup.triggers.backup_artifact import PgBackupArtifactTrigger
from airflow_provider_pgbackup.verify import ArtifactMissing, verify_artifact
from tests.gcs_emulator import synthetic_backup

OTHER = "worker-elsewhere.example"
NOT_HERE = r"not on this worker \(.*\): the dump ran on another worker \(worker-elsewhere.example\)"


def _other(path: Path) -> str:
    return f"file://{OTHER}{path}"


def _sensor(path: str) -> PgBackupArtifactSensor:
    return PgBackupArtifactSensor(task_id="verify", path=path, verify_contents=False, timeout=3600)


def test_the_dump_xcom_names_the_worker_that_wrote_a_local_artifact(tmp_path: Path) -> None:
    artifact, manifest = synthetic_backup(tmp_path / "shop ü", "nightly.dump")
    result = xcom_result(manifest, str(artifact))
    assert result["artifact_path"] == str(artifact)
    assert result["artifact_uri"] == portable_uri(artifact)
    assert result["artifact_uri"].startswith(f"file://{this_host()}/")
    assert parse_location(result["artifact_uri"]) == parse_location(str(artifact)).__class__(
        "", this_host(), str(artifact)
    )
    assert xcom_result(Manifest.from_json(manifest.to_json()), "gs://b-1/x/nightly.dump")["artifact_uri"] == (
        "gs://b-1/x/nightly.dump"
    )


def test_sensor_fails_at_once_on_a_backup_another_worker_wrote(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotOnThisWorker, match=NOT_HERE) as caught:
        _sensor(_other(tmp_path / "shop" / "nightly.dump")).poke({})
    assert "use a gs:// staging location" in str(caught.value)
    assert "not a finished backup" not in str(caught.value)


def test_sensor_keeps_waiting_for_a_backup_this_worker_is_writing(tmp_path: Path) -> None:
    assert _sensor(f"file://{this_host()}{tmp_path}/nightly.dump").poke({}) is False
    assert _sensor(str(tmp_path / "nightly.dump")).poke({}) is False  # no host known: wait as before


def test_a_folder_every_worker_mounts_still_verifies_under_another_hostname(tmp_path: Path) -> None:
    artifact, _ = synthetic_backup(tmp_path, "nightly.dump")
    report = verify_artifact(_other(artifact), verify_contents=False)
    assert report.ok


def test_waiting_on_a_plain_local_path_says_what_missing_entirely_may_mean(tmp_path: Path) -> None:
    with pytest.raises(ArtifactMissing, match="if the dump ran on another worker without shared storage"):
        verify_artifact(tmp_path / "nightly.dump")


def test_upload_says_not_on_this_worker_instead_of_not_a_finished_backup(tmp_path: Path) -> None:
    missing = tmp_path / "shop" / "nightly.dump"
    cases = ((_other(missing), NOT_HERE), (str(missing), "If the dump ran on another worker"))
    for source, expected in cases:
        upload = PgBackupToGCSOperator(task_id="upload", source_path=source, bucket="b-1", prefix="p")
        with pytest.raises(ArtifactNotOnThisWorker, match=expected) as caught:
            upload.execute(context={})
        assert not isinstance(caught.value, AirflowFailException)  # retryable: a retry may land right
        assert "has no manifest" not in str(caught.value)


def test_restore_drill_says_not_on_this_worker(tmp_path: Path) -> None:
    drill = PgRestoreOperator(task_id="drill", artifact_path=_other(tmp_path / "nightly.dump"))
    with pytest.raises(ArtifactNotOnThisWorker, match=NOT_HERE):
        drill.execute(context={})


def test_trigger_reports_a_backup_on_another_worker_instead_of_polling_forever(tmp_path: Path) -> None:
    trigger = PgBackupArtifactTrigger(path=_other(tmp_path / "nightly.dump"), poll_interval=0.01)

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=10))
    assert event["status"] == "error"
    assert "not on this worker" in event["message"]


def test_a_file_uri_must_name_an_absolute_path() -> None:
    from airflow_provider_pgbackup.options import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="file://<host>/<absolute path>"):
        parse_location("file://host-only")
    assert parse_location("file:///var/b/x.dump").container == ""
