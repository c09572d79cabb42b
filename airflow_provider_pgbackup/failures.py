"""Which failures Airflow retries: the one table (SECURITY.md, "Retry or fail now") as code.

Fail now (``AirflowFailException``, no retry): bad input, a corrupt artifact (evidence about the
bytes, also an age authentication failure or a damaged age header), a backup that is not what its
name or the caller says (a plaintext one where an encrypted one belongs), a missing tool
(pg_restore/psql/decompressor), bad credentials, a password a passfile cannot carry, a decryption
key that is not a recipient or is malformed, a missing bucket, a different object in the way, a
measurement of the dump's snapshot that the server refuses for a reason that does not go away
(privileges, a row-level security policy, bad data). Retry (the exception as it is): the network, a
server restart or a dropped connection, a lock timeout, another run writing the same path, a local
backup that is on another worker (``ArtifactNotOnThisWorker``: a retry may run where it is). A kill is
reported as a kill.

Operators, the sensor and the transfers wrap their work in :func:`failure_policy`; nothing else
decides retryability. Being the one place every provider task passes through, it also starts each task
with the sweep of the private folders a killed task left behind (:func:`scratch.sweep`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from airflow_provider_pgbackup.binaries import PgBinaryNotFound
from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.content import ContentRecordError
from airflow_provider_pgbackup.encryption import CiphertextCorrupt, IdentityError, NoMatchingIdentity
from airflow_provider_pgbackup.libpq import UnusablePassword
from airflow_provider_pgbackup.manifest import ManifestError
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.pipeline import DecompressorUnavailable
from airflow_provider_pgbackup.process import PgCommandError
from airflow_provider_pgbackup.scratch import sweep
from airflow_provider_pgbackup.snapshot import SnapshotMeasurementError
from airflow_provider_pgbackup.storage import (
    ArtifactMismatchError,
    CredentialsError,
    ObjectConflictError,
    StoreNotFound,
    UnsafeObjectName,
)
from airflow_provider_pgbackup.verify import ArtifactCorrupt, BackupMismatch, VerificationUnavailable

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


def connection_lost(err: PgCommandError) -> bool:
    """The tool failed because its connection to the server broke (a network fault, a restart)."""
    text = "\n".join(err.stderr_tail)
    return any(marker in text for marker in CONNECTION_LOST)


def sweep_stale_folders() -> None:
    """Remove the private folders (credentials, decrypted or downloaded copies, plaintext staging) that a
    killed task left in TMPDIR (``scratch.sweep``); a problem there never fails the task."""
    try:
        sweep()
    except Exception as err:
        log.warning("Could not sweep the private folders killed tasks left in TMPDIR: %s", err)


@contextlib.contextmanager
def failure_policy() -> Iterator[None]:
    """Start a provider task: sweep what killed tasks left (:func:`sweep_stale_folders`), then turn the
    fail-now errors into ``AirflowFailException`` (message kept, cause chained)."""
    sweep_stale_folders()
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


def restore_failure(err: PgCommandError, what: str) -> BaseException:
    """A pg_restore/psql failure: a dropped connection is retried, a kill stays a kill, anything else
    (an SQL error replaying the backup) gives the same answer next time: fail now."""
    if err.killed or connection_lost(err):
        return err
    return AirflowFailException(f"{what} failed: {err}")
