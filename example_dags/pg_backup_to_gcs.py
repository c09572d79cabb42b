"""Daily backup of one PostgreSQL database to Google Cloud Storage, verified twice, with retention.

``dump -> verify_staged -> upload -> verify_uploaded -> discard_staging -> retention``, right on any
executor (Local, Celery, Kubernetes): no task reads a local path another task wrote.

1. **dump** streams pg_dump's output into a *staging* prefix of the bucket
   (``gs://<bucket>/<staging_prefix>/<prefix>/<database>/<run time>.<ext>``);
2. **verify_staged** verifies it there with every check (size, sha256, ``pg_restore --list``, tables);
3. **upload** publishes it: a server-side copy to ``gs://<bucket>/<prefix>/<database>/`` (no bytes
   through the worker), the artifact first and the manifest last. Nothing unverified is ever published;
4. **verify_uploaded** verifies the published copy; **discard_staging** then deletes the staged copy,
   only if the published one is identical (a failed run keeps its staged copy for inspection; a
   lifecycle rule on the staging prefix removes such leftovers); **retention** thins the final folder.

**staging = local** is the single-machine variant (LocalExecutor, or a folder every worker mounts): the
dump goes to ``staging_dir`` on the worker's disk and is uploaded from there. On workers that share no
disk it cannot work, and the tasks after the dump say so at once ("not on this worker"). The directory
format always stages locally (pg_dump writes a folder, which cannot be streamed); turning **upload**
off keeps the local backup only.

Folders are named after the database dumped: the **Database** field, or when it is left empty the
connection's own database (its *Database* / schema field, else its login, as libpq does), the name the
manifest records.

**verify_uploaded** emits an event of the asset ``pgbackup_published_backups`` carrying the backup
(database, format, size_bytes, sha256, artifact_uri, ``verified: true``...): a DAG scheduled on that
asset (a copy to another region, a restore drill) reads it from ``triggering_asset_events``.
**retention** emits one of ``pgbackup_retention``: what the folder still holds and what it deleted.
Both assets are in the group ``pgbackup``, whose events the "Backups" page of the Airflow UI lists.

Unpausing the DAG schedules its first run for the next midnight (UTC): no run on the defaults starts
at once, ahead of one you trigger from the form.

Scheduled runs use the defaults below (override them per deployment with the environment variables
``PGBACKUP_GCS_BUCKET``, ``PGBACKUP_STAGING`` and ``PGBACKUP_BACKUP_DIR``); the trigger form asks for
each of them.
"""

from __future__ import annotations

import datetime
import os

from airflow.sdk import DAG, Asset, Param, task
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
BUCKET = os.environ.get("PGBACKUP_GCS_BUCKET", "my-postgres-backups")
STAGING = os.environ.get("PGBACKUP_STAGING", "gcs")
STAGING_DIR = os.environ.get("PGBACKUP_BACKUP_DIR", "/var/backups/postgres")

# Every run has run_after; runs triggered without a logical date have no ts_nodash.
STAMP = "{{ dag_run.run_after.strftime('%Y%m%dT%H%M%SZ') }}"
#: The database dumped: the form's, else the connection's own (its schema, else its login, as libpq does).
DATABASE = (
    "{{ params.database or conn.get(params.postgres_conn_id).schema or "
    "conn.get(params.postgres_conn_id).login }}"
)
EXTENSION = "{{ {'custom': 'dump', 'directory': 'dir', 'tar': 'tar', 'plain': 'sql'}[params.format] }}"
GCS_FOLDER = "gs://{{ params.bucket }}/{{ params.prefix }}/" + DATABASE
# Where the dump lands first: the bucket's staging prefix, or (single machine) the local folder.
LOCAL_STAGING = "params.staging == 'local' or not params.upload or params.format == 'directory'"
STAGING_FOLDER = (
    "{% if " + LOCAL_STAGING + " %}{{ params.staging_dir }}"
    "{% else %}gs://{{ params.bucket }}/{{ params.staging_prefix }}/{{ params.prefix }}{% endif %}"
)
DUMPED = "{{ ti.xcom_pull(task_ids='dump')['artifact_uri'] }}"
UPLOADED = "{{ ti.xcom_pull(task_ids='upload')['artifact_uri'] }}"
#: Verified, published backups: the event of verify_uploaded carries the backup (see the module docstring).
PUBLISHED = Asset(name="pgbackup_published_backups", group=CATALOGUE_GROUP)
#: What retention left in the folder and what it deleted (the Backups page drops deleted backups).
RETENTION = Asset(name="pgbackup_retention", group=CATALOGUE_GROUP)
#: What the form offers; pg_dump accepts any level in these ranges (gzip 1-9, lz4 1-12, zstd 1-22).
COMPRESSIONS = {
    "gzip:6": "gzip, level 6 (pg_dump's default)",
    "gzip:1": "gzip, level 1 (fastest)",
    "gzip:9": "gzip, level 9 (smallest)",
    "lz4": "lz4 (fast; pg_dump 16+ built with lz4)",
    "zstd": "zstd, level 3 (pg_dump 16+ built with zstd)",
    "zstd:19": "zstd, level 19 (smallest, slow)",
    "none": "none",
}

