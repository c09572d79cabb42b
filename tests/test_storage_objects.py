"""GCS (fake-gcs-server), S3 (moto server) and Azure Blob Storage (Azurite): the same scenarios run
against every store through the scheme registry, each on its emulator, reached through real Airflow
connections. Streamed dumps, uploads, kills, stopped servers, the sensor, the drill, retention, promote.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.hooks.pg_dump import PgCommandError, PgDumpHook
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator, newest_complete_backup
from airflow_provider_pgbackup.options import InvalidOptionError, PgDumpOptions
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.storage import (
    ObjectConflictError,
    StorageSettings,
    check_output_path,
    check_settings,
    open_source,
    parse_location,
    promote_backup,
    upload_backup,
)
from airflow_provider_pgbackup.storage.objects import PartedObjectWriter, part_size
from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator
from devtools.object_stores import AZURITE_KEY, S3_SECRET_KEY, AzuriteEmulator, S3Emulator
from devtools.pgcluster import PgCluster
from tests.conftest import log_text, row_counts
from tests.gcs_emulator import synthetic_backup
from tests.object_stores import Store

CHUNK = 256 * 1024
MIB = 1024 * 1024
LOG = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def objects_db(pg18: PgCluster) -> str:
    """~9 MB of plain SQL: more than one S3 part (5 MiB) and many Azure blocks (1 MiB)."""
    name = "objects ü"
    pg18.drop_database(name)
    pg18.create_database(name)
    pg18.execute(
        "CREATE TABLE items AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
        "FROM generate_series(1, 120000) g; CREATE TABLE tags (id int PRIMARY KEY, tag text); "
        "INSERT INTO tags SELECT g, 'tag ' || g FROM generate_series(1, 500) g",
        dbname=name,
    )
    return name


def _upload(store: Store, source: Path, destination: str, **kwargs) -> PgBackupUploadOperator:
    return PgBackupUploadOperator(
        task_id="upload",
        source_path=str(source),
        destination=destination,
        chunk_size=CHUNK,
        part_size=store.settings().part_size,
        **{"retry_timeout": 2.0, **store.conn_kwargs, **kwargs},
    )


# ------------------------------------------------------------------------------ validation, no I/O
@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://ab/x.dump", "no valid bucket name"),
        ("s3://Bucket/x.dump", "no valid bucket name"),
        ("s3://bucket/", "must name an object"),
        ("s3://bucket/a/../x.dump", "must not contain empty, '.' or '..'"),
        ("s3://bucket/x.dump.manifest.json", "must not be a manifest file name"),
        ("az://a--b/x.dump", "no valid container name"),
        ("az://container/", "must name a blob"),
        ("az://container/a//b", "must not contain empty"),
        ("az://container/a\\b", "backslash"),
        ("abfss://container@account.dfs.core.windows.net/x.dump", "names a storage account"),
        ("abfs://a--b/x.dump", "no valid container name"),
        ("adl://container/x.dump", "scheme adl://, which is not supported"),
    ],
)
def test_bad_object_store_paths_are_refused_naming_the_value(uri: str, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message.replace("(", r"\(")) as err:
        check_output_path(uri)
    assert repr(uri) in str(err.value)


@pytest.mark.parametrize(
    ("scheme", "settings", "message"),
    [
        ("s3", {"storage_class": "Hot"}, "storage_class 'Hot' is not supported on S3"),
        ("s3", {"encryption_scope": "scope1"}, "encryption_scope 'scope1' is an Azure setting"),
        ("az", {"storage_class": "GLACIER"}, "storage_class 'GLACIER' is not an Azure access tier"),
        ("az", {"kms_key_name": "alias/k"}, "kms_key_name 'alias/k' is not used on Azure"),
    ],
)
def test_settings_a_store_cannot_use_are_refused_naming_the_value(scheme, settings, message) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        check_settings(scheme, StorageSettings(**settings))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"aws_conn_id": 3}, "aws_conn_id 3 must be a connection id"),
        ({"wasb_conn_id": ["x"]}, r"wasb_conn_id \['x'\] must be a connection id"),
        (
            {"encryption_scope": "no spaces!"},
            "encryption_scope 'no spaces!' must be an Azure encryption scope",
        ),
        ({"kms_key_name": "a\nb"}, r"kms_key_name 'a\\nb' must be a non-empty string on one line"),
    ],
)
def test_bad_storage_settings_are_refused_naming_the_value(settings, message) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        StorageSettings(**settings)


def test_upload_operator_refuses_bad_arguments_at_construction() -> None:
    with pytest.raises(ValueError, match="must be an object-store folder URI"):
        PgBackupUploadOperator(task_id="u", source_path="/b/x.dump", destination="/local/folder")
    with pytest.raises(ValueError, match="storage_class 'Cool' is not supported on S3"):
        PgBackupUploadOperator(
            task_id="u", source_path="/b/x.dump", destination="s3://bkt/p", storage_class="Cool"
        )
    operator = PgBackupUploadOperator(
        task_id="u", source_path="/b/x.dump", destination="az://cont/pg/{{ ds }}"
    )
    assert [a.uri for a in operator.outlets] == ["az://cont/pg"]
    assert {"destination", "aws_conn_id", "wasb_conn_id"} <= set(operator.template_fields)


def test_parts_grow_so_a_terabyte_stream_stays_under_the_s3_part_limit() -> None:
    """Pure arithmetic of the part-size rule, with S3's smallest part (5 MiB) as the starting size."""
    sent = parts = 0
    largest = 0
    while sent < 1024**4:
        size = part_size(
            sent, 256 * 1024, minimum=5 * MIB, maximum=5 * 1024 * MIB, expected=None, max_parts=10_000
        )
        largest = max(largest, size)
        sent += size
        parts += 1
    assert parts < 10_000
    assert largest <= 1100 * MIB  # memory: a part is about a thousandth of what was sent
    known = part_size(
        0, 32 * MIB, minimum=5 * MIB, maximum=5 * 1024 * MIB, expected=1024**4, max_parts=10_000
    )
    assert 1024**4 / known < 9_600  # a local file of known size: fixed parts sized to fit


