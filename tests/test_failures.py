"""Retry or fail now (SECURITY.md's table), one test per row, against real servers, tools and emulators.

Fail now (``AirflowFailException``): bad input, a corrupt artifact, a missing tool, bad credentials.
Retried (any other exception): the network, a server restart, a lock timeout. A kill or a missing
tool is never reported as "corrupt": only evidence about the bytes is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.manifest import Manifest, manifest_path_for, read_manifest
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.process import PgCommandError, PgLockTimeout, PgProcessRunner
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.storage import Location
from airflow_provider_pgbackup.storage.local import LocalArtifactSource
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator
from airflow_provider_pgbackup.verify import ArtifactCorrupt, verify_backup
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.gcs_emulator import GCSEmulator, synthetic_backup
from tests.helpers import database_with, leftovers, wait_for_child

ON_PG18 = pytest.mark.parametrize("pg", ["pg18"], indirect=True)


def written_by_pg_dump_99(artifact: Path) -> None:
    """Make the manifest name a pg_dump 99 (a version no pg_restore here can read)."""
    fields = read_manifest(manifest_path_for(artifact)).to_dict()
    fields.update(client_version="99.0")
    manifest_path_for(artifact).write_text(Manifest.from_dict(fields).to_json())


def test_bad_input_rendered_at_run_time_fails_now(tmp_path: Path) -> None:
    operator = PgDumpOperator(task_id="dump", output_path="{{ params.path }}")
    operator.output_path = "relative/x.dump"  # what the template rendered
    with pytest.raises(AirflowFailException, match="must be an absolute path"):
        operator.execute(context={})


@ON_PG18
def test_missing_pg_restore_fails_now_and_is_not_called_corrupt(
    pg: PgCluster, pg_backup, airflow_conn
) -> None:
    artifact = pg_backup("custom")
    written_by_pg_dump_99(artifact)
    sensor = PgBackupArtifactSensor(task_id="verify", path=str(artifact), timeout=5)
    with pytest.raises(AirflowFailException, match="cannot verify backup") as err:
        sensor.execute(context={})
    assert "pg_restore major version >= 99" in str(err.value)
    assert "corrupt" not in str(err.value)
    drill = PgRestoreOperator(
        task_id="drill", postgres_conn_id=airflow_conn(pg, "postgres"), artifact_path=str(artifact)
    )
    with pytest.raises(AirflowFailException, match="pg_restore major version >= 99") as err:
        drill.execute(context={})
    assert "corrupt" not in str(err.value)


@ON_PG18
def test_missing_decompressor_fails_the_drill_now_and_is_not_called_corrupt(
    pg: PgCluster, pg_backup, airflow_conn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("no zstd command to make the zstd artifact")
    plain = pg_backup("plain")
    artifact = tmp_path / "db.sql.zst"
    data = subprocess.run(["zstd", "-c"], input=plain.read_bytes(), capture_output=True, check=True).stdout
    artifact.write_bytes(data)
    fields = read_manifest(manifest_path_for(plain)).to_dict()
    import hashlib

    fields.update(
        artifact=artifact.name,
        compression="zstd:3",
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    manifest_path_for(artifact).write_text(Manifest.from_dict(fields).to_json())
    monkeypatch.setenv("PATH", "/nonexistent")  # no zstd command on this worker
    drill = PgRestoreOperator(
        task_id="drill", postgres_conn_id=airflow_conn(pg, "postgres"), artifact_path=str(artifact)
    )
    with pytest.raises(AirflowFailException, match="no zstd decompressor") as err:
        drill.execute(context={})
    assert "corrupt" not in str(err.value)


class SlowSource(LocalArtifactSource):
    """A real archive read slowly (as from a slow network), so a kill lands while pg_restore reads it."""

    def chunks(self) -> Iterator[bytes]:
        import time

        for chunk in super().chunks():
            for at in range(0, len(chunk), 256):
                time.sleep(0.01)
                yield chunk[at : at + 256]


@ON_PG18
def test_a_kill_during_verification_is_reported_as_a_kill_not_as_corrupt(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    runner = PgProcessRunner(__import__("logging").getLogger(__name__))
    errors: list[BaseException] = []

    def verify() -> None:
        try:
            verify_backup(SlowSource(Location("", "", str(artifact))), runner=runner)
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=verify)
    thread.start()
    _wait_for_any_child("pg_restore")
    runner.kill()
    thread.join(30)
    assert len(errors) == 1
    assert isinstance(errors[0], PgCommandError)
    assert errors[0].killed
    assert not isinstance(errors[0], ArtifactCorrupt)


def _wait_for_any_child(name: str, timeout: float = 30.0) -> None:
    import time

    from tests.helpers import _children

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(exe == name for _pid, exe, _cmd, _env in _children()):
            return
        time.sleep(0.01)
    raise TimeoutError(f"no {name} child appeared")


def test_bad_gcp_credentials_fail_now(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GCP_BROKEN",
        json.dumps(
            {"conn_type": "google_cloud_platform", "extra": {"key_path": str(tmp_path / "missing.json")}}
        ),
    )
    retention = PgBackupRetentionOperator(
        task_id="retention", location="gs://some-bucket/pg", gcp_conn_id="gcp_broken"
    )
    with pytest.raises(AirflowFailException, match=r"key_path .* is not a readable file"):
        retention.execute(context={})


def test_network_failure_is_retried(tmp_path: Path, gcs_persistent: GCSEmulator) -> None:
    bucket = gcs_persistent.new_bucket()
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=1024)
    gcs_persistent.stop()
    upload = PgBackupToGCSOperator(
        task_id="upload", source_path=str(artifact), bucket=bucket, retry_timeout=1
    )
    with pytest.raises(Exception) as err:  # noqa: PT011 - the point is which class it is NOT
        upload.execute(context={})
    assert not isinstance(err.value, AirflowFailException), err.value


def test_server_restart_mid_restore_is_retried_and_an_sql_error_is_not(airflow_conn, tmp_path: Path) -> None:
    from devtools.pgcluster import embedded_bin_dir, running_cluster

    bin_dir = embedded_bin_dir()
    assert bin_dir is not None
    with running_cluster(bin_dir, password=PASSWORD, name="pg-restart") as cluster:
        cluster.execute("CREATE SCHEMA app; CREATE TABLE app.t AS SELECT 1 AS x")
        artifact = tmp_path / "app.dump"
        PgDumpOperator(
            task_id="dump", postgres_conn_id=airflow_conn(cluster, "postgres"), output_path=str(artifact)
        ).execute(context={})
        cluster.create_database("target")
        # An uncommitted CREATE SCHEMA app in the target: pg_restore's own CREATE SCHEMA waits on it.
        blocker = psycopg.connect(**cluster.connect_kwargs("target"))
        blocker.execute("CREATE SCHEMA app")
        errors: list[BaseException] = []
        drill = PgRestoreOperator(
            task_id="drill",
            postgres_conn_id=airflow_conn(cluster, "postgres"),
            artifact_path=str(artifact),
            database="target",
            create_database=False,
            compare_content=False,
        )

        def run() -> None:
            try:
                drill.execute(context={})
            except BaseException as err:
                errors.append(err)

        worker = threading.Thread(target=run)
        worker.start()
        wait_for_child("pg_restore")
        with cluster.connect() as watcher:
            for _ in range(300):
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = 'target'"
                ).fetchone()
                if row and row[0]:
                    break
                __import__("time").sleep(0.05)
        cluster.stop("fast")
        worker.join(60)
        blocker.close()
        assert len(errors) == 1
        assert isinstance(errors[0], PgCommandError), errors[0]
        assert not isinstance(errors[0], AirflowFailException)
        cluster.start()
        # The same restore on a database that already has the schema: an SQL error, the same next time.
        cluster.execute("CREATE SCHEMA app", dbname="target")
        with pytest.raises(AirflowFailException, match="failed"):
            PgRestoreOperator(
                task_id="drill",
                postgres_conn_id=airflow_conn(cluster, "postgres"),
                artifact_path=str(artifact),
                database="target",
                create_database=False,
                allow_non_empty_database=True,
            ).execute(context={})


@pytest.mark.parametrize(
    ("sqlstate", "fails_now"),
    [
        ("42501", True),  # insufficient privilege: a row-level security policy, a revoked grant
        ("22021", True),  # a character that cannot be converted: the same data next time
        ("0A000", True),  # feature not supported
        ("42P01", False),  # a table dropped while the dump ran
        ("57014", False),  # cancelled (an administrator, a restart)
        ("40001", False),  # serialization failure
        ("08006", False),  # connection failure
        (None, False),  # not an SQL error
    ],
)
def test_a_measurement_error_is_retried_only_when_a_retry_can_change_it(
    sqlstate: str | None, fails_now: bool
) -> None:
    from airflow_provider_pgbackup.failures import failure_policy
    from airflow_provider_pgbackup.snapshot import SnapshotMeasurementError

    error = SnapshotMeasurementError(f"measuring the dump's snapshot failed ({sqlstate})", sqlstate)
    expected = AirflowFailException if fails_now else SnapshotMeasurementError
    with pytest.raises(expected) as raised, failure_policy():
        raise error
    assert str(raised.value) == str(error)
    assert (raised.value is error) is not fails_now


@pytest.mark.parametrize(("scheme", "argument"), [("s3", "aws_conn_id"), ("az", "wasb_conn_id")])
def test_unusable_s3_and_azure_credentials_fail_now_as_gcp_ones_do(
    monkeypatch: pytest.MonkeyPatch, scheme: str, argument: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_STORE_BROKEN", json.dumps({"conn_type": "postgres", "host": "db"}))
    retention = PgBackupRetentionOperator(
        task_id="retention", location=f"{scheme}://some-bucket/pg", **{argument: "store_broken"}
    )
    with pytest.raises(AirflowFailException, match=r"connection 'store_broken' has type 'postgres'"):
        retention.execute(context={})


# Azure (Azurite) refuses such names itself; its copy runs the S3 code (storage/objects/read.py).
@pytest.mark.parametrize("store", ["gs", "s3"], indirect=True)
def test_an_unsafe_object_name_fails_now_naming_the_name_and_the_rule(store) -> None:
    from airflow_provider_pgbackup.failures import failure_policy
    from airflow_provider_pgbackup.storage import open_source

    container = store.new_container()
    store.put(container, "pg/db.dir/toc.dat", b"a directory-format artifact")
    store.put(container, "pg/db.dir/../../escape.dat", b"an object named to land outside the copy")
    source = open_source(store.uri(container, "pg/db.dir"), settings=store.settings())
    with pytest.raises(AirflowFailException) as err, failure_policy(), source.local_copy():
        pass
    assert "object 'pg/db.dir/../../escape.dat'" in str(err.value)
    assert "'..'" in str(err.value)


def test_pg_dumpall_waiting_on_a_lock_is_a_retryable_lock_timeout_naming_the_setting_and_table(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    # Only the database whose table is locked is dumped ("zz..."), so the run is short.
    dumpall = PgDumpAllOperator(
        task_id="dumpall",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=str(tmp_path / "all.sql"),
        lock_wait_timeout="1s",
        extra_args=["--exclude-database=[^z]*", "--exclude-database=z[^z]*"],
    )
    database = "zz_dumpall_locked"
    with (
        database_with(pg18, database, "CREATE TABLE busy AS SELECT 1 AS x"),
        psycopg.connect(**pg18.connect_kwargs(database)) as locker,
    ):
        locker.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(
            PgLockTimeout, match=r"could not lock a table .*within lock_wait_timeout=1s"
        ) as err:
            dumpall.execute(context={})
    assert not isinstance(err.value, AirflowFailException)  # retried: the lock may be gone next time
    assert "LOCK TABLE public.busy" in str(err.value)
    assert f'database "{database}"' in str(err.value)
    assert leftovers(tmp_path) == []


# ------------------------------------------------ configuration errors: fail now, naming what is wrong
WRONG_PASSWORD = "Wr0ng-but-s3cret-pa55"
MISCONFIGURED = {
    # case: (what the message must say, the connection id it must name or None)
    "undefined connection id": ("pgbackup_no_such_conn", "pgbackup_no_such_conn"),
    "unknown database": ('database "no_such_db" does not exist', "pg_misconfigured"),
    "wrong password": ('password authentication failed for user "postgres"', "pg_misconfigured"),
}


def misconfigured_conn(cluster: PgCluster, case: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The id of a connection to ``cluster`` that is wrong as ``case`` says (an id never defined)."""
    if case == "undefined connection id":
        return "pgbackup_no_such_conn"
    conn = json.loads(cluster.airflow_conn_json("postgres"))
    if case == "unknown database":
        conn["schema"] = "no_such_db"
    else:
        conn["password"] = WRONG_PASSWORD
    monkeypatch.setenv("AIRFLOW_CONN_PG_MISCONFIGURED", json.dumps(conn))
    return "pg_misconfigured"


