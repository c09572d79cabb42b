"""GCS client construction, and dumps streamed straight into a real GCS emulator (then restored from it)."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import service_account

from airflow_provider_pgbackup import storage
from airflow_provider_pgbackup.hooks.pg_dump import PgCommandError, PgDumpHook
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.options import InvalidOptionError, PgDumpOptions
from airflow_provider_pgbackup.storage import StorageSettings, check_output_path, open_source, upload_backup
from airflow_provider_pgbackup.storage import registry as storage_registry
from airflow_provider_pgbackup.storage import transfer as storage_transfer
from airflow_provider_pgbackup.storage.gcs.client import GCSCredentialsError, get_storage_client
from airflow_provider_pgbackup.storage.objects import ObjectArtifactTarget as GCSArtifactTarget
from airflow_provider_pgbackup.storage.objects import write as gcs_write
from devtools.pgcluster import PgCluster
from tests.conftest import row_counts
from tests.gcs_emulator import GCSEmulator, synthetic_backup
from tests.helpers import restore_tool

CHUNK = 256 * 1024


# ------------------------------------------------------------------------------------------ credentials
@pytest.fixture(scope="module")
def service_account_key() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "backup@key-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
def without_google_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if apache-airflow-providers-google were not installed: importlib cannot find it."""
    import importlib.util

    find_spec = importlib.util.find_spec

    def hide(name: str, *args: object, **kwargs: object) -> object:
        if name == "airflow.providers.google" or name.startswith("airflow.providers.google."):
            return None
        return find_spec(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", hide)


@pytest.fixture
def gcp_conn(monkeypatch: pytest.MonkeyPatch, without_google_provider: None):
    """A google_cloud_platform connection, read by the provider's own subset (the Google provider hidden;
    tests/test_gcs_credentials.py covers the path through the Google provider)."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)

    def define(conn_id: str = "gcp_test", conn_type: str = "google_cloud_platform", **extra) -> str:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": conn_type, "extra": extra})
        )
        return conn_id

    return define


def test_keyfile_dict_with_prefixed_extras_gives_service_account_client(
    gcp_conn, service_account_key
) -> None:
    conn_id = gcp_conn(
        **{
            "extra__google_cloud_platform__keyfile_dict": json.dumps(service_account_key),
            "extra__google_cloud_platform__project": "billing-project",
        }
    )
    client = get_storage_client(conn_id)
    assert isinstance(client._credentials, service_account.Credentials)
    assert client._credentials.service_account_email == service_account_key["client_email"]
    assert client.project == "billing-project"


def test_key_path_gives_the_keys_project(gcp_conn, service_account_key, tmp_path: Path) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(service_account_key))
    client = get_storage_client(gcp_conn(key_path=str(key_file)))
    assert isinstance(client._credentials, service_account.Credentials)
    assert client.project == "key-project"


def test_missing_default_connection_falls_back_to_application_default_credentials(
    gcp_conn, service_account_key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "adc.json"
    key_file.write_text(json.dumps(service_account_key))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    client = get_storage_client("google_cloud_default")
    assert isinstance(client._credentials, service_account.Credentials)
    assert client.project == "key-project"
    with pytest.raises(AirflowNotFoundException):
        get_storage_client("gcp_not_defined")


def test_emulator_from_extra_or_environment_uses_anonymous_credentials(
    gcp_conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = get_storage_client(gcp_conn(emulator_host="127.0.0.1:4443", project="p"))
    assert isinstance(client._credentials, AnonymousCredentials)
    assert client._connection.API_BASE_URL == "http://127.0.0.1:4443"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9999")
    assert get_storage_client("gcp_not_defined")._connection.API_BASE_URL == "http://127.0.0.1:9999"


def test_bad_key_is_refused_without_showing_key_material(gcp_conn, service_account_key) -> None:
    broken = dict(service_account_key, private_key=service_account_key["private_key"][:200] + "garbage")
    del broken["client_email"]
    with pytest.raises(GCSCredentialsError) as err:
        get_storage_client(gcp_conn(keyfile_dict=json.dumps(broken)))
    assert "not a usable service-account key" in str(err.value)
    assert "PRIVATE KEY" not in str(err.value)
    assert err.value.__cause__ is None
    assert err.value.__suppress_context__
    with pytest.raises(GCSCredentialsError, match="extra 'keyfile_dict' is not valid JSON"):
        get_storage_client(gcp_conn(keyfile_dict="{not json " + service_account_key["private_key"]))
    with pytest.raises(GCSCredentialsError, match="has type 'postgres'"):
        get_storage_client(gcp_conn(conn_type="postgres"))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs://b/x.dump", "no valid bucket name"),
        ("gs://bucket/", "must name an object"),
        ("gs://bucket/a//b.dump", "must not contain empty"),
        ("gs://bucket/x.dump.manifest.json", "must not be a manifest file name"),
    ],
)
def test_bad_gs_output_paths_are_refused_naming_the_value(uri: str, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message) as err:
        check_output_path(uri)
    assert repr(uri) in str(err.value)


def test_directory_format_to_gs_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="object-store URI, which cannot take format 'directory'"):
        PgDumpOperator(task_id="dump", output_path="gs://bucket/x", format="directory")
    PgDumpOperator(task_id="dump", output_path="gs://bucket/x.tar", format="tar")  # accepted


# ------------------------------------------------------------------------------------- streamed dumps
@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Streamed dumps use 256 KiB chunks, so a few-MiB database spans many chunks."""
    for module in (storage, storage_registry, storage_transfer):  # where the storage functions look it up
        monkeypatch.setattr(
            module, "default_settings", lambda: StorageSettings(chunk_size=CHUNK, retry_timeout=2.0)
        )
    return CHUNK


@pytest.fixture(scope="module")
def big_db(pg18: PgCluster) -> str:
    name = "streamed ü"
    pg18.drop_database(name)
    pg18.create_database(name)
    pg18.execute(
        "CREATE TABLE items AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
        "FROM generate_series(1, 60000) g; CREATE TABLE tags (id int PRIMARY KEY, tag text); "
        "INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 500) g",
        dbname=name,
    )
    return name


def _object_chunks(gcs: GCSEmulator, uri: str) -> Iterator[bytes]:
    location = check_output_path(uri)
    with gcs.client().bucket(location.bucket).blob(location.name).open("rb", chunk_size=CHUNK) as reader:
        while chunk := reader.read(CHUNK):
            yield chunk


def test_streamed_dump_larger_than_chunk_restores_from_gs_with_matching_row_counts(
    pg18: PgCluster, big_db: str, airflow_conn, gcs: GCSEmulator, gcs_bucket: str, small_chunks: int
) -> None:
    uri = f"gs://{gcs_bucket}/pg/streamed.dump"
    operator = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, big_db),
        output_path=uri,
        gcs_chunk_size=small_chunks,
    )
    xcom = operator.execute(context={})

    assert xcom["artifact_path"] == uri
    assert xcom["manifest_path"] == f"{uri}.manifest.json"
    manifest = Manifest.from_dict(
        {k: v for k, v in xcom.items() if k not in ("artifact_path", "manifest_path")}
    )
    assert manifest.size_bytes > 4 * small_chunks
    bucket = gcs.client().bucket(gcs_bucket)
    assert sorted(b.name for b in bucket.list_blobs()) == [
        "pg/streamed.dump",
        "pg/streamed.dump.manifest.json",
    ]
    assert Manifest.from_json(bucket.blob("pg/streamed.dump.manifest.json").download_as_bytes()) == manifest
    blob = bucket.get_blob("pg/streamed.dump")
    assert blob.size == manifest.size_bytes
    assert blob.metadata["sha256"] == manifest.sha256
    assert blob.metadata["database"] == big_db
    assert blob.metadata["format"] == "custom"
    digest = hashlib.sha256()
    for chunk in _object_chunks(gcs, uri):
        digest.update(chunk)
    assert digest.hexdigest() == manifest.sha256

    # Remote verification: size, sha256 and pg_restore --list, all read from the object.
    from airflow_provider_pgbackup.verify import verify_backup

    report = verify_backup(open_source(uri, settings=StorageSettings(chunk_size=CHUNK)))
    assert report.ok, report.to_dict()
    assert report.sha256 == manifest.sha256

    # Restore straight from the object: pg_restore reads it on stdin, no local copy.
    target_db = "restored from gs ü"
    pg18.drop_database(target_db)
    pg18.create_database(target_db)
    hook = PgDumpHook(airflow_conn(pg18, target_db))
    pg_restore = restore_tool(manifest, "pg_restore")
    with hook.session(target_db) as session:
        hook.runner.run(
            [str(pg_restore.path), "--exit-on-error", "--no-owner", f"--dbname={target_db}"],
            session.env,
            stdin=_object_chunks(gcs, uri),
        )
    assert row_counts(pg18, target_db) == manifest.row_count_map == row_counts(pg18, big_db)


