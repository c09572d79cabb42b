"""Run by the Python of a fresh venv holding one Airflow release and the built wheel (never by pytest):
what a user of that Airflow sees first. Prints one JSON line with what it found.

argv: <example_dags folder> <dump -> verify -> drill DAG file> <output folder>
      [<an archive too new for this worker>]
env: AIRFLOW_HOME (migrated), AIRFLOW_CONN_PG_COMPAT (a server with the database to dump);
SMOKE_WITHOUT_DAG_TEST=1 calls the operators directly instead of dag.test() (for an Airflow whose own
dag.test() is broken).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import sys
import traceback
from pathlib import Path


def import_every_module() -> list[str]:
    import airflow_provider_pgbackup as package

    failed = []
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(module.name)
        except ImportError as err:  # an extra's module (amazon, azure, google, age) may need its extra
            if not any(name in str(err) for name in ("amazon", "azure", "google.common", "pyrage", "boto")):
                failed.append(f"{module.name}: {err!r}")
    return failed


def parse_example_dags(folder: str) -> dict[str, object]:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.models.dagbag import DagBag
    bag = DagBag(dag_folder=folder, safe_mode=False)
    return {
        "dags": sorted(bag.dags),
        "errors": {Path(k).name: v[-400:] for k, v in bag.import_errors.items()},
    }


def run_drill_dag(dag_file: str, output_dir: str) -> dict[str, object]:
    import pendulum

    spec = importlib.util.spec_from_file_location("pgbackup_test_verify", dag_file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    if not hasattr(dag, "test"):  # Airflow 3.0: the SDK's DAG has no test(); `airflow dags test` converts it
        from airflow.models.dag import DAG as SchedulerDAG

        dag = SchedulerDAG.from_sdk_dag(dag)
    conf = {"conn_id": "pg_compat", "output_dir": output_dir, "drill_database": "pgbackup_compat_drill"}
    dag_run = dag.test(logical_date=pendulum.now("UTC"), run_conf=conf)  # the DAG's paths use ts_nodash
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    drill = returned_value(dag_run, "restore_drill") or {}
    return {"state": str(dag_run.state), "tasks": states, "verdict": drill.get("content", {}).get("verdict")}


def run_operators_directly(output_dir: str) -> dict[str, object]:
    """The same three tasks, each operator's execute()/poke() called in this process (no task runner)."""
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
    from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
    from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

    artifact = f"{output_dir}/direct.dump"
    PgDumpOperator(task_id="dump", postgres_conn_id="pg_compat", output_path=artifact).execute({})
    verified = PgBackupArtifactSensor(task_id="verify", path=artifact, timeout=30).poke({})
    assert getattr(verified, "is_done", False), verified
    drill = PgRestoreOperator(task_id="drill", postgres_conn_id="pg_compat", artifact_path=artifact).execute(
        {}
    )
    return {"state": "success", "tasks": {}, "verdict": drill["content"]["verdict"]}


def returned_value(dag_run: object, task_id: str) -> dict | None:
    """A task's XCom return value, read from the metadata database as the UI does."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(run_id=dag_run.run_id, task_id=task_id, key="return_value")  # type: ignore[attr-defined]
            .one_or_none()
        )
        value = None if row is None else row.value
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def refused_restore(archive: str) -> str:
    """Drill an archive no pg_restore on this worker can read: the error users get."""
    from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator

    try:
        PgRestoreOperator(task_id="drill", postgres_conn_id="pg_compat", artifact_path=archive).execute({})
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def main() -> None:
    import airflow

    import airflow_provider_pgbackup

    example_dags, dag_file, output_dir = sys.argv[1:4]
    result: dict[str, object] = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "airflow": airflow.__version__,
        "provider": airflow_provider_pgbackup.__version__,
        "provider_file": airflow_provider_pgbackup.__file__,
    }
    try:
        result["import_failures"] = import_every_module()
        result["example_dags"] = parse_example_dags(example_dags)
        if os.environ.get("SMOKE_WITHOUT_DAG_TEST"):
            result["drill"] = run_operators_directly(output_dir)
        else:
            result["drill"] = run_drill_dag(dag_file, output_dir)
        if len(sys.argv) > 4:
            result["refused"] = refused_restore(sys.argv[4])
    except Exception:
        result["crash"] = traceback.format_exc()[-3000:]
    print("SMOKE-RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
