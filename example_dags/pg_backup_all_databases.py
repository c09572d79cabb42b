"""Back up every database of a PostgreSQL server: one dump -> verify -> upload chain per database.

The list of databases is read **at run time** (templates excluded) and the chain fans out with
dynamic task mapping over a task group, so a database created yesterday is backed up today. At most
``MAX_PARALLEL_DUMPS`` dumps of this DAG run at once (``max_active_tis_per_dag``), so the server is
never hit by more dumps than configured; put the dump tasks in an Airflow pool as well to share that
limit with other DAGs (``pool="postgres_backups"``).
"""

from __future__ import annotations

import datetime
import os
import urllib.parse

import pendulum
from airflow.sdk import DAG, Param, task, task_group

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator

BUCKET = os.environ.get("PGBACKUP_GCS_BUCKET", "my-postgres-backups")
STAGING_DIR = os.environ.get("PGBACKUP_BACKUP_DIR", "/var/backups/postgres")
MAX_PARALLEL_DUMPS = 2

with DAG(
    dag_id="pg_backup_all_databases",
    description="Fan out over every database of a server: dump -> verify -> upload",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["postgres", "backup", "gcs"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(minutes=5)},
    params={
        "postgres_conn_id": Param("postgres_default", type="string", title="PostgreSQL connection"),
        "exclude_databases": Param(
            ["postgres"],
            type="array",
            items={"type": "string"},
            title="Databases to skip",
            description="Templates are always skipped",
        ),
        "compression": Param("gzip:6", type="string", title="Compression", description="none, gzip[:1-9]..."),
        "gcp_conn_id": Param("google_cloud_default", type="string", title="GCP connection"),
        "bucket": Param(BUCKET, type="string", title="Bucket", minLength=3),
        "prefix": Param("postgres", type="string", title="Prefix"),
        "staging_dir": Param(STAGING_DIR, type="string", title="Local folder"),
    },
) as dag:

    @task
    def plan_backups(params: dict | None = None, dag_run: object = None) -> list[dict[str, str]]:
        """One entry per database to back up, with its local path and GCS prefix."""
        assert params is not None
        databases = PgDumpHook(params["postgres_conn_id"]).list_databases()
        stamp = dag_run.run_after.strftime("%Y%m%dT%H%M%SZ")  # type: ignore[attr-defined]
        plans = []
        for database in databases:
            if database in params["exclude_databases"]:
                continue
            folder = urllib.parse.quote(database, safe="")  # a database name may hold '/' or spaces
            plans.append(
                {
                    "database": database,
                    "output_path": f"{params['staging_dir']}/{folder}/{stamp}.dump",
                    "gcs_prefix": f"{params['prefix']}/{folder}",
                }
            )
        return plans

    @task_group
    def backup_database(database: str, output_path: str, gcs_prefix: str) -> None:
        dump = PgDumpOperator(
            task_id="dump",
            postgres_conn_id="{{ params.postgres_conn_id }}",
            database=database,
            output_path=output_path,
            compression="{{ params.compression }}",
            max_active_tis_per_dag=MAX_PARALLEL_DUMPS,
            execution_timeout=datetime.timedelta(hours=6),
        )
        verify = PgBackupArtifactSensor(
            task_id="verify", path=output_path, mode="reschedule", poke_interval=30, timeout=3600
        )
        upload = PgBackupToGCSOperator(
            task_id="upload",
            source_path=output_path,
            bucket="{{ params.bucket }}",
            prefix=gcs_prefix,
            gcp_conn_id="{{ params.gcp_conn_id }}",
        )
        dump >> verify >> upload

    backup_database.expand_kwargs(plan_backups())
