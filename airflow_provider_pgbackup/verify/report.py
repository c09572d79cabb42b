"""What a verification found: the report (the sensor's XCom) and the two outcomes that are not "ok"."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from airflow_provider_pgbackup.sqlscript import SqlScript


@dataclass
class CheckResult:
    """One check that ran: ``status`` is ``ok``, ``failed``, ``missing`` or ``skipped``; ``detail`` says
    what it saw."""

    name: str
    status: str
    duration_ms: float
    detail: str = ""


@dataclass
class VerificationReport:
    """What verification did and found; :meth:`to_dict` is JSON-serialisable (the sensor's XCom)."""

    artifact: str
    manifest: str
    kind: str | None = None
    format: str | None = None
    compression: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    failed_check: str | None = None
    failure_reason: str | None = None
    pg_restore: str | None = None
    toc_entries: int | None = None
    toc_entry_counts: dict[str, int] = field(default_factory=dict)
    tables_in_toc: list[str] = field(default_factory=list)
    sql_bytes: int | None = None
    duration_ms: float = 0.0
    #: the lock in force on the verified objects and the manifest (``mode``, ``until``, ``legal_hold``;
    #: the weakest of them), as the store reports it; None: not locked (or a store without locks)
    lock: dict[str, Any] | None = None
    #: plain SQL read with ``scan_script``: what it would do beyond its database (not in the XCom)
    sql_script: SqlScript | None = None

    @property
    def ok(self) -> bool:
        return self.failed_check is None and any(c.name == "exists" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, sql_script=None))
        del data["sql_script"]
        data["ok"] = self.ok
        return data


class VerificationError(Exception):
    """Base of :class:`ArtifactMissing` and :class:`ArtifactCorrupt`; carries the report so far."""

    def __init__(self, message: str, report: VerificationReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class ArtifactMissing(VerificationError):
    """The artifact or its manifest is not there (yet): a sensor keeps waiting."""


class VerificationUnavailable(VerificationError):
    """A check could not run (its tool is missing, or it was stopped): nothing was learnt about the
    bytes, so the backup is neither good nor corrupt. ``check`` names it."""

    def __init__(self, check: str, reason: str, report: VerificationReport | None = None) -> None:
        super().__init__(f"backup verification could not run check {check!r}: {reason}", report)
        self.check = check
        self.reason = reason


class BackupMismatch(VerificationError):
    """The backup is not what its name or the caller says it is: an ``.age`` name, or a decryption key,
    for a backup whose manifest records no encryption (a plaintext backup where an encrypted one belongs),
    or a recorded encryption under a name without ``.age``. Refused, and never called corrupt: that is
    said only on evidence about the bytes. ``check`` names the check."""

    def __init__(self, check: str, reason: str, report: VerificationReport | None = None) -> None:
        super().__init__(f"backup refused at check {check!r}: {reason}", report)
        self.check = check
        self.reason = reason


class ArtifactCorrupt(VerificationError):
    """The backup is there but bad; ``check`` names the check that failed and ``reason`` says why."""

    def __init__(self, check: str, reason: str, report: VerificationReport | None = None) -> None:
        super().__init__(f"backup verification failed at check {check!r}: {reason}", report)
        self.check = check
        self.reason = reason
