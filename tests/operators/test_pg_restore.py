"""PgRestoreOperator (the restore drill) against real PostgreSQL 18 and 15, and the dump -> verify ->
restore DAG inside real Airflow."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.manifest import manifest_path_for, read_manifest
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from devtools import sample_db
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD, row_counts
from tests.gcs_emulator import GCSEmulator, private_downloads, upload_local_backup
from tests.helpers import database_with, watch_children

DRILLS = [
    ("custom", None, None),
    ("custom", "gzip:5", 2),
    ("directory", "gzip:1", 2),
    ("tar", None, None),
    ("plain", None, None),
    ("plain", "gzip:6", None),
]


def databases(cluster: PgCluster) -> set[str]:
    with cluster.connect() as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def drill(conn_id: str, artifact: Path | str, **kwargs: Any) -> PgRestoreOperator:
    return PgRestoreOperator(task_id="drill", postgres_conn_id=conn_id, artifact_path=str(artifact), **kwargs)


@pytest.mark.parametrize(("dump_format", "compression", "jobs"), DRILLS)
def test_drill_restores_every_format_into_a_scratch_database_that_is_gone_afterwards(
    pg: PgCluster, sample: str, pg_backup, airflow_conn, dump_format, compression, jobs
) -> None:
    artifact = pg_backup(dump_format, compression)
    conn_id = airflow_conn(pg, "postgres")
    before = databases(pg)

    xcom = drill(conn_id, artifact, database=f"drill {dump_format} ü", jobs=jobs).execute(context={})

    assert databases(pg) == before
    assert xcom["created_database"] is True
    assert xcom["dropped_database"] is True
    assert xcom["database"] == f"drill {dump_format} ü"
    assert xcom["verification"]["ok"] is True
    expected = row_counts(pg, sample)
    assert {(t["schema"], t["table"]): t["expected"] for t in xcom["tables"]} == expected
    assert all(t["ok"] and t["restored"] == t["expected"] for t in xcom["tables"])
    assert PASSWORD not in json.dumps(xcom)


def test_drill_keeps_the_database_when_asked_and_it_matches_the_source(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    # pg_backup is parametrized over both clusters; here one server suffices, so dump directly.
    from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
    from airflow_provider_pgbackup.options import PgDumpOptions

    pg18.drop_database("drill source")
    pg18.create_database("drill source")
    sample_db.seed(pg18.connect_kwargs("drill source"), customers=20, orders=50)
    artifact = tmp_path / "source.dump"
    PgDumpHook(airflow_conn(pg18, "drill source")).dump(PgDumpOptions.build(), str(artifact))
    pg18.drop_database("drill kept")
    xcom = drill(airflow_conn(pg18, "postgres"), artifact, database="drill kept", drop_after=False).execute(
        context={}
    )
    assert xcom["dropped_database"] is False
    assert sample_db.snapshot(pg18.connect_kwargs("drill kept")) == sample_db.snapshot(
        pg18.connect_kwargs("drill source")
    )
    pg18.drop_database("drill kept")
    pg18.drop_database("drill source")


def test_pg_dumpall_on_a_server_that_has_its_roles_is_refused_before_anything_runs(
    pg: PgCluster, pg_backup, airflow_conn
) -> None:
    # pg_dumpall output is cluster-wide: its roles exist on the server it was dumped from. Before the
    # guard psql ran it and stopped at the first CREATE ROLE; now nothing of it runs, and no scratch
    # database is created.
    artifact = pg_backup("plain", "gzip", "pg_dumpall")
    before = databases(pg)
    with pytest.raises(AirflowFailException, match="nothing of it ran") as err:
        drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    assert f"role {pg.superuser!r} (CREATE ROLE, ALTER ROLE; exists)" in str(err.value)
    assert "restore it on a server that has none of them" in str(err.value)
    assert databases(pg) == before


def roles(cluster: PgCluster) -> set[str]:
    with cluster.connect() as conn:
        return {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}


# pg_dumpall patterns leaving only the databases whose names start with "zz" (so the dump stays small).
ONLY_ZZ_DATABASES = ["--exclude-database=[^z]*", "--exclude-database=z[^z]*"]


def dump_of(conn_id: str, artifact: Path, **kwargs: Any) -> Path:
    """``artifact``, dumped by PgDumpOperator (``PgDumpAllOperator`` with ``dumpall=True``)."""
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator

    operator = PgDumpAllOperator if kwargs.pop("dumpall", False) else PgDumpOperator
    operator(task_id="dump", postgres_conn_id=conn_id, output_path=str(artifact), **kwargs).execute(
        context={}
    )
    return artifact


@pytest.mark.parametrize("verify_contents", [True, False], ids=["scanned-while-verifying", "scanned-apart"])
def test_drill_of_a_pg_dumpall_with_clean_drops_nothing_and_names_what_it_would_drop(
    pg: PgCluster, airflow_conn, tmp_path: Path, verify_contents: bool
) -> None:
    # The reported case: PgDumpAllOperator(extra_args=["--clean"]), then a default drill on the same
    # server dropped its other databases (psql ran the DROP DATABASE lines before the first error).
    conn_id = airflow_conn(pg, "postgres")
    with database_with(pg, "zz_accounting"), database_with(pg, "zz_billing", "CREATE TABLE ledger(x int)"):
        artifact = dump_of(
            conn_id, tmp_path / "all.sql", dumpall=True, extra_args=["--clean", *ONLY_ZZ_DATABASES]
        )
        before = (databases(pg), roles(pg))
        with pytest.raises(AirflowFailException, match="nothing of it ran") as err:
            drill(conn_id, artifact, verify_contents=verify_contents).execute(context={})
        assert (databases(pg), roles(pg)) == before  # nothing dropped, no scratch database created
    message = str(err.value)
    assert (
        "database 'zz_accounting' (DROP DATABASE, CREATE DATABASE, ALTER DATABASE, \\connect; exists)"
        in message
    )
    assert "database 'zz_billing' (DROP DATABASE" in message
    assert f"role {pg.superuser!r} (DROP ROLE, CREATE ROLE, ALTER ROLE; exists)" in message
    assert PASSWORD not in message


def test_drill_of_a_plain_dump_with_clean_and_create_is_refused_naming_its_database(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    with database_with(pg18, "zz_created by dump", "CREATE TABLE kept AS SELECT 7 AS x") as source:
        artifact = dump_of(
            airflow_conn(pg18, source),
            tmp_path / "created.sql",
            format="plain",
            extra_args=["--clean", "--create"],
        )
        before = databases(pg18)
        with pytest.raises(AirflowFailException, match="nothing of it ran") as err:
            drill(airflow_conn(pg18, "postgres"), artifact).execute(context={})
        assert databases(pg18) == before
        assert row_counts(pg18, source) == {("public", "kept"): 1}
    statements = "DROP DATABASE, CREATE DATABASE, ALTER DATABASE, \\connect; exists"
    assert f"database {source!r} ({statements})" in str(err.value)
    assert "dump without --create" in str(err.value)


@pytest.mark.parametrize("dump_format", ["custom", "tar"])
def test_an_archive_dumped_with_clean_and_create_restores_into_the_drill_database_only(
    pg18: PgCluster, airflow_conn, tmp_path: Path, dump_format: str
) -> None:
    # pg_restore applies --clean / --create only when given them on its own command line, and the
    # drill never gives them: the archive's DROP/CREATE DATABASE entries are not replayed.
    rows = "CREATE TABLE kept AS SELECT g AS x FROM generate_series(1, 5) g"
    with database_with(pg18, "zz_archive source", rows) as source:
        artifact = dump_of(
            airflow_conn(pg18, source),
            tmp_path / f"source.{dump_format}",
            format=dump_format,
            extra_args=["--clean", "--create"],
        )
        before = databases(pg18)
        xcom = drill(airflow_conn(pg18, "postgres"), artifact).execute(context={})
        assert xcom["content"]["verdict"] == "IDENTICAL"
        assert xcom["dropped_database"] is True
        assert databases(pg18) == before
        assert row_counts(pg18, source) == {("public", "kept"): 5}


def test_plain_sql_whose_data_reads_like_cluster_statements_restores_identical(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    # Rows, a function body, a comment and a quoted name hold the very statements the guard looks for:
    # text is never taken for a statement, so the drill runs and proves the copy identical.
    decoy = "DROP DATABASE postgres; \\connect template1; DROP ROLE postgres;"
    table = '"' + decoy.replace('"', '""') + '"'
    sql = f"""
        CREATE TABLE {table} (line text);
        INSERT INTO {table} VALUES ($d${decoy}$d$), (E'\\\\.'), (E'\\\\connect x\\n\\\\.');
        CREATE FUNCTION decoy() RETURNS text LANGUAGE plpgsql
            AS $body$ BEGIN RETURN $x${decoy}$x$; END $body$;
        COMMENT ON FUNCTION decoy() IS $c${decoy}$c$;
        """
    with database_with(pg18, "zz_decoys", sql) as source:
        artifact = dump_of(airflow_conn(pg18, source), tmp_path / "decoys.sql", format="plain")
        before = databases(pg18)
        xcom = drill(airflow_conn(pg18, "postgres"), artifact).execute(context={})
        assert xcom["content"]["verdict"] == "IDENTICAL"
        assert databases(pg18) == before


ON_PG18 = pytest.mark.parametrize("pg", ["pg18"], indirect=True)


@ON_PG18
def test_a_script_with_a_meta_command_pg_dump_never_writes_is_refused_and_never_run(
    pg: PgCluster, pg_backup, airflow_conn, tmp_path: Path
) -> None:
    plain = pg_backup("plain")
    ran = tmp_path / "shell-ran"
    lines = plain.read_bytes().split(b"\n")
    plain.write_bytes(b"\n".join([lines[0], f"\\! touch {ran}".encode(), *lines[1:]]))
    data = json.loads(manifest_path_for(plain).read_text())
    data.update(size_bytes=plain.stat().st_size, sha256=hashlib.sha256(plain.read_bytes()).hexdigest())
    manifest_path_for(plain).write_text(json.dumps(data))
    before = databases(pg)
    with pytest.raises(AirflowFailException, match=r"the psql meta-command \\! \(pg_dump never writes it\)"):
        drill(airflow_conn(pg, "postgres"), plain).execute(context={})
    assert not ran.exists()
    assert databases(pg) == before


def test_plain_zstd_sql_is_decompressed_on_the_fly_into_psql(
    pg: PgCluster, sample: str, pg_backup, airflow_conn, tmp_path: Path
) -> None:
    # The pg_dump builds here cannot write zstd: compress a real plain dump with the zstd command.
    if shutil.which("zstd") is None:
        pytest.skip("no zstd command")
    plain = pg_backup("plain")
    artifact = tmp_path / "db.sql.zst"
    compressed = subprocess.run(["zstd", "-c"], input=plain.read_bytes(), capture_output=True, check=True)
    artifact.write_bytes(compressed.stdout)
    data = json.loads(manifest_path_for(plain).read_text())
    data.update(artifact=artifact.name, compression="zstd:3", size_bytes=len(compressed.stdout))
    data["sha256"] = hashlib.sha256(compressed.stdout).hexdigest()
    manifest_path_for(artifact).write_text(json.dumps(data))
    xcom = drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    assert {(t["schema"], t["table"]): t["restored"] for t in xcom["tables"]} == row_counts(pg, sample)


def test_restore_whose_data_differs_from_the_manifest_fails_with_the_mismatch_table(
    pg: PgCluster, sample: str, pg_backup, airflow_conn
) -> None:
    # The manifest's row counts are edited (they are not covered by the artifact's sha256): the restored
    # data no longer matches what the manifest says was dumped.
    artifact = pg_backup("custom")
    path = manifest_path_for(artifact)
    data = json.loads(path.read_text())
    for count in data["row_counts"]:
        if count["table"] == "customers":
            count["rows"] += 1
        if count["table"] == "orders_2025":
            count["rows"] -= 5
    path.write_text(json.dumps(data))
    before = databases(pg)

    with pytest.raises(AirflowFailException) as err:
        drill(airflow_conn(pg, "postgres"), artifact, database="drill mismatch").execute(context={})

    message = str(err.value)
    assert "restored row counts differ from the manifest in 2 of 7 tables:" in message
    expected = row_counts(pg, sample)
    lines = message.splitlines()
    assert lines[1].split() == ["table", "expected", "restored"]
    assert lines[2].split() == ["shop.customers", "201", "200"]
    orders = expected[("shop", "orders_2025")]
    assert lines[3].split() == ["shop.orders_2025", str(orders - 5), str(orders)]
    assert databases(pg) == before  # the scratch database was dropped on failure too


def test_refuses_a_non_empty_database_and_leaves_it_alone(
    pg: PgCluster, sample: str, pg_backup, airflow_conn
) -> None:
    artifact = pg_backup("custom")
    before = row_counts(pg, sample)
    operator = drill(airflow_conn(pg, "postgres"), artifact, database=sample, create_database=False)
    with pytest.raises(AirflowFailException, match=r"is not empty .* refusing to restore into it"):
        operator.execute(context={})
    assert sample in databases(pg)
    assert row_counts(pg, sample) == before


def test_failed_restore_into_an_existing_database_never_drops_it(
    pg: PgCluster, sample: str, pg_backup, airflow_conn
) -> None:
    artifact = pg_backup("custom")
    operator = drill(
        airflow_conn(pg, "postgres"),
        artifact,
        database=sample,
        create_database=False,
        allow_non_empty_database=True,
        allow_source_database=True,  # into the very database dumped, on purpose
    )
    with pytest.raises(AirflowFailException, match=r"(?s)pg_restore failed .*already exists"):
        operator.execute(context={})
    assert sample in databases(pg)


def test_restores_into_an_existing_empty_database_and_keeps_it(
    pg: PgCluster, sample: str, pg_backup, airflow_conn, fresh_db
) -> None:
    artifact = pg_backup("tar")
    target = fresh_db("drill existing ü")
    xcom = drill(airflow_conn(pg, "postgres"), artifact, database=target, create_database=False).execute(
        context={}
    )
    assert xcom["created_database"] is False
    assert xcom["dropped_database"] is False
    assert row_counts(pg, target) == row_counts(pg, sample)


def test_create_database_refuses_an_existing_name_and_does_not_drop_it(
    pg: PgCluster, pg_backup, airflow_conn, fresh_db
) -> None:
    artifact = pg_backup("custom")
    target = fresh_db("drill taken")
    with pytest.raises(AirflowFailException, match="database 'drill taken' already exists"):
        drill(airflow_conn(pg, "postgres"), artifact, database=target).execute(context={})
    assert target in databases(pg)


def test_corrupt_backup_is_refused_before_any_database_is_created(
    pg: PgCluster, pg_backup, airflow_conn
) -> None:
    artifact = pg_backup("custom", "gzip:5")
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    before = databases(pg)
    with pytest.raises(AirflowFailException, match=r"refusing to restore .*: check 'checksum' failed"):
        drill(airflow_conn(pg, "postgres"), artifact, database="never created").execute(context={})
    assert databases(pg) == before


def test_password_reaches_no_restore_argv_or_environment(pg: PgCluster, pg_backup, airflow_conn) -> None:
    artifact = pg_backup("custom")
    with watch_children(("pg_restore",)) as children:
        xcom = drill(airflow_conn(pg, "postgres"), artifact, database="drill secret").execute(context={})
    restores = [(c, e) for c, e in children.values() if b"--exit-on-error" in c]
    assert restores, "pg_restore was never sampled"
    for cmdline, environ in children.values():
        assert PASSWORD.encode() not in cmdline
        assert PASSWORD.encode() not in environ
        assert b"PGPASSWORD" not in environ
    for cmdline, environ in restores:
        assert b"--dbname=\0" in cmdline  # the database comes from PGDATABASE, not argv
        assert b"PGDATABASE=drill secret\0" in environ
    assert PASSWORD not in json.dumps(xcom)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"create_database": False, "database": "x", "drop_after": True},
            "drop_after=True needs create_database",
        ),
        ({"create_database": False}, "database is required with create_database=False"),
        ({"jobs": 0}, "jobs 0 must be a whole number >= 1"),
        ({"artifact_path": "relative.dump"}, "must be an absolute path"),
        ({"database": "bad\nname"}, "contains a newline"),
        ({"database": "é" * 32}, "is longer than 63 bytes"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_value(kwargs: dict[str, Any], message: str) -> None:
    args = {"task_id": "drill", "artifact_path": "/backups/x.dump", **kwargs}
    with pytest.raises(ValueError, match=message):
        PgRestoreOperator(**args)


def test_dump_verify_restore_dag_runs_inside_real_airflow(
    pg18: PgCluster, airflow_conn, airflow_db: str, tmp_path: Path
) -> None:
    import pendulum

    from tests.dags.pgbackup_test_verify import dag

    source = "dag source ü"
    pg18.drop_database(source)
    pg18.create_database(source)
    sample_db.seed(pg18.connect_kwargs(source), customers=20, orders=50)
    conn_id = airflow_conn(pg18, source)
    before = databases(pg18)
    run = dag.test(
        logical_date=pendulum.datetime(2026, 3, 2, 4, 5, 6, tz="UTC"),
        run_conf={"conn_id": conn_id, "output_dir": str(tmp_path), "drill_database": "dag drill ü"},
    )
    assert run.state == "success"
    artifact = tmp_path / "pgbackup_test_verify" / "20260302T040506.dump"
    assert read_manifest(manifest_path_for(artifact)).database == source
    assert databases(pg18) == before  # the drill database is gone
    pg18.drop_database(source)


# ------------------------------------------------------------------------------ restore from GCS (gs://)
def restore_argv(child: tuple[bytes, bytes]) -> list[bytes]:
    """A sampled child's argv if it is the restoring pg_restore or psql (not a --version or --list)."""
    argv = child[0].rstrip(b"\0").split(b"\0")
    return argv if b"--exit-on-error" in argv or b"--set=ON_ERROR_STOP=1" in argv else []


