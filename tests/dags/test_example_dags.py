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
