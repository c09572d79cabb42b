"""PgDumpOperator / PgDumpAllOperator: argument validation, pg_dumpall modes, and runs inside real Airflow."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.manifest import read_manifest
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.storage.local import this_host
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.helpers import leftovers

DUMPALL_TRAILER = b"-- PostgreSQL database cluster dump complete"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "zip"}, "format 'zip' is not supported; use one of: custom, directory, tar, plain"),
        ({"compression": "brotli"}, "compression 'brotli' is not supported; use one of: none, gzip"),
        ({"compression": "gzip:10"}, "compression level '10' in 'gzip:10' is out of range; gzip takes"),
        ({"compression": "zstd:x"}, "compression level 'x' in 'zstd:x' is out of range"),
        ({"jobs": 4}, "jobs=4 needs format='directory'"),
        ({"format": "directory", "jobs": 0}, "jobs 0 must be a whole number >= 1"),
        ({"format": "tar", "compression": "gzip"}, "cannot be used with format 'tar'"),
        ({"lock_wait_timeout": "soon"}, "lock_wait_timeout 'soon' is not a positive duration"),
        (
            {"extra_args": ["--file=/etc/passwd"]},
            "extra_args item '--file=/etc/passwd' is not allowed for pg_dump",
        ),
        ({"extra_args": ["--dbname=postgresql://u:p@h/db"]}, "is not allowed for pg_dump"),
        ({"extra_args": ["--exclude-table-data=host=evil"]}, "looks like it carries a connection string"),
        ({"extra_args": "--no-owner"}, "must be a list of flags"),
        ({"tables": ["a\nb"]}, "contains a newline"),
        ({"output_path": "relative/x.dump"}, "must be an absolute path"),
        ({"output_path": "/backups/../etc/x.dump"}, "must not contain '..'"),
        ({"record": "checksums"}, "record 'checksums' is not supported; use one of: content (row counts"),
        ({"record": "none", "record_checksums": False}, "cannot be combined with record; use record alone"),
        (
            {"record_row_counts": False, "record_checksums": True},
            "record_row_counts=False with record_checksums=True is contradictory",
        ),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_value(kwargs: dict, message: str) -> None:
    args = {"task_id": "dump", "output_path": "/backups/x.dump", **kwargs}
    with pytest.raises(ValueError) as err:  # noqa: PT011 - the message is asserted below
        PgDumpOperator(**args)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "record"),
    [
        ({}, "content"),
        ({"record": "row_counts"}, "row_counts"),
        ({"record": "NONE"}, "none"),
        ({"record_checksums": False}, "row_counts"),
        ({"record_row_counts": False}, "none"),
        ({"record_row_counts": False, "record_checksums": False}, "none"),
        ({"record_row_counts": True, "record_checksums": "true"}, "content"),
    ],
)
def test_record_is_one_knob_and_the_old_booleans_keep_their_meaning(kwargs: dict, record: str) -> None:
    operator = PgDumpOperator(task_id="dump", output_path="/backups/x.dump", **kwargs)
    assert operator._options().record == record


def test_templated_bad_value_fails_in_execute_before_any_subprocess(tmp_path: Path) -> None:
    operator = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="not_defined",
        output_path=str(tmp_path / "x"),
        format="{{ params.f }}",
    )
    operator.format = "zip"  # what rendering produced
    with pytest.raises(AirflowFailException, match="format 'zip' is not supported"):
        operator.execute(context={})


def test_lz4_on_a_pg_dump_without_it_is_refused_before_dumping(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    # The embedded PostgreSQL 18 is built without lz4: the choice is refused, nothing is written.
    operator = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=str(tmp_path / "x.dump"),
        compression="lz4",
    )
    with pytest.raises(
        AirflowFailException, match=r"compression 'lz4:1' is not supported by .*pg_dump \(18\."
    ):
        operator.execute(context={})
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("mode", "compression", "expect", "absent"),
    [
        ("globals", None, b"CREATE ROLE", b"CREATE DATABASE"),
        ("roles", "gzip:3", b"CREATE ROLE", b"CREATE TABLESPACE"),
        ("full", "gzip", b"CREATE DATABASE", b""),
    ],
)
def test_pg_dumpall_modes_write_complete_sql_with_manifest(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path, mode, compression, expect, absent
) -> None:
    out = tmp_path / f"all-{mode}.sql"
    operator = PgDumpAllOperator(
        task_id="dumpall",
        postgres_conn_id=airflow_conn(pg, "postgres"),
        output_path=str(out),
        mode=mode,
        compression=compression,
        no_role_passwords=True,
    )
    xcom = operator.execute(context={})
    data = out.read_bytes()
    if compression:
        data = gzip.decompress(data)
    assert DUMPALL_TRAILER in data
    assert expect in data
    if absent:
        assert absent not in data
    assert b"SCRAM-SHA-256$" not in data  # no_role_passwords
    manifest = read_manifest(xcom["manifest_path"])
    assert manifest.kind == "pg_dumpall"
    assert manifest.mode == mode
    assert manifest.to_dict() == {
        k: v for k, v in xcom.items() if k not in ("artifact_path", "manifest_path", "artifact_uri")
    }
    assert xcom["artifact_uri"] == f"file://{this_host()}{xcom['artifact_path']}"  # names the writer
    assert PASSWORD not in json.dumps(xcom)


def test_operators_run_inside_real_airflow_dag_test(
    pg18: PgCluster, airflow_conn, airflow_db: str, tmp_path: Path
) -> None:
    import pendulum

    from tests.dags.pgbackup_test_dump import dag

    conn_id = airflow_conn(pg18, "postgres")
    run = dag.test(
        logical_date=pendulum.datetime(2026, 3, 1, 4, 5, 6, tz="UTC"),
        run_conf={"conn_id": conn_id, "output_dir": str(tmp_path)},
    )
    assert run.state == "success"
    folder = tmp_path / "pgbackup_test_dump"
    assert leftovers(folder) == [
        "20260301T040506-globals.sql",
        "20260301T040506-globals.sql.manifest.json",
        "20260301T040506.dump",
        "20260301T040506.dump.manifest.json",
    ]
    assert read_manifest(folder / "20260301T040506.dump.manifest.json").kind == "pg_dump"


def test_on_kill_mid_dump_fails_the_task_and_leaves_no_artifact_or_credentials(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    import tempfile
    import threading

    import psycopg

    from airflow_provider_pgbackup.hooks.pg_dump import PgCommandError
    from tests.helpers import wait_for_child

    pg18.drop_database("onkill")
    pg18.create_database("onkill")
    pg18.execute("CREATE TABLE t AS SELECT 1 AS x", dbname="onkill")
    operator = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, "onkill"),
        output_path=str(tmp_path / "k.dump"),
        record_row_counts=False,  # nothing measured: pg_dump itself waits on the locked table
        record_checksums=False,
    )
    secret_dirs = {p.name for p in Path(tempfile.gettempdir()).glob("pgbackup-credentials-*")}
    errors: list[BaseException] = []

    def execute() -> None:
        try:
            operator.execute(context={})
        except BaseException as err:
            errors.append(err)

    with psycopg.connect(**pg18.connect_kwargs("onkill")) as locker:
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # keeps pg_dump mid-dump
        worker = threading.Thread(target=execute)
        worker.start()
        wait_for_child("pg_dump")
        operator.on_kill()  # what Airflow's task runner calls on SIGTERM or execution_timeout
        worker.join(30)
    assert not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], PgCommandError)
    assert "pg_dump was stopped" in str(errors[0])
    assert leftovers(tmp_path) == []
    after = {p.name for p in Path(tempfile.gettempdir()).glob("pgbackup-credentials-*")}
    assert after - secret_dirs == set()  # nothing this test created is left (others may use /tmp too)
    pg18.drop_database("onkill")


def test_rendered_template_fields_hold_no_secret(
    pg18: PgCluster, airflow_conn, airflow_db: str, tmp_path: Path
) -> None:
    import sqlite3

    import pendulum

    from tests.dags.pgbackup_test_dump import dag

    conn_id = airflow_conn(pg18, "postgres")
    run = dag.test(
        logical_date=pendulum.datetime(2026, 4, 1, tz="UTC"),
        run_conf={"conn_id": conn_id, "output_dir": str(tmp_path)},
    )
    assert run.state == "success"
    with sqlite3.connect(f"{airflow_db}/airflow.db") as db:
        rendered = db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ?",
            ("pgbackup_test_dump",),
        ).fetchall()
        xcoms = db.execute("SELECT value FROM xcom WHERE dag_id = ?", ("pgbackup_test_dump",)).fetchall()
    assert rendered, "no rendered fields were stored"
    assert xcoms, "no XCom was stored"
    for (text,) in rendered + xcoms:
        assert PASSWORD not in str(text)
    assert any(str(tmp_path) in str(text) for (text,) in rendered)


@pytest.mark.parametrize(("rendered", "expected"), [("True", True), ("false", False), (False, False)])
def test_no_role_passwords_accepts_a_rendered_boolean(rendered: object, expected: bool) -> None:
    from airflow_provider_pgbackup.options import PgDumpAllOptions

    assert PgDumpAllOptions.build(no_role_passwords=rendered).no_role_passwords is expected  # type: ignore[arg-type]


def test_no_role_passwords_refuses_a_non_boolean() -> None:
    with pytest.raises(ValueError, match="no_role_passwords 'maybe' is not a boolean; use true or false"):
        PgDumpAllOperator(task_id="g", output_path="/backups/g.sql", no_role_passwords="maybe")


def test_output_path_and_compression_are_parsed_once_and_travel_typed(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator parses output_path and compression once, after rendering: the storage target gets
    that very Location, and finish_backup (the manifest writer) that very Compression; the XCom and the
    manifest keep their strings. (The two recorders below call the real functions: nothing is faked.)"""
    from airflow_provider_pgbackup.hooks import dump_output, pg_dump
    from airflow_provider_pgbackup.storage import Location

    targets: list[object] = []
    finished: list[object] = []
    real_open_target, real_finish_backup = pg_dump.open_target, dump_output.finish_backup

    def open_target(value, **kwargs):
        targets.append(value)
        return real_open_target(value, **kwargs)

    def finish_backup(*args, compression, **kwargs):
        finished.append(compression)
        return real_finish_backup(*args, compression=compression, **kwargs)

    monkeypatch.setattr(pg_dump, "open_target", open_target)
    monkeypatch.setattr(pg_dump, "finish_backup", finish_backup)
    out = f"{tmp_path}//typed.dump"  # parsed (normalised) once, at the operator
    operator = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg, sample),
        output_path="{{ params.out }}",
        compression="{{ params.compression }}",
    )
    operator.output_path, operator.compression = out, "GZIP:3"  # as rendered
    rendered = operator._rendered()
    xcom = operator.execute(context={})

    assert len(targets) == 1
    assert isinstance(targets[0], Location)
    assert targets[0] == rendered.where
    assert targets[0].name == str(tmp_path / "typed.dump")
    assert finished == [rendered.options.compression]  # the Compression the options parsed, not a string
    assert xcom["compression"] == "gzip:3"  # the manifest and the XCom keep the spec string
    manifest = read_manifest(xcom["manifest_path"])
    assert manifest.compression == "gzip:3"
    assert manifest.compression_spec == rendered.options.compression
    assert xcom["artifact_path"] == str(tmp_path / "typed.dump")
    assert xcom["artifact_uri"] == f"file://{this_host()}{xcom['artifact_path']}"
    assert operator._finished is not None
    assert operator._finished[1].uri == xcom["artifact_uri"]
