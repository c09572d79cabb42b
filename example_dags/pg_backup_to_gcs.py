"""Daily backup of one PostgreSQL database to Google Cloud Storage, verified twice, with retention.

``dump -> verify (local) -> upload -> verify (in GCS) -> retention``. The artifact path flows from
task to task by XCom, never by recomputing a string.

Workers without a shared disk (Celery, Kubernetes) set **stream_to_gcs**: pg_dump's output then goes
straight into a resumable GCS upload (``dump_to_gcs -> verify (in GCS) -> retention``) and never
touches the worker's disk. Turning **upload** off keeps the local backup only.

Scheduled runs use the defaults below (override them per deployment with the environment variables
``PGBACKUP_GCS_BUCKET`` and ``PGBACKUP_BACKUP_DIR``); the trigger form asks for each of them.
"""

from __future__ import annotations

import datetime
import os

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator

# Deployment-wide defaults for scheduled runs (read from the environment, never from a connection).
BUCKET = os.environ.get("PGBACKUP_GCS_BUCKET", "my-postgres-backups")
STAGING_DIR = os.environ.get("PGBACKUP_BACKUP_DIR", "/var/backups/postgres")

# Every run has run_after; runs triggered without a logical date have no ts_nodash.
STAMP = "{{ dag_run.run_after.strftime('%Y%m%dT%H%M%SZ') }}"
DATABASE = "{{ params.database or 'default' }}"
EXTENSION = "{{ {'custom': 'dump', 'directory': 'dir', 'tar': 'tar', 'plain': 'sql'}[params.format] }}"
GCS_FOLDER = "gs://{{ params.bucket }}/{{ params.prefix }}/" + DATABASE

with DAG(
    dag_id="pg_backup_to_gcs",
    description="pg_dump -> verify -> upload to GCS -> verify in GCS -> retention",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["postgres", "backup", "gcs"],
    doc_md=__doc__,
    default_args={
        "retries": 2,
        "retry_delay": datetime.timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    params={
        "postgres_conn_id": Param(
            "postgres_default",
            type="string",
            title="PostgreSQL connection",
            description="Airflow connection id",
        ),
        "database": Param(
            None,
            type=["null", "string"],
            title="Database",
            description="Database to dump; empty = the connection's schema",
        ),
        "format": Param(
            "custom",
            type="string",
            enum=["custom", "directory", "tar", "plain"],
            title="Format",
            description="pg_dump archive format (directory cannot be streamed to GCS)",
        ),
        "compression": Param(
            "gzip:6",
            type="string",
            title="Compression",
            description="none, gzip[:1-9], lz4[:1-12], zstd[:1-22]; tar is never compressed",
        ),
        "upload": Param(
            True, type="boolean", title="Upload to GCS", description="Off: keep the local copy only"
        ),
        "stream_to_gcs": Param(
            False,
            type="boolean",
            title="Stream straight to GCS",
            description="For workers without a shared disk: dump into GCS without a local file",
        ),
        "gcp_conn_id": Param(
            "google_cloud_default", type="string", title="GCP connection", description="Airflow connection id"
        ),
        "bucket": Param(BUCKET, type="string", title="Bucket", minLength=3),
        "prefix": Param("postgres", type="string", title="Prefix", description="Folder inside the bucket"),
        "staging_dir": Param(
            STAGING_DIR, type="string", title="Local folder", description="Where the local dump is written"
        ),
    },
) as dag:

    @task.branch
    def choose_path(params: dict | None = None) -> str:
        """Local dump then upload, or a dump streamed straight into GCS."""
        assert params is not None
        return "dump_to_gcs" if params["stream_to_gcs"] else "dump"

    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.postgres_conn_id }}",
        database="{{ params.database or '' }}",
        output_path="{{ params.staging_dir }}/" + DATABASE + "/" + STAMP + "." + EXTENSION,
        format="{{ params.format }}",
        compression="{{ 'none' if params.format == 'tar' else params.compression }}",
        execution_timeout=datetime.timedelta(hours=6),
    )
    verify_local = PgBackupArtifactSensor(
        task_id="verify_local",
        path="{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}",
        mode="reschedule",
        poke_interval=30,
        timeout=datetime.timedelta(hours=1).total_seconds(),
    )

    @task.short_circuit
    def upload_enabled(params: dict | None = None) -> bool:
        """Skip the upload, the remote check and retention when upload is off."""
        assert params is not None
        return bool(params["upload"])

    upload = PgBackupToGCSOperator(
        task_id="upload",
        source_path="{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}",
        bucket="{{ params.bucket }}",
        prefix="{{ params.prefix }}/" + DATABASE,
        gcp_conn_id="{{ params.gcp_conn_id }}",
        execution_timeout=datetime.timedelta(hours=6),
    )
    verify_uploaded = PgBackupArtifactSensor(
        task_id="verify_uploaded",
        path="{{ ti.xcom_pull(task_ids='upload')['artifact_uri'] }}",
        gcp_conn_id="{{ params.gcp_conn_id }}",
        mode="reschedule",
        poke_interval=30,
        timeout=datetime.timedelta(hours=1).total_seconds(),
    )

    dump_to_gcs = PgDumpOperator(
        task_id="dump_to_gcs",
        postgres_conn_id="{{ params.postgres_conn_id }}",
        database="{{ params.database or '' }}",
        output_path=GCS_FOLDER + "/" + STAMP + "." + EXTENSION,
        format="{{ params.format }}",
        compression="{{ 'none' if params.format == 'tar' else params.compression }}",
        gcp_conn_id="{{ params.gcp_conn_id }}",
        execution_timeout=datetime.timedelta(hours=6),
    )
    verify_streamed = PgBackupArtifactSensor(
        task_id="verify_streamed",
        path="{{ ti.xcom_pull(task_ids='dump_to_gcs')['artifact_path'] }}",
        gcp_conn_id="{{ params.gcp_conn_id }}",
        mode="reschedule",
        poke_interval=30,
        timeout=datetime.timedelta(hours=1).total_seconds(),
    )

    retention = PgBackupRetentionOperator(
        task_id="retention",
        location=GCS_FOLDER,
        gcp_conn_id="{{ params.gcp_conn_id }}",
        keep_last=3,
        keep_daily=7,
        keep_weekly=4,
        keep_monthly=12,
        trigger_rule="none_failed_min_one_success",
    )

    branch = choose_path()
    branch >> [dump, dump_to_gcs]
    dump >> verify_local >> upload_enabled() >> upload >> verify_uploaded >> retention
    dump_to_gcs >> verify_streamed >> retention