@ON_PG18
@pytest.mark.parametrize("task", ["dump", "dumpall", "drill"])
@pytest.mark.parametrize("case", list(MISCONFIGURED))
def test_a_misconfigured_connection_fails_now_naming_it_never_the_password(
    pg: PgCluster, pg_backup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, task: str, case: str
) -> None:
    conn_id = misconfigured_conn(pg, case, monkeypatch)
    operator: Any
    if task == "dump":
        operator = PgDumpOperator(
            task_id=task, postgres_conn_id=conn_id, output_path=str(tmp_path / "x.dump")
        )
    elif task == "dumpall":
        operator = PgDumpAllOperator(
            task_id=task, postgres_conn_id=conn_id, output_path=str(tmp_path / "a.sql")
        )
    else:
        operator = PgRestoreOperator(
            task_id=task, postgres_conn_id=conn_id, artifact_path=str(pg_backup("custom"))
        )
    said, named = MISCONFIGURED[case]
    with pytest.raises(AirflowFailException) as err:  # no retry: the same settings fail the same way
        operator.execute(context={})
    assert said in str(err.value)
    assert repr(named) in str(err.value) or f"`{named}`" in str(err.value)
    chain = [err.value, *iter_causes(err.value)]
    assert not any(WRONG_PASSWORD in str(e) for e in chain)
    if task != "drill":
        assert leftovers(tmp_path) == []


