"""PgBackupToGCSOperator against a real GCS emulator (fake-gcs-server) and real pg_dump artifacts."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import google_crc32c
import pytest
from airflow.sdk.exceptions import AirflowFailException
from google.api_core.exceptions import RetryError

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import Manifest, manifest_path_for
from airflow_provider_pgbackup.options import PgDumpOptions
from airflow_provider_pgbackup.storage import UploadCancelled
from airflow_provider_pgbackup.storage.objects import PartedObjectWriter as GCSObjectWriter
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator, static_asset_uri
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator, synthetic_backup

CHUNK = 256 * 1024


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _objects(gcs: GCSEmulator, bucket: str) -> dict[str, bytes]:
    client = gcs.client()
    return {blob.name: blob.download_as_bytes() for blob in client.list_blobs(bucket)}


def _operator(source: Path, bucket: str, prefix: str = "pg/nightly", **kwargs) -> PgBackupToGCSOperator:
    return PgBackupToGCSOperator(
        task_id="upload",
        source_path=str(source),
        bucket=bucket,
        prefix=prefix,
        chunk_size=CHUNK,
        **{"retry_timeout": 2.0, **kwargs},
    )


@pytest.mark.parametrize(
    ("dump_format", "compression"),
    [("custom", None), ("directory", "gzip:1"), ("tar", None), ("plain", "none")],
)
def test_upload_round_trip_of_every_format_then_second_upload_is_a_no_op(
    pg18: PgCluster,
    sample: str,
    airflow_conn,
    tmp_path: Path,
    gcs: GCSEmulator,
    gcs_bucket: str,
    dump_format,
    compression,
) -> None:
    hook = PgDumpHook(airflow_conn(pg18, sample))
    out = tmp_path / f"backup.{dump_format}"
    manifest = hook.dump(PgDumpOptions.build(format=dump_format, compression=compression), str(out))

    result = _operator(out, gcs_bucket).execute(context={})

    prefix = "pg/nightly"
    assert result["artifact_uri"] == f"gs://{gcs_bucket}/{prefix}/{out.name}"
    assert result["manifest_uri"] == f"gs://{gcs_bucket}/{prefix}/{out.name}.manifest.json"
    assert result["manifest"] == manifest.to_dict()
    objects = _objects(gcs, gcs_bucket)
    local_files = (
        {f"{prefix}/{out.name}/{p.relative_to(out).as_posix()}": p for p in out.rglob("*") if p.is_file()}
        if out.is_dir()
        else {f"{prefix}/{out.name}": out}
    )
    manifest_name = f"{prefix}/{out.name}.manifest.json"
    assert set(objects) == {*local_files, manifest_name}
    assert objects[manifest_name] == manifest_path_for(out).read_bytes()
    assert Manifest.from_json(objects[manifest_name]) == manifest
    bucket = gcs.client().bucket(gcs_bucket)
    for name, local in local_files.items():
        data = local.read_bytes()
        assert objects[name] == data
        blob = bucket.get_blob(name)
        assert blob.crc32c == _crc32c(data)
        assert blob.metadata["format"] == dump_format
        assert blob.metadata["database"] == sample
        assert blob.metadata["server-version"] == manifest.server_version
        if not out.is_dir():
            assert blob.metadata["sha256"] == manifest.sha256
    assert result["uploaded_bytes"] == manifest.size_bytes
    # A retried task finds the identical objects and sends nothing.
    again = _operator(out, gcs_bucket).execute(context={})
    assert again["uploaded_bytes"] == 0
    assert again["skipped_objects"] == len(local_files) + 1
    assert _objects(gcs, gcs_bucket) == objects


def test_different_object_at_the_same_name_is_refused_and_no_manifest_is_written(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=300_000)
    gcs.client().bucket(gcs_bucket).blob("pg/db.dump").upload_from_string(b"somebody else's bytes")
    with pytest.raises(
        AirflowFailException, match=r"gs://.*/pg/db.dump already exists with different content"
    ):
        _operator(artifact, gcs_bucket, prefix="pg").execute(context={})
    assert _objects(gcs, gcs_bucket) == {"pg/db.dump": b"somebody else's bytes"}


def test_local_artifact_not_matching_its_manifest_uploads_nothing(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, manifest = synthetic_backup(tmp_path, "db.dump", size=3 * CHUNK + 17)
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the last chunk: detected before the object is finalized
    artifact.write_bytes(bytes(data))
    with pytest.raises(AirflowFailException, match=f"not {manifest.sha256} as the manifest says"):
        _operator(artifact, gcs_bucket).execute(context={})
    assert _objects(gcs, gcs_bucket) == {}


def test_progress_is_logged_and_local_copy_deleted_only_after_verified_upload(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact, manifest = synthetic_backup(tmp_path, "db.dump", size=8 * CHUNK)
    data = artifact.read_bytes()
    operator = _operator(artifact, gcs_bucket, progress_interval=0.0, delete_local_copy=True)
    result = operator.execute(context={})
    logged = capsys.readouterr().out  # the task logger writes through structlog
    assert f"Uploading gs://{gcs_bucket}/pg/nightly/db.dump: 256.0 KiB of 2.0 MiB" in logged
    assert "MiB/s" in logged
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert _objects(gcs, gcs_bucket)["pg/nightly/db.dump"] == data
    assert result["manifest"]["sha256"] == manifest.sha256


def test_emulator_stopped_mid_upload_fails_leaving_no_manifest_and_a_retry_succeeds(
    tmp_path: Path, gcs_persistent: GCSEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = gcs_persistent.new_bucket()
    artifact, manifest = synthetic_backup(tmp_path, "big.dump", size=24 * CHUNK + 5)
    original_write = GCSObjectWriter.write

    def write_then_crash(self: GCSObjectWriter, chunk: bytes) -> None:
        original_write(self, chunk)
        if self.bytes_written >= 4 * CHUNK and gcs_persistent.running:
            gcs_persistent.stop()

    monkeypatch.setattr(GCSObjectWriter, "write", write_then_crash)
    # Retries with backoff run out after retry_timeout; the error is transient, so Airflow retries the task.
    with pytest.raises(RetryError, match="Connection refused"):
        _operator(artifact, bucket, retry_timeout=1.0).execute(context={})
    assert not gcs_persistent.running
    monkeypatch.setattr(GCSObjectWriter, "write", original_write)

    gcs_persistent.start()
    assert _objects(gcs_persistent, bucket) == {}  # no object, no manifest: nothing looks finished
    result = _operator(artifact, bucket).execute(context={})
    objects = _objects(gcs_persistent, bucket)
    assert objects["pg/nightly/big.dump"] == artifact.read_bytes()
    assert Manifest.from_json(objects["pg/nightly/big.dump.manifest.json"]) == manifest
    assert result["uploaded_bytes"] == manifest.size_bytes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 1000}, "chunk_size 1000 must be a positive multiple of 256 KiB"),
        ({"bucket": "Bad_Bucket!"}, "has no valid bucket name"),
        ({"prefix": "a/../b"}, "must not contain empty, '.' or '..' path segments"),
        ({"storage_class": "HOT"}, "storage_class 'HOT' is not supported"),
        ({"source_path": "relative.dump"}, "must be an absolute path"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_value(kwargs: dict, message: str) -> None:
    args = {"task_id": "upload", "source_path": "/backups/x.dump", "bucket": "my-bucket", **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PgBackupToGCSOperator(**args)


def test_asset_outlet_names_the_static_destination_folder() -> None:
    operator = PgBackupToGCSOperator(
        task_id="upload", source_path="/b/x.dump", bucket="my-bucket", prefix="pg/prod/{{ ds }}"
    )
    assert [a.uri for a in operator.outlets] == ["gs://my-bucket/pg/prod"]
    assert static_asset_uri("{{ params.bucket }}", "x") is None
    assert static_asset_uri("b-1", "") == "gs://b-1"
    assert json.dumps(operator.template_fields)  # bucket and prefix are templated
    assert {"bucket", "prefix", "source_path"} <= set(operator.template_fields)


def test_on_kill_stops_the_upload_before_anything_is_finalized(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact, _ = synthetic_backup(tmp_path, "db.dump", size=12 * CHUNK)
    operator = _operator(artifact, gcs_bucket)
    original_write = GCSObjectWriter.write

    def write_then_kill(self: GCSObjectWriter, chunk: bytes) -> None:
        original_write(self, chunk)
        if self.bytes_written >= 3 * CHUNK:
            operator.on_kill()

    monkeypatch.setattr(GCSObjectWriter, "write", write_then_kill)
    with pytest.raises(UploadCancelled, match="was stopped; the object was not finalized"):
        operator.execute(context={})
    assert _objects(gcs, gcs_bucket) == {}
    assert copy.deepcopy(_operator(artifact, gcs_bucket)).bucket == gcs_bucket  # still copyable


def test_storage_class_and_metadata_reach_the_objects(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, manifest = synthetic_backup(tmp_path, "db.dump", size=CHUNK + 1)
    _operator(artifact, gcs_bucket, storage_class="NEARLINE").execute(context={})
    bucket = gcs.client().bucket(gcs_bucket)
    manifest_blob = bucket.get_blob("pg/nightly/db.dump.manifest.json")
    # fake-gcs-server applies storageClass to simple uploads only; the resumable request carries it too.
    assert manifest_blob.storage_class == "NEARLINE"
    assert manifest_blob.content_type == "application/json"
    assert manifest_blob.metadata["backup-sha256"] == manifest.sha256
    artifact_blob = bucket.get_blob("pg/nightly/db.dump")
    assert artifact_blob.metadata["finished-at"] == manifest.finished_at
    assert artifact_blob.metadata["backup-kind"] == "pg_dump"
