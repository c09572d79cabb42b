"""Leftovers of real crashed writers: a process opens a local target and SIGKILLs itself at one point.

What is left is exactly what a worker killed by the OOM killer leaves: the lock file with its record, and
the staging file, the unfinished artifact or the manifest being written. No PostgreSQL is needed: the
target is written directly, as the hook writes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.storage import ArtifactDigest

ROOT = Path(__file__).resolve().parents[2]

CRASH = """
import os, signal, sys
from pathlib import Path
from airflow_provider_pgbackup.storage import open_target
from tests.storage.crashed_writer import manifest_for

path, at = Path(sys.argv[1]), sys.argv[2]
directory = at == "directory_staging"
target = open_target(str(path), directory=directory)
if directory:
    target.staging_directory.mkdir()
    (target.staging_directory / "toc.dat").write_bytes(b"half a directory dump")
    os.kill(os.getpid(), signal.SIGKILL)
target.write(b"some dumped bytes")
if at == "before_commit":
    os.kill(os.getpid(), signal.SIGKILL)
digest = target.commit()
if at == "after_commit":
    os.kill(os.getpid(), signal.SIGKILL)

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the manifest's temporary file is written, not renamed yet

os.replace = die
target.write_manifest(manifest_for(path.name, digest))
"""

POINTS = ("before_commit", "after_commit", "in_manifest", "directory_staging")


def crash_writer(path: Path, at: str) -> None:
    """Run a writer of ``path`` that is SIGKILLed ``at`` one of :data:`POINTS`."""
    assert at in POINTS
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH), str(path), at],
        env=os.environ.copy(),
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def manifest_for(name: str, digest: ArtifactDigest) -> Manifest:
    """A manifest of a synthetic backup whose bytes have ``digest``."""
    return Manifest(
        kind="pg_dump", artifact=name, format="custom", compression="none", database="crashed",
        server_version="18.0", server_version_num=180000, client_tool="pg_dump", client_version="18.0",
        started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:01:00+00:00",
        duration_seconds=60.0, size_bytes=digest.size_bytes, sha256=digest.sha256,
    )  # fmt: skip
