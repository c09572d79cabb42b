"""A DAG the tests run with dag.test(): dump -> verify -> upload to GCS -> verify remotely -> retention."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator

with DAG(
    "pgbackup_test_gcs",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={
        "conn_id": Param("pg_test", type="string"),
        "output_dir": Param("/tmp", type="string"),
        "bucket": Param("pgbackup-test", type="string"),
    },
    catchup=False,
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.conn_id }}",
        output_path="{{ params.output_dir }}/{{ ts_nodash }}.dump",
    )
    verify = PgBackupArtifactSensor(
        task_id="verify",
        path="{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}",
        poke_interval=1,
        timeout=60,
    )
    upload = PgBackupToGCSOperator(
        task_id="upload",
        source_path="{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}",
        bucket="{{ params.bucket }}",
        prefix="pg/{{ dag.dag_id }}",
        chunk_size=256 * 1024,
        delete_local_copy=True,
    )

    verify_remote = PgBackupArtifactSensor(
        task_id="verify_remote",
        path="{{ ti.xcom_pull(task_ids='upload')['artifact_uri'] }}",
        poke_interval=1,
        timeout=60,
    )
    retention = PgBackupRetentionOperator(
        task_id="retention",
        location="gs://{{ params.bucket }}/pg/{{ dag.dag_id }}",
        keep_last=1,
        keep_daily=0,
        keep_weekly=0,
        keep_monthly=0,
    )
    dump >> verify >> upload >> verify_remote >> retention