# ------------------------------------------------------------------------------ streamed dumps
@pytest.mark.parametrize(
    ("dump_format", "compression"), [("custom", None), ("tar", None), ("plain", "gzip:1")]
)
def test_streamed_dump_to_every_store_verifies_and_restores_in_a_drill(
    pg18: PgCluster, objects_db: str, airflow_conn, store: Store, dump_format, compression
) -> None:
    container = store.new_container()
    suffix = {"custom": ".dump", "tar": ".tar", "plain": ".sql.gz"}[dump_format]
    uri = store.uri(container, f"pg/streamed{suffix}")
    xcom = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, objects_db),
        output_path=uri,
        format=dump_format,
        compression=compression,
        gcs_chunk_size=CHUNK,
        **store.conn_kwargs,
    ).execute(context={})
    assert xcom["artifact_path"] == uri
    assert xcom["manifest_path"] == f"{uri}.manifest.json"
    objects = store.objects(container)
    assert sorted(objects) == [f"pg/streamed{suffix}", f"pg/streamed{suffix}.manifest.json"]
    manifest = Manifest.from_json(objects[f"pg/streamed{suffix}.manifest.json"])
    assert manifest.sha256 == xcom["sha256"]
    assert len(objects[f"pg/streamed{suffix}"]) == manifest.size_bytes
    assert store.pending_uploads(container) == []

    report = PgBackupArtifactSensor(task_id="verify", path=uri, timeout=30, **store.conn_kwargs).execute(
        context={}
    )
    assert report["ok"] is True
    assert report["sha256"] == manifest.sha256

    result = PgRestoreOperator(
        task_id="drill",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        artifact_path=uri,
        database=f"drill {store.scheme} {dump_format}",
        **store.conn_kwargs,
    ).execute(context={})
    assert result["dropped_database"] is True
    assert {(t["schema"], t["table"]): t["restored"] for t in result["tables"]} == row_counts(
        pg18, objects_db
    )


def test_pg_dumpall_streams_to_every_store(pg18: PgCluster, airflow_conn, store: Store) -> None:
    container = store.new_container()
    uri = store.uri(container, "globals.sql.gz")
    PgDumpAllOperator(
        task_id="globals",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=uri,
        mode="globals",
        compression="gzip",
        **store.conn_kwargs,
    ).execute(context={})
    import gzip

    objects = store.objects(container)
    assert b"CREATE ROLE" in gzip.decompress(objects["globals.sql.gz"])
    assert Manifest.from_json(objects["globals.sql.gz.manifest.json"]).kind == "pg_dumpall"


