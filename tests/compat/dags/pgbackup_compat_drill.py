"""The DAG each Airflow of the matrix runs with dag.test(): pg_dump -> verify (sensor) -> restore drill."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

ARTIFACT = "{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}"

with DAG(
    "pgbackup_compat_drill",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"conn_id": Param("pg_compat", type="string"), "output_dir": Param("/tmp", type="string")},
    catchup=False,
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.conn_id }}",
        output_path="{{ params.output_dir }}/{{ dag_run.run_after.strftime('%Y%m%dT%H%M%S') }}.dump",
    )
    verify = PgBackupArtifactSensor(task_id="verify", path=ARTIFACT, poke_interval=5, timeout=300)
    drill = PgRestoreOperator(
        task_id="restore_drill", postgres_conn_id="{{ params.conn_id }}", artifact_path=ARTIFACT
    )
    dump >> verify >> drill
