"""The compatibility matrix (issue 26): PostgreSQL servers 13-18, Airflow floor to newest, Python versions,
the release wheel.

``make compat`` runs all of it (``COMPAT_MATRIX=full``); ``make test`` runs the fast representative
slice only: the oldest server (dump, verify, drill IDENTICAL, into itself and into the newest), the version
refusals, and the built wheel's contents. Server builds come from ``make pg-servers``
(:mod:`devtools.pgservers`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.pgcluster import PgCluster, running_cluster
from devtools.pgservers import client_bin_dirs, server_bin_dirs
from tests.conftest import PASSWORD

FULL = os.environ.get("COMPAT_MATRIX") == "full"
ALL_MAJORS = (13, 14, 15, 16, 17, 18)
OLDEST, NEWEST = ALL_MAJORS[0], ALL_MAJORS[-1]


def full_only(reason: str) -> pytest.MarkDecorator:
    """Skip in ``make test``: ``make compat`` (``COMPAT_MATRIX=full``) runs it."""
    return pytest.mark.skipif(not FULL, reason=f"make compat only: {reason}")


@pytest.fixture(scope="session")
def servers() -> Iterator[Callable[[int], PgCluster]]:
    """``servers(major)``: a running throwaway server of that major (started once per session)."""
    bins = server_bin_dirs()
    started: dict[int, PgCluster] = {}
    with contextlib.ExitStack() as stack:

        def get(major: int) -> PgCluster:
            if major not in started:
                if major not in bins:
                    pytest.fail(
                        f"no PostgreSQL {major} server build here (found {sorted(bins)}): "
                        "`make pg-servers` installs them"
                    )
                # DDL in the server log: a test can tell that no database was ever created
                cluster = running_cluster(
                    bins[major], password=PASSWORD, name=f"compat{major}", settings={"log_statement": "ddl"}
                )
                started[major] = stack.enter_context(cluster)
            return started[major]

        yield get


@pytest.fixture
def every_client_on_path(monkeypatch: pytest.MonkeyPatch) -> dict[int, Path]:
    """Every client-tool build (15 Debian, 16 PyPI, 18 the wheel) visible to the provider, as on a worker
    image with several ``postgresql-client-N`` installed. Returns major -> bin folder."""
    clients = client_bin_dirs()
    monkeypatch.setenv("PATH", os.pathsep.join([*(str(p) for p in clients.values()), os.environ["PATH"]]))
    return clients


def uv_executable() -> str:
    """The uv the Makefile uses: ``$UV``, else uv on PATH, else the pinned one in ``.tools``."""
    repo = Path(__file__).resolve().parents[2]
    found = os.environ.get("UV") or shutil.which("uv") or str(repo / ".tools" / "bin" / "uv")
    if not Path(found).exists() and not shutil.which(found):
        pytest.fail("no uv: `make venv` installs the pinned one into .tools/")
    return found


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``uv build`` of this checkout: ``{"wheel": ..., "sdist": ...}`` in a fresh folder."""
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv_executable(), "build", "--quiet", "--out-dir", str(out), str(repo)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def find_python(version: str) -> Path | None:
    """A CPython ``version`` (``"3.10"``) interpreter here: on PATH, else a pyenv or system install."""
    candidates = [shutil.which(f"python{version}") or ""]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv, sqlite3, ssl; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(map(int, version.split(".")))):
            return Path(candidate)
    return None