def test_streamed_dump_killed_mid_upload_leaves_no_object_and_no_multipart_upload(
    pg18: PgCluster, objects_db: str, airflow_conn, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    container = store.new_container()
    hook = PgDumpHook(airflow_conn(pg18, objects_db))
    original = PartedObjectWriter.write
    killed = threading.Event()

    def write_then_kill(self: PartedObjectWriter, chunk: bytes) -> None:
        original(self, chunk)
        if self.bytes_written > 5 * MIB + CHUNK and not killed.is_set():
            deadline = time.monotonic() + 20
            while self.parts_sent < 1 and time.monotonic() < deadline:  # pg_dump waits on its pipe
                time.sleep(0.01)
            assert self.parts_sent >= 1  # a part is on the server: there is a multipart upload to abort
            killed.set()
            kill = threading.Thread(target=hook.kill)  # as on_kill does, from another thread
            kill.start()
            kill.join()

    monkeypatch.setattr(PartedObjectWriter, "write", write_then_kill)
    with pytest.raises(PgCommandError, match="pg_dump was stopped"):
        hook.dump(
            PgDumpOptions.build(format="plain", record_row_counts=False),
            store.uri(container, "k.sql"),
            storage_settings=store.settings(),
        )
    assert killed.is_set()
    assert store.objects(container) == {}
    assert store.pending_uploads(container) == []  # the multipart upload was aborted


# ------------------------------------------------------------------------------ uploads
@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
@pytest.mark.parametrize(("dump_format", "compression"), [("custom", None), ("directory", "gzip:1")])
def test_upload_of_file_and_directory_backups_then_retry_is_a_no_op_and_drill_restores(
    pg: PgCluster, sample: str, pg_backup, airflow_conn, store: Store, dump_format, compression
) -> None:
    artifact = pg_backup(dump_format, compression)
    container = store.new_container()
    destination = store.uri(container, "pg/nightly")
    result = _upload(store, artifact, destination).execute(context={})
    uri = f"{destination}/{artifact.name}"
    assert result["artifact_uri"] == uri
    assert result["manifest_uri"] == f"{uri}.manifest.json"
    objects = store.objects(container)
    local = (
        {
            f"pg/nightly/{artifact.name}/{p.relative_to(artifact).as_posix()}": p
            for p in artifact.rglob("*")
            if p.is_file()
        }
        if artifact.is_dir()
        else {f"pg/nightly/{artifact.name}": artifact}
    )
    assert set(objects) == {*local, f"pg/nightly/{artifact.name}.manifest.json"}
    for name, path in local.items():
        assert objects[name] == path.read_bytes()
    meta = store.metadata(container, next(iter(local)))
    assert meta["database"] == sample  # non-ASCII metadata survives the stores' header encoding
    assert meta["format"] == dump_format

    again = _upload(store, artifact, destination).execute(context={})
    assert again["uploaded_bytes"] == 0
    assert again["skipped_objects"] == len(local) + 1
    assert store.objects(container) == objects

    xcom = PgRestoreOperator(
        task_id="drill", postgres_conn_id=airflow_conn(pg, "postgres"), artifact_path=uri, **store.conn_kwargs
    ).execute(context={})
    assert {(t["schema"], t["table"]): t["restored"] for t in xcom["tables"]} == row_counts(pg, sample)


def test_different_object_is_never_overwritten_and_identical_manifest_is_a_no_op(
    tmp_path: Path, store: Store
) -> None:
    container = store.new_container()
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=300_000)
    store.put(container, "pg/db.dump", b"somebody else's bytes")
    with pytest.raises(AirflowFailException, match=r"/pg/db.dump already exists with different content"):
        _upload(store, artifact, store.uri(container, "pg")).execute(context={})
    assert store.objects(container) == {"pg/db.dump": b"somebody else's bytes"}

    # The create-only precondition itself (If-None-Match: *, ifGenerationMatch=0), not only the look
    # before writing. fake-gcs-server ignores ifGenerationMatch on resumable uploads (GCS honours it),
    # so on gs:// the one-request path (less than a part) is what can be checked here.
    from airflow_provider_pgbackup.storage import parse_location
    from airflow_provider_pgbackup.storage.objects import PartedObjectWriter as Writer

    settings = store.settings()
    source = open_source(store.uri(container, "pg/db.dump"), settings=settings)
    writer = Writer(source.client, parse_location(store.uri(container, "pg/db.dump")))  # type: ignore[attr-defined]
    writer.write(b"x" * (100_000 if store.scheme == "gs" else 6 * MIB))
    with pytest.raises(ObjectConflictError, match="created by someone else"):
        writer.commit()
    assert store.objects(container) == {"pg/db.dump": b"somebody else's bytes"}
    assert store.pending_uploads(container) == []


def test_kill_mid_upload_completes_nothing_and_aborts_the_multipart_upload(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_pgbackup.storage import UploadCancelled

    container = store.new_container()
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=16 * MIB)
    operator = _upload(store, artifact, store.uri(container, "pg"))
    original = PartedObjectWriter.write

    def write_then_kill(self: PartedObjectWriter, chunk: bytes) -> None:
        original(self, chunk)
        if self.bytes_written >= 12 * MIB:
            operator.on_kill()

    monkeypatch.setattr(PartedObjectWriter, "write", write_then_kill)
    with pytest.raises(UploadCancelled, match="was stopped; the object was not finalized"):
        operator.execute(context={})
    assert store.objects(container) == {}
    assert store.pending_uploads(container) == []


