"""DAGs the kill tests run with dag.test() in a task process of their own, then signal (issue 12, items 4-5).

dag.test() runs each task through the SDK's task runner in that process: SIGTERM reaches the operator's
``on_kill`` through Airflow's own handler, on the thread running ``execute``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator

_ARGS = {
    "schedule": None,
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "params": {"conn_id": Param("pg_test", type="string"), "path": Param("/tmp/x", type="string")},
    "catchup": False,
}

with DAG("pgbackup_test_kill_dump", **_ARGS) as dump_dag:  # type: ignore[arg-type]
    PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.conn_id }}",
        output_path="{{ params.path }}",
        format="directory",
        jobs=2,
    )

with DAG("pgbackup_test_kill_dumpall", **_ARGS) as dumpall_dag:  # type: ignore[arg-type]
    PgDumpAllOperator(
        task_id="dumpall", postgres_conn_id="{{ params.conn_id }}", output_path="{{ params.path }}"
    )

with DAG("pgbackup_test_kill_drill", **_ARGS) as drill_dag:  # type: ignore[arg-type]
    PgRestoreOperator(
        task_id="drill", postgres_conn_id="{{ params.conn_id }}", artifact_path="{{ params.path }}", jobs=2
    )

DAGS = {dag.dag_id.removeprefix("pgbackup_test_kill_"): dag for dag in (dump_dag, dumpall_dag, drill_dag)}
