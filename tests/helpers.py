"""Test helpers that drive real pg tools (restore an artifact, watch child processes)."""

from __future__ import annotations

import gzip
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airflow_provider_pgbackup.binaries import PgBinary, choose_binary
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import Manifest
from devtools.pgcluster import PgCluster


def restore_tool(manifest: Manifest, tool: str) -> PgBinary:
    """A pg_restore/psql able to read what ``manifest``'s pg_dump wrote (major >= its major)."""
    major = int(manifest.client_version.split(".")[0])
    return choose_binary(tool, major, manifest.client_version)


def restore(hook: PgDumpHook, artifact: Path, manifest: Manifest, target_db: str) -> None:
    """Restore an artifact into an existing empty database with the pg tools, through the hook's session."""
    with hook.session(target_db) as session:
        if manifest.format == "plain":
            psql = restore_tool(manifest, "psql")
            data = artifact.read_bytes()
            if manifest.compression.startswith("gzip"):
                data = gzip.decompress(data)
            subprocess.run(
                [str(psql.path), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "--single-transaction"],
                input=data,
                env=session.env,
                pass_fds=session.env.pass_fds,  # the in-memory passfile PGPASSFILE names
                check=True,
                capture_output=True,
            )
        else:
            pg_restore = restore_tool(manifest, "pg_restore")
            result = subprocess.run(
                [
                    str(pg_restore.path),
                    "--exit-on-error",
                    "--no-owner",
                    f"--dbname={target_db}",
                    str(artifact),
                ],
                env={**session.env, "PGDATABASE": target_db},
                pass_fds=session.env.pass_fds,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr


def _children() -> Iterator[tuple[int, str, bytes, bytes]]:
    """(pid, executable name, cmdline, environ) of this process's direct children, read from /proc."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) != me:
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue  # gone in between
        exe = os.path.basename(cmdline.split(b"\0", 1)[0].decode(errors="replace"))
        yield int(entry), exe, cmdline, environ


@contextmanager
def watch_children(
    names: tuple[str, ...] = ("pg_dump", "pg_dumpall", "pg_restore", "psql"),
) -> Iterator[dict[int, tuple[bytes, bytes]]]:
    """Sample ``/proc/<pid>/cmdline`` and ``environ`` of this process's pg tool children during the block."""
    seen: dict[int, tuple[bytes, bytes]] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid, exe, cmdline, environ in _children():
                if exe in names and pid not in seen and environ:
                    seen[pid] = (cmdline, environ)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def wait_for_child(name: str, timeout: float = 30.0) -> int:
    """The pid of this process's first child called ``name`` that carries connection settings
    (``PGPASSFILE``: a real run, not a ``--version`` probe); waits for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, exe, _cmdline, environ in _children():
            if exe == name and b"PGPASSFILE=" in environ:
                return pid
        time.sleep(0.01)
    raise TimeoutError(f"no {name} child appeared within {timeout} s")


def leftovers(folder: Path) -> list[str]:
    """Everything in a folder (including hidden partial files), for 'nothing was left' assertions."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@contextmanager
def database_with(cluster: PgCluster, name: str, sql: str = "") -> Iterator[str]:
    """A database ``name`` on ``cluster``, made by ``sql``, for the block; dropped afterwards."""
    cluster.drop_database(name)
    cluster.create_database(name)
    try:
        if sql:
            cluster.execute(sql, dbname=name)
        yield name
    finally:
        cluster.drop_database(name)
