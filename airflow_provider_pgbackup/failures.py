"""Which failures Airflow retries: the one table (SECURITY.md, "Retry or fail now") as code.

Fail now (``AirflowFailException``, no retry): bad input, a corrupt artifact (evidence about the
bytes, also an age authentication failure or a damaged age header), a backup that is not what its
name or the caller says (a plaintext one where an encrypted one belongs), a missing tool
(pg_restore/psql/decompressor), bad credentials, a password a passfile cannot carry, a decryption
key that is not a recipient or is malformed, a missing bucket, a different object in the way, a
measurement of the dump's snapshot that the server refuses for a reason that does not go away
(privileges, a row-level security policy, bad data), a plain SQL backup that would touch what exists
on the server it is restored to, and a configuration error: a connection id that is not defined, a
database or login role that does not exist, a refused password or other authentication, no
``pg_hba.conf`` entry, and a backup the shrink guard holds (``BackupShrank``: the same backup shrinks the same
way). Retry (the exception as it is): the network, a server restart or a dropped
connection, a lock timeout, another run writing the same path, a local backup that is on another
worker (``ArtifactNotOnThisWorker``: a retry may run where it is). A kill is reported as a kill.

Operators, the sensor and the transfers wrap their work in :func:`failure_policy`; nothing else
decides retryability, and each failure is counted here (the metric ``pgbackup.task.failure``, tagged
with the error's class and the decision). Being the one place every provider task passes through, it
also starts each task with the sweep of the private folders a killed task left behind (:func:`scratch.sweep`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import psycopg

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.binaries import PgBinaryNotFound
from airflow_provider_pgbackup.compat import AirflowFailException, AirflowNotFoundException
from airflow_provider_pgbackup.content import ContentRecordError
from airflow_provider_pgbackup.encryption import CiphertextCorrupt, IdentityError, NoMatchingIdentity
from airflow_provider_pgbackup.libpq import UnusablePassword
from airflow_provider_pgbackup.manifest import ManifestError
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.pipeline import DecompressorUnavailable
from airflow_provider_pgbackup.process import PgCommandError
from airflow_provider_pgbackup.scratch import sweep
from airflow_provider_pgbackup.shrink import BackupShrank
from airflow_provider_pgbackup.snapshot import SnapshotMeasurementError
from airflow_provider_pgbackup.sqlscript import SqlScriptRefused
from airflow_provider_pgbackup.storage import (
    ArtifactMismatchError,
    CredentialsError,
    ObjectConflictError,
    StoreNotFound,
    UnsafeObjectName,
)
from airflow_provider_pgbackup.verify import (
    ArtifactCorrupt,
    ArtifactMissing,
    BackupMismatch,
    VerificationUnavailable,
)

log = logging.getLogger(__name__)

#: Retrying cannot help: the same input, bytes, machine or credentials give the same answer.
FAIL_NOW: tuple[type[BaseException], ...] = (
    InvalidOptionError,
    ManifestError,
    ContentRecordError,
    ArtifactCorrupt,
    ArtifactMismatchError,
    ObjectConflictError,
    StoreNotFound,
    UnsafeObjectName,
    CredentialsError,
    PgBinaryNotFound,
    DecompressorUnavailable,
    VerificationUnavailable,
    NoMatchingIdentity,
    IdentityError,
    CiphertextCorrupt,
    BackupMismatch,  # a plaintext backup where an encrypted one belongs: the same answer next time
    UnusablePassword,  # a password a passfile cannot carry (an InvalidOptionError; named for its row)
    SqlScriptRefused,
    AirflowNotFoundException,
    BackupShrank,  # held by the shrink guard: acknowledged by a person, not by a retry
)

#: What libpq and the server say when the connection, not the request, failed: worth a retry.
CONNECTION_LOST = (
    "server closed the connection unexpectedly",
    "connection to server",
    "could not connect to server",
    "terminating connection",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "no connection to the server",
    "could not receive data from server",
    "could not send data to server",
    "SSL SYSCALL error",
    "Connection refused",
    "Connection reset by peer",
    "timeout expired",
)


#: SQLSTATE classes of a failed measurement in the dump's snapshot that a retry cannot change: data
#: exceptions (22), access rules (42: privileges, row-level security, syntax), unsupported features (0A).
#: A table dropped meanwhile (42P01) and everything else (a cancel, a lost connection, a serialization
#: failure, resources) may pass next time.
PERMANENT_SQLSTATE_CLASSES = ("0A", "22", "42")
TRANSIENT_SQLSTATES = ("42P01",)


def permanent_sqlstate(sqlstate: str | None) -> bool:
    """Whether a server error with this SQLSTATE will be raised again by a retry."""
    if not sqlstate or sqlstate in TRANSIENT_SQLSTATES:
        return False
    return sqlstate[:2] in PERMANENT_SQLSTATE_CLASSES


#: What the server and libpq say when the connection's settings are wrong: the same answer next time.
#: libpq puts them after "connection to server at ... failed:", which alone means a lost connection.
CONFIGURATION_ERRORS = re.compile(
    r'FATAL:\s+database "[^\n]*" does not exist'
    r'|FATAL:\s+role "[^\n]*" does not exist'
    r'|FATAL:\s+role "[^\n]*" is not permitted to log in'
    r'|FATAL:\s+permission denied for database "[^\n]*"'
    r'|FATAL:\s+[^\n]*authentication failed for user "[^\n]*"'  # password, ident, peer, LDAP, cert...
    r"|FATAL:\s+no pg_hba\.conf entry for [^\n]*"
    r"|fe_sendauth: no password supplied"
)


def _messages(err: BaseException) -> Iterator[str]:
    """The texts of ``err`` and its causes (a pg tool's: the tail of its stderr). An error re-raised
    from itself (``raise err from err``) is its own cause: each one is read once."""
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and not any(current is s for s in seen):
        seen.append(current)
        yield "\n".join(current.stderr_tail) if isinstance(current, PgCommandError) else str(current)
        current = current.__cause__


def configuration_error(err: BaseException) -> str | None:
    """libpq's or the server's words when a connection failed for its settings (an unknown database
    or role, a refused authentication), not for the network: retrying cannot help. None otherwise."""
    if isinstance(err, PgCommandError) and err.killed:
        return None
    if not isinstance(err, (PgCommandError, psycopg.OperationalError)) and not isinstance(
        err.__cause__, psycopg.OperationalError
    ):
        return None
    for text in _messages(err):
        if match := CONFIGURATION_ERRORS.search(text):
            return " ".join(match.group().split())
    return None


#: What pg_dump says when the role may not read every row of a table (no ``--enable-row-security``).
ROW_SECURITY_REFUSAL = "row-level security policy"
ROW_SECURITY_HINT = (
    "The role is subject to a row-level security policy: pass extra_args=['--enable-row-security'] to dump "
    "only the rows it may see, or dump as a role that bypasses row-level security"
)


def connection_lost(err: PgCommandError) -> bool:
    """The tool failed because its connection to the server broke (a network fault, a restart), not
    because the server refused the connection's settings."""
    text = "\n".join(err.stderr_tail)
    return configuration_error(err) is None and any(marker in text for marker in CONNECTION_LOST)


def sweep_stale_folders() -> None:
    """Remove the private folders (credentials, decrypted or downloaded copies, plaintext staging) that a
    killed task left in TMPDIR (``scratch.sweep``); a problem there never fails the task."""
    try:
        sweep()
    except Exception as err:
        log.warning("Could not sweep the private folders killed tasks left in TMPDIR: %s", err)


@contextlib.contextmanager
def failure_policy(postgres_conn_id: str | None = None) -> Iterator[None]:
    """Start a provider task: sweep what killed tasks left (:func:`sweep_stale_folders`), then turn the
    fail-now errors into ``AirflowFailException`` (message kept, cause chained).

    :param postgres_conn_id: the task's PostgreSQL connection, named when its settings are refused.
    """
    sweep_stale_folders()
    try:
        with _decided(postgres_conn_id):
            yield
    except Exception as err:  # counted by the class of what failed and by what the table decided
        failed = err.__cause__ if isinstance(err, AirflowFailException) and err.__cause__ is not None else err
        if not isinstance(failed, ArtifactMissing):  # a sensor's "not there yet" is a wait, not a failure
            metrics.emit_failure(failed, fail_now=isinstance(err, AirflowFailException))
        raise


@contextlib.contextmanager
def _decided(postgres_conn_id: str | None) -> Iterator[None]:
    """The table: fail-now errors become ``AirflowFailException`` (message kept, cause chained)."""
    try:
        yield
    except AirflowFailException:
        raise
    except FAIL_NOW as err:
        raise AirflowFailException(str(err)) from err
    except SnapshotMeasurementError as err:
        if permanent_sqlstate(err.sqlstate):
            raise AirflowFailException(str(err)) from err
        raise
    except PgCommandError as err:
        if not err.killed and err.tool == "pg_dump" and ROW_SECURITY_REFUSAL in "\n".join(err.stderr_tail):
            raise AirflowFailException(f"{err}\n{ROW_SECURITY_HINT}") from err
        _fail_now_if_misconfigured(err, postgres_conn_id)
        raise
    except Exception as err:
        _fail_now_if_misconfigured(err, postgres_conn_id)
        raise


def _fail_now_if_misconfigured(err: BaseException, postgres_conn_id: str | None) -> None:
    """Raise ``AirflowFailException`` when ``err`` says the connection's settings are refused."""
    reason = configuration_error(err)
    if reason is not None:
        raise AirflowFailException(_refused_settings(reason, postgres_conn_id, err)) from err


def _refused_settings(reason: str, postgres_conn_id: str | None, err: BaseException) -> str:
    where = f"connection {postgres_conn_id!r}" if postgres_conn_id else "the connection"
    return (
        f"{where} cannot be used: {reason}. Retrying cannot help: fix the connection (or the database "
        f"named) and run the task again. ({type(err).__name__}: {err})"
    )


def restore_failure(err: PgCommandError, what: str) -> BaseException:
    """A pg_restore/psql failure: a dropped connection is retried, a kill stays a kill, settings the
    server refuses (an authentication failure, an unknown database) and anything else (an SQL error
    replaying the backup) give the same answer next time: fail now."""
    if err.killed:
        return err
    reason = configuration_error(err)
    if reason is not None:
        return AirflowFailException(f"{what} failed: {_refused_settings(reason, None, err)}")
    if connection_lost(err):
        return err
    return AirflowFailException(f"{what} failed: {err}")