def test_emulator_stopped_mid_upload_leaves_nothing_and_a_retry_succeeds(
    tmp_path: Path, persistent_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = persistent_store
    container = store.new_container()
    artifact, manifest = synthetic_backup(tmp_path, "big.dump", size=14 * MIB + 5)
    writer_class = PartedObjectWriter
    original = writer_class.write

    def write_then_crash(self, chunk: bytes) -> None:
        original(self, chunk)
        if self.bytes_written >= 6 * MIB and store.emulator.running:
            store.emulator.stop()  # the store goes away while the file is still being sent

    monkeypatch.setattr(writer_class, "write", write_then_crash)
    with pytest.raises(Exception) as err:  # noqa: PT011 - each SDK has its own connection error
        _upload(store, artifact, store.uri(container, "pg"), retry_timeout=1.0).execute(context={})
    assert not isinstance(err.value, AirflowFailException)  # transient: Airflow's retries apply
    monkeypatch.setattr(writer_class, "write", original)

    store.emulator.start()
    assert store.objects(container) == {}  # no object, no manifest: nothing looks finished
    result = _upload(store, artifact, store.uri(container, "pg")).execute(context={})
    objects = store.objects(container)
    assert objects["pg/big.dump"] == artifact.read_bytes()
    assert Manifest.from_json(objects["pg/big.dump.manifest.json"]) == manifest
    assert result["uploaded_bytes"] == manifest.size_bytes


# ------------------------------------------------------------------------------ sensor, promote, retention
def test_sensor_fails_at_once_on_a_corrupt_object_naming_the_checksum(
    pg18: PgCluster, objects_db: str, airflow_conn, store: Store
) -> None:
    container = store.new_container()
    uri = store.uri(container, "v/db.dump")
    PgDumpHook(airflow_conn(pg18, objects_db)).dump(
        PgDumpOptions.build(record_row_counts=False), uri, storage_settings=store.settings()
    )
    data = bytearray(store.objects(container)["v/db.dump"])
    data[len(data) // 2] ^= 0xFF  # same size, one flipped bit
    store.put(container, "v/db.dump", bytes(data))
    with pytest.raises(AirflowFailException, match=r"is corrupt: check 'checksum' failed: sha256 is"):
        PgBackupArtifactSensor(task_id="verify", path=uri, timeout=30, **store.conn_kwargs).execute(
            context={}
        )
    missing = PgBackupArtifactSensor(task_id="wait", path=store.uri(container, "v/none.dump"), timeout=30)
    assert missing.poke(context={}) is False


def test_promote_copies_server_side_manifest_last_and_a_retry_is_a_no_op(
    tmp_path: Path, store: Store
) -> None:
    container = store.new_container()
    artifact, manifest = synthetic_backup(tmp_path, "db.dump", size=7 * MIB)
    settings = store.settings()
    staged, _ = upload_backup(artifact, store.uri(container, "staging"), settings=settings, log=LOG)
    source = open_source(staged.artifact_uri, settings=settings)
    result, promoted = promote_backup(source, store.uri(container, "final"), settings=settings, log=LOG)
    assert promoted == manifest
    assert result.object_uris[-1] == store.uri(container, "final/db.dump.manifest.json")
    objects = store.objects(container)
    assert objects["final/db.dump"] == artifact.read_bytes()
    assert store.metadata(container, "final/db.dump")["sha256"] == manifest.sha256
    again, _ = promote_backup(source, store.uri(container, "final"), settings=settings, log=LOG)
    assert again.transferred_bytes == 0
    assert again.skipped_objects == 2
    report = PgBackupArtifactSensor(
        task_id="verify", path=result.artifact_uri, verify_contents=False, timeout=30, **store.conn_kwargs
    ).execute(context={})
    assert report["ok"] is True
    with pytest.raises(InvalidOptionError, match="a promotion copies within one kind of store"):
        promote_backup(source, f"/tmp/{container}", settings=settings, log=LOG)


def test_retention_keeps_the_gfs_set_on_the_store_and_newest_complete_backup_skips_broken_ones(
    tmp_path: Path, store: Store
) -> None:
    container = store.new_container()
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    times = [now - datetime.timedelta(hours=1, days=d) for d in range(0, 60, 3)]
    local = tmp_path / "local"
    quiet = logging.getLogger("objects-retention")
    quiet.setLevel(logging.WARNING)
    for t in times:
        artifact, _ = synthetic_backup(local, t.strftime("%Y%m%dT%H%M%S.dump"), size=16, finished_at=t)
        upload_backup(artifact, store.uri(container, "pg/prod"), settings=store.settings(), log=quiet)
    # A run of ours stopped before its manifest (its upload id marks it), and someone else's object.
    store.put(
        container, "pg/prod/failed.dump", b"orphan", metadata={"pgbackup-upload-id": "0123456789abcdef"}
    )
    store.put(container, "pg/prod/theirs.dump", b"written by someone else")
    store.put(container, "pg/other/keep.dump", b"not under the prefix")
    uri = store.uri(container, "pg/prod")

    result = PgBackupRetentionOperator(
        task_id="retention", location=uri, keep_last=2, keep_daily=0, keep_weekly=2, keep_monthly=0,
        incomplete_grace=0, **store.conn_kwargs,
    ).execute(context={})  # fmt: skip
    names = set(store.objects(container))
    kept = {n.removeprefix("pg/prod/").removesuffix(".manifest.json") for n in names if n.endswith(".json")}
    assert kept == {k["name"] for k in result["kept"]}
    assert 2 <= len(kept) <= 4
    assert result["incomplete_deleted"] == [f"{uri}/failed.dump"]
    assert "pg/other/keep.dump" in names
    assert "pg/prod/theirs.dump" in names  # retention deletes only what the provider wrote
    newest = times[0].strftime("%Y%m%dT%H%M%S.dump")
    assert newest_complete_backup(uri) == f"{uri}/{newest}"
    store.put(container, f"pg/prod/{newest}", b"cut")  # no longer what its manifest describes
    assert newest_complete_backup(uri) != f"{uri}/{newest}"


# ------------------------------------------------------------------------------ options and connections
def test_storage_class_and_sse_kms_reach_the_s3_objects(tmp_path: Path, s3: S3Emulator) -> None:
    bucket = s3.new_bucket()
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=6 * MIB)
    PgBackupUploadOperator(
        task_id="upload", source_path=str(artifact), destination=f"s3://{bucket}/pg", chunk_size=CHUNK,
        part_size=5 * MIB, storage_class="STANDARD_IA", kms_key_name="alias/pgbackup",
    ).execute(context={})  # fmt: skip
    for key in ("pg/db.dump", "pg/db.dump.manifest.json"):
        head = s3.client().head_object(Bucket=bucket, Key=key)
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith("alias/pgbackup")
    parts = s3.client().head_object(Bucket=bucket, Key="pg/db.dump")["ETag"]
    assert parts.strip('"').endswith("-2")  # a multipart upload of 5 MiB parts, not one PUT


def test_access_tier_reaches_the_azure_blobs(tmp_path: Path, azurite: AzuriteEmulator) -> None:
    container = azurite.new_container()
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=3 * MIB)
    PgBackupUploadOperator(
        task_id="upload", source_path=str(artifact), destination=f"az://{container}/pg", chunk_size=CHUNK,
        part_size=MIB, storage_class="Cool",
    ).execute(context={})  # fmt: skip
    blob = azurite.client().get_blob_client(container, "pg/db.dump")
    assert blob.get_blob_properties().blob_tier == "Cool"
    assert len(blob.get_block_list()[0]) == 3  # committed as staged 1 MiB blocks


