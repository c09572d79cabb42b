"""A DAG the lineage test runs (in a process with OpenLineage enabled): every operator that reports
lineage or asset metadata, with outlets on the ones that declare none by default."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, Param

from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_promote import (
    PgBackupDiscardStagedOperator,
    PgBackupPromoteOperator,
)
from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator

DUMPED = Asset(name="pgbackup_test_dumped", uri="pgbackup-test://dumped")
VERIFIED = Asset(name="pgbackup_test_verified", uri="pgbackup-test://verified")
DRILLED = Asset(name="pgbackup_test_drilled", uri="pgbackup-test://drilled")
UPLOADED = Asset(name="pgbackup_test_uploaded", uri="pgbackup-test://uploaded")  # the bucket is templated

with DAG(
    "pgbackup_test_lineage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={
        "conn_id": Param("pg_test", type="string"),
        "database": Param("postgres", type="string"),
        "output_dir": Param("/tmp", type="string"),
        "bucket": Param("pgbackup-test", type="string"),
    },
    catchup=False,
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.conn_id }}",
        database="{{ params.database }}",
        output_path="{{ params.output_dir }}/{{ ts_nodash }}.dump",
        outlets=[DUMPED],
    )
    verify = PgBackupArtifactSensor(
        task_id="verify",
        path="{{ ti.xcom_pull(task_ids='dump')['artifact_uri'] }}",
        poke_interval=1,
        timeout=60,
        outlets=[VERIFIED],
    )
    upload = PgBackupUploadOperator(
        task_id="upload",
        source_path="{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}",
        destination="gs://{{ params.bucket }}/uploaded",
        chunk_size=256 * 1024,
        outlets=[UPLOADED],
    )
    drill = PgRestoreOperator(
        task_id="drill",
        postgres_conn_id="{{ params.conn_id }}",
        artifact_path="{{ ti.xcom_pull(task_ids='dump')['artifact_uri'] }}",
        outlets=[DRILLED],
    )
    streamed = PgDumpOperator(
        task_id="streamed",
        postgres_conn_id="{{ params.conn_id }}",
        database="{{ params.database }}",
        output_path="gs://{{ params.bucket }}/streamed/{{ ts_nodash }}.dump",
    )
    verify_streamed = PgBackupArtifactSensor(
        task_id="verify_streamed",
        path="{{ ti.xcom_pull(task_ids='streamed')['artifact_uri'] }}",
        poke_interval=1,
        timeout=60,
    )
    # As pg_backup_to_gcs: staged in the bucket, published, the staged copy deleted.
    staged = PgDumpOperator(
        task_id="staged",
        postgres_conn_id="{{ params.conn_id }}",
        database="{{ params.database }}",
        output_path="gs://{{ params.bucket }}/_staging/{{ ts_nodash }}.dump",
    )
    verify_staged = PgBackupArtifactSensor(
        task_id="verify_staged",
        path="{{ ti.xcom_pull(task_ids='staged')['artifact_uri'] }}",
        poke_interval=1,
        timeout=60,
    )
    promote = PgBackupPromoteOperator(
        task_id="promote",
        source="{{ ti.xcom_pull(task_ids='staged')['artifact_uri'] }}",
        destination="gs://{{ params.bucket }}/published",
    )
    discard = PgBackupDiscardStagedOperator(
        task_id="discard",
        staged="{{ ti.xcom_pull(task_ids='staged')['artifact_uri'] }}",
        promoted="{{ ti.xcom_pull(task_ids='promote')['artifact_uri'] }}",
    )
    dump >> verify >> [upload, drill]
    streamed >> verify_streamed
    staged >> verify_staged >> promote >> discard
