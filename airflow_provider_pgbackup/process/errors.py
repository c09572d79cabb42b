"""The errors of a pg tool run: :class:`PgCommandError` (exit code, stderr tail) and the retryable
:class:`PgLockTimeout`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from airflow_provider_pgbackup.compat import AirflowException


class PgCommandError(AirflowException):
    """A pg tool exited non-zero; the message carries its exit code and the tail of its stderr.

    ``killed`` is True when the provider stopped it (``on_kill``): a kill is never a verdict on the bytes.
    """

    def __init__(self, tool: str, returncode: int, stderr_tail: Sequence[str], killed: bool = False):
        self.tool = tool
        self.returncode = returncode
        self.stderr_tail = tuple(stderr_tail)
        self.killed = killed
        how = "was stopped" if killed else f"failed with exit code {returncode}"
        tail = "\n".join(self.stderr_tail) or "(no output on stderr)"
        super().__init__(f"{tool} {how}:\n{tail}")


class PgLockTimeout(PgCommandError):
    """pg_dump (alone, or as pg_dumpall's child) gave up waiting for a table lock
    (``lock_wait_timeout``); retryable."""

    @classmethod
    def from_error(cls, err: PgCommandError, lock_wait_timeout: str | None) -> PgLockTimeout | None:
        """pg_dump reports its lock wait as a statement timeout on ``LOCK TABLE``; say what it means,
        and in which database when pg_dumpall names it."""
        text = "\n".join(err.stderr_tail)
        if not lock_wait_timeout or "statement timeout" not in text or "LOCK TABLE" not in text:
            return None
        detail = next((line for line in err.stderr_tail if "LOCK TABLE" in line), "")
        database = _DUMPALL_FAILED_ON.search(text)
        where = f" in database {database.group(1)}" if database else ""
        lock = cls(err.tool, err.returncode, err.stderr_tail)
        lock.args = (cls._message(err.tool, lock_wait_timeout, detail, where),)
        return lock

    @classmethod
    def for_session(cls, who: str, lock_wait_timeout: str | None, detail: str) -> PgLockTimeout:
        """The provider's own session (``who``) waited ``lock_wait_timeout`` for a table lock in vain."""
        lock = cls(who, 0, [detail])
        lock.args = (cls._message(who, lock_wait_timeout, detail),)
        return lock

    @staticmethod
    def _message(who: str, lock_wait_timeout: str | None, detail: str, where: str = "") -> str:
        return (
            f"{who} could not lock a table{where} within lock_wait_timeout={lock_wait_timeout}: another "
            f"session holds a conflicting lock ({detail.strip()}). The task may be retried."
        )


# pg_dumpall's last words when one of its pg_dump children failed.
_DUMPALL_FAILED_ON = re.compile(r'pg_dump failed on database ("[^\n]*"), exiting')