def test_pg_dumpall_streams_gzipped_sql_to_gs(
    pg18: PgCluster, airflow_conn, gcs: GCSEmulator, gcs_bucket: str, small_chunks: int
) -> None:
    uri = f"gs://{gcs_bucket}/globals.sql.gz"
    PgDumpAllOperator(
        task_id="globals",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=uri,
        mode="globals",
        compression="gzip",
        gcs_chunk_size=small_chunks,
    ).execute(context={})
    bucket = gcs.client().bucket(gcs_bucket)
    sql = gzip.decompress(bucket.blob("globals.sql.gz").download_as_bytes())
    assert b"CREATE ROLE" in sql
    assert (
        Manifest.from_json(bucket.blob("globals.sql.gz.manifest.json").download_as_bytes()).kind
        == "pg_dumpall"
    )


def test_streamed_dump_killed_after_chunks_were_sent_leaves_no_object(
    pg18: PgCluster,
    big_db: str,
    airflow_conn,
    gcs: GCSEmulator,
    gcs_bucket: str,
    small_chunks: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = PgDumpHook(airflow_conn(pg18, big_db))
    original_write = GCSArtifactTarget.write
    killed = threading.Event()

    def write_then_kill(self: GCSArtifactTarget, chunk: bytes) -> None:
        original_write(self, chunk)
        if self.bytes_written > 3 * small_chunks and not killed.is_set():
            killed.set()
            threading.Thread(target=hook.kill).start()  # as on_kill does, from another thread

    monkeypatch.setattr(GCSArtifactTarget, "write", write_then_kill)
    with pytest.raises(PgCommandError, match="pg_dump was stopped"):
        hook.dump(PgDumpOptions.build(format="plain"), f"gs://{gcs_bucket}/k.sql")
    assert killed.is_set()
    assert list(gcs.client().list_blobs(gcs_bucket)) == []


def test_manifest_write_failure_removes_the_streamed_object(
    pg18: PgCluster,
    big_db: str,
    airflow_conn,
    gcs: GCSEmulator,
    gcs_bucket: str,
    small_chunks: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args, **kwargs):
        raise ConnectionError("network gone while writing the manifest")

    monkeypatch.setattr(gcs_write, "put_small_object", refuse)
    with pytest.raises(ConnectionError):
        PgDumpHook(airflow_conn(pg18, big_db)).dump(
            PgDumpOptions.build(record_row_counts=False), f"gs://{gcs_bucket}/m.dump"
        )
    assert list(gcs.client().list_blobs(gcs_bucket)) == []


def test_existing_backup_at_gs_output_path_is_refused_before_dumping(
    pg18: PgCluster, airflow_conn, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    gcs.client().bucket(gcs_bucket).blob("x.dump.manifest.json").upload_from_string(b"{}")
    operator = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=f"gs://{gcs_bucket}/x.dump",
    )
    with pytest.raises(
        AirflowFailException, match=r"already holds a backup \(gs://.*/x.dump.manifest.json exists\)"
    ):
        operator.execute(context={})


# --------------------------------------------------------------------------------- remote verification
def test_streamed_dump_verifies_remotely_and_a_changed_object_is_caught(
    pg18: PgCluster, big_db: str, airflow_conn, gcs: GCSEmulator, gcs_bucket: str, small_chunks: int
) -> None:
    from airflow_provider_pgbackup.verify import ArtifactCorrupt, ArtifactMissing, verify_backup

    uri = f"gs://{gcs_bucket}/v/plain.sql.gz"
    source = open_source(uri, settings=StorageSettings(chunk_size=CHUNK))
    with pytest.raises(ArtifactMissing):
        verify_backup(source)
    PgDumpHook(airflow_conn(pg18, big_db)).dump(
        PgDumpOptions.build(format="plain", compression="gzip:1"), uri
    )
    report = verify_backup(source)
    assert report.ok, report.to_dict()
    assert {c.name for c in report.checks} >= {"exists", "checksum", "contents"}

    # Someone replaces the object with other (valid gzip) bytes of the same size: the sha256 check fails.
    bucket = gcs.client().bucket(gcs_bucket)
    original = bucket.blob("v/plain.sql.gz").download_as_bytes()
    bucket.blob("v/plain.sql.gz").upload_from_string(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ArtifactCorrupt) as err:
        verify_backup(source)
    assert err.value.check == "checksum"


def test_dump_verify_upload_verify_remote_retention_in_dag_test(
    pg18: PgCluster,
    big_db: str,
    airflow_conn,
    airflow_db: str,
    tmp_path: Path,
    gcs: GCSEmulator,
    gcs_bucket: str,
) -> None:
    import pendulum

    from tests.dags.pgbackup_test_gcs import dag

    conn_id = airflow_conn(pg18, big_db)
    bucket = gcs.client().bucket(gcs_bucket)
    # An older complete backup already under the prefix: retention (keep_last=1) removes it.
    old = tmp_path / "old"
    synthetic_backup(old, "20260201T000000.dump", size=64, finished_at=pendulum.now("UTC").subtract(days=30))
    upload_backup(
        old / "20260201T000000.dump",
        f"gs://{gcs_bucket}/pg/pgbackup_test_gcs",
        settings=StorageSettings(),
        log=logging.getLogger(__name__),
    )
    out = tmp_path / "out"
    out.mkdir()
    run = dag.test(
        logical_date=pendulum.datetime(2026, 3, 1, 4, 5, 6, tz="UTC"),
        run_conf={"conn_id": conn_id, "output_dir": str(out), "bucket": gcs_bucket},
    )
    assert run.state == "success"
    names = sorted(b.name for b in bucket.list_blobs())
    assert names == [
        "pg/pgbackup_test_gcs/20260301T040506.dump",
        "pg/pgbackup_test_gcs/20260301T040506.dump.manifest.json",
    ]
    assert list(out.iterdir()) == []  # delete_local_copy after the verified upload


# ------------------------------------------------------------------- the operators' gcp_conn_id / chunk size
def test_streamed_dumps_use_the_explicit_gcp_connection_and_chunk_size(
    pg18: PgCluster,
    big_db: str,
    airflow_conn,
    gcs: GCSEmulator,
    gcs_bucket: str,
    gcp_emulator_conn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # STORAGE_EMULATOR_HOST is unset: only the connection's emulator_host extra leads to the emulator.
    from airflow_provider_pgbackup.hooks import pg_dump as hook_module
    from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

    seen: list[StorageSettings | None] = []
    original_open_target = hook_module.open_target

    def spy(output_path: str, **kwargs):
        seen.append(kwargs.get("settings"))
        return original_open_target(output_path, **kwargs)

    monkeypatch.setattr(hook_module, "open_target", spy)
    uri = f"gs://{gcs_bucket}/conn/db.sql.gz"
    xcom = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, big_db),
        output_path=uri,
        format="plain",
        compression="gzip:1",
        gcp_conn_id=gcp_emulator_conn,
        gcs_chunk_size=2 * CHUNK,
    ).execute(context={})
    PgDumpAllOperator(
        task_id="globals",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=f"gs://{gcs_bucket}/conn/globals.sql",
        mode="globals",
        gcp_conn_id=gcp_emulator_conn,
        gcs_chunk_size=CHUNK,
    ).execute(context={})

    assert [(s.gcp_conn_id, s.chunk_size) for s in seen if s is not None] == [
        (gcp_emulator_conn, 2 * CHUNK),
        (gcp_emulator_conn, CHUNK),
    ]
    assert sorted(b.name for b in gcs.client().list_blobs(gcs_bucket)) == [
        "conn/db.sql.gz",
        "conn/db.sql.gz.manifest.json",
        "conn/globals.sql",
        "conn/globals.sql.manifest.json",
    ]
    report = PgBackupArtifactSensor(
        task_id="verify", path=xcom["artifact_path"], gcp_conn_id=gcp_emulator_conn, timeout=30
    ).execute(context={})
    assert report["ok"] is True
    assert report["sha256"] == xcom["sha256"]

    # The id really is used: an undefined one fails now (a configuration error) before anything is dumped.
    with pytest.raises(AirflowFailException, match="gcp_undefined"):
        PgDumpOperator(
            task_id="dump",
            postgres_conn_id=airflow_conn(pg18, big_db),
            output_path=f"gs://{gcs_bucket}/conn/never.dump",
            gcp_conn_id="gcp_undefined",
        ).execute(context={})
    assert "conn/never.dump" not in {b.name for b in gcs.client().list_blobs(gcs_bucket)}


