"""The release: ``uv build`` makes a wheel and an sdist whose contents are what a user installs, and
``twine check`` accepts both (the README renders on PyPI). In ``make test``: building takes seconds.

The wheel installed into fresh venvs with nothing but ``apache-airflow==<version>`` and its runtime
dependencies, then run for real, is ``test_airflow_versions.py`` (``make compat``).
"""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from airflow_provider_pgbackup import __version__

REPO = Path(__file__).resolve().parents[2]


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def wheel_text(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
        return archive.read(name).decode()


def test_twine_accepts_the_wheel_and_the_sdist(built: dict[str, Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built["wheel"]), str(built["sdist"])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_wheel_holds_the_package_its_types_and_entry_point_and_no_tests_or_dev_tools(
    built: dict[str, Path],
) -> None:
    wheel = built["wheel"]
    assert wheel.name == f"airflow_provider_pgbackup-{__version__}-py3-none-any.whl"
    names = wheel_files(wheel)
    dist_info = f"airflow_provider_pgbackup-{__version__}.dist-info/"
    assert {name.split("/")[0] for name in names} == {"airflow_provider_pgbackup", dist_info.rstrip("/")}
    assert "airflow_provider_pgbackup/py.typed" in names
    assert f"{dist_info}licenses/LICENSE" in names
    packaged = {name for name in names if name.endswith(".py")}
    in_checkout = {str(p.relative_to(REPO)) for p in (REPO / "airflow_provider_pgbackup").rglob("*.py")}
    assert packaged == in_checkout  # every module, and nothing else (no tests, devtools, benchmarks)
    assert not [n for n in names if "/tests/" in n or "conftest" in n or "__pycache__" in n]

    entry_points = wheel_text(wheel, "entry_points.txt")
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_provider_pgbackup.get_provider_info:get_provider_info" in entry_points
    metadata = email.message_from_string(wheel_text(wheel, "dist-info/METADATA"))
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0"
    requires = metadata.get_all("Requires-Dist")
    assert "apache-airflow<4,>=3.0.0" in requires, requires
    runtime = sorted(r.split(">")[0].split("<")[0].split("[")[0] for r in requires if "extra ==" not in r)
    assert runtime == [
        "apache-airflow",
        "apache-airflow-providers-postgres",
        "google-cloud-storage",
        "pendulum",
        "psycopg",
    ]


def test_the_sdist_holds_the_package_and_its_documents_but_no_dev_tree(built: dict[str, Path]) -> None:
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    top = {name.split("/")[0] for name in names}
    assert top == {
        "airflow_provider_pgbackup",
        "example_dags",
        "docs",
        "README.md",
        "CHANGELOG.md",
        "SECURITY.md",
        "LICENSE",
        "pyproject.toml",
        "PKG-INFO",
        ".gitignore",  # hatchling always adds it
    }, top
    assert "airflow_provider_pgbackup/py.typed" in names
    assert f"## {__version__}" in (REPO / "CHANGELOG.md").read_text()  # the release is described
