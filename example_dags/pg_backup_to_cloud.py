"""Daily backup of one PostgreSQL database to any object store, verified twice, with retention.

``dump -> verify_staged -> upload -> verify_uploaded -> discard_staging -> retention``. The
**destination** is a folder URI and decides the store: ``gs://bucket/prefix`` (Google Cloud Storage),
``s3://bucket/prefix`` (Amazon S3) or ``az://container/prefix`` (Azure Blob Storage, the account of the
``wasb`` connection). The same DAG serves all three; each store's connection id is a field of the
trigger form. Right on any executor (Local, Celery, Kubernetes): no task reads a local path another
task wrote.

1. **dump** streams pg_dump's output into a *staging* prefix of the same bucket or container
   (``<store>://<bucket>/<staging_prefix>/<prefix>/<database>/<run time>.<ext>``);
2. **verify_staged** verifies it there with every check (size, sha256, ``pg_restore --list``, tables);
3. **upload** publishes it: a server-side copy into ``<destination>/<database>/`` (no bytes through the
   worker), the artifact first and the manifest last. Nothing unverified is ever published;
4. **verify_uploaded** verifies the published copy; **discard_staging** then deletes the staged copy,
   only if the published one is identical (a failed run keeps its staged copy for inspection);
   **retention** thins the final folder.

**staging = local** is the single-machine variant (LocalExecutor, or a folder every worker mounts): the
dump goes to ``staging_dir`` on the worker's disk and is uploaded from there. The directory format
always stages locally (pg_dump writes a folder, which cannot be streamed).

Folders are named after the database dumped: the **Database** field, or when it is left empty the
connection's own database (its *Database* / schema field, else its login, as libpq does).

Unpausing the DAG schedules its first run for the next midnight (UTC): no run on the defaults starts
at once, ahead of one you trigger from the form.

Scheduled runs use the defaults below (override them per deployment with the environment variables
``PGBACKUP_DESTINATION``, ``PGBACKUP_STAGING`` and ``PGBACKUP_BACKUP_DIR``).
"""

from __future__ import annotations

import datetime
import os

from airflow.sdk import DAG, Asset, Param
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_pgbackup.lineage import CATALOGUE_GROUP
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_promote import (
    PgBackupDiscardStagedOperator,
    PgBackupPromoteOperator,
)

# Deployment-wide defaults for scheduled runs (read from the environment, never from a connection).
DESTINATION = os.environ.get("PGBACKUP_DESTINATION", "s3://my-postgres-backups/postgres")
STAGING = os.environ.get("PGBACKUP_STAGING", "store")
STAGING_DIR = os.environ.get("PGBACKUP_BACKUP_DIR", "/var/backups/postgres")

STAMP = "{{ dag_run.run_after.strftime('%Y%m%dT%H%M%SZ') }}"
#: The database dumped: the form's, else the connection's own (its schema, else its login, as libpq does).
DATABASE = (
    "{{ params.database or conn.get(params.postgres_conn_id).schema or "
    "conn.get(params.postgres_conn_id).login }}"
)
EXTENSION = "{{ {'custom': 'dump', 'directory': 'dir', 'tar': 'tar', 'plain': 'sql'}[params.format] }}"
FOLDER = "{{ params.destination.rstrip('/') }}/" + DATABASE
# Where the dump lands first: the staging prefix of the destination's bucket (its path kept under it),
# or (single machine) the local folder.
LOCAL_STAGING = "params.staging == 'local' or params.format == 'directory'"
STAGING_FOLDER = (
    "{% if " + LOCAL_STAGING + " %}{{ params.staging_dir }}{% else %}"
    "{% set parts = params.destination.rstrip('/').split('/') %}"
    "{{ (parts[:3] + [params.staging_prefix] + parts[3:]) | join('/') }}{% endif %}"
)
DUMPED = "{{ ti.xcom_pull(task_ids='dump')['artifact_uri'] }}"
UPLOADED = "{{ ti.xcom_pull(task_ids='upload')['artifact_uri'] }}"
CONNECTIONS = {
    "gcp_conn_id": "{{ params.gcp_conn_id }}",
    "aws_conn_id": "{{ params.aws_conn_id }}",
    "wasb_conn_id": "{{ params.wasb_conn_id }}",
}
#: Verified, published backups and what retention kept: the Backups page lists them (as pg_backup_to_gcs's).
PUBLISHED = Asset(name="pgbackup_published_backups", group=CATALOGUE_GROUP)
RETENTION = Asset(name="pgbackup_retention", group=CATALOGUE_GROUP)
#: What the form offers; pg_dump accepts any level in these ranges (gzip 1-9, lz4 1-12, zstd 1-22).
COMPRESSIONS = {
    "gzip:6": "gzip, level 6 (pg_dump's default)",
    "gzip:1": "gzip, level 1 (fastest)",
    "gzip:9": "gzip, level 9 (smallest)",
    "lz4": "lz4 (fast; pg_dump 16+ built with lz4)",
    "zstd": "zstd, level 3 (pg_dump 16+ built with zstd)",
    "none": "none",
}

