"""Weekly restore drill: prove the newest backup in GCS restores, then throw the copy away.

Takes the newest *complete* backup (manifest present, artifact as the manifest describes it) under
``gs://<bucket>/<prefix>/<database>``, verifies it, restores it into a scratch database on the
restore server, compares every table's row count with the manifest (counted in the dump's own
snapshot), and drops the scratch database, whether the drill passed or not. Any failed step fails
the run loudly: a backup nobody restored is a hope, not a backup.
"""

from __future__ import annotations

import datetime
import os

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.operators.retention import newest_complete_backup

BUCKET = os.environ.get("PGBACKUP_GCS_BUCKET", "my-postgres-backups")

with DAG(
    dag_id="pg_restore_drill",
    description="Restore the newest backup from GCS into a scratch database and check its row counts",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["postgres", "backup", "restore-drill", "gcs"],
    doc_md=__doc__,
    default_args={"retries": 0},  # a drill that needs a retry is a finding, not noise
    params={
        "restore_conn_id": Param(
            "postgres_default",
            type="string",
            title="Restore server connection",
            description="Where the scratch database is created (better not production)",
        ),
        "database": Param("default", type="string", title="Database folder", description="Under the prefix"),
        "gcp_conn_id": Param("google_cloud_default", type="string", title="GCP connection"),
        "bucket": Param(BUCKET, type="string", title="Bucket", minLength=3),
        "prefix": Param("postgres", type="string", title="Prefix"),
    },
) as dag:

    @task
    def find_newest_backup(params: dict | None = None) -> str:
        """The newest complete backup's artifact URI; fails when there is none."""
        assert params is not None
        location = f"gs://{params['bucket']}/{params['prefix']}/{params['database']}"
        newest = newest_complete_backup(location, gcp_conn_id=params["gcp_conn_id"])
        if newest is None:
            raise AirflowFailException(f"no complete backup under {location}: nothing to drill")
        return newest

    restore = PgRestoreOperator(
        task_id="restore_drill",
        artifact_path="{{ ti.xcom_pull(task_ids='find_newest_backup') }}",
        postgres_conn_id="{{ params.restore_conn_id }}",
        database="drill_{{ dag_run.run_after.strftime('%Y%m%d_%H%M%S') }}",
        create_database=True,
        drop_after=True,
        gcp_conn_id="{{ params.gcp_conn_id }}",
        execution_timeout=datetime.timedelta(hours=6),
    )

    find_newest_backup() >> restore
