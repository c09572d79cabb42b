"""The checks, as a list of small objects run cheapest first (``CHECKS``).

Each check has a ``name`` (what a failure names), an optional ``switch`` (the keyword of
:func:`verify_backup`, the sensor and the drill that turns it off) and ``requires`` (a check whose
result it reads). Adding a check is one :class:`~.check.Check` subclass (in :mod:`.artifact_checks` for
the bytes and the manifest, in :mod:`.content_checks` for what they hold) plus one entry in ``CHECKS``;
the switches the sensor and the drill offer derive from that list (``SWITCHES``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.verify.artifact_checks import Age, Checksum, Exists, ManifestCheck, Size
from airflow_provider_pgbackup.verify.check import Check, Fail, Mismatch, Run, Skip, Unavailable
from airflow_provider_pgbackup.verify.content_checks import Contents, Decryption, EncryptionHeader, Tables
from airflow_provider_pgbackup.verify.report import (
    ArtifactCorrupt,
    ArtifactMissing,
    BackupMismatch,
    CheckResult,
    VerificationUnavailable,
)

__all__ = [
    "CHECKS",
    "SWITCHES",
    "Age",
    "Check",
    "Checksum",
    "Contents",
    "Decryption",
    "EncryptionHeader",
    "Exists",
    "Fail",
    "ManifestCheck",
    "Mismatch",
    "Run",
    "Size",
    "Skip",
    "Tables",
    "Unavailable",
    "check_switches",
    "run_checks",
]

#: The checks, cheapest first.
CHECKS: tuple[Check, ...] = (
    Exists(),
    ManifestCheck(),
    Age(),
    Size(),
    Checksum(),
    EncryptionHeader(),
    Decryption(),
    Contents(),
    Tables(),
)
#: The keywords that switch checks off, in order (sensor, drill and :func:`verify_backup` take them).
SWITCHES: tuple[str, ...] = tuple(dict.fromkeys(c.switch for c in CHECKS if c.switch))


def check_switches(switches: Mapping[str, Any]) -> dict[str, bool]:
    """Every switch with its value (default True); an unknown name or a non-boolean is an error."""
    unknown = sorted(set(switches) - set(SWITCHES))
    if unknown:
        raise InvalidOptionError(
            f"unknown verification switches {unknown}; the checks offer: {', '.join(SWITCHES)}"
        )
    values = {name: switches.get(name, True) for name in SWITCHES}
    for name, value in values.items():
        if not isinstance(value, bool):
            raise InvalidOptionError(f"{name} {value!r} must be True or False")
    return values


def run_checks(run: Run, switches: Mapping[str, bool]) -> None:
    """Run every check that applies, in order; the first failure raises naming its check."""
    for check in CHECKS:
        if check.switch and not switches[check.switch]:
            continue
        if check.requires and check.requires not in run.passed:
            continue
        if not check.applies(run):
            continue
        detail: list[str] = []
        started = time.monotonic()

        def record(status: str, text: str, started: float = started, name: str = check.name) -> None:
            elapsed = round((time.monotonic() - started) * 1000, 2)
            run.report.checks.append(CheckResult(name, status, elapsed, text))

        try:
            check.run(run, detail)
        except Skip as skip:
            record("skipped", str(skip))
            continue
        except ArtifactMissing as missing:
            record("missing", str(missing))
            raise
        except Unavailable as unavailable:
            record("unavailable", unavailable.reason)
            raise VerificationUnavailable(check.name, unavailable.reason, run.report) from unavailable
        except Fail as fail:
            record("failed", fail.reason)
            run.report.failed_check = check.name
            run.report.failure_reason = fail.reason
            outcome = BackupMismatch if isinstance(fail, Mismatch) else ArtifactCorrupt
            raise outcome(check.name, fail.reason, run.report) from fail
        record("ok", "; ".join(detail))
        run.passed.add(check.name)