with DAG(
    dag_id="pg_backup_to_gcs",
    description="pg_dump to a staging prefix -> verify -> publish (server-side copy) -> verify -> retention",
    # No start_date and no grace for the last midnight: unpausing waits for the next one.
    schedule=CronTriggerTimetable("@daily", timezone="UTC", run_immediately=datetime.timedelta(0)),
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
        "staging": Param(
            STAGING,
            type="string",
            enum=["gcs", "local"],
            title="Staging",
            description="gcs: dump into the bucket's staging prefix (any executor). local: dump to the "
            "local folder, then upload (one machine, or a folder every worker mounts)",
        ),
        "upload": Param(
            True, type="boolean", title="Upload to GCS", description="Off: keep a local copy only"
        ),
        "shrink_acknowledged": Param(
            False,
            type="boolean",
            title="Publish a backup that shrank",
            description="On: publish even when the backup is much smaller than the newest verified one "
            "(tables dropped or emptied on purpose); the shrink guard holds it otherwise",
        ),
        "gcp_conn_id": Param(
            "google_cloud_default", type="string", title="GCP connection", description="Airflow connection id"
        ),
        "bucket": Param(BUCKET, type="string", title="Bucket", minLength=3),
        "prefix": Param("postgres", type="string", title="Prefix", description="Folder inside the bucket"),
        "staging_prefix": Param(
            "_staging",
            type="string",
            title="Staging prefix",
            description="Folder inside the bucket where dumps wait for verification",
            minLength=1,
        ),
        "staging_dir": Param(
            STAGING_DIR,
            type="string",
            title="Local folder",
            description="Where a local dump is written (staging = local, directory format, upload off)",
        ),
    },
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.postgres_conn_id }}",
        database="{{ params.database or '' }}",
        output_path=STAGING_FOLDER + "/" + DATABASE + "/" + STAMP + "." + EXTENSION,
        format="{{ params.format }}",
        compression="{{ 'none' if params.format == 'tar' else params.compression }}",
        gcp_conn_id="{{ params.gcp_conn_id }}",
        execution_timeout=datetime.timedelta(hours=6),
    )
    # artifact_uri is gs://... or file://<worker>/<path>: on another worker a local one fails at once.
    verify_staged = PgBackupArtifactSensor(
        task_id="verify_staged",
        path=DUMPED,
        gcp_conn_id="{{ params.gcp_conn_id }}",
        mode="reschedule",
        poke_interval=30,
        timeout=datetime.timedelta(hours=1).total_seconds(),
    )

    @task.short_circuit
    def upload_enabled(params: dict | None = None) -> bool:
        """Skip the upload, the remote check and retention when upload is off."""
        assert params is not None
        return bool(params["upload"])

    upload = PgBackupPromoteOperator(
        task_id="upload",
        source=DUMPED,
        destination=GCS_FOLDER,
        expected_sha256="{{ ti.xcom_pull(task_ids='verify_staged')['sha256'] }}",
        shrink_acknowledged="{{ params.shrink_acknowledged }}",
        gcp_conn_id="{{ params.gcp_conn_id }}",
        execution_timeout=datetime.timedelta(hours=6),
    )
    verify_uploaded = PgBackupArtifactSensor(
        task_id="verify_uploaded",
        path=UPLOADED,
        outlets=[PUBLISHED],
        gcp_conn_id="{{ params.gcp_conn_id }}",
        mode="reschedule",
        poke_interval=30,
        timeout=datetime.timedelta(hours=1).total_seconds(),
    )
    discard_staging = PgBackupDiscardStagedOperator(
        task_id="discard_staging", staged=DUMPED, promoted=UPLOADED, gcp_conn_id="{{ params.gcp_conn_id }}"
    )
    retention = PgBackupRetentionOperator(
        task_id="retention",
        location=GCS_FOLDER,
        outlets=[RETENTION],
        gcp_conn_id="{{ params.gcp_conn_id }}",
        keep_last=3,
        keep_daily=7,
        keep_weekly=4,
        keep_monthly=12,
    )

    dump >> verify_staged >> upload_enabled() >> upload >> verify_uploaded >> discard_staging >> retention
