"""Weekly restore drill: prove the newest backup in GCS restores, then throw the copy away.

Takes the newest *complete* backup (manifest present, artifact as the manifest describes it) under
``gs://<bucket>/<prefix>/<database>``, verifies it, restores it into a scratch database on the
restore server, compares every table's row count with the manifest (counted in the dump's own
snapshot), and drops the scratch database, whether the drill passed or not. Any failed step fails
the run loudly: a backup nobody restored is a hope, not a backup.

The folder is the one the backup DAGs write (``pg_backup_to_gcs``, ``pg_backup_all_databases``): named
after the database dumped. Leave **Database** empty for the database of the **Backed-up connection**
(its *Database* / schema field, else its login, as libpq does), the name those DAGs use then.

Unpausing the DAG schedules its first run for the next Sunday midnight (UTC): no run on the defaults
starts at once, ahead of one you trigger from the form.
"""

from __future__ import annotations

import datetime
import os

from airflow.sdk import DAG, Param, task
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_pgbackup.compat import AirflowFailException, BaseHook
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.operators.retention import newest_complete_backup

BUCKET = os.environ.get("PGBACKUP_GCS_BUCKET", "my-postgres-backups")

with DAG(
    dag_id="pg_restore_drill",
    description="Restore the newest backup from GCS into a scratch database and check its row counts",
    # No start_date and no grace for the last cron time: unpausing waits for the next one.
    schedule=CronTriggerTimetable("@weekly", timezone="UTC", run_immediately=datetime.timedelta(0)),
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
        "postgres_conn_id": Param(
            "postgres_default",
            type="string",
            title="Backed-up connection",
            description="Where the backups were taken from (names the folder when Database is empty)",
        ),
        "database": Param(
            None,
            type=["null", "string"],
            title="Database",
            description="The database whose backups to drill (its folder under the prefix); empty = the "
            "backed-up connection's",
        ),
        "gcp_conn_id": Param("google_cloud_default", type="string", title="GCP connection"),
        "bucket": Param(BUCKET, type="string", title="Bucket", minLength=3),
        "prefix": Param("postgres", type="string", title="Prefix"),
    },
) as dag:

    @task
    def find_newest_backup(params: dict | None = None) -> str:
        """The newest complete backup's artifact URI; fails when there is none."""
        assert params is not None
        database = params["database"]
        if not database:  # as the backup DAGs name the folder: the connection's database, else its login
            conn = BaseHook.get_connection(params["postgres_conn_id"])
            database = conn.schema or conn.login
        location = f"gs://{params['bucket']}/{params['prefix']}/{database}"
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
