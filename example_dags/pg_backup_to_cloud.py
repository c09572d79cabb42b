"""Daily backup of one PostgreSQL database to any object store, verified twice, with retention.

``dump -> verify (local) -> upload -> verify (in the store) -> retention``. The **destination** is a
folder URI and decides the store: ``gs://bucket/prefix`` (Google Cloud Storage), ``s3://bucket/prefix``
(Amazon S3) or ``az://container/prefix`` (Azure Blob Storage, the account of the ``wasb`` connection).
The same DAG serves all three; each store's connection id is a field of the trigger form.

The dump and its upload share the worker's disk, so both run on the same machine (LocalExecutor); the
local copy is deleted once the upload is verified. The artifact URI flows from task to task by XCom.

Scheduled runs use the defaults below (override them per deployment with the environment variables
``PGBACKUP_DESTINATION`` and ``PGBACKUP_BACKUP_DIR``).
"""

from __future__ import annotations

import datetime
import os

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator

# Deployment-wide defaults for scheduled runs (read from the environment, never from a connection).
DESTINATION = os.environ.get("PGBACKUP_DESTINATION", "s3://my-postgres-backups/postgres")
STAGING_DIR = os.environ.get("PGBACKUP_BACKUP_DIR", "/var/backups/postgres")

STAMP = "{{ dag_run.run_after.strftime('%Y%m%dT%H%M%SZ') }}"
DATABASE = "{{ params.database or 'default' }}"
EXTENSION = "{{ {'custom': 'dump', 'directory': 'dir', 'tar': 'tar', 'plain': 'sql'}[params.format] }}"
FOLDER = "{{ params.destination.rstrip('/') }}/" + DATABASE
CONNECTIONS = {
    "gcp_conn_id": "{{ params.gcp_conn_id }}",
    "aws_conn_id": "{{ params.aws_conn_id }}",
    "wasb_conn_id": "{{ params.wasb_conn_id }}",
}

with DAG(
    dag_id="pg_backup_to_cloud",
    description="pg_dump -> verify -> upload to gs://, s3:// or az:// -> verify there -> retention",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["postgres", "backup", "gcs", "s3", "azure"],
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
            description="pg_dump archive format",
        ),
        "compression": Param(
            "gzip:6",
            type="string",
            title="Compression",
            description="none, gzip[:1-9], lz4[:1-12], zstd[:1-22]; tar is never compressed",
        ),
        "destination": Param(
            DESTINATION,
            type="string",
            pattern=r"^(gs|s3|az)://[a-z0-9][a-z0-9._-]+[a-z0-9](/.*)?$",
            title="Destination",
            description="Folder URI: gs://bucket/prefix, s3://bucket/prefix or az://container/prefix",
        ),
        "gcp_conn_id": Param("google_cloud_default", type="string", title="GCP connection (gs://)"),
        "aws_conn_id": Param("aws_default", type="string", title="AWS connection (s3://)"),
        "wasb_conn_id": Param("wasb_default", type="string", title="Azure Blob Storage connection (az://)"),
        "staging_dir": Param(
            STAGING_DIR, type="string", title="Local folder", description="Where the local dump is written"
        ),
    },
) as dag:
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
    upload = PgBackupUploadOperator(
        task_id="upload",
        source_path="{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}",
        destination=FOLDER,
        delete_local_copy=True,
        execution_timeout=datetime.timedelta(hours=6),
        **CONNECTIONS,
    )
    verify_uploaded = PgBackupArtifactSensor(
        task_id="verify_uploaded",
        path="{{ ti.xcom_pull(task_ids='upload')['artifact_uri'] }}",
        mode="reschedule",
        poke_interval=30,
        timeout=datetime.timedelta(hours=1).total_seconds(),
        **CONNECTIONS,
    )
    retention = PgBackupRetentionOperator(
        task_id="retention",
        location=FOLDER,
        keep_last=3,
        keep_daily=7,
        keep_weekly=4,
        keep_monthly=12,
        **CONNECTIONS,
    )

    dump >> verify_local >> upload >> verify_uploaded >> retention
