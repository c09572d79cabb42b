"""A DAG the tests run with dag.test(): pg_dump of a database, then pg_dumpall of the globals."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator

with DAG(
    "pgbackup_test_dump",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"conn_id": Param("pg_test", type="string"), "output_dir": Param("/tmp", type="string")},
    catchup=False,
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.conn_id }}",
        output_path="{{ params.output_dir }}/{{ dag.dag_id }}/{{ ts_nodash }}.dump",
    )
    dump_globals = PgDumpAllOperator(
        task_id="globals",
        postgres_conn_id="{{ params.conn_id }}",
        output_path="{{ params.output_dir }}/{{ dag.dag_id }}/{{ ts_nodash }}-globals.sql",
        mode="globals",
    )
    dump >> dump_globals