@pytest.mark.parametrize("operator", [PgDumpOperator, PgDumpAllOperator])
def test_bad_gcs_chunk_size_is_refused_at_construction_naming_it(operator) -> None:
    with pytest.raises(ValueError, match=r"gcs_chunk_size 1000 must be a positive multiple of 256 KiB"):
        operator(task_id="dump", output_path="gs://bucket/x.sql", gcs_chunk_size=1000)
    assert "gcp_conn_id" in operator.template_fields


def test_emulator_stopped_mid_stream_fails_leaving_nothing_and_a_retry_succeeds(
    pg18: PgCluster, big_db: str, airflow_conn, gcs_persistent: GCSEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = gcs_persistent.new_bucket()
    hook = PgDumpHook(airflow_conn(pg18, big_db))
    settings = StorageSettings(chunk_size=CHUNK, retry_timeout=1.0)
    original_write = GCSArtifactTarget.write

    def write_then_crash(self: GCSArtifactTarget, chunk: bytes) -> None:
        original_write(self, chunk)
        if self.bytes_written >= 3 * CHUNK and gcs_persistent.running:
            gcs_persistent.stop()  # GCS goes away while pg_dump is still streaming into it

    monkeypatch.setattr(GCSArtifactTarget, "write", write_then_crash)
    uri = f"gs://{bucket}/s/stream.sql"
    with pytest.raises(Exception, match="Connection refused") as err:
        hook.dump(PgDumpOptions.build(format="plain"), uri, storage_settings=settings)
    assert not isinstance(err.value, InvalidOptionError)  # transient: Airflow's retries apply
    monkeypatch.setattr(GCSArtifactTarget, "write", original_write)

    gcs_persistent.start()
    assert list(gcs_persistent.client().list_blobs(bucket)) == []  # nothing looks finished
    manifest = hook.dump(PgDumpOptions.build(format="plain"), uri, storage_settings=settings)
    names = sorted(b.name for b in gcs_persistent.client().list_blobs(bucket))
    assert names == ["s/stream.sql", "s/stream.sql.manifest.json"]
    assert manifest.row_count_map == row_counts(pg18, big_db)
