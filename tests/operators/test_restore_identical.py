"""The drill proves a restored database IDENTICAL to the dump's snapshot (issue 14), on real servers.

Every test dumps with the default ``record_checksums=True``; the tampering tests edit a real plain dump
by hand and update its manifest's sha256 and size, so that only the content comparison can catch it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.manifest import Manifest, manifest_path_for, read_manifest
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator, upload_local_backup

FORMATS = [("custom", "gzip:5"), ("directory", "gzip:1"), ("tar", None), ("plain", None)]


def drill(conn_id: str, artifact: Path | str, **kwargs: object) -> PgRestoreOperator:
    return PgRestoreOperator(task_id="drill", postgres_conn_id=conn_id, artifact_path=str(artifact), **kwargs)


def rewrite(artifact: Path, edit: re.Pattern[bytes], replacement: bytes) -> None:
    """Edit a plain dump in place (exactly one match) and make its manifest describe the new bytes."""
    data, count = edit.subn(replacement, artifact.read_bytes())
    assert count == 1, f"{edit.pattern!r} matched {count} times"
    artifact.write_bytes(data)
    manifest = read_manifest(manifest_path_for(artifact))
    fields = manifest.to_dict()
    fields.update(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_path_for(artifact).write_text(Manifest.from_dict(fields).to_json())


@pytest.mark.parametrize(("dump_format", "compression"), FORMATS)
def test_every_format_restores_identical_locally(
    pg: PgCluster, pg_backup, airflow_conn, dump_format, compression
):
    artifact = pg_backup(dump_format, compression)
    assert read_manifest(manifest_path_for(artifact)).content is not None
    xcom = drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    content = xcom["content"]
    assert content["verdict"] == "IDENTICAL", content["differences"]
    assert content["tables"] >= 7
    assert content["inventory_kinds"] == 13
    assert content["large_objects"] == 1
    assert content["sequences"] >= 1


@pytest.mark.parametrize(("dump_format", "compression"), FORMATS)
def test_every_format_restores_identical_from_gcs(
    pg: PgCluster, pg_backup, airflow_conn, gcs: GCSEmulator, gcs_bucket: str, dump_format, compression
):
    uri = upload_local_backup(gcs, gcs_bucket, pg_backup(dump_format, compression), prefix=f"pg{pg.major}")
    xcom = drill(airflow_conn(pg, "postgres"), uri).execute(context={})
    assert xcom["content"]["verdict"] == "IDENTICAL", xcom["content"]["differences"]


def test_one_changed_value_with_equal_row_counts_fails_naming_the_table(
    pg: PgCluster, pg_backup, airflow_conn
):
    artifact = pg_backup("plain")
    rewrite(artifact, re.compile(rb"\tCustomer 7 J\xc3\xbcrgen\t"), b"\tCustomer 7 Jurgen\t")
    with pytest.raises(AirflowFailException, match=r"(?s)not identical.*table\s+shop\.customers") as err:
        drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    assert "orders" not in str(err.value)  # only the table that differs is named


def test_a_sequence_restored_behind_its_recorded_value_fails_naming_the_sequence(
    pg: PgCluster, pg_backup, airflow_conn
):
    artifact = pg_backup("plain")
    rewrite(
        artifact,
        re.compile(rb"setval\('shop\.invoice_no', 5000, true\)"),
        b"setval('shop.invoice_no', 4000, true)",
    )
    with pytest.raises(
        AirflowFailException, match=r"(?s)sequence\s+shop\.invoice_no\s+last_value 5000\s+last_value 4000"
    ):
        drill(airflow_conn(pg, "postgres"), artifact).execute(context={})


def test_a_missing_trigger_fails_naming_it(pg: PgCluster, pg_backup, airflow_conn):
    artifact = pg_backup("plain")
    rewrite(artifact, re.compile(rb"CREATE TRIGGER customers_touch [^\n]*\n"), b"")
    with pytest.raises(AirflowFailException, match=r"(?s)triggers\s+\S*customers_touch"):
        drill(airflow_conn(pg, "postgres"), artifact).execute(context={})


def test_a_missing_index_fails_naming_it(pg: PgCluster, pg_backup, airflow_conn):
    artifact = pg_backup("plain")
    rewrite(
        artifact,
        re.compile(
            rb"ALTER TABLE ONLY public\.documents\s+ADD CONSTRAINT documents_pkey PRIMARY KEY \(id\);\n"
        ),
        b"",
    )
    with pytest.raises(AirflowFailException, match=r"(?s)indexes\s+public\.documents_pkey") as err:
        drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    assert "constraints" in str(err.value)


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
def test_checksums_off_keeps_the_row_count_drill(pg: PgCluster, sample: str, airflow_conn, tmp_path: Path):
    from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
    from airflow_provider_pgbackup.options import PgDumpOptions

    artifact = tmp_path / "counts-only.dump"
    PgDumpHook(airflow_conn(pg, sample)).dump(PgDumpOptions.build(record_checksums=False), str(artifact))
    manifest = read_manifest(manifest_path_for(artifact))
    assert manifest.content is None
    assert manifest.row_counts
    xcom = drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    assert xcom["content"] is None
    assert all(t["ok"] for t in xcom["tables"])


def test_a_manifest_of_schema_version_1_is_still_read(pg_backup, pg: PgCluster, airflow_conn):
    artifact = pg_backup("custom")
    fields = read_manifest(manifest_path_for(artifact)).to_dict()
    fields.pop("content")
    fields["schema_version"] = 1
    manifest_path_for(artifact).write_text(Manifest.from_dict(fields).to_json())
    xcom = drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    assert xcom["content"] is None
    assert all(t["ok"] for t in xcom["tables"])


# ------------------------------------------------------------ PostgreSQL 17/18 features, probed not assumed
def test_statistics_and_transaction_size_are_used_where_the_binaries_have_them(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path
) -> None:
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
    from airflow_provider_pgbackup.options import InvalidOptionError
    from tests.helpers import watch_children

    pg.execute("ANALYZE", dbname=sample)
    artifact = tmp_path / "stats.dump"
    dump = PgDumpOperator(
        task_id="dump", postgres_conn_id=airflow_conn(pg, sample), output_path=str(artifact), statistics=True
    )
    if pg.major < 18:  # pg_dump 15 (chosen for a 15 server) cannot dump statistics: refused, nothing written
        with pytest.raises(
            Exception, match="statistics=True needs a pg_dump that can dump planner statistics"
        ) as err:
            dump.execute(context={})
        assert isinstance(err.value.__cause__, InvalidOptionError)
        assert not artifact.exists()
        PgDumpOperator(
            task_id="dump", postgres_conn_id=airflow_conn(pg, sample), output_path=str(artifact)
        ).execute(context={})
    else:
        dump.execute(context={})
    with watch_children(("pg_restore",)) as children:
        xcom = drill(
            airflow_conn(pg, "postgres"),
            artifact,
            transaction_size=100,
            restore_statistics=True,
            database="drill stats",
            drop_after=False,
        ).execute(context={})
    argv = b" ".join(cmd for cmd, _env in children.values())
    has_features = pg.major >= 18  # the pg_restore chosen for the archive: 18 for 18, 15 for 15
    assert (b"--transaction-size=100" in argv) is has_features
    assert (b"--statistics" in argv) is has_features
    assert xcom["content"]["verdict"] == "IDENTICAL"
    with pg.connect("drill stats") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stats WHERE schemaname = 'shop' AND tablename = 'customers'"
        ).fetchone()
    assert (row is not None and row[0] > 0) is has_features  # planner statistics came with the restore
    pg.drop_database("drill stats")


# ---------------------------------------------- issue 21: the method is versioned; old records still drill
@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
def test_a_content_record_of_the_previous_method_still_drills_identical_and_names_a_change(
    pg: PgCluster, sample: str, pg_backup, airflow_conn
) -> None:
    """A manifest written before the stream method: content record schema 1, ``md5-sum128`` checksums
    computed by the server, no copy settings. The drill measures the copy that way and still decides."""
    from airflow_provider_pgbackup.content import measure_content

    artifact = pg_backup("plain")
    manifest = read_manifest(manifest_path_for(artifact))
    assert manifest.content is not None
    assert manifest.content["checksum_method"] == "pgdump-copy-sha256"
    with pg.connect(sample) as conn:  # the sample database does not change: as at the dump
        old = measure_content(conn, [(r.schema, r.table) for r in manifest.row_counts or ()]).to_dict()
    old["schema_version"] = 1
    del old["copy_settings"]
    fields = manifest.to_dict()
    fields["content"] = old
    manifest_path_for(artifact).write_text(Manifest.from_dict(fields).to_json())

    xcom = drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    assert xcom["content"]["verdict"] == "IDENTICAL", xcom["content"]["differences"]

    rewrite(artifact, re.compile(rb"\tCustomer 7 J\xc3\xbcrgen\t"), b"\tCustomer 7 Jurgen\t")
    with pytest.raises(AirflowFailException, match=r"(?s)not identical.*table\s+shop\.customers"):
        drill(airflow_conn(pg, "postgres"), artifact).execute(context={})


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
@pytest.mark.parametrize("record", ["row_counts", "none"])
def test_record_row_counts_or_none_dumps_and_drills_what_it_records(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path, record: str
) -> None:
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator

    artifact = tmp_path / f"{record}.dump"
    xcom = PgDumpOperator(
        task_id="dump", postgres_conn_id=airflow_conn(pg, sample), output_path=str(artifact), record=record
    ).execute(context={})
    assert xcom["content"] is None
    assert xcom["options"]["record"] == record
    assert (xcom["row_counts"] is not None) is (record == "row_counts")
    result = drill(airflow_conn(pg, "postgres"), artifact).execute(context={})
    assert result["content"] is None
    if record == "row_counts":
        assert {(t["table"], t["restored"]) for t in result["tables"]} >= {
            ("customers", 200),
            ("session_cache", 20),
        }
        assert all(t["ok"] for t in result["tables"])
    else:
        assert result["tables"] == []