with DAG(
    dag_id="pg_backup_to_cloud",
    description="pg_dump to staging in gs://, s3:// or az:// -> verify -> publish -> verify -> retention",
    # No start_date and no grace for the last cron time: unpausing waits for the next one.
    schedule=CronTriggerTimetable("@daily", timezone="UTC", run_immediately=datetime.timedelta(0)),
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
            description="pg_dump archive format (directory always stages on the local disk)",
        ),
        "compression": Param(
            "gzip:6",
            type="string",
            enum=list(COMPRESSIONS),
            values_display=COMPRESSIONS,
            title="Compression",
            description="Of the dump (tar is never compressed)",
        ),
        "destination": Param(
            DESTINATION,
            type="string",
            pattern=r"^(gs|s3|az)://[a-z0-9][a-z0-9._-]+[a-z0-9](/.*)?$",
            title="Destination",
            description="Folder URI: gs://bucket/prefix, s3://bucket/prefix or az://container/prefix",
        ),
        "staging": Param(
            STAGING,
            type="string",
            enum=["store", "local"],
            title="Staging",
            description="store: dump into the destination's staging prefix (any executor). local: dump to "
            "the local folder, then upload (one machine, or a folder every worker mounts)",
        ),
        "staging_prefix": Param(
            "_staging",
            type="string",
            title="Staging prefix",
            description="Folder of the destination's bucket where dumps wait for verification",
            minLength=1,
        ),
        "staging_dir": Param(
            STAGING_DIR,
            type="string",
            title="Local folder",
            description="Where a local dump is written (staging = local, directory format)",
        ),
        "gcp_conn_id": Param("google_cloud_default", type="string", title="GCP connection (gs://)"),
        "aws_conn_id": Param("aws_default", type="string", title="AWS connection (s3://)"),
        "wasb_conn_id": Param("wasb_default", type="string", title="Azure Blob Storage connection (az://)"),
    },
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.postgres_conn_id }}",
        database="{{ params.database or '' }}",
        output_path=STAGING_FOLDER + "/" + DATABASE + "/" + STAMP + "." + EXTENSION,
        format="{{ params.format }}",
        compression="{{ 'none' if params.format == 'tar' else params.compression }}",
        execution_timeout=datetime.timedelta(hours=6),
        **CONNECTIONS,
    )
    # artifact_uri is <store>://... or file://<worker>/<path>: on another worker a local one fails at once.
    verify_staged = PgBackupArtifactSensor(
        task_id="verify_staged",
        path=DUMPED,
        mode="reschedule",
        poke_interval=30,
        timeout=datetime.timedelta(hours=1).total_seconds(),
        **CONNECTIONS,
    )
    upload = PgBackupPromoteOperator(
        task_id="upload",
        source=DUMPED,
        destination=FOLDER,
        expected_sha256="{{ ti.xcom_pull(task_ids='verify_staged')['sha256'] }}",
        execution_timeout=datetime.timedelta(hours=6),
        **CONNECTIONS,
    )
    verify_uploaded = PgBackupArtifactSensor(
        task_id="verify_uploaded",
        path=UPLOADED,
        outlets=[PUBLISHED],
        mode="reschedule",
        poke_interval=30,
        timeout=datetime.timedelta(hours=1).total_seconds(),
        **CONNECTIONS,
    )
    discard_staging = PgBackupDiscardStagedOperator(
        task_id="discard_staging", staged=DUMPED, promoted=UPLOADED, **CONNECTIONS
    )
    retention = PgBackupRetentionOperator(
        task_id="retention",
        location=FOLDER,
        outlets=[RETENTION],
        keep_last=3,
        keep_daily=7,
        keep_weekly=4,
        keep_monthly=12,
        **CONNECTIONS,
    )

    dump >> verify_staged >> upload >> verify_uploaded >> discard_staging >> retention