def test_explicit_connections_are_used_and_an_undefined_one_fails_before_any_upload(
    tmp_path: Path, s3: S3Emulator, azurite: AzuriteEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BACKUP_AWS", s3.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_BACKUP_WASB", azurite.connection_json())
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT")
    monkeypatch.delenv("AIRFLOW_CONN_WASB_DEFAULT")
    bucket, container = s3.new_bucket(), azurite.new_container()
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=1000)
    for destination in (f"s3://{bucket}/pg", f"az://{container}/pg"):
        PgBackupUploadOperator(
            task_id="u", source_path=str(artifact), destination=destination,
            aws_conn_id="backup_aws", wasb_conn_id="backup_wasb",
        ).execute(context={})  # fmt: skip
        # An undefined connection is a configuration error: it fails now (failures.py), naming the id.
        with pytest.raises(AirflowFailException, match="undefined"):
            PgBackupUploadOperator(
                task_id="u", source_path=str(artifact), destination=destination + "/x",
                aws_conn_id="undefined", wasb_conn_id="undefined",
            ).execute(context={})  # fmt: skip
    assert set(s3.client().list_objects_v2(Bucket=bucket)["KeyCount"] for _ in [0]) == {2}
    # Without any connection: the SDKs' own chains (here the environment) are used.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    for destination in (f"s3://{bucket}/env", f"az://{container}/env"):
        PgBackupUploadOperator(task_id="u", source_path=str(artifact), destination=destination).execute(
            context={}
        )
    assert "env/db.dump.manifest.json" in {
        o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]
    }


