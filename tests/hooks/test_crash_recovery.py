"""A run killed between the artifact's commit and its manifest: the retry replaces the unfinished
artifact instead of refusing it as "already holds a backup" (issue 12, item 3). The kill is real:
the dumping process SIGKILLs itself at the very point a crash would hit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import manifest_path_for
from airflow_provider_pgbackup.options import PgDumpOptions
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator

ON_PG18 = pytest.mark.parametrize("pg", ["pg18"], indirect=True)

CRASH_AT_MANIFEST = """
import os, signal, sys
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.options import PgDumpOptions
from airflow_provider_pgbackup.storage import local
from airflow_provider_pgbackup.storage.objects import write

def crash(self, manifest):
    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies after the commit, before the manifest

local.LocalArtifactTarget.write_manifest = crash
write.ObjectArtifactTarget.write_manifest = crash
PgDumpHook(sys.argv[1]).dump(PgDumpOptions.build(format="plain"), sys.argv[2])
"""


def crash_after_commit(conn_id: str, output_path: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH_AT_MANIFEST), conn_id, output_path],
        env=os.environ.copy(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


@ON_PG18
def test_local_artifact_left_without_manifest_by_a_crash_is_replaced_by_the_retry(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn_id = airflow_conn(pg, sample)
    out = tmp_path / "db.sql"
    crash_after_commit(conn_id, str(out))
    assert out.exists()
    assert not manifest_path_for(out).exists()  # the crash state: an artifact nobody can trust

    manifest = PgDumpHook(conn_id).dump(PgDumpOptions.build(format="plain"), str(out))

    assert manifest_path_for(out).exists()
    assert manifest.size_bytes == out.stat().st_size
    assert "an artifact without a manifest" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.sql", "db.sql.manifest.json"]


def test_a_file_the_provider_did_not_write_is_still_never_replaced(
    tmp_path: Path, airflow_conn, pg18: PgCluster
):
    from airflow_provider_pgbackup.options import InvalidOptionError

    out = tmp_path / "db.sql"
    out.write_bytes(b"someone else's file, no lock of ours beside it")
    with pytest.raises(InvalidOptionError, match="already holds a backup"):
        PgDumpHook(airflow_conn(pg18, "postgres")).dump(PgDumpOptions.build(format="plain"), str(out))
    assert out.read_bytes() == b"someone else's file, no lock of ours beside it"


@ON_PG18
def test_gcs_object_left_without_manifest_by_a_crash_is_replaced_by_the_retry(
    pg: PgCluster, sample: str, airflow_conn, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    conn_id = airflow_conn(pg, sample)
    uri = f"gs://{gcs_bucket}/crash/db.sql"
    crash_after_commit(conn_id, uri)
    bucket = gcs.client().bucket(gcs_bucket)
    assert bucket.get_blob("crash/db.sql") is not None
    assert bucket.get_blob("crash/db.sql.manifest.json") is None

    manifest = PgDumpHook(conn_id).dump(PgDumpOptions.build(format="plain"), uri)

    assert bucket.get_blob("crash/db.sql.manifest.json") is not None
    assert bucket.get_blob("crash/db.sql").size == manifest.size_bytes


@pytest.mark.parametrize(
    "lock_content",
    [
        b"locked by the nightly export, pid 4242",
        b'{"written_by": "airflow-provider-pgbackup", "artifact": "db.sql", "staging": '
        b'".db.sql.partial-0123456789ab", "manifest_temp": "", "artifact_ids": [[1, 2]]}',
    ],
    ids=["someone_elses_lock", "a_record_naming_another_file"],
)
def test_a_lock_file_beside_a_file_is_no_proof_that_the_provider_wrote_the_file(
    tmp_path: Path, lock_content: bytes
) -> None:
    """Only the record the crashed run wrote, naming that very file, lets a retry replace it."""
    from airflow_provider_pgbackup.options import InvalidOptionError

    out = tmp_path / "db.sql"
    out.write_bytes(b"someone else's file")
    lock = tmp_path / ".db.sql.lock"
    lock.write_bytes(lock_content)
    with pytest.raises(InvalidOptionError, match=r"already holds|was not written by this provider"):
        PgDumpHook("no_such_connection").dump(PgDumpOptions.build(format="plain"), str(out))
    assert out.read_bytes() == b"someone else's file"
    assert lock.read_bytes() == lock_content


def test_a_retry_that_fails_keeps_the_claim_on_the_unfinished_artifact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash after the commit, then a retry that fails before its own commit: the next retry still
    knows the unfinished artifact as the provider's and replaces it."""
    from airflow_provider_pgbackup.storage import open_target
    from tests.storage.crashed_writer import crash_writer, manifest_for

    out = tmp_path / "db.sql"
    crash_writer(out, "after_commit")
    failed = open_target(str(out))
    failed.write(b"the retry dies")
    failed.abort()
    assert out.read_bytes() == b"some dumped bytes"

    last = open_target(str(out))
    last.write(b"the retry that works")
    last.write_manifest(manifest_for(out.name, last.commit()))
    assert out.read_bytes() == b"the retry that works"
    assert caplog.text.count("an artifact without a manifest") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.sql", "db.sql.manifest.json"]
