"""The compat module takes each name from its newest home on the installed Airflow, without a warning."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import airflow.sdk, airflow.sdk.exceptions
import airflow_provider_pgbackup.compat as compat
assert compat.AirflowFailException is airflow.sdk.exceptions.AirflowFailException
assert compat.BaseHook is airflow.sdk.BaseHook
print("imported")
"""


def test_compat_uses_the_task_sdk_homes_on_this_airflow_without_deprecation_warnings() -> None:
    # A fresh interpreter (the test process imported the names long ago). Airflow reports a deprecated
    # import as a log line naming the importing file: none may name compat.py.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "imported"
    noise = [line for line in (out.stdout + out.stderr).splitlines() if "compat.py" in line]
    assert noise == []
