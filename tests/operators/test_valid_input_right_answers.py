"""Valid input, right answers (issue 12, items 8, 9, 10 and 12), on real servers and a real GCS emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_pgbackup.manifest import manifest_path_for, read_manifest
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.operators.retention import newest_complete_backup
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator, upload_local_backup

ON_PG18 = pytest.mark.parametrize("pg", ["pg18"], indirect=True)


def dump(conn_id: str, out: Path, **kwargs: object) -> dict:
    return PgDumpOperator(task_id="dump", postgres_conn_id=conn_id, output_path=str(out), **kwargs).execute(
        context={}
    )


def verify(path: Path | str) -> dict:
    return PgBackupArtifactSensor(task_id="verify", path=str(path), timeout=5).execute(context={})


# ------------------------------------------------------------------ item 8: what is counted follows the dump
@pytest.mark.parametrize(
    ("extra_args", "holds_data"),
    [
        (["--section=pre-data"], False),
        (["--section=post-data"], False),
        (["--section=data"], True),
        (["--data-only"], True),
        (["--section=pre-data", "--section=post-data"], False),
        (["--schema-only"], False),
    ],
)
def test_partial_sections_are_counted_as_dumped_and_verify(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path, extra_args: list[str], holds_data: bool
) -> None:
    out = tmp_path / "part.dump"
    xcom = dump(airflow_conn(pg, sample), out, extra_args=extra_args)
    assert (xcom["row_counts"] is not None) is holds_data
    content = xcom["content"]
    assert content["inventory"] is None  # a partial dump is not compared object for object
    assert bool(content["tables"]) is holds_data
    report = verify(out)
    assert report["ok"] is True


@ON_PG18
def test_a_pre_data_backup_passes_the_drill(pg: PgCluster, sample: str, airflow_conn, tmp_path: Path) -> None:
    out = tmp_path / "schema.dump"
    dump(airflow_conn(pg, sample), out, extra_args=["--section=pre-data"])
    xcom = PgRestoreOperator(
        task_id="drill", postgres_conn_id=airflow_conn(pg, "postgres"), artifact_path=str(out)
    ).execute(context={})
    assert xcom["content"]["verdict"] == "IDENTICAL"
    assert xcom["tables"] == []


# ------------------------------------------------------------- item 9: pg_dumpall without a database name
@ON_PG18
def test_pg_dumpall_and_list_databases_work_on_a_connection_without_a_schema(
    pg: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook

    conn_id = airflow_conn(pg, None)  # no schema: libpq alone would try a database named after the user
    assert json.loads(pg.airflow_conn_json(None)).get("schema") in (None, "")
    assert "postgres" in PgDumpHook(conn_id).list_databases()
    out = tmp_path / "globals.sql"
    PgDumpAllOperator(
        task_id="globals", postgres_conn_id=conn_id, output_path=str(out), mode="globals"
    ).execute(context={})
    assert verify(out)["ok"] is True


# ------------------------------------- item 10: the drill of the newest backup, every format, local and gs://
@pytest.mark.parametrize("dump_format", ["custom", "directory", "tar", "plain"])
@pytest.mark.parametrize("where", ["local", "gs"])
def test_drill_of_the_newest_backup_works_for_every_format_local_and_gs(
    pg: PgCluster, pg_backup, airflow_conn, gcs: GCSEmulator, gcs_bucket: str, dump_format: str, where: str
) -> None:
    artifact = pg_backup(dump_format, "gzip:1" if dump_format in ("custom", "directory") else None)
    if where == "gs":
        upload_local_backup(gcs, gcs_bucket, artifact, prefix="newest")
        location = f"gs://{gcs_bucket}/newest"
    else:
        location = str(artifact.parent)
    newest = newest_complete_backup(location)
    assert newest is not None
    assert not newest.endswith("/")
    xcom = PgRestoreOperator(
        task_id="drill", postgres_conn_id=airflow_conn(pg, "postgres"), artifact_path=newest
    ).execute(context={})
    assert xcom["content"]["verdict"] == "IDENTICAL"


# ------------------------------------------------ item 12: the default compression is pg_dump's own default
@ON_PG18
def test_default_compression_is_what_pg_dump_does_for_the_format(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path
) -> None:
    conn_id = airflow_conn(pg, sample)
    dump(conn_id, tmp_path / "default.dump")
    dump(conn_id, tmp_path / "none.dump", compression="none")
    default = read_manifest(manifest_path_for(tmp_path / "default.dump"))
    uncompressed = read_manifest(manifest_path_for(tmp_path / "none.dump"))
    assert default.compression == "gzip:6"
    assert uncompressed.compression == "none"
    assert default.size_bytes < uncompressed.size_bytes / 2
    dump(conn_id, tmp_path / "plain.sql", format="plain")
    dump(conn_id, tmp_path / "dir", format="directory")
    assert read_manifest(manifest_path_for(tmp_path / "plain.sql")).compression == "none"
    assert read_manifest(manifest_path_for(tmp_path / "dir")).compression == "gzip:6"