# GCS: the emulator takes no credentials; tests/test_gcs_credentials.py keeps its keys out of logs.
@pytest.mark.parametrize("store", ["s3", "az"], indirect=True)
def test_no_secret_in_logs_xcom_metadata_or_exceptions(
    tmp_path: Path, store: Store, task_log, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = S3_SECRET_KEY if store.scheme == "s3" else AZURITE_KEY
    container = store.new_container()
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=6 * MIB)
    xcom = _upload(store, artifact, store.uri(container, "pg"), progress_interval=0.0).execute(context={})
    report = PgBackupArtifactSensor(
        task_id="verify", path=xcom["artifact_uri"], verify_contents=False, timeout=30
    ).execute(context={})
    with pytest.raises(Exception) as err:  # noqa: PT011 - a bucket / container that does not exist
        _upload(store, artifact, store.uri("pgbackup-no-such-store", "pg")).execute(context={})
    texts = [
        log_text(task_log),
        json.dumps(xcom),
        json.dumps(report),
        json.dumps(store.metadata(container, "pg/db.dump")),
        *(v.decode("latin-1") for v in store.objects(container).values()),
        str(err.value),
        repr(err.value),
        str(err.value.__cause__),
    ]
    assert "Uploading" in texts[0]  # the log was captured
    for text in texts:
        assert secret not in text


def test_retry_replaces_its_own_object_left_without_manifest_but_never_a_foreign_one(
    pg18: PgCluster, airflow_conn, store: Store
) -> None:
    container = store.new_container()
    hook = PgDumpHook(airflow_conn(pg18, "postgres"))
    # A run of ours stopped between the artifact and its manifest: the retry replaces the object.
    store.put(container, "pg/ours.dump", b"half", metadata={"pgbackup-upload-id": "0123456789abcdef"})
    manifest = hook.dump(PgDumpOptions.build(), store.uri(container, "pg/ours.dump"))
    objects = store.objects(container)
    assert len(objects["pg/ours.dump"]) == manifest.size_bytes
    assert "pg/ours.dump.manifest.json" in objects
    # Someone else's object at the output path is refused before anything runs.
    store.put(container, "pg/theirs.dump", b"foreign")
    with pytest.raises(InvalidOptionError, match=r"already holds a backup"):
        hook.dump(PgDumpOptions.build(), store.uri(container, "pg/theirs.dump"))
    assert store.objects(container)["pg/theirs.dump"] == b"foreign"


# ------------------------------------------------------------------------------ parts in flight
def test_each_store_sizes_its_parts_by_its_own_rules() -> None:
    """Pure arithmetic: GCS parts are multiples of 256 KiB, S3 parts at least 5 MiB, Azure blocks at most
    4000 MiB; a part size a store cannot take is refused naming it and the store's limits."""
    from airflow_provider_pgbackup.storage.azure.client import AzureObjectClient
    from airflow_provider_pgbackup.storage.gcs.objects import GCSObjectClient
    from airflow_provider_pgbackup.storage.objects.client import check_part_size
    from airflow_provider_pgbackup.storage.s3.client import S3ObjectClient

    sizes = [
        part_size(sent, 256 * 1024, minimum=256 * 1024, maximum=5 * 1024**3, expected=known,
                  max_parts=10**9, multiple=256 * 1024)
        for sent in (0, 3 * 1024**3, 10**12) for known in (None, 10**9 + 1)
    ]  # fmt: skip
    assert all(size % (256 * 1024) == 0 for size in sizes)
    assert (
        part_size(0, 1, minimum=5 * MIB, maximum=5 * 1024 * MIB, expected=None, max_parts=10_000) == 5 * MIB
    )
    settings = StorageSettings(part_size=MIB, chunk_size=CHUNK)
    for client_class, container in ((S3ObjectClient, "bucket"), (AzureObjectClient, "container")):
        client = client_class.__new__(client_class)  # the size rules only: no SDK client is built
        client.base_part_size = settings.part_size
        client.location = parse_location(
            f"{'s3' if client_class is S3ObjectClient else 'az'}://{container}", folder=True
        )
        if client_class is S3ObjectClient:
            with pytest.raises(InvalidOptionError, match=r"part_size 1048576 is not a part size s3:// takes"):
                check_part_size(client)
        else:
            check_part_size(client)  # 1 MiB blocks are fine on Azure
    gcs = GCSObjectClient.__new__(GCSObjectClient)
    gcs.base_part_size, gcs.location = CHUNK, parse_location("gs://bucket", folder=True)
    check_part_size(gcs)  # gcs_chunk_size sizes GCS's parts, part_size is not read there


