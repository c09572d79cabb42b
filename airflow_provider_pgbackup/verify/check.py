"""What a verification check is: a small object with a ``name`` that reads one :class:`Run` and either
appends what it saw or raises what it found (:class:`Fail`, :class:`Mismatch`, :class:`Skip`,
:class:`Unavailable`). The checks themselves are in :mod:`.artifact_checks` and :mod:`.content_checks`;
:mod:`.checks` lists them in the order they run.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.process import PgProcessRunner
from airflow_provider_pgbackup.storage import ArtifactSource
from airflow_provider_pgbackup.verify.archive import TocSummary
from airflow_provider_pgbackup.verify.report import (
    VerificationReport,
)


class Fail(Exception):
    """A check saw bad bytes: the backup is corrupt (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Mismatch(Fail):
    """The backup is not what its name or the caller says (refused, but no evidence about the bytes)."""


class Skip(Exception):
    """A check does not apply to this backup (its reason is recorded)."""


class Unavailable(Exception):
    """A check cannot run here (a missing tool): no verdict on the bytes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Run:
    """One verification run: the source, what the caller asked, the report, and what checks found."""

    source: ArtifactSource
    pg_bin_dir: str | None
    runner: PgProcessRunner | None
    min_size_bytes: int
    max_age: datetime.timedelta | None
    now: datetime.datetime | None
    report: VerificationReport
    raw_manifest: bytes = b""
    sizes: dict[str, int] | int = 0
    toc: TocSummary | None = None
    passed: set[str] = field(default_factory=set)
    #: pyrage identities from ``decryption_conn_id`` (never logged); None: no key, ciphertext checks only
    identities: list[Any] | None = None
    #: plain SQL: also scan what the script would do beyond its database (``report.sql_script``)
    scan_script: bool = False
    _manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        assert self._manifest is not None, "the manifest check runs first"
        return self._manifest


class Check:
    """One check. ``run`` appends what it saw to ``detail``, or raises :class:`Fail` / :class:`Skip`."""

    name: ClassVar[str]
    switch: ClassVar[str | None] = None
    requires: ClassVar[str | None] = None

    def applies(self, run: Run) -> bool:
        """False when the check is not asked for at all (not even recorded as skipped)."""
        return True

    def run(self, run: Run, detail: list[str]) -> None:
        raise NotImplementedError
