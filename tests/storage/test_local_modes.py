"""Finished local backups are readable by their owner only (issue 12, item 1), real dumps on real servers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from airflow_provider_pgbackup.manifest import manifest_path_for
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator, upload_local_backup

ON_PG18 = pytest.mark.parametrize("pg", ["pg18"], indirect=True)


def modes(root: Path) -> dict[str, int]:
    """``{relative path: permission bits}`` of a file or of a folder and everything in it."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    if root.is_dir():
        for path in root.rglob("*"):
            found[path.relative_to(root).as_posix()] = stat.S_IMODE(path.stat().st_mode)
    return found


@ON_PG18
@pytest.mark.parametrize("dump_format", ["custom", "directory", "tar", "plain"])
def test_every_format_and_its_manifest_are_owner_only(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path, dump_format: str
) -> None:
    old_umask = os.umask(0o022)  # a typical worker umask: 0644 files unless the provider says otherwise
    try:
        out = tmp_path / "new folder" / f"db.{dump_format}"
        PgDumpOperator(
            task_id="dump",
            postgres_conn_id=airflow_conn(pg, sample),
            output_path=str(out),
            format=dump_format,
        ).execute(context={})
    finally:
        os.umask(old_umask)
    for name, mode in modes(out).items():
        expected = 0o700 if (out / name).is_dir() else 0o600
        assert mode == expected, f"{name}: {oct(mode)}"
    assert stat.S_IMODE(manifest_path_for(out).stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700  # the folder the provider created


@ON_PG18
def test_pg_dumpall_with_role_hashes_is_owner_only(pg: PgCluster, airflow_conn, tmp_path: Path) -> None:
    out = tmp_path / "globals.sql"
    PgDumpAllOperator(
        task_id="globals", postgres_conn_id=airflow_conn(pg, "postgres"), output_path=str(out), mode="globals"
    ).execute(context={})
    assert "SCRAM-SHA-256" in out.read_text()  # role password hashes: exactly what must stay private
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(manifest_path_for(out).stat().st_mode) == 0o600


@ON_PG18
def test_file_mode_widens_access_when_asked(pg: PgCluster, sample: str, airflow_conn, tmp_path: Path) -> None:
    out = tmp_path / "shared" / "db.dir"
    PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg, sample),
        output_path=str(out),
        format="directory",
        file_mode=0o640,
    ).execute(context={})
    assert set(modes(out).values()) == {0o750, 0o640}
    assert stat.S_IMODE(manifest_path_for(out).stat().st_mode) == 0o640


@pytest.mark.parametrize("mode", [0o644 | 0o1000, 0o400, 0o777, "0640", True])
def test_file_mode_outside_owner_read_write_is_refused(mode: object, tmp_path: Path) -> None:
    from airflow_provider_pgbackup.options import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="file_mode"):
        PgDumpOperator(task_id="dump", output_path=str(tmp_path / "x.dump"), file_mode=mode)  # type: ignore[arg-type]


@ON_PG18
def test_downloaded_copy_for_a_restore_is_owner_only(
    pg: PgCluster, pg_backup, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    from airflow_provider_pgbackup.storage import open_source

    uri = upload_local_backup(gcs, gcs_bucket, pg_backup("directory", "gzip:1"), prefix="modes")
    with open_source(uri).local_copy() as copy:
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
        assert {m for name, m in modes(copy).items() if not (copy / name).is_dir()} == {0o600}
