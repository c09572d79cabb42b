"""Roles and tablespaces of a PostgreSQL server, beside the per-database dumps.

``pg_dump`` leaves out what belongs to the whole server: roles, their memberships and settings, and
tablespaces. This DAG keeps them with ``pg_dumpall --globals-only``, streamed straight into GCS,
verified there, and pruned by retention.

**Managed services** (Cloud SQL, RDS, Azure) forbid reading ``pg_authid``: keep
``no_role_passwords`` on there (``--no-role-passwords``); roles then restore without passwords.

Unpausing the DAG schedules its first run for the next midnight (UTC): no run on the defaults starts at once,
ahead of one you trigger from the form.
"""

from __future__ import annotations

import datetime
import os

from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

BUCKET = os.environ.get("PGBACKUP_GCS_BUCKET", "my-postgres-backups")
STAMP = "{{ dag_run.run_after.strftime('%Y%m%dT%H%M%SZ') }}"
FOLDER = "gs://{{ params.bucket }}/{{ params.prefix }}/_globals"

with DAG(
    dag_id="pg_dumpall_globals",
    description="pg_dumpall --globals-only (roles, tablespaces) straight into GCS",
    # No start_date and no grace for the last cron time: unpausing waits for the next one.
    schedule=CronTriggerTimetable("@daily", timezone="UTC", run_immediately=datetime.timedelta(0)),
    catchup=False,
    max_active_runs=1,
    tags=["postgres", "backup", "gcs"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(minutes=5)},
    params={
        "postgres_conn_id": Param("postgres_default", type="string", title="PostgreSQL connection"),
        "mode": Param(
            "globals",
            type="string",
            enum=["globals", "roles"],
            title="What to dump",
            description="globals: roles and tablespaces; roles: roles only",
        ),
        "no_role_passwords": Param(
            True,
            type="boolean",
            title="Leave role passwords out",
            description="Needed on Cloud SQL, RDS and Azure, which forbid reading pg_authid",
        ),
        "gcp_conn_id": Param("google_cloud_default", type="string", title="GCP connection"),
        "bucket": Param(BUCKET, type="string", title="Bucket", minLength=3),
        "prefix": Param("postgres", type="string", title="Prefix"),
    },
) as dag:
    dump_globals = PgDumpAllOperator(
        task_id="dump_globals",
        postgres_conn_id="{{ params.postgres_conn_id }}",
        output_path=FOLDER + "/" + STAMP + ".sql.gz",
        mode="{{ params.mode }}",
        no_role_passwords="{{ params.no_role_passwords }}",
        compression="gzip",
        gcp_conn_id="{{ params.gcp_conn_id }}",
        execution_timeout=datetime.timedelta(minutes=30),
    )
    verify = PgBackupArtifactSensor(
        task_id="verify",
        path="{{ ti.xcom_pull(task_ids='dump_globals')['artifact_path'] }}",
        gcp_conn_id="{{ params.gcp_conn_id }}",
        mode="reschedule",
        poke_interval=30,
        timeout=1800,
    )
    retention = PgBackupRetentionOperator(
        task_id="retention", location=FOLDER, gcp_conn_id="{{ params.gcp_conn_id }}", keep_daily=14
    )
    dump_globals >> verify >> retention
