"""Which failures Airflow retries: the one table (SECURITY.md, "Retry or fail now") as code.

Fail now (``AirflowFailException``, no retry): bad input, a corrupt artifact (evidence about the
bytes, also an age authentication failure), a missing tool (pg_restore/psql/decompressor), bad
credentials, a decryption key that is not a recipient or is malformed, a missing bucket, a different
object in the way, a measurement of the dump's snapshot that the server refuses for a reason that does
not go away (privileges, a row-level security policy, bad data). Retry (the exception as it is): the
network, a server restart or a dropped connection, a lock timeout, another run writing the same path,
a local backup that is on another worker (``ArtifactNotOnThisWorker``: a retry may run where it is). A
kill is reported as a kill.

Operators, the sensor and the transfers wrap their work in :func:`failure_policy`; nothing else
decides retryability.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow_provider_pgbackup.binaries import PgBinaryNotFound
from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.content import ContentRecordError
from airflow_provider_pgbackup.encryption import CiphertextCorrupt, IdentityError, NoMatchingIdentity
from airflow_provider_pgbackup.manifest import ManifestError
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.pipeline import DecompressorUnavailable
from airflow_provider_pgbackup.process import PgCommandError
from airflow_provider_pgbackup.snapshot import SnapshotMeasurementError
from airflow_provider_pgbackup.storage import (
    ArtifactMismatchError,
    CredentialsError,
    ObjectConflictError,
    StoreNotFound,
)
from airflow_provider_pgbackup.verify import ArtifactCorrupt, VerificationUnavailable

#: Retrying cannot help: the same input, bytes, machine or credentials give the same answer.
FAIL_NOW: tuple[type[BaseException], ...] = (
    InvalidOptionError,
    ManifestError,
    ContentRecordError,
    ArtifactCorrupt,
    ArtifactMismatchError,
    ObjectConflictError,
    StoreNotFound,
    CredentialsError,
    PgBinaryNotFound,
    DecompressorUnavailable,
    VerificationUnavailable,
    NoMatchingIdentity,
    IdentityError,
    CiphertextCorrupt,
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


#: What pg_dump says when the role may not read every row of a table (no ``--enable-row-security``).
ROW_SECURITY_REFUSAL = "row-level security policy"
ROW_SECURITY_HINT = (
    "The role is subject to a row-level security policy: pass extra_args=['--enable-row-security'] to dump "
    "only the rows it may see, or dump as a role that bypasses row-level security"
)


def connection_lost(err: PgCommandError) -> bool:
    """The tool failed because its connection to the server broke (a network fault, a restart)."""
    text = "\n".join(err.stderr_tail)
    return any(marker in text for marker in CONNECTION_LOST)


@contextlib.contextmanager
def failure_policy() -> Iterator[None]:
    """Turn the fail-now errors into ``AirflowFailException`` (message kept, cause chained)."""
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
        raise


def restore_failure(err: PgCommandError, what: str) -> BaseException:
    """A pg_restore/psql failure: a dropped connection is retried, a kill stays a kill, anything else
    (an SQL error replaying the backup) gives the same answer next time: fail now."""
    if err.killed or connection_lost(err):
        return err
    return AirflowFailException(f"{what} failed: {err}")
