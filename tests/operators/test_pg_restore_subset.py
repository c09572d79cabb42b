"""PgRestoreOperator restoring part of a backup (tables / schemas), and refusing the source database,
against real PostgreSQL 18 with real backups of the sample database (schemas, partitions, types,
non-ASCII names)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD, row_counts

UNICODE_SCHEMA = "Ünïcode schéma"
UNICODE_TABLE = 'Tâble ☃ "q" x'
TARGET = "subset target ü"


class Recorder:
    """Stands in for the task instance's XCom push (the verdict XCom is proved in a real DAG run too)."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def databases(cluster: PgCluster) -> set[str]:
    with cluster.connect() as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def relations(cluster: PgCluster, database: str) -> set[tuple[str, str]]:
    with cluster.connect(database) as conn:
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname !~ '^pg_toast'"
        ).fetchall()
    return {(schema, name) for schema, name in rows}


@pytest.fixture
def target(pg18: PgCluster) -> Iterator[str]:
    pg18.drop_database(TARGET)
    yield TARGET
    pg18.drop_database(TARGET)


def restore(conn_id: str, artifact: Any, **kwargs: Any) -> PgRestoreOperator:
    return PgRestoreOperator(
        task_id="restore", postgres_conn_id=conn_id, artifact_path=str(artifact), drop_after=False, **kwargs
    )


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
@pytest.mark.parametrize("dump_format", ["custom", "directory", "tar"])
def test_a_table_subset_restores_only_those_tables_and_is_identical_to_them(
    pg: PgCluster, sample: str, pg_backup, airflow_conn, target: str, dump_format: str
) -> None:
    artifact = pg_backup(dump_format)
    ti = Recorder()
    xcom = restore(
        airflow_conn(pg, "postgres"), artifact, database=target, tables=f"documents, {UNICODE_TABLE}"
    ).execute(context={"ti": ti})

    # Only those two tables, in their schemas (the schema the backup had is created first).
    assert relations(pg, target) == {("public", "documents"), (UNICODE_SCHEMA, UNICODE_TABLE)}
    source = row_counts(pg, sample)
    restored = row_counts(pg, target)
    assert restored == {k: source[k] for k in restored}
    assert xcom["subset"] == {"tables": ["documents", UNICODE_TABLE], "schemas": []}
    assert xcom["content"]["verdict"] == "IDENTICAL"
    assert xcom["content"]["tables"] == 2
    assert {(t["schema"], t["table"]) for t in xcom["tables"]} == set(restored)
    verdict = ti.pushed["pgbackup_restore"]
    assert (verdict["verdict"], verdict["tables_compared"], verdict["differences"]) == ("IDENTICAL", 2, [])
    assert verdict["restored_into"] == target
    assert verdict["dropped_after"] is False
    assert verdict["subset"] == {"tables": ["documents", UNICODE_TABLE], "schemas": []}
    assert PASSWORD not in json.dumps(verdict)


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
def test_a_schema_subset_restores_the_schema_and_compares_its_tables_and_sequences(
    pg: PgCluster, sample: str, pg_backup, airflow_conn, target: str
) -> None:
    artifact = pg_backup("custom")
    xcom = restore(airflow_conn(pg, "postgres"), artifact, database=target, schemas=["shop"]).execute(
        context={}
    )
    schemas = {schema for schema, _name in relations(pg, target)}
    assert schemas == {"shop"}
    assert ("shop", "invoice_no") in relations(pg, target)  # a sequence of the schema came too
    source = row_counts(pg, sample)
    assert row_counts(pg, target) == {k: v for k, v in source.items() if k[0] == "shop"}
    assert xcom["content"]["verdict"] == "IDENTICAL"
    assert xcom["content"]["sequences"] >= 1


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
@pytest.mark.parametrize(
    ("dump_format", "kwargs", "message"),
    [
        ("custom", {"tables": ["orderz"]}, "table 'orderz' match no table of the backup; it holds: "),
        ("custom", {"schemas": "nope"}, "schema 'nope' match no table of the backup"),
        ("plain", {"tables": ["documents"]}, "cannot be restored from a plain SQL backup"),
    ],
    ids=["unknown-table", "unknown-schema", "plain-sql"],
)
def test_a_subset_that_cannot_be_restored_fails_before_anything_is_created(
    pg: PgCluster,
    sample: str,
    pg_backup,
    airflow_conn,
    target: str,
    dump_format: str,
    kwargs: Any,
    message: str,
) -> None:
    artifact = pg_backup(dump_format)
    before = databases(pg)
    with pytest.raises(AirflowFailException, match=message):
        restore(airflow_conn(pg, "postgres"), artifact, database=target, **kwargs).execute(context={})
    assert databases(pg) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tables": ["bad\nname"]}, "contains a newline"),
        ({"schemas": ["x" * 64]}, "longer than 63 bytes"),
        ({"tables": 42}, "must be a list of names"),
    ],
)
def test_bad_subset_names_fail_at_construction_naming_the_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PgRestoreOperator(task_id="restore", artifact_path="/backups/x.dump", **kwargs)


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
def test_the_source_database_is_refused_unless_allowed(
    pg: PgCluster, sample: str, pg_backup, airflow_conn
) -> None:
    artifact = pg_backup("custom")
    conn_id = airflow_conn(pg, "postgres")
    before = row_counts(pg, sample)
    into_source = restore(
        conn_id, artifact, database=sample, create_database=False, allow_non_empty_database=True
    )
    with pytest.raises(AirflowFailException, match="is the database this backup was taken from; refusing"):
        into_source.execute(context={})
    assert row_counts(pg, sample) == before  # nothing was restored into it
    # Named as the source, but a new database elsewhere is not the source: only the server+name pair is.
    allowed = restore(
        conn_id,
        artifact,
        database=sample,
        create_database=False,
        allow_non_empty_database=True,
        allow_source_database=True,
        tables=["no such table"],
    )
    with pytest.raises(AirflowFailException, match="match no table of the backup"):  # past the guard
        allowed.execute(context={})
