"""The plugin's version gate: Airflow 3.1+ gets the Backups page; 3.0 an empty plugin, a working provider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_pgbackup.compat import airflow_version_at_least

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("version", "supported"),
    [("3.0.6", False), ("3.1.0", True), ("3.1.0rc2", True), ("3.3.2", True), ("4.0.0.dev0", True)],
)
def test_the_page_needs_airflow_3_1(version: str, supported: bool) -> None:
    assert airflow_version_at_least((3, 1), version) is supported


def test_the_app_is_built_on_first_request_only_and_airflow_3_0_gets_an_empty_plugin() -> None:
    """Every Airflow process loads plugins (workers too): importing the plugin must not build the
    api-server app. On Airflow 3.0 (its version string, seen when the provider is imported) the plugin
    has no app and no view, and the operators still import."""
    code = (
        "import importlib, sys\n"
        "import airflow_provider_pgbackup.ui as ui\n"
        "[app] = ui.PgBackupPlugin.fastapi_apps\n"
        "assert app['url_prefix'] == '/pgbackup' and app['app']._app is None\n"
        "assert 'airflow_provider_pgbackup.ui.app' not in sys.modules\n"
        "assert 'airflow.api_fastapi.core_api.security' not in sys.modules\n"
        "import airflow; airflow.__version__ = '3.0.6'\n"
        "import airflow_provider_pgbackup.compat as compat; importlib.reload(compat); importlib.reload(ui)\n"
        "assert ui.PgBackupPlugin.fastapi_apps == [] and ui.PgBackupPlugin.external_views == []\n"
        "import airflow_provider_pgbackup.operators.pg_restore\n"
        "import airflow_provider_pgbackup.operators.retention\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