@pytest.mark.parametrize("store", ["s3", "az"], indirect=True)
def test_parts_go_several_at_once_in_order_and_a_failed_one_leaves_nothing(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure injection (the one way to fail a chosen part): the part upload's ``send`` is wrapped."""
    import threading

    container = store.new_container()
    artifact, manifest = synthetic_backup(tmp_path, "db.dump", size=6 * store.settings().part_size + 17)
    from airflow_provider_pgbackup.storage.azure.client import AzurePartUpload
    from airflow_provider_pgbackup.storage.s3.client import S3PartUpload

    upload_class = S3PartUpload if store.scheme == "s3" else AzurePartUpload
    original = upload_class.send
    lock, busy, most = threading.Lock(), [0], [0]

    def counting_send(self, number: int, data: bytes) -> None:
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        try:
            time.sleep(0.2)  # long enough for the next parts to start beside this one
            original(self, number, data)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(upload_class, "send", counting_send)
    result = _upload(store, artifact, store.uri(container, "pg"), parts_in_flight=4).execute(context={})
    assert store.objects(container)[f"pg/{artifact.name}"] == artifact.read_bytes()  # parts in order
    assert result["uploaded_bytes"] == manifest.size_bytes
    assert most[0] >= 2  # several parts were on the wire at once

    def failing_send(self, number: int, data: bytes) -> None:
        if number == 3:
            raise ConnectionError("part 3 lost")
        counting_send(self, number, data)

    monkeypatch.setattr(upload_class, "send", failing_send)
    again = store.new_container()
    with pytest.raises(ConnectionError, match="part 3 lost"):
        _upload(store, artifact, store.uri(again, "pg"), parts_in_flight=4).execute(context={})
    assert store.objects(again) == {}  # no object, no manifest: nothing looks finished
    assert store.pending_uploads(again) == []  # the multipart upload was aborted


def test_abfs_and_abfss_name_the_same_blobs_as_az_on_azurite(
    pg18: PgCluster, airflow_conn, azurite: AzuriteEmulator
) -> None:
    """Airflow's Azure filesystem (adlfs) registers abfs:// and abfss://: the backend serves them as az://."""
    container = azurite.new_container()
    assert check_output_path(f"abfss://{container}/pg/x.dump").uri == f"az://{container}/pg/x.dump"
    xcom = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg18, "postgres"),
        output_path=f"abfs://{container}/pg/x.dump",
    ).execute(context={})
    assert xcom["artifact_path"] == f"az://{container}/pg/x.dump"
    report = PgBackupArtifactSensor(
        task_id="verify", path=f"abfss://{container}/pg/x.dump", timeout=30
    ).execute(context={})
    assert report["ok"] is True
    assert report["sha256"] == xcom["sha256"]


