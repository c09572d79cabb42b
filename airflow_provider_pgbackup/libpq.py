"""An Airflow ``postgres`` connection -> a libpq session: plain ``PG*`` variables plus a private passfile.

The password never reaches argv or a ``PGPASSWORD`` variable, and where Linux allows it never a file
system either: the passfile (and inline PEM content such as an ``sslkey``) is an in-memory file
(``memfd_create``, mode 0600) that the pg tools inherit as a descriptor and open as ``/proc/self/fd/N``
(``PGPASSFILE``, ``PGSSLKEY``); libpq's checks (a regular file, no group or world access) hold for it.
It is gone when the session ends, and with the last process holding it if the task is killed. Where
in-memory files are unavailable, the files go into a private 0700 folder (``scratch.private_folder``)
removed when the session ends, or by the next task's sweep after a SIGKILL. Every other connection
setting travels as a plain ``PG*`` variable, mapped declaratively below. Children get a minimal
environment, so secrets held in the worker's own environment (``AIRFLOW_CONN_*``...) never reach them
either. This module reads no connection itself: the hook hands it the Connection object.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from airflow_provider_pgbackup.compat import AirflowException
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.process import ChildEnv, inherited_env
from airflow_provider_pgbackup.scratch import make_private_folder

# Airflow connection field -> libpq keyword. The password is not here: it takes the passfile road.
CONNECTION_FIELDS: dict[str, str] = {"host": "host", "port": "port", "login": "user", "schema": "dbname"}

# libpq keyword -> environment variable, for every keyword accepted from the connection's extras.
LIBPQ_ENV: dict[str, str] = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "client_encoding": "PGCLIENTENCODING",
    "service": "PGSERVICE",
    "hostaddr": "PGHOSTADDR",
    "sslcertmode": "PGSSLCERTMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcompression": "PGSSLCOMPRESSION",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
}
# libpq keywords with no environment variable: the provider's own SQL connections (psycopg) use them;
# the pg tools cannot get them without a connection string on argv, so they keep libpq's defaults.
LIBPQ_CONNECT_ONLY = (
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
# Extras that may hold a file's PEM content instead of a path; such content is written to a private file.
PEM_EXTRAS = ("sslrootcert", "sslcert", "sslkey", "sslcrl")
# Extras that are secret in themselves and can only travel through files.
SECRET_EXTRAS = ("sslkey",)
# Extras the provider cannot pass without a secret on argv or in the environment.
UNSUPPORTED_EXTRAS = {
    "sslpassword": "encrypted client keys are not supported; use an unencrypted key in 'sslkey'",
    "passfile": "the provider writes its own passfile from the connection's password",
}
# Extras the provider reads itself (not libpq settings).
PROVIDER_EXTRAS = ("pg_bin_dir",)
# Extras the postgres provider's form and PostgresHook users set that only mean something to Python code
# (cursor classes, SQLAlchemy URLs, log options): ignored without a word, the connection works unchanged.
PYTHON_ONLY_EXTRAS = (
    "cursor",
    "sqlalchemy_scheme",
    "sqlalchemy_query",
    "enable_log_db_messages",
    "log_level",
    "aws_conn_id",
    "azure_conn_id",
    "redshift",
    "redshift-serverless",
    "cluster-identifier",
    "workgroup-name",
    "__extra__",
)
# Extras that change how PostgresHook logs in: a token instead of the connection's password.
TOKEN_LOGIN_EXTRAS = ("iam",)
POSTGRES_CONN_TYPES = ("postgres", "postgresql")


class UnusablePassword(InvalidOptionError):
    """The connection's password cannot be carried by a libpq passfile (a line break, a trailing carriage
    return, a NUL): pg_dump, pg_restore and psql could never log in with it. Configuration: fail now."""


class PrivateFiles:
    """A session's private files: in-memory files (Linux ``memfd_create``, 0600) handed to children as
    inherited descriptors, named ``/proc/self/fd/N``; else files in a private 0700 folder in TMPDIR.

    :meth:`close` closes the descriptors and removes the folder.
    """

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.folder: Path | None = None

    @staticmethod
    def _memory_file(name: str) -> int | None:
        """A new 0600 in-memory file that this process (and a child inheriting it) opens as a regular
        file by ``/proc/self/fd/N``, or None where that is not available."""
        create = getattr(os, "memfd_create", None)
        if create is None:
            return None
        try:
            fd: int = create(f"pgbackup-{name}", os.MFD_CLOEXEC)
        except OSError:
            return None
        try:
            os.fchmod(fd, 0o600)
            info = os.stat(f"/proc/self/fd/{fd}")  # what libpq stat()s before it opens a passfile or key
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o777 == 0o600:
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def add(self, name: str, content: str) -> str:
        """A private file holding ``content``; returns the path children and this process open it by."""
        data = content.encode("utf-8")
        fd = self._memory_file(name)
        if fd is None:
            if self.folder is None:
                self.folder = make_private_folder("credentials")
            return str(write_private(self.folder / name, content))
        self.fds.append(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return f"/proc/self/fd/{fd}"

    def close(self) -> None:
        while self.fds:
            with contextlib.suppress(OSError):
                os.close(self.fds.pop())
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


@dataclass
class LibpqSession:
    """Connection settings for one use: ``env`` for child processes, ``connect()`` for SQL.

    Its private files (passfile, inline PEM, a ``--filter`` file) are in-memory files that ``env`` hands
    to each child (a :class:`~airflow_provider_pgbackup.process.ChildEnv`), or files in a private 0700
    folder; they are closed or removed when the session's ``with`` block ends, whatever happened inside.
    """

    params: dict[str, str]
    password: str | None
    env: ChildEnv
    conn_id: str
    pg_bin_dir: str | None = None  # the hook's argument, else the connection's extra
    files: PrivateFiles = field(default_factory=PrivateFiles)

    def private_file(self, name: str, content: str) -> str:
        """A private file for the session's children (and this process); returns its path."""
        path = self.files.add(name, content)
        self.env.pass_fds = tuple(self.files.fds)
        return path

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        params: dict[str, Any] = dict(self.params)
        if dbname is not None:
            params["dbname"] = dbname
        if self.password is not None:
            params["password"] = self.password
        try:
            return psycopg.connect(**params, **kwargs)
        except psycopg.OperationalError as err:
            # libpq messages name host, port and user, never the password; keep the cause.
            raise AirflowException(
                f"could not connect to PostgreSQL (connection {self.conn_id!r}): {str(err).strip()}"
            ) from err


