"""A DAG the tests run with dag.test(): dump -> verify (an event of the catalogue group) -> retention
keeping only the newest backup (an event saying what it kept and deleted), into a local folder."""

from __future__ import annotations

from airflow.sdk import DAG, Asset, Param

from airflow_provider_pgbackup.lineage import CATALOGUE_GROUP
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

with DAG(
    "pgbackup_test_catalogue",
    schedule=None,
    params={"conn_id": Param("pg_test", type="string"), "folder": Param("/tmp", type="string")},
    catchup=False,
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.conn_id }}",
        output_path="{{ params.folder }}/{{ dag_run.run_after.strftime('%Y%m%dT%H%M%S%f') }}.dump",
    )
    verify = PgBackupArtifactSensor(
        task_id="verify",
        path="{{ ti.xcom_pull(task_ids='dump')['artifact_uri'] }}",
        outlets=[Asset(name="pgbackup_test_catalogue_backups", group=CATALOGUE_GROUP)],
        timeout=300,
    )
    retention = PgBackupRetentionOperator(
        task_id="retention",
        location="{{ params.folder }}",
        keep_last=1,
        keep_daily=0,
        keep_weekly=0,
        keep_monthly=0,
        outlets=[Asset(name="pgbackup_test_catalogue_retention", group=CATALOGUE_GROUP)],
    )
    dump >> verify >> retention