GS_DRILLS = [
    ("custom", None, None),  # streamed into pg_restore's stdin
    ("tar", None, None),  # streamed into pg_restore's stdin
    ("plain", "gzip:6", None),  # decompressed on the fly into psql's stdin
    ("directory", "gzip:1", 2),  # downloaded to a private temporary folder, removed afterwards
    ("custom", "gzip:5", 2),  # jobs > 1 needs a seekable file: downloaded, removed afterwards
]


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
@pytest.mark.parametrize(("dump_format", "compression", "jobs"), GS_DRILLS)
def test_drill_restores_a_gs_backup_into_a_scratch_database_that_is_gone_afterwards(
    pg: PgCluster,
    sample: str,
    pg_backup,
    airflow_conn,
    gcs: GCSEmulator,
    gcs_bucket: str,
    dump_format: str,
    compression: str | None,
    jobs: int | None,
) -> None:
    uri = upload_local_backup(gcs, gcs_bucket, pg_backup(dump_format, compression))
    conn_id = airflow_conn(pg, "postgres")
    before = databases(pg)
    downloads_before = private_downloads()

    with watch_children(("pg_restore", "psql")) as children:
        xcom = drill(conn_id, uri, database=f"gs drill {dump_format} ü", jobs=jobs).execute(context={})

    assert databases(pg) == before
    assert private_downloads() == downloads_before
    assert xcom["artifact_path"] == uri
    assert xcom["created_database"] is True
    assert xcom["dropped_database"] is True
    assert xcom["verification"]["ok"] is True
    assert xcom["verification"]["artifact"] == uri
    expected = row_counts(pg, sample)
    assert {(t["schema"], t["table"]): t["restored"] for t in xcom["tables"]} == expected
    assert all(t["ok"] for t in xcom["tables"])
    tool = b"psql" if dump_format == "plain" else b"pg_restore"
    restores = [argv for argv in map(restore_argv, children.values()) if argv and argv[0].endswith(tool)]
    assert restores, f"{tool!r} was never sampled"
    for argv in restores:
        streamed = argv[-1] in (b"--no-acl", b"--single-transaction")  # no file argument: stdin
        assert streamed is (jobs is None), argv
        assert all(b"gs://" not in arg for arg in argv)


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
@pytest.mark.parametrize(("dump_format", "compression"), [("custom", None), ("plain", "gzip:6")])
def test_password_reaches_no_restore_argv_or_environment_for_a_gs_backup(
    pg: PgCluster, pg_backup, airflow_conn, gcs: GCSEmulator, gcs_bucket: str, dump_format, compression
) -> None:
    uri = upload_local_backup(gcs, gcs_bucket, pg_backup(dump_format, compression))
    with watch_children(("pg_restore", "psql")) as children:
        xcom = drill(airflow_conn(pg, "postgres"), uri, database="gs drill secret").execute(context={})
    restores = [(c, e) for c, e in children.values() if restore_argv((c, e))]
    assert restores, "no restore client was sampled"
    for cmdline, environ in children.values():
        assert PASSWORD.encode() not in cmdline
        assert PASSWORD.encode() not in environ
        assert b"PGPASSWORD" not in environ
        assert b"STORAGE_EMULATOR_HOST" not in environ  # nor anything of the GCS connection
    for cmdline, environ in restores:
        assert b"PGDATABASE=gs drill secret\0" in environ
    assert PASSWORD not in json.dumps(xcom)


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
def test_corrupt_gs_backup_is_refused_before_any_database_is_created(
    pg: PgCluster, pg_backup, airflow_conn, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact = pg_backup("tar")
    uri = upload_local_backup(gcs, gcs_bucket, artifact)
    gcs.client().bucket(gcs_bucket).blob(f"pg/{artifact.name}").upload_from_string(
        artifact.read_bytes()[:-512] + b"\1" * 512
    )
    before = databases(pg)
    with pytest.raises(AirflowFailException, match=r"refusing to restore gs://.*: check 'checksum' failed"):
        drill(airflow_conn(pg, "postgres"), uri, database="never created").execute(context={})
    assert databases(pg) == before


def test_gs_artifact_path_is_checked_at_construction_naming_it() -> None:
    with pytest.raises(ValueError, match=r"artifact_path 'gs://bucket/' must name an object"):
        PgRestoreOperator(task_id="drill", artifact_path="gs://bucket/")
    operator = PgRestoreOperator(
        task_id="drill", artifact_path="gs://bucket/x.dump", gcp_conn_id="gcp_backups"
    )
    assert "gcp_conn_id" in operator.template_fields


@pytest.mark.parametrize("dump_format", ["custom", "directory", "tar", "plain"])
def test_an_empty_database_dumps_verifies_and_restores(
    pg: PgCluster, airflow_conn, fresh_db, tmp_path: Path, dump_format: str
) -> None:
    """A new, empty database is a real backup: its archive lists no TOC entries, which is not
    corruption (pg_restore read the whole table of contents), and it restores into an empty one."""
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
    from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

    empty = fresh_db("empty ü")
    conn_id = airflow_conn(pg, empty)
    output = tmp_path / f"empty.{dump_format}"
    PgDumpOperator(
        task_id="dump", postgres_conn_id=conn_id, output_path=str(output), format=dump_format
    ).execute(context={})
    report = PgBackupArtifactSensor(task_id="verify", path=str(output), timeout=30).poke(context={})
    assert report.is_done, report  # type: ignore[union-attr]
    assert report.xcom_value["ok"] is True  # type: ignore[union-attr]

    xcom = drill(conn_id, output).execute(context={})

    assert xcom["verification"]["ok"] is True
    assert xcom["tables"] == []
    assert xcom["dropped_database"] is True