def is_true(value: Any) -> bool:
    """An extra's truth as the postgres provider's form stores it: a bool, or ``"true"``/``"1"``..."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def check_token_login(extras: dict[str, Any], conn_id: str) -> None:
    """Refuse a connection that logs in with a cloud IAM token (``iam`` extra), naming the extra.

    PostgresHook trades the ``iam`` extra (with ``aws_conn_id``, ``redshift``, ``azure_conn_id``) for a
    short-lived token. Dumping with the connection's password instead would fail later with a confusing
    authentication error, so the connection is refused before anything starts.
    """
    for key in TOKEN_LOGIN_EXTRAS:
        if is_true(extras.get(key)):
            raise InvalidOptionError(
                f"connection {conn_id!r} has the extra {key!r} set (IAM token login for RDS, Aurora, "
                "Redshift or Azure): airflow-provider-pgbackup does not fetch IAM tokens; give the "
                "connection a password or a client certificate (sslcert/sslkey), or remove the extra"
            )


def passfile_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def check_passfile_password(password: str | None, conn_id: str) -> None:
    """Refuse a password a passfile cannot carry, naming the connection and never the password.

    libpq reads a passfile line by line and strips the line's trailing carriage returns and newlines
    (``pg_strip_crlf``), and C strings end at a NUL: such a password would reach the pg tools cut short,
    and every dump would fail with "password authentication failed" after the provider's own SQL
    connection (which takes the password directly) had succeeded.
    """
    if not password:
        return
    problem = None
    if "\n" in password:
        problem = "contains a line break"
    elif password.endswith("\r"):
        problem = "ends with a carriage return"
    elif "\0" in password:
        problem = "contains a NUL character"
    if problem is not None:
        raise UnusablePassword(
            f"the password of connection {conn_id!r} {problem} (the password is not shown): a libpq "
            "password file cannot hold it, so pg_dump, pg_restore and psql could never log in with it. "
            "Give the role a password without line breaks, a trailing carriage return or NUL, or use a "
            "client certificate (sslcert/sslkey)"
        )


def write_private(path: Path, content: str) -> Path:
    """Create ``path`` (it must not exist) with mode 0600 and ``content``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    return path


