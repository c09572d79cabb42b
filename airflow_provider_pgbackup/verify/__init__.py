"""Verification: prove that a backup (artifact + manifest) is complete and readable, cheapest check first.

Used by :class:`~airflow_provider_pgbackup.sensors.backup_artifact.PgBackupArtifactSensor` and
:class:`~airflow_provider_pgbackup.operators.pg_restore.PgRestoreOperator`. The checks are objects in
:data:`~airflow_provider_pgbackup.verify.checks.CHECKS`, in this order:

``exists``
    the artifact and its manifest are there. Missing raises :class:`ArtifactMissing` ("not there
    yet"); every later failure raises :class:`ArtifactCorrupt` ("there and bad") naming the check,
    except a backup that is not what its name or the caller says (:class:`BackupMismatch`).
``manifest``
    the manifest parses and describes this artifact.
``age``
    (only with ``max_age``) the manifest's ``finished_at`` is recent enough.
``size``
    size > 0, >= ``min_size_bytes`` and equal to the manifest's; for a directory artifact every file
    the manifest lists is there with its size, and no other file is.
``checksum`` (switch ``verify_checksum``)
    sha256 equal to the manifest's (directory: every file's digest and the combined digest).
``encryption``
    (encrypted backups, or named ``.age``, or given a key) the manifest records encryption (else
    :class:`BackupMismatch`: a plaintext backup where an encrypted one belongs), and a well-formed age
    v1 header whose stanzas match the recorded recipients.
``decryption`` (switch ``verify_checksum``; needs a key: ``identities``)
    every byte decrypts and authenticates; the plaintext's size and sha256 equal the manifest's.
``contents`` (switch ``verify_contents``)
    custom / tar / directory: ``pg_restore --list`` succeeds, run by a pg_restore whose major version
    can read the archive. Plain SQL (pg_dump or pg_dumpall): the stream decompresses cleanly and ends
    with the tool's completion trailer.
``tables`` (switch ``verify_tables``)
    archives only: the table of contents has a ``TABLE DATA`` entry for every table whose rows the
    manifest counted.

Where the bytes come from is an :class:`~airflow_provider_pgbackup.storage.ArtifactSource` from
:func:`airflow_provider_pgbackup.storage.open_source` (local path or object store): file artifacts
are read as a stream of chunks, only a directory-format artifact needs a local folder.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Mapping
from typing import Any

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.process import PgProcessRunner
from airflow_provider_pgbackup.storage import ArtifactSource, open_source
from airflow_provider_pgbackup.verify.archive import (
    SQL_TRAILERS,
    TocSummary,
    check_sql_stream,
    list_archive,
    parse_toc,
)
from airflow_provider_pgbackup.verify.checks import CHECKS, SWITCHES, Run, check_switches, run_checks
from airflow_provider_pgbackup.verify.report import (
    ArtifactCorrupt,
    ArtifactMissing,
    BackupMismatch,
    CheckResult,
    VerificationError,
    VerificationReport,
    VerificationUnavailable,
)

#: The names of the checks, in the order they run.
CHECK_NAMES = tuple(c.name for c in CHECKS)


def parse_max_age(max_age: datetime.timedelta | float | None) -> datetime.timedelta | None:
    if max_age is None:
        return None
    if isinstance(max_age, bool) or not isinstance(max_age, (datetime.timedelta, int, float)):
        raise InvalidOptionError(f"max_age {max_age!r} must be a timedelta or a number of seconds")
    try:
        age = max_age if isinstance(max_age, datetime.timedelta) else datetime.timedelta(seconds=max_age)
    except (OverflowError, ValueError) as err:  # NaN, infinity, beyond timedelta's range
        raise InvalidOptionError(f"max_age {max_age!r} must be a finite duration") from err
    if age.total_seconds() <= 0:
        raise InvalidOptionError(f"max_age {max_age!r} must be positive")
    return age


def check_min_size(min_size_bytes: Any) -> int:
    if isinstance(min_size_bytes, bool) or not isinstance(min_size_bytes, int) or min_size_bytes < 1:
        raise InvalidOptionError(f"min_size_bytes {min_size_bytes!r} must be a whole number >= 1")
    return min_size_bytes


def verify_backup(
    source: ArtifactSource,
    *,
    min_size_bytes: int = 1,
    max_age: datetime.timedelta | float | None = None,
    pg_bin_dir: str | None = None,
    runner: PgProcessRunner | None = None,
    now: datetime.datetime | None = None,
    switches: Mapping[str, bool] | None = None,
    identities: list[Any] | None = None,
    scan_script: bool = False,
    **switch_kwargs: bool,
) -> VerificationReport:
    """Run the checks (module docstring) on a backup, cheapest first, and return the report.

    :param source: where the artifact and manifest are read from (``storage.open_source``).
    :param min_size_bytes: smallest acceptable artifact size (at least 1: an empty dump is never good).
    :param max_age: the manifest's ``finished_at`` must be at most this old (timedelta or seconds).
    :param pg_bin_dir: folder searched first for pg_restore.
    :param runner: the process runner for pg_restore and decompressors (default: a new one).
    :param now: the current time (tests); default: now, UTC.
    :param switches: ``{name: on}`` for the switches in ``SWITCHES`` (default: all on); they may also
        be passed as keywords. ``verify_checksum``: compare the sha256 (reads every byte);
        ``verify_contents``: parse the content (``pg_restore --list``, or the SQL stream to its
        trailer); ``verify_tables``: archives, the TOC holds data for every table the manifest counted.
    :param identities: age identities (``encryption.parse_identities``) for an encrypted backup: the
        plaintext is then checked (decryption, contents, tables); without them only the ciphertext is.
    :param scan_script: plain SQL: while the contents check reads the script, also record what it would
        do beyond its database (``report.sql_script``, for the restore's guard; not in ``to_dict``).
    :raises ArtifactMissing: the artifact or its manifest is not there yet.
    :raises ArtifactCorrupt: a check failed; ``check`` names it and ``report`` holds what ran.
    :raises BackupMismatch: the backup is not what its name or ``identities`` say (encrypted).
    """
    run = Run(
        source=source,
        pg_bin_dir=pg_bin_dir,
        runner=runner,
        min_size_bytes=check_min_size(min_size_bytes),
        max_age=parse_max_age(max_age),
        now=now,
        report=VerificationReport(artifact=source.location.uri, manifest=source.location.manifest_uri),
        identities=identities,
        scan_script=scan_script,
    )
    enabled = check_switches({**(switches or {}), **switch_kwargs})
    started = time.monotonic()
    try:
        run_checks(run, enabled)
    finally:
        run.report.duration_ms = round((time.monotonic() - started) * 1000, 2)
        metrics.emit_verification(run.report, source.location.scheme)
    return run.report


def verify_artifact(path: str | os.PathLike[str], **kwargs: Any) -> VerificationReport:
    """Verify the backup at a local path or URI (artifact) and its manifest beside it.

    :param path: the artifact (file or folder); the manifest is beside it.
    :param kwargs: as for :func:`verify_backup`.
    """
    return verify_backup(open_source(path), **kwargs)


__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "SQL_TRAILERS",
    "SWITCHES",
    "ArtifactCorrupt",
    "ArtifactMissing",
    "BackupMismatch",
    "CheckResult",
    "TocSummary",
    "VerificationError",
    "VerificationReport",
    "VerificationUnavailable",
    "check_min_size",
    "check_sql_stream",
    "list_archive",
    "parse_max_age",
    "parse_toc",
    "verify_artifact",
    "verify_backup",
]
