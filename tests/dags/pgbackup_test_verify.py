"""A DAG the tests run with dag.test(): pg_dump -> wait for and verify the backup -> restore drill."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

ARTIFACT = "{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}"

with DAG(
    "pgbackup_test_verify",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={
        "conn_id": Param("pg_test", type="string"),
        "output_dir": Param("/tmp", type="string"),
        "drill_database": Param("pgbackup_drill", type="string"),
    },
    catchup=False,
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.conn_id }}",
        output_path="{{ params.output_dir }}/{{ dag.dag_id }}/{{ ts_nodash }}.dump",
    )
    verify = PgBackupArtifactSensor(
        task_id="verify", path=ARTIFACT, mode="reschedule", poke_interval=30, timeout=600
    )
    drill = PgRestoreOperator(
        task_id="restore_drill",
        postgres_conn_id="{{ params.conn_id }}",
        artifact_path=ARTIFACT,
        database="{{ params.drill_database }}",
        jobs=2,
    )
    dump >> verify >> drill
