"""Every example DAG imports cleanly and opens no connection while being parsed."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


def test_example_dags_import_without_errors_and_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    attempts: list[str] = []

    def refuse_connect(self: socket.socket, address: object) -> None:
        attempts.append(repr(address))
        raise OSError("network access at DAG parse time")

    def refuse_psycopg(*args: object, **kwargs: object) -> None:
        attempts.append("psycopg.connect")
        raise OSError("database access at DAG parse time")

    # Spies, not stand-ins: parsing must not reach them at all.
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(psycopg, "connect", refuse_psycopg)
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS), safe_mode=False)
    assert bag.import_errors == {}
    assert attempts == []
    files = sorted(p.name for p in EXAMPLE_DAGS.glob("*.py"))
    assert files, "no example DAGs found"
    assert {Path(dag.fileloc).name for dag in bag.dags.values()} == set(files)
    for dag in bag.dags.values():
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md, f"{dag.dag_id} has no doc_md"


#: Scheduled example DAGs whose first run may start when they are unpaused: the freshness check only
#: reads what the backups reported, and a stale backup should be said at once.
RUN_AT_UNPAUSE = {"pg_backup_freshness"}


def test_unpausing_a_scheduled_example_dag_starts_no_run_at_once() -> None:
    """Issue 23: unpausing (triggering a paused DAG unpauses it) must not start a scheduled run on the
    defaults ahead of the user's own: the first scheduled run is the next cron time, not the last one."""
    import datetime

    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS), safe_mode=False)
    now = datetime.datetime.now(datetime.timezone.utc)
    scheduled = []
    for dag in bag.dags.values():
        timetable = decode_timetable(encode_timetable(dag.timetable))  # what the scheduler reads
        if not timetable.periodic or dag.dag_id in RUN_AT_UNPAUSE:
            continue
        scheduled.append(dag.dag_id)
        restriction = TimeRestriction(earliest=dag.start_date, latest=dag.end_date, catchup=dag.catchup)
        first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
        assert first is not None, dag.dag_id
        assert first.run_after > now, f"{dag.dag_id} would run at once, for {first.run_after}"
    assert {"pg_backup_to_gcs", "pg_backup_to_cloud", "pg_restore_drill"} <= set(scheduled)