def iter_causes(err: BaseException) -> Iterator[BaseException]:
    seen = [err]
    while err.__cause__ is not None and not any(err.__cause__ is e for e in seen):
        err = err.__cause__
        seen.append(err)
        yield err


@ON_PG18
def test_the_sensor_with_an_undefined_decryption_connection_fails_now_naming_it(
    pg: PgCluster, pg_backup
) -> None:
    sensor = PgBackupArtifactSensor(
        task_id="verify", path=str(pg_backup("custom")), decryption_conn_id="pgbackup_no_such_conn", timeout=5
    )
    with pytest.raises(AirflowFailException, match="pgbackup_no_such_conn"):
        sensor.execute(context={})


@ON_PG18
def test_an_authentication_failure_of_pg_restore_fails_now_and_is_not_taken_for_a_lost_connection(
    pg: PgCluster, pg_backup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pg_restore itself is refused: libpq says "connection to server at ... failed: FATAL: password
    # authentication failed", which reads like a lost connection but is the same next time.
    from airflow_provider_pgbackup.failures import restore_failure
    from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook

    artifact = pg_backup("custom")
    hook = PgDumpHook(misconfigured_conn(pg, "wrong password", monkeypatch))
    with pytest.raises(PgCommandError, match="password authentication failed") as err:
        hook.restore(artifact, read_manifest(manifest_path_for(artifact)), "postgres")
    assert err.value.tool == "pg_restore"
    decided = restore_failure(err.value, "restoring into 'postgres'")
    assert isinstance(decided, AirflowFailException), decided
    assert "password authentication failed" in str(decided)
    assert WRONG_PASSWORD not in str(decided)