# ------------------------------------------------------------------------------ links
def test_s3_and_azurite_links_open_the_endpoint_not_the_cloud_console(
    s3: S3Emulator, azurite: AzuriteEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an S3 ``endpoint_url`` (moto here, MinIO in production) a backup's link is the object on that
    endpoint, not the AWS console (which would show nothing); on Azurite the blob's URL, where Azure's
    own accounts have no page. No credential is ever in a link."""
    import urllib.parse
    import urllib.request

    from airflow_provider_pgbackup.lineage import operator_link
    from airflow_provider_pgbackup.storage import object_url
    from airflow_provider_pgbackup.storage.objects.backend import endpoint_object_url

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    bucket = s3.new_bucket()
    s3.client().put_object(Bucket=bucket, Key="pg/shop ü.dump", Body=b"backup bytes", ACL="public-read")
    uri = f"s3://{bucket}/pg/shop ü.dump"
    url = object_url(uri, StorageSettings())  # aws_default: the moto endpoint
    assert url == f"{s3.endpoint}/{bucket}/pg/shop%20%C3%BC.dump"
    with urllib.request.urlopen(url, timeout=10) as response:  # the link opens the object itself
        assert response.read() == b"backup bytes"
    upload = PgBackupUploadOperator(
        task_id="up", source_path="/backups/x.dump", destination=f"s3://{bucket}/pg"
    )
    assert operator_link(parse_location(uri), upload) == url  # what the "Published backup" link shows
    quoted_secret = urllib.parse.quote(S3_SECRET_KEY, safe="")
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_USERINFO",
        json.dumps(
            {
                "conn_type": "aws",
                "extra": {
                    "endpoint_url": f"http://minio:{quoted_secret}@127.0.0.1:{s3.port}/",
                    "region_name": "us-east-1",
                },
            }
        ),
    )
    assert object_url(uri, StorageSettings(aws_conn_id="s3_userinfo")) == url  # user:password@ left out
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_AWS", json.dumps({"conn_type": "aws", "extra": {"region_name": "eu-west-1"}})
    )
    assert object_url(uri, StorageSettings(aws_conn_id="s3_aws")) == (
        f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix=pg/shop%20%C3%BC.dump"
    )

    container = f"public-{azurite.new_container()}"
    azurite.client().create_container(container, public_access="blob")
    azurite.client().get_container_client(container).upload_blob("pg/shop ü.dump", b"blob bytes")
    az_url = object_url(f"az://{container}/pg/shop ü.dump", StorageSettings())  # wasb_default: Azurite
    assert az_url == f"{azurite.endpoint}/{container}/pg/shop%20%C3%BC.dump"
    assert AZURITE_KEY not in az_url
    with urllib.request.urlopen(az_url, timeout=10) as response:
        assert response.read() == b"blob bytes"
    monkeypatch.setenv(
        "AIRFLOW_CONN_WASB_AZURE",
        json.dumps(
            {
                "conn_type": "wasb",
                "extra": {
                    "connection_string": "DefaultEndpointsProtocol=https;AccountName=acct;"
                    f"AccountKey={AZURITE_KEY};EndpointSuffix=core.windows.net"
                },
            }
        ),
    )
    assert object_url(f"az://{container}/pg/x.dump", StorageSettings(wasb_conn_id="wasb_azure")) is None
    # An endpoint's user:password and query (a SAS token) never reach a link.
    assert endpoint_object_url("https://u:secret@[::1]:10000/acct/?sv=1&sig=secret", "c", "a b/x") == (
        "https://[::1]:10000/acct/c/a%20b/x"
    )


def test_an_upload_holds_each_part_once_so_memory_is_parts_in_flight_times_part_size(store: Store) -> None:
    """The documented bound, on every store's real emulator: ``(parts_in_flight + 1) x part size`` of
    buffers (GCS: two parts held, its session takes them one after the other), plus what each request in
    flight reads at a time (botocore reads a body in 1 MiB blocks for its payload hash and CRC32: 2.2 MiB
    with 3 parts in flight). Python's allocations are traced (tracemalloc) while 16 parts go up in writes
    that straddle the parts' ends; a part copied on its way to the socket (joined then sliced, gathered
    before a slot was free, buffered again by GCS's ``BlobWriter``) shows as a part more. The object
    holds the bytes written, in order."""
    import hashlib
    import tracemalloc

    from airflow_provider_pgbackup.storage.objects.parts import SEQUENTIAL_PARTS

    part = {"gs": 4 * MIB, "s3": 8 * MIB, "az": 4 * MIB}[store.scheme]
    settings = store.settings(chunk_size=part, part_size=part if store.scheme != "gs" else None,
                              parts_in_flight=3)  # fmt: skip
    container = store.new_container()
    uri = store.uri(container, "pg/big.dump")
    source = open_source(uri, settings=settings)
    writer = PartedObjectWriter(source.client, parse_location(uri))  # type: ignore[attr-defined]
    held = SEQUENTIAL_PARTS if store.scheme == "gs" else settings.parts_in_flight
    size, expected = 100_003, hashlib.sha256()
    tracemalloc.start()
    try:
        for number in range(16 * part // size + 1):
            chunk = bytes([number % 251]) * size
            expected.update(chunk)
            writer.write(chunk)
        digest = writer.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert writer.parts_sent >= 16
    assert peak <= (held + 1) * part + {"s3": 4 * MIB}.get(store.scheme, MIB), (
        f"peak {peak / MIB:.1f} MiB for {held} parts of {part // MIB} MiB"
    )
    assert digest.sha256 == expected.hexdigest()
    assert hashlib.sha256(store.objects(container)["pg/big.dump"]).hexdigest() == expected.hexdigest()


@pytest.mark.parametrize("store", ["gs", "s3", "az"], indirect=True)
@pytest.mark.parametrize("parts", [1, 3])
def test_a_stream_of_whole_parts_ends_with_no_short_part_and_holds_its_bytes(
    store: Store, parts: int
) -> None:
    """A stream that is an exact number of parts: nothing is left for a last part, so GCS's session ends
    with an empty final request (``bytes */N``) and S3/Azure complete what they have; the object holds
    exactly the bytes written."""
    import hashlib

    part = {"gs": MIB, "s3": 5 * MIB, "az": MIB}[store.scheme]
    settings = store.settings(chunk_size=part, part_size=part if store.scheme != "gs" else None)
    container = store.new_container()
    uri = store.uri(container, "pg/whole.dump")
    writer = PartedObjectWriter(open_source(uri, settings=settings).client, parse_location(uri))  # type: ignore[attr-defined]
    data = b"".join(bytes([n]) * part for n in range(parts))
    for start in range(0, len(data), 300_000):
        writer.write(data[start : start + 300_000])
    digest = writer.commit()
    assert (digest.size_bytes, writer.parts_sent) == (len(data), parts)
    assert hashlib.sha256(store.objects(container)["pg/whole.dump"]).hexdigest() == digest.sha256
