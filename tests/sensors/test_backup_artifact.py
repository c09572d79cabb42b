"""PgBackupArtifactSensor and its trigger: wait while a backup is missing, fail fast when it is bad."""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException, TaskDeferred

from airflow_provider_pgbackup.manifest import manifest_path_for
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.triggers.backup_artifact import PgBackupArtifactTrigger
from devtools.pgcluster import PgCluster


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


def test_deferrable_sensor_defers_to_the_trigger_and_verifies_on_completion(
    pg: PgCluster, pg_backup, tmp_path: Path
) -> None:
    source = pg_backup("directory", "gzip:1")
    target = tmp_path / "landing" / source.name
    target.parent.mkdir()
    sensor = PgBackupArtifactSensor(
        task_id="wait", path=str(target), deferrable=True, poke_interval=0.1, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, PgBackupArtifactTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_pgbackup.triggers.backup_artifact.PgBackupArtifactTrigger"
    assert kwargs == {"path": str(target), "poll_interval": 0.1}
    assert deferred.value.method_name == "execute_complete"

    def publish() -> None:
        time.sleep(0.5)
        shutil.copytree(source, target)
        shutil.copy2(manifest_path_for(source), manifest_path_for(target))

    writer = threading.Thread(target=publish, daemon=True)
    writer.start()

    async def first_event() -> Any:
        rebuilt = PgBackupArtifactTrigger(**kwargs)
        async for event in rebuilt.run():
            return event.payload
        return None

    payload = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    writer.join()
    assert payload == {"status": "present", "path": str(target)}
    xcom = sensor.execute_complete(context={}, event=payload)
    assert xcom["ok"] is True
    assert xcom["format"] == "directory"


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
    sensor = PgBackupArtifactSensor(task_id="wait", path="backups/x.dump", timeout=5)
    with pytest.raises(AirflowFailException, match=r"path 'backups/x\.dump' must be an absolute local path"):
        sensor.execute(context={})
