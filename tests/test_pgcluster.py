"""Smoke test of devtools.pgcluster: throwaway clusters with password authentication."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from devtools.pgcluster import (
    PgCluster,
    binary_version,
    embedded_bin_dir,
    running_cluster,
    system_bin_dirs,
)

PASSWORD = "p@ss:w0rd\\'é x"
ODD_DB = 'we\'ird "db" ñ'


def _embedded() -> Path | None:
    return embedded_bin_dir()


def _system_15() -> Path | None:
    return system_bin_dirs().get(15)


@pytest.fixture(
    params=[pytest.param((18, _embedded), id="embedded-18"), pytest.param((15, _system_15), id="system-15")]
)
def server(request: pytest.FixtureRequest) -> tuple[int, Path]:
    major, locate = request.param
    bin_dir = locate()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL {major} server binaries on this machine")
    return major, bin_dir


def _live_processes_using(data_dir: Path) -> list[str]:
    """Non-zombie processes whose command line mentions data_dir (Linux /proc)."""
    found: list[str] = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if str(data_dir) in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


def _database_exists(pg: PgCluster, name: str) -> bool:
    with pg.connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is not None
    return bool(row[0])


def test_cluster_smoke(server: tuple[int, Path]) -> None:
    major, bin_dir = server
    assert binary_version(bin_dir / "postgres")[0] == major

    with running_cluster(bin_dir, password=PASSWORD, name=f"smoke{major}") as pg:
        assert pg.major == major
        assert pg.version.startswith(f"{major}.")
        assert pg.host == "127.0.0.1"
        assert pg.base_dir.is_dir()
        assert pg.is_running()

        # The right password works, over TCP.
        with psycopg.connect(**pg.connect_kwargs()) as conn:  # type: ignore[arg-type]
            row = conn.execute("SELECT current_user, current_setting('server_version_num')::int").fetchone()
        assert row is not None
        assert row[0] == "postgres"
        assert row[1] // 10000 == major

        # A wrong password is refused: authentication really is enforced.
        wrong = {**pg.connect_kwargs(), "password": PASSWORD + "x"}
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(**wrong)  # type: ignore[arg-type]

        # Database names needing quoting.
        pg.create_database(ODD_DB)
        assert _database_exists(pg, ODD_DB)
        pg.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('é')", dbname=ODD_DB)
        with pg.connect(ODD_DB) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [("é",)]
        pg.drop_database(ODD_DB)
        assert not _database_exists(pg, ODD_DB)
        pg.drop_database(ODD_DB)  # IF EXISTS

        # Airflow connection forms carry every component intact.
        parts = urllib.parse.urlsplit(pg.airflow_conn_uri(ODD_DB, sslmode="disable"))
        assert parts.scheme == "postgresql"
        assert urllib.parse.unquote(parts.password or "") == PASSWORD
        assert parts.port == pg.port
        assert urllib.parse.unquote(parts.path[1:]) == ODD_DB
        assert urllib.parse.parse_qs(parts.query) == {"sslmode": ["disable"]}
        as_json = json.loads(pg.airflow_conn_json(ODD_DB))
        assert as_json["password"] == PASSWORD
        assert as_json["schema"] == ODD_DB
        assert as_json["port"] == pg.port

        # stop()/start() are idempotent.
        pg.stop()
        pg.stop()
        assert not pg.is_running()
        pg.start()
        pg.start()
        pg.execute("SELECT 1")

        base_dir, data_dir = pg.base_dir, pg.data_dir

    assert not base_dir.exists()
    assert _live_processes_using(data_dir) == []
