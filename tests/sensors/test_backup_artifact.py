"""PgBackupArtifactSensor and its trigger: wait while a backup is missing, fail fast when it is bad."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    TaskDeferred,
)

from airflow_provider_pgbackup.manifest import manifest_path_for
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.triggers.backup_artifact import PgBackupArtifactTrigger
from devtools.pgcluster import PgCluster
from tests.conftest import log_text
from tests.gcs_emulator import GCSEmulator, private_downloads, upload_local_backup


def publish_later(source: Path, destination: Path, delay: float) -> threading.Thread:
    """Copy a backup to ``destination`` after ``delay`` seconds, artifact first and manifest last, as the
    dump hook does."""

    def publish() -> None:
        time.sleep(delay)
        shutil.copy2(source, destination)
        shutil.copy2(manifest_path_for(source), manifest_path_for(destination))

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_keeps_poking_while_absent_and_succeeds_once_a_valid_backup_appears(
    pg: PgCluster, pg_backup, tmp_path: Path
) -> None:
    source = pg_backup("custom", "gzip:5")
    target = tmp_path / "landing" / source.name
    target.parent.mkdir()
    sensor = PgBackupArtifactSensor(task_id="wait", path=str(target), poke_interval=0.2, timeout=60)
    pokes: list[object] = []
    poke = sensor.poke

    def counted_poke(context: Any) -> Any:
        pokes.append(poke(context))
        return pokes[-1]

    sensor.poke = counted_poke  # type: ignore[method-assign]
    writer = publish_later(source, target, delay=1.0)
    started = time.monotonic()

    xcom = sensor.execute(context={})

    elapsed = time.monotonic() - started
    writer.join()
    assert elapsed >= 1.0
    assert len(pokes) >= 4
    assert all(result is False for result in pokes[:-1])
    assert xcom["ok"] is True
    assert xcom["artifact"] == str(target)
    assert [c["name"] for c in xcom["checks"]] == [
        "exists",
        "manifest",
        "size",
        "checksum",
        "contents",
        "tables",
    ]
    assert all(c["status"] == "ok" for c in xcom["checks"])
    assert xcom["toc_entry_counts"]["TABLE DATA"] == 7
    json.dumps(xcom)


def test_fails_fast_on_a_corrupt_backup_naming_the_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    flip_middle_byte(artifact)
    sensor = PgBackupArtifactSensor(task_id="wait", path=str(artifact), poke_interval=5, timeout=600)
    started = time.monotonic()
    with pytest.raises(AirflowFailException, match=r"is corrupt: check 'checksum' failed: sha256 is"):
        sensor.execute(context={})
    assert time.monotonic() - started < 5


def test_fails_fast_on_a_truncated_backup_naming_the_size_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("tar")
    artifact.write_bytes(artifact.read_bytes()[:1000])
    sensor = PgBackupArtifactSensor(task_id="wait", path=str(artifact), poke_interval=5, timeout=600)
    with pytest.raises(AirflowFailException, match=r"check 'size' failed: the artifact has 1000 bytes"):
        sensor.execute(context={})


def test_too_old_backup_fails_naming_the_age_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("plain")
    path = manifest_path_for(artifact)
    data = json.loads(path.read_text())
    data["finished_at"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(data))
    sensor = PgBackupArtifactSensor(
        task_id="wait", path=str(artifact), max_age=datetime.timedelta(days=1), poke_interval=1, timeout=60
    )
    with pytest.raises(AirflowFailException, match=r"check 'age' failed: backup finished at 2020-01-01"):
        sensor.execute(context={})


class _RescheduleTI:
    def get_first_reschedule_date(self, context: Any) -> None:
        return None


def test_reschedule_mode_frees_the_slot_while_the_backup_is_missing(tmp_path: Path) -> None:
    sensor = PgBackupArtifactSensor(
        task_id="wait", path=str(tmp_path / "x.dump"), mode="reschedule", poke_interval=60, timeout=600
    )
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(context={"ti": _RescheduleTI()})


def test_deferrable_sensor_on_a_local_path_waits_on_its_worker_instead_of_deferring(
    pg: PgCluster, pg_backup, tmp_path: Path, task_log: list
) -> None:
    """The triggerer may run on another machine: a local path is checked on the worker, and the log
    says why."""
    source = pg_backup("directory", "gzip:1")
    target = tmp_path / "landing" / source.name
    target.parent.mkdir()
    sensor = PgBackupArtifactSensor(
        task_id="wait", path=str(target), deferrable=True, poke_interval=0.1, timeout=60
    )

    def publish() -> None:
        time.sleep(0.5)
        shutil.copytree(source, target)
        # Published as the provider publishes a manifest: under a temporary name, then renamed, so the
        # sensor never reads a half-copied one (a plain copy made this test flaky).
        partial = manifest_path_for(target).with_name(".manifest.partial")
        shutil.copy2(manifest_path_for(source), partial)
        os.replace(partial, manifest_path_for(target))

    writer = threading.Thread(target=publish, daemon=True)
    writer.start()
    xcom = sensor.execute(context={})  # no TaskDeferred
    writer.join()
    assert xcom["ok"] is True
    assert xcom["format"] == "directory"
    assert "the triggerer may run on another machine" in log_text(task_log)


def test_deferrable_defaults_to_the_operators_default_deferrable_setting(tmp_path: Path) -> None:
    code = (
        "from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor as S; "
        "print(S(task_id='w', path='gs://pgbackup-x/a.dump').deferrable)"
    )
    for setting, expected in (("True", "True"), ("False", "False")):
        env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
        )
        assert out.stdout.strip().splitlines()[-1] == expected


def test_waiting_again_after_the_backup_vanished_keeps_the_first_start_for_the_timeout(
    gcs: GCSEmulator, gcs_bucket: str
) -> None:
    uri = f"gs://{gcs_bucket}/vanished/a.dump"  # the trigger saw it; it is gone by verification time
    sensor = PgBackupArtifactSensor(task_id="wait", path=uri, deferrable=True, poke_interval=1, timeout=60)
    now = datetime.datetime.now(datetime.timezone.utc)
    first_start = (now - datetime.timedelta(seconds=50)).isoformat()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete(context={}, event={"status": "present", "path": uri}, started_at=first_start)
    assert deferred.value.kwargs == {"started_at": first_start}  # carried on, never reset
    assert deferred.value.timeout is not None
    assert datetime.timedelta(seconds=5) < deferred.value.timeout <= datetime.timedelta(seconds=10)

    long_ago = (now - datetime.timedelta(seconds=61)).isoformat()
    with pytest.raises(AirflowSensorTimeout, match="timeout=60"):
        sensor.execute_complete(context={}, event={"status": "present", "path": uri}, started_at=long_ago)


def test_first_deferral_records_when_the_sensor_started(gcs: GCSEmulator, gcs_bucket: str) -> None:
    uri = f"gs://{gcs_bucket}/not-yet/a.dump"
    sensor = PgBackupArtifactSensor(task_id="wait", path=uri, deferrable=True, poke_interval=1, timeout=600)
    before = datetime.datetime.now(datetime.timezone.utc)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs is not None
    started = datetime.datetime.fromisoformat(deferred.value.kwargs["started_at"])
    assert before <= started <= datetime.datetime.now(datetime.timezone.utc)
    assert deferred.value.timeout is not None
    assert deferred.value.timeout <= datetime.timedelta(seconds=600)


def test_deferrable_sensor_fails_fast_on_a_corrupt_backup_without_deferring(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("directory", "gzip:1")
    (artifact / "extra.dat").write_bytes(b"x")
    sensor = PgBackupArtifactSensor(task_id="wait", path=str(artifact), deferrable=True, timeout=60)
    with pytest.raises(AirflowFailException, match="check 'size' failed: files the manifest does not list"):
        sensor.execute(context={})


def test_trigger_keeps_waiting_while_only_the_artifact_is_there(tmp_path: Path) -> None:
    artifact = tmp_path / "half.dump"
    artifact.write_bytes(b"x")  # no manifest yet: the dump is not finished

    async def wait_briefly() -> bool:
        trigger = PgBackupArtifactTrigger(path=str(artifact), poll_interval=0.05)
        try:
            await asyncio.wait_for(trigger.run().__anext__(), timeout=0.5)
        except asyncio.TimeoutError:
            return False
        return True

    assert asyncio.run(wait_briefly()) is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_size_bytes": 0}, "min_size_bytes 0 must be a whole number >= 1"),
        ({"max_age": -5}, "max_age -5 must be positive"),
        ({"max_age": "1 day"}, "max_age '1 day' must be a timedelta or a number of seconds"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PgBackupArtifactSensor(task_id="wait", path="/backups/x.dump", **kwargs)


def test_relative_path_fails_naming_it(tmp_path: Path) -> None:
    # A literal path fails when the DAG is parsed; a templated one when the task runs.
    with pytest.raises(InvalidOptionError, match=r"path 'backups/x\.dump' must be an absolute path"):
        PgBackupArtifactSensor(task_id="wait", path="backups/x.dump", timeout=5)
    sensor = PgBackupArtifactSensor(task_id="wait", path="{{ params.path }}", timeout=5)
    sensor.path = "backups/x.dump"  # as rendered
    with pytest.raises(AirflowFailException, match=r"path 'backups/x\.dump' must be an absolute path"):
        sensor.execute(context={})


# ------------------------------------------------------------------------------ backups in GCS (gs://)
ON_PG18 = pytest.mark.parametrize("pg", ["pg18"], indirect=True)  # one server is enough for GCS reads


@ON_PG18
@pytest.mark.parametrize(
    ("dump_format", "compression", "toc"),
    [
        ("custom", "gzip:5", True),
        ("tar", None, True),
        ("directory", "gzip:1", True),
        ("plain", "gzip:6", False),
    ],
)
def test_gs_backup_is_verified_in_gcs_with_a_report(
    pg: PgCluster, pg_backup, gcs: GCSEmulator, gcs_bucket: str, dump_format, compression, toc
) -> None:
    uri = upload_local_backup(gcs, gcs_bucket, pg_backup(dump_format, compression))
    downloads_before = private_downloads()

    xcom = PgBackupArtifactSensor(task_id="wait", path=uri, poke_interval=1, timeout=30).execute(context={})

    assert xcom["ok"] is True
    assert xcom["artifact"] == uri
    assert xcom["manifest"] == f"{uri}.manifest.json"
    assert xcom["format"] == dump_format
    statuses = {c["name"]: c["status"] for c in xcom["checks"]}
    assert statuses["exists"] == statuses["size"] == statuses["checksum"] == statuses["contents"] == "ok"
    if toc:
        assert statuses["tables"] == "ok"
        assert xcom["toc_entry_counts"]["TABLE DATA"] == 7
    else:
        assert xcom["sql_bytes"] > 0
    assert private_downloads() == downloads_before  # a directory artifact's download is gone
    json.dumps(xcom)


@ON_PG18
def test_gs_object_with_a_flipped_byte_fails_fast_naming_the_checksum_check(
    pg: PgCluster, pg_backup, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact = pg_backup("custom")
    uri = upload_local_backup(gcs, gcs_bucket, artifact)
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    gcs.client().bucket(gcs_bucket).blob(f"pg/{artifact.name}").upload_from_string(bytes(data))
    sensor = PgBackupArtifactSensor(task_id="wait", path=uri, poke_interval=5, timeout=600)
    started = time.monotonic()
    with pytest.raises(AirflowFailException, match=r"gs://.* is corrupt: check 'checksum' failed: sha256 is"):
        sensor.execute(context={})
    assert time.monotonic() - started < 5


@ON_PG18
def test_sensor_pokes_while_the_gs_manifest_is_missing_and_succeeds_once_it_is_there(
    pg: PgCluster, pg_backup, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact = pg_backup("custom", "gzip:5")
    bucket = gcs.client().bucket(gcs_bucket)
    bucket.blob(f"pg/{artifact.name}").upload_from_filename(str(artifact))  # the artifact, no manifest yet
    uri = f"gs://{gcs_bucket}/pg/{artifact.name}"
    sensor = PgBackupArtifactSensor(task_id="wait", path=uri, poke_interval=1, timeout=30)

    assert sensor.poke(context={}) is False
    assert sensor.poke(context={}) is False

    bucket.blob(f"pg/{artifact.name}.manifest.json").upload_from_filename(str(manifest_path_for(artifact)))
    result = sensor.poke(context={})
    assert isinstance(result, PokeReturnValue)
    assert result.xcom_value["ok"] is True


@ON_PG18
def test_deferrable_sensor_on_gs_waits_in_the_trigger_without_blocking_the_event_loop(
    pg: PgCluster, pg_backup, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact = pg_backup("tar")
    uri = f"gs://{gcs_bucket}/pg/{artifact.name}"
    sensor = PgBackupArtifactSensor(task_id="wait", path=uri, deferrable=True, poke_interval=0.1, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs == {
        "path": uri,
        "poll_interval": 0.1,
        "gcp_conn_id": "google_cloud_default",
        "aws_conn_id": "aws_default",
        "wasb_conn_id": "wasb_default",
        "impersonation_chain": None,
    }

    async def first_event_while_ticking() -> tuple[Any, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        # Published by a thread while the trigger polls: artifact first, manifest last.
        publisher = asyncio.create_task(
            asyncio.to_thread(lambda: (time.sleep(0.5), upload_local_backup(gcs, gcs_bucket, artifact)))
        )
        async for event in PgBackupArtifactTrigger(**kwargs).run():
            await publisher
            ticker.cancel()
            return event.payload, ticks
        raise AssertionError("the trigger ended without an event")

    payload, ticks = asyncio.run(asyncio.wait_for(first_event_while_ticking(), timeout=30))
    assert payload == {"status": "present", "path": uri}
    assert ticks >= 20  # the loop kept running while the trigger looked at GCS
    xcom = sensor.execute_complete(context={}, event=payload)
    assert xcom["ok"] is True
    assert xcom["format"] == "tar"


def test_trigger_error_looking_at_gcs_ends_with_an_error_event_the_sensor_raises(
    gcs: GCSEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection id that does not exist (and no emulator variable): the look fails, the trigger says so.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    trigger = PgBackupArtifactTrigger(
        path="gs://pgbackup-x/a.dump", poll_interval=0.05, gcp_conn_id="gcp_nope"
    )

    async def first() -> Any:
        async for event in trigger.run():
            return event.payload
        return None

    payload = asyncio.run(asyncio.wait_for(first(), timeout=10))
    assert payload["status"] == "error"
    assert "gcp_nope" in payload["message"]
    sensor = PgBackupArtifactSensor(task_id="wait", path="gs://pgbackup-x/a.dump", deferrable=True)
    with pytest.raises(AirflowException, match=r"backup trigger for gs://pgbackup-x/a\.dump failed") as err:
        sensor.execute_complete(context={}, event=payload)
    assert not isinstance(err.value, AirflowFailException)  # retryable


@ON_PG18
def test_sensor_reads_gcs_through_an_explicit_gcp_connection(
    pg: PgCluster, pg_backup, gcs: GCSEmulator, gcs_bucket: str, gcp_emulator_conn: str
) -> None:
    uri = upload_local_backup(gcs, gcs_bucket, pg_backup("plain", "gzip:6"))
    xcom = PgBackupArtifactSensor(
        task_id="wait", path=uri, gcp_conn_id=gcp_emulator_conn, poke_interval=1, timeout=30
    ).execute(context={})
    assert xcom["ok"] is True
    # An undefined connection id is a configuration error: it fails now, naming the id (no retry).
    with pytest.raises(AirflowFailException, match="gcp_undefined"):
        PgBackupArtifactSensor(task_id="wait", path=uri, gcp_conn_id="gcp_undefined", timeout=5).poke({})


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("gs://b/x.dump", "no valid bucket name"),
        ("gs://bucket/folder/", "must name an object"),
        ("ftp://bucket/x.dump", "uses the scheme ftp://, which is not supported"),
    ],
)
def test_bad_gs_path_fails_naming_it(path: str, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        PgBackupArtifactSensor(task_id="wait", path=path, timeout=5)
    sensor = PgBackupArtifactSensor(task_id="wait", path="{{ params.path }}", timeout=5)
    sensor.path = path  # as rendered
    with pytest.raises(AirflowFailException, match=message):
        sensor.execute(context={})


def test_gs_path_in_a_bucket_that_does_not_exist_fails_at_once_naming_the_bucket(gcs: GCSEmulator) -> None:
    sensor = PgBackupArtifactSensor(task_id="wait", path="gs://pgbackup-no-such-bucket/x.dump", timeout=600)
    with pytest.raises(
        AirflowFailException, match=r"bucket 'pgbackup-no-such-bucket' of gs://.* does not exist"
    ):
        sensor.execute(context={})