@contextlib.contextmanager
def open_session(
    conn: Any,
    conn_id: str,
    *,
    database: str | None = None,
    pg_bin_dir: str | None = None,
    log: Any = None,
) -> Iterator[LibpqSession]:
    """Map an Airflow ``postgres`` Connection to a :class:`LibpqSession`; its secret files go on exit.

    :param conn: the Connection (``conn_type``, ``host``, ``port``, ``login``, ``password``, ``schema``,
        ``extra_dejson``).
    :param conn_id: its id, for messages.
    :param database: overrides the connection's schema; None or "" keeps it.
    :param pg_bin_dir: the caller's folder for pg tools (else the connection's ``pg_bin_dir`` extra).
    :param log: where to say which extras are ignored.
    """
    from airflow_provider_pgbackup.compat import mask_secret

    if conn.conn_type not in POSTGRES_CONN_TYPES:
        raise InvalidOptionError(
            f"connection {conn_id!r} has type {conn.conn_type!r}; a 'postgres' connection is needed"
        )
    extras = dict(conn.extra_dejson)
    for key, reason in UNSUPPORTED_EXTRAS.items():
        if extras.get(key):
            raise InvalidOptionError(f"connection extra {key!r} is not supported: {reason}")
    check_token_login(extras, conn_id)
    if conn.password:
        mask_secret(conn.password)
    check_passfile_password(conn.password, conn_id)
    params: dict[str, str] = {}
    for attr, keyword in CONNECTION_FIELDS.items():
        value = getattr(conn, attr, None)
        if value not in (None, ""):
            params[keyword] = str(value)
    if database:  # None or "" (an empty rendered template) keeps the connection's schema
        params["dbname"] = database
    params.setdefault("application_name", "airflow-provider-pgbackup")
    known = (*LIBPQ_ENV, *LIBPQ_CONNECT_ONLY, *PROVIDER_EXTRAS, *PYTHON_ONLY_EXTRAS, *TOKEN_LOGIN_EXTRAS)
    ignored = sorted(k for k in extras if k not in known)
    if ignored and log is not None:
        log.info("Ignoring connection extras that are not libpq settings: %s", ", ".join(ignored))
    files = PrivateFiles()
    try:
        for keyword in LIBPQ_ENV:
            value = extras.get(keyword)
            if value in (None, "") or (keyword in CONNECTION_FIELDS.values() and keyword in params):
                continue
            text = str(value)
            if keyword in PEM_EXTRAS and text.lstrip().startswith("-----BEGIN"):
                if keyword in SECRET_EXTRAS:
                    mask_secret(text)
                text = files.add(f"{keyword}.pem", text)
            params[keyword] = text
        env = ChildEnv(inherited_env())
        env.update({LIBPQ_ENV[k]: v for k, v in params.items()})
        for keyword in LIBPQ_CONNECT_ONLY:  # after the env: psycopg takes them, the pg tools cannot
            if extras.get(keyword) not in (None, ""):
                params[keyword] = str(extras[keyword])
        env["PGPASSFILE"] = files.add(
            "pgpass", f"*:*:*:*:{passfile_escape(conn.password)}\n" if conn.password else ""
        )
        env.pass_fds = tuple(files.fds)
        bin_dir = pg_bin_dir or (str(extras["pg_bin_dir"]) if extras.get("pg_bin_dir") else None)
        yield LibpqSession(params, conn.password or None, env, conn_id, bin_dir, files)
    finally:
        files.close()
