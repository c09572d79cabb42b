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


def test_every_regular_expression_of_the_package_compiles_on_the_lowest_python() -> None:
    """The package declares Python 3.10: a pattern using 3.11's possessive quantifiers or atomic groups
    broke every import there (the sqlscript lexer; found by `make compat`'s 3.10 cell). Here each
    module-level compiled pattern is handed to a real CPython 3.10, in a second, instead of a fresh venv."""
    import importlib
    import pickle
    import pkgutil
    import re

    import pytest

    import airflow_provider_pgbackup
    from tests.compat.conftest import find_python

    python = find_python("3.10")
    if python is None:
        pytest.skip("no CPython 3.10 on this machine (pyenv or the distribution's packages)")
    patterns = []
    for module in pkgutil.walk_packages(airflow_provider_pgbackup.__path__, "airflow_provider_pgbackup."):
        if module.name.startswith("airflow_provider_pgbackup.ui"):
            continue  # the UI plugin needs the api-server's packages; it holds no pattern
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, re.Pattern):
                patterns.append((module.name, value.pattern, value.flags))
    assert len(patterns) > 20  # the walk found the package's patterns
    probe = (
        "import pickle, re, sys\n"
        "for name, pattern, flags in pickle.loads(sys.stdin.buffer.read()):\n"
        "    try:\n"
        "        re.compile(pattern, flags & ~re.UNICODE if isinstance(pattern, bytes) else flags)\n"
        "    except re.error as err:\n"
        "        print(name, pattern[:80], err)\n"
    )
    out = subprocess.run(
        [str(python), "-c", probe], input=pickle.dumps(patterns), capture_output=True, check=True, timeout=60
    )
    assert out.stdout.decode() == ""
