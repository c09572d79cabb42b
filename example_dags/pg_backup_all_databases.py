"""Back up every database of a PostgreSQL server: one dump -> verify -> publish -> verify chain per database.

The list of databases is read **at run time** (templates excluded) and the chain fans out with
dynamic task mapping over a task group, so a database created yesterday is backed up today. At most
``MAX_PARALLEL_DUMPS`` dumps of this DAG run at once (``max_active_tis_per_dag``), so the server is
never hit by more dumps than configured; put the dump tasks in an Airflow pool as well to share that
limit with other DAGs (``pool="postgres_backups"``).

Each chain is right on any executor (Local, Celery, Kubernetes): the dump streams into the bucket's
staging prefix, is verified there, published to ``gs://<bucket>/<prefix>/<database>/`` by a server-side
copy (manifest last), verified again, and the staged copy is then discarded. No task reads a local path
another task wrote. **staging = local** dumps to ``staging_dir`` and uploads from there instead: for a
single machine (LocalExecutor) or a folder every worker mounts; on workers without a shared disk the
tasks after the dump fail at once with "not on this worker".

Unpausing the DAG schedules its first run for the next midnight (UTC): no run on the defaults starts at once,
ahead of one you trigger from the form.
"""

from __future__ import annotations

import datetime
import os
import urllib.parse

from airflow.sdk import DAG, Param, task, task_group
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_promote import (
    PgBackupDiscardStagedOperator,
    PgBackupPromoteOperator,
)

BUCKET = os.environ.get("PGBACKUP_GCS_BUCKET", "my-postgres-backups")
STAGING = os.environ.get("PGBACKUP_STAGING", "gcs")
STAGING_DIR = os.environ.get("PGBACKUP_BACKUP_DIR", "/var/backups/postgres")
MAX_PARALLEL_DUMPS = 2
# This database's dump, verification and upload: the same map index of the mapped group.
DUMPED = "{{ ti.xcom_pull(task_ids='backup_database.dump', map_indexes=ti.map_index)['artifact_uri'] }}"
VERIFIED = "{{ ti.xcom_pull(task_ids='backup_database.verify_staged', map_indexes=ti.map_index)['sha256'] }}"
UPLOADED = "{{ ti.xcom_pull(task_ids='backup_database.upload', map_indexes=ti.map_index)['artifact_uri'] }}"

with DAG(
    dag_id="pg_backup_all_databases",
    description="Fan out over every database: dump to staging -> verify -> publish -> verify",
    # No start_date and no grace for the last cron time: unpausing waits for the next one.
    schedule=CronTriggerTimetable("@daily", timezone="UTC", run_immediately=datetime.timedelta(0)),
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
        "staging": Param(
            STAGING,
            type="string",
            enum=["gcs", "local"],
            title="Staging",
            description="gcs: dump into the bucket's staging prefix (any executor). local: dump to the "
            "local folder, then upload (one machine, or a folder every worker mounts)",
        ),
        "staging_prefix": Param("_staging", type="string", title="Staging prefix", minLength=1),
        "staging_dir": Param(STAGING_DIR, type="string", title="Local folder", description="staging = local"),
    },
) as dag:

    @task
    def plan_backups(params: dict | None = None, dag_run: object = None) -> list[dict[str, str]]:
        """One entry per database to back up: where its dump is staged and where it is published."""
        assert params is not None
        databases = PgDumpHook(params["postgres_conn_id"]).list_databases()
        stamp = dag_run.run_after.strftime("%Y%m%dT%H%M%SZ")  # type: ignore[attr-defined]
        bucket, prefix = params["bucket"], params["prefix"]
        if params["staging"] == "local":
            staging = params["staging_dir"]
        else:
            staging = f"gs://{bucket}/{params['staging_prefix']}/{prefix}"
        plans = []
        for database in databases:
            if database in params["exclude_databases"]:
                continue
            folder = urllib.parse.quote(database, safe="")  # a database name may hold '/' or spaces
            plans.append(
                {
                    "database": database,
                    "output_path": f"{staging}/{folder}/{stamp}.dump",
                    "destination": f"gs://{bucket}/{prefix}/{folder}",
                }
            )
        return plans

    @task_group
    def backup_database(database: str, output_path: str, destination: str) -> None:
        dump = PgDumpOperator(
            task_id="dump",
            postgres_conn_id="{{ params.postgres_conn_id }}",
            database=database,
            output_path=output_path,
            compression="{{ params.compression }}",
            gcp_conn_id="{{ params.gcp_conn_id }}",
            max_active_tis_per_dag=MAX_PARALLEL_DUMPS,
            execution_timeout=datetime.timedelta(hours=6),
        )
        # artifact_uri is gs://... or file://<worker>/<path>: on another worker a local one fails at once.
        verify_staged = PgBackupArtifactSensor(
            task_id="verify_staged",
            path=DUMPED,
            gcp_conn_id="{{ params.gcp_conn_id }}",
            mode="reschedule",
            poke_interval=30,
            timeout=3600,
        )
        upload = PgBackupPromoteOperator(
            task_id="upload",
            source=DUMPED,
            destination=destination,
            expected_sha256=VERIFIED,
            gcp_conn_id="{{ params.gcp_conn_id }}",
        )
        verify_uploaded = PgBackupArtifactSensor(
            task_id="verify_uploaded",
            path=UPLOADED,
            gcp_conn_id="{{ params.gcp_conn_id }}",
            mode="reschedule",
            poke_interval=30,
            timeout=3600,
        )
        discard_staging = PgBackupDiscardStagedOperator(
            task_id="discard_staging",
            staged=DUMPED,
            promoted=UPLOADED,
            gcp_conn_id="{{ params.gcp_conn_id }}",
        )
        dump >> verify_staged >> upload >> verify_uploaded >> discard_staging

    backup_database.expand_kwargs(plan_backups())
