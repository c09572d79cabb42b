"""End to end as a UI user: Airflow's api-server, scheduler, dag-processor and triggerer on 127.0.0.1;
a backup DAG triggered through the REST API with conf (the call the UI's trigger button makes)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.airflow_stack import AirflowStack
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.helpers import leftovers

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


@pytest.fixture
def stack(pg18: PgCluster, tmp_path: Path) -> Iterator[AirflowStack]:
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
            "PGBACKUP_BACKUP_DIR": str(tmp_path / "scheduled"),
        },
    )
    with stack:
        yield stack
    pg18.drop_database("rest shop")


def test_backup_triggered_through_the_rest_api_with_conf_succeeds(
    stack: AirflowStack, tmp_path: Path
) -> None:
    stack.wait_for_dag("pg_backup_local")
    out = tmp_path / "triggered"
    run_id = stack.trigger(
        "pg_backup_local",
        {"postgres_conn_id": "pg_rest", "database": "rest shop", "format": "tar", "output_dir": str(out)},
    )
    assert stack.wait_for_run("pg_backup_local", run_id) == "success"
    files = leftovers(out / "rest shop")
    assert len(files) == 2
    assert files[0].endswith(".tar")
    assert files[1] == files[0] + ".manifest.json"
    manifest = (out / "rest shop" / files[1]).read_text()
    assert '"rows": 500' in manifest
    assert PASSWORD not in manifest
    # The run's XCom, read back through the API, carries the manifest and no secret.
    xcom = stack.api(
        "GET", f"/api/v2/dags/pg_backup_local/dagRuns/{run_id}/taskInstances/dump/xcomEntries/return_value"
    )
    assert xcom["value"]["format"] == "tar"
    assert PASSWORD not in str(xcom)
