"""Private scratch folders and their sweep (``scratch.py``), with real processes: a folder goes only when
its owner is provably gone, and nothing that is not provably the provider's is ever touched."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from airflow_provider_pgbackup.scratch import (
    OWNER_RECORD,
    make_private_folder,
    private_folder,
    sweep,
    this_process,
)
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

REPO = Path(__file__).resolve().parents[1]
MAKE_FOLDER = (
    "import sys, time\n"
    "from airflow_provider_pgbackup.scratch import make_private_folder\n"
    "print(make_private_folder(sys.argv[1]), flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def tmpdir_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own (other processes' folders stay out of it)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def owned_by_another_process(root: Path, kind: str) -> tuple[subprocess.Popen[str], Path]:
    """A real process that makes a private folder in ``root`` and keeps running."""
    child = subprocess.Popen(
        [sys.executable, "-c", MAKE_FOLDER, kind],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, Path(child.stdout.readline().strip())


def folder_with_record(root: Path, name: str, **changes: object) -> Path:
    """A folder named ``name`` whose owner record is this process's, with ``changes``."""
    folder = root / name
    folder.mkdir(mode=0o700)
    record = {**dataclasses.asdict(this_process()), **changes}
    (folder / OWNER_RECORD).write_text(json.dumps(record))
    (folder / "pgpass").write_text("*:*:*:*:s3cr3t\n")
    return folder


def test_a_sigkilled_owners_folder_is_swept_and_a_live_owners_is_kept(tmpdir_root: Path) -> None:
    child, stranded = owned_by_another_process(tmpdir_root, "credentials")
    try:
        assert stranded.parent == tmpdir_root
        assert stranded.name.startswith("pgbackup-credentials-")
        assert stranded.stat().st_mode & 0o777 == 0o700
        (stranded / "pgpass").write_text("*:*:*:*:s3cr3t\n")
        with private_folder("decrypted") as mine:
            assert sweep() == []  # its owner is alive: kept
            child.kill()  # SIGKILL: no cleanup runs in it
            child.wait()
            assert sweep() == [stranded]
            assert not stranded.exists()
            assert mine.is_dir()  # this process's own folder: its owner lives
        assert not mine.exists()  # removed by its with block
    finally:
        child.kill()
        child.wait()


def test_a_zombie_owner_counts_as_gone(tmpdir_root: Path) -> None:
    child, stranded = owned_by_another_process(tmpdir_root, "plaintext")
    try:
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped: a zombie
        assert Path(f"/proc/{child.pid}").exists()
        assert sweep() == [stranded]
    finally:
        child.wait()


def test_a_reused_pid_does_not_keep_a_folder_and_a_reboot_ends_every_owner(tmpdir_root: Path) -> None:
    me = this_process()
    assert me.start is not None
    reused = folder_with_record(tmpdir_root, "pgbackup-download-reused", start=str(int(me.start) - 1))
    rebooted = folder_with_record(tmpdir_root, "pgbackup-decrypted-rebooted", boot="0" * 36)
    assert sorted(sweep()) == sorted([reused, rebooted])


def test_nothing_that_is_not_provably_the_providers_is_touched(tmpdir_root: Path, tmp_path: Path) -> None:
    gone = {"pid": 2**22 + 1, "start": "1"}  # above pid_max's default: no such process
    kept = [
        folder_with_record(tmpdir_root, "pgbackup-credentials-live"),  # this process: alive
        folder_with_record(tmpdir_root, "pgbackup-airflow-home-x", **gone),  # not a kind of ours
        folder_with_record(tmpdir_root, "pgbackup-other-x", **gone),
        folder_with_record(tmpdir_root, "someone-else-credentials-x", **gone),
        folder_with_record(tmpdir_root, "pgbackup-credentials-otherhost", host="elsewhere", **gone),
        folder_with_record(tmpdir_root, "pgbackup-credentials-container", pid_namespace="pid:[1]", **gone),
    ]
    no_record = tmpdir_root / "pgbackup-plaintext-norecord"
    no_record.mkdir()
    bad_record = folder_with_record(tmpdir_root, "pgbackup-plaintext-badrecord")
    (bad_record / OWNER_RECORD).write_text('{"pid": "1"')
    outside = folder_with_record(tmp_path, "pgbackup-credentials-target", **gone)
    link = tmpdir_root / "pgbackup-credentials-link"
    link.symlink_to(outside)  # a link to a stale-looking folder: neither followed nor removed
    record_link = tmpdir_root / "pgbackup-decrypted-recordlink"
    record_link.mkdir()
    (record_link / OWNER_RECORD).symlink_to(outside / OWNER_RECORD)
    kept += [no_record, bad_record, record_link]
    if os.geteuid() == 0:  # another user's folder, with a record that would otherwise say "gone"
        other_user = folder_with_record(tmpdir_root, "pgbackup-download-otheruser", **gone)
        os.chown(other_user, 65534, 65534)
        kept.append(other_user)
    assert sweep() == []
    assert all(path.is_dir() for path in kept)
    assert link.is_symlink()
    assert (outside / "pgpass").is_file()


def test_every_provider_task_starts_with_the_sweep(tmpdir_root: Path, tmp_path: Path) -> None:
    """The sensor (like every operator, through ``failures.failure_policy``) sweeps as it starts."""
    stale = folder_with_record(tmpdir_root, "pgbackup-credentials-stale", pid=2**22 + 1, start="1")
    sensor = PgBackupArtifactSensor(task_id="verify", path=str(tmp_path / "not-yet.dump"))
    assert sensor.poke(context={}) is False  # nothing there yet: it waits
    assert not stale.exists()


def test_private_folders_are_owner_only_and_name_their_owner(tmpdir_root: Path) -> None:
    folder = make_private_folder("download")
    try:
        assert folder.stat().st_mode & 0o777 == 0o700
        record = json.loads((folder / OWNER_RECORD).read_text())
        assert record == dataclasses.asdict(this_process())
        assert (folder / OWNER_RECORD).stat().st_mode & 0o777 == 0o600
        assert sweep() == []  # its owner, this process, is alive
        assert folder.is_dir()
    finally:
        shutil.rmtree(folder)
    with pytest.raises(ValueError, match="unknown private folder kind 'anything'"):
        make_private_folder("anything")
