"""One Airflow stack for every test of tests/ui: started once, stopped after the last of them.

The stack is what ``make ui`` runs (api-server, scheduler, dag-processor, triggerer on 127.0.0.1, the
example DAGs, SimpleAuthManager) with three logins: ``admin``, ``viewer`` (may read everything, trigger
nothing) and ``nobody`` (signed in, allowed nothing). The GCS connection reaches only the components
that run tasks: the api-server, and so the Backups page, has no storage connection at all. No
``postgres_default`` is defined: a scheduled run on the defaults could only fail.
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

from devtools.airflow_stack import AirflowStack
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator

REPO = Path(__file__).resolve().parents[2]


@dataclass
class UiStack:
    """The running stack and the bucket its backups go to."""

    airflow: AirflowStack
    bucket: str

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240.0) -> dict:
        """The run once it finished; fails at once, naming the failed tasks, if it failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                if run["state"] == "failed":
                    tis = self.airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
                    failed = [t["task_id"] for t in tis["task_instances"] if t["state"] == "failed"]
                    pytest.fail(f"{dag_id} run {run_id} failed: {failed}")
                return dict(run)
            time.sleep(2)
        raise TimeoutError(f"{dag_id} run {run_id} not finished after {timeout} s")


@pytest.fixture(scope="package")
def ui_stack(pg18: PgCluster, gcs_emulator: GCSEmulator) -> Iterator[UiStack]:
    if not gcs_emulator.running:
        gcs_emulator.start()
    bucket = gcs_emulator.new_bucket()
    home = Path(tempfile.mkdtemp(prefix="pgbackup-ui-home-"))
    stack = AirflowStack(
        home=home,
        dags_folder=REPO / "example_dags",
        users={"viewer": "viewer", "nobody": ""},
        worker_env={
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                {"conn_type": "google_cloud_platform", "extra": {"emulator_host": gcs_emulator.endpoint}}
            ),
            "PGBACKUP_BACKUP_DIR": str(home / "staging"),
            "PGBACKUP_GCS_BUCKET": bucket,
        },
    )
    with stack:
        stack.wait_for_dag("pg_backup_to_gcs")
        stack.wait_for_dag("pg_restore_backup")
        yield UiStack(stack, bucket)
    shutil.rmtree(home, ignore_errors=True)
