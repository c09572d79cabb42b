"""Issue 13 (4): OpenLineage facets, asset-event metadata and extra links, read from a real run.

``pgbackup_test_lineage`` runs with ``dag.test()`` in a child Python process in which the OpenLineage
provider is enabled (its listener registers when Airflow's plugins load, so it needs a process whose
configuration says so from the start) with the file transport: the test reads the events the
listener really emitted, and the asset events and extra-link XComs from the metadata database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.gcs_emulator import GCSEmulator

REPO = Path(__file__).resolve().parents[2]

RUN = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("lineage_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag_run = module.dag.test(run_conf=json.loads(sys.argv[2]))
from airflow.models.asset import AssetEvent
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
with create_session() as session:
    events = [
        {"asset": e.asset.name, "uri": e.asset.uri, "task": e.source_task_id, "extra": e.extra}
        for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id)
    ]
    links = {
        f"{x.task_id}/{x.key}": str(x.value)
        for x in session.query(XComModel).filter(
            XComModel.run_id == dag_run.run_id, XComModel.key.like("_link_%")
        )
    }
states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
with open(sys.argv[3], "w") as out:
    json.dump({"state": dag_run.state, "tasks": states, "events": events, "links": links}, out, default=str)
"""


@pytest.fixture(scope="module")
def lineage_run(
    pg18: PgCluster, airflow_db: str, gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One run of the DAG; returns its task states, asset events, link XComs and OpenLineage events."""
    work = tmp_path_factory.mktemp("lineage")
    database = "lineage ü"
    pg18.drop_database(database)
    pg18.create_database(database)
    pg18.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1234) g", database)
    pg18.execute("CREATE TABLE customers AS SELECT g AS id FROM generate_series(1, 56) g", database)
    bucket = gcs_emulator.new_bucket()
    events_file, report = work / "openlineage.jsonl", work / "run.json"
    env = {
        **os.environ,
        "AIRFLOW_CONN_PG_LINEAGE": pg18.airflow_conn_json(database),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "pgbackup-tests",
        "PYTHONPATH": str(REPO),
    }
    conf = {"conn_id": "pg_lineage", "database": database, "output_dir": str(work), "bucket": bucket}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN,
            str(REPO / "tests/dags/pgbackup_test_lineage.py"),
            json.dumps(conf),
            str(report),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    try:
        result: dict[str, Any] = json.loads(report.read_text())
    except (OSError, json.JSONDecodeError):
        pytest.fail(
            f"the lineage DAG run did not report (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-6000:]}"
        )
    assert result["state"] == "success", (result["tasks"], f"log: {work / 'run.log'}")
    lines = events_file.read_text().splitlines() if events_file.exists() else []
    result["openlineage"] = [json.loads(line) for line in lines if line.strip()]
    result["stderr"] = proc.stderr
    result["database"], result["bucket"], result["port"] = database, bucket, pg18.port
    return result


def completed(run: dict[str, Any], task_id: str) -> dict[str, Any]:
    """The COMPLETE OpenLineage event of one task of the run."""
    found = [
        event
        for event in run["openlineage"]
        if event.get("eventType") == "COMPLETE" and event["job"]["name"].endswith(f".{task_id}")
    ]
    assert found, f"no COMPLETE event for {task_id}: {[e['job']['name'] for e in run['openlineage']]}"
    return found[-1]


def datasets(event: dict[str, Any], side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event[side]]


def test_dump_reports_the_database_in_and_the_artifact_out(lineage_run: dict[str, Any]) -> None:
    event = completed(lineage_run, "dump")
    assert datasets(event, "inputs") == [
        (f"postgres://127.0.0.1:{lineage_run['port']}", lineage_run["database"])
    ]
    [(namespace, name)] = datasets(event, "outputs")
    assert namespace == f"file://{socket.gethostname()}"
    assert name.endswith(".dump")
    assert name.startswith("/")
    stats = event["outputs"][0]["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == 1234 + 56
    assert stats["size"] > 0


def test_streamed_dump_and_upload_name_the_gcs_object(lineage_run: dict[str, Any]) -> None:
    bucket = lineage_run["bucket"]
    [(namespace, name)] = datasets(completed(lineage_run, "streamed"), "outputs")
    assert namespace == f"gs://{bucket}"
    assert name.startswith("streamed/")
    assert name.endswith(".dump")
    upload = completed(lineage_run, "upload")
    local = datasets(completed(lineage_run, "dump"), "outputs")
    assert datasets(upload, "inputs") == local  # the lineage graph joins: dump -> upload
    [(namespace, name)] = datasets(upload, "outputs")
    assert namespace == f"gs://{bucket}"
    assert name == f"uploaded/{local[0][1].rsplit('/', 1)[1]}"


def test_drill_reads_the_backup_and_writes_no_lasting_dataset(lineage_run: dict[str, Any]) -> None:
    event = completed(lineage_run, "drill")
    assert datasets(event, "inputs") == datasets(completed(lineage_run, "dump"), "outputs")
    assert event["outputs"] == []  # the scratch database was dropped
    assert datasets(completed(lineage_run, "verify"), "inputs") == datasets(event, "inputs")


def test_no_secret_in_the_openlineage_events(lineage_run: dict[str, Any]) -> None:
    text = json.dumps(lineage_run["openlineage"])
    assert lineage_run["openlineage"]
    assert PASSWORD not in text
    assert json.dumps(PASSWORD)[1:-1] not in text


def test_asset_events_carry_the_backup_metadata(lineage_run: dict[str, Any]) -> None:
    events = {event["asset"]: event for event in lineage_run["events"]}
    dumped = events["pgbackup_test_dumped"]["extra"]
    verified = events["pgbackup_test_verified"]["extra"]
    drilled = events["pgbackup_test_drilled"]["extra"]
    uploaded = events["pgbackup_test_uploaded"]["extra"]
    for extra in (dumped, verified, drilled, uploaded):
        assert extra["database"] == lineage_run["database"]
        assert extra["format"] == "custom"
        assert extra["size_bytes"] > 0
        assert extra["sha256"] == dumped["sha256"]
        assert extra["encrypted"] is False
    assert dumped["verified"] is False
    assert uploaded["verified"] is False
    assert verified["verified"] is True
    assert {"checksum", "contents"} <= set(verified["checks"])
    assert drilled["verified"] is True
    assert drilled["dropped_after"] is True
    assert uploaded["artifact_uri"].startswith(f"gs://{lineage_run['bucket']}/uploaded/")
    assert uploaded["source_uri"] == dumped["artifact_uri"]
    # The shrink guard's outcome: the first backup in the folder has nothing to be compared with.
    assert uploaded["shrink"] == {"outcome": "published", "held": False, "baseline": None, "shrank": []}
    assert PASSWORD not in json.dumps(lineage_run["events"])


def test_extra_links_point_at_the_object_on_the_emulator_the_run_used(
    lineage_run: dict[str, Any], gcs_emulator: GCSEmulator
) -> None:
    """The run's GCS is an emulator (as in the demo): the links open the object there, not in the real
    Cloud Console (where it does not exist)."""
    links = lineage_run["links"]
    page = f"{gcs_emulator.endpoint}/storage/v1/b/{lineage_run['bucket']}/o/"
    assert page + "streamed%2F" in links["streamed/_link_BackupConsoleLink"]
    assert page + "streamed%2F" in links["verify_streamed/_link_BackupConsoleLink"]
    assert page + "uploaded%2F" in links["upload/_link_BackupConsoleLink"]
    assert links["dump/_link_BackupConsoleLink"] in ("", '""')  # a local dump has no page
    uploaded = {event["asset"]: event for event in lineage_run["events"]}["pgbackup_test_uploaded"]
    assert uploaded["extra"]["object_url"] == links["upload/_link_BackupConsoleLink"].strip('"')


def test_a_staged_dump_links_to_the_published_copy_not_the_one_discard_deletes(
    lineage_run: dict[str, Any], gcs_emulator: GCSEmulator
) -> None:
    """Issue 23: the staged copy is gone after a green run (discard), so the dump and the sensor that
    verified it link to where the promotion downstream published the backup, under the same name."""
    links = lineage_run["links"]
    assert lineage_run["tasks"]["discard"] == "success"
    page = f"{gcs_emulator.endpoint}/storage/v1/b/{lineage_run['bucket']}/o/"
    promoted = links["promote/_link_BackupConsoleLink"].strip('"')
    assert promoted.startswith(page + "published%2F")
    assert links["staged/_link_BackupConsoleLink"].strip('"') == promoted
    assert links["verify_staged/_link_BackupConsoleLink"].strip('"') == promoted
    assert "_staging" not in json.dumps(
        {key: value for key, value in links.items() if key.split("/")[0] in ("staged", "verify_staged")}
    )


def test_the_provider_does_not_import_openlineage() -> None:
    """OpenLineage is an optional provider: importing every operator must not load its client or
    extractors (Airflow itself reads only the provider's ``get_provider_info``)."""
    modules = [
        "airflow_provider_pgbackup.operators.pg_dump",
        "airflow_provider_pgbackup.operators.pg_restore",
        "airflow_provider_pgbackup.sensors.backup_artifact",
        "airflow_provider_pgbackup.transfers.backup_upload",
        "airflow_provider_pgbackup.transfers.backup_promote",
    ]
    code = (
        f"import sys, importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('openlineage', "
        "'airflow.providers.openlineage.extractors', 'airflow.providers.common.compat.openlineage')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
