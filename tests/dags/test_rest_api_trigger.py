"""End to end as a UI user: Airflow's api-server, scheduler, dag-processor and triggerer on 127.0.0.1;
a backup DAG triggered through the REST API with conf (the call the UI's trigger button makes)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.airflow_stack import AirflowStack
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.gcs_emulator import GCSEmulator

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


@pytest.fixture
def stack(pg18: PgCluster, gcs: GCSEmulator, gcs_bucket: str, tmp_path: Path) -> Iterator[AirflowStack]:
    pg18.drop_database("rest shop")
    pg18.create_database("rest shop")
    pg18.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 500) g", dbname="rest shop")
    home = Path(tempfile.mkdtemp(prefix="pgbackup-e2e-home-"))
    conn = pg18.airflow_conn_json("rest shop")
    stack = AirflowStack(
        home=home,
        dags_folder=EXAMPLE_DAGS,
        extra_env={
            "AIRFLOW_CONN_POSTGRES_DEFAULT": conn,
            "AIRFLOW_CONN_PG_REST": conn,
            # The GCS connection names the emulator; the stack's processes get no STORAGE_EMULATOR_HOST.
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                {"conn_type": "google_cloud_platform", "extra": {"emulator_host": gcs.endpoint}}
            ),
            "PGBACKUP_BACKUP_DIR": str(tmp_path / "scheduled"),
            "PGBACKUP_GCS_BUCKET": gcs_bucket,
        },
    )
    with stack:
        yield stack
    pg18.drop_database("rest shop")


def test_backup_triggered_through_the_rest_api_with_conf_lands_verified_in_gcs(
    stack: AirflowStack, gcs: GCSEmulator, gcs_bucket: str, tmp_path: Path
) -> None:
    stack.wait_for_dag("pg_backup_to_gcs")
    conf = {
        "postgres_conn_id": "pg_rest",
        "database": "rest shop",
        "format": "tar",
        "bucket": gcs_bucket,
        "prefix": "ui",
        "staging_dir": str(tmp_path / "triggered"),
    }
    run_id = stack.trigger("pg_backup_to_gcs", conf)
    assert stack.wait_for_run("pg_backup_to_gcs", run_id) == "success"
    bucket = gcs.client().bucket(gcs_bucket)
    triggered = sorted(b.name for b in bucket.list_blobs(prefix="ui/rest shop/"))
    assert len(triggered) == 2, triggered
    artifact, manifest_name = triggered
    assert artifact.endswith(".tar")
    assert manifest_name == artifact + ".manifest.json"
    manifest = bucket.blob(manifest_name).download_as_text()
    assert '"rows": 500' in manifest
    assert PASSWORD not in manifest
    # The run's XComs, read back through the API: the manifest and the remote verification report.
    api = f"/api/v2/dags/pg_backup_to_gcs/dagRuns/{run_id}/taskInstances"
    dumped = stack.api("GET", f"{api}/dump/xcomEntries/return_value")
    assert dumped["value"]["format"] == "tar"
    report = stack.api("GET", f"{api}/verify_uploaded/xcomEntries/return_value")["value"]
    assert report["ok"]
    assert [c["name"] for c in report["checks"]][-2:] == ["contents", "tables"]
    assert PASSWORD not in str(dumped) + str(report)
