"""PgBackupPromoteOperator and PgBackupDiscardStagedOperator against the GCS emulator and real pg_dump
artifacts: a staged backup is copied server-side to its final prefix, the manifest last."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import manifest_path_for
from airflow_provider_pgbackup.options import PgDumpOptions
from airflow_provider_pgbackup.storage import UploadCancelled, open_source, promote_backup
from airflow_provider_pgbackup.transfers.backup_promote import (
    PgBackupDiscardStagedOperator,
    PgBackupPromoteOperator,
)
from airflow_provider_pgbackup.transfers.base import static_folder_uri
from airflow_provider_pgbackup.verify import verify_backup
from devtools.pgcluster import PgCluster
from tests.gcs_emulator import GCSEmulator, synthetic_backup, upload_local_backup
from tests.object_stores import Store


def _objects(gcs: GCSEmulator, bucket: str, prefix: str = "") -> dict[str, bytes]:
    return {b.name: b.download_as_bytes() for b in gcs.client().list_blobs(bucket, prefix=prefix)}


def _staged(pg18: PgCluster, sample: str, airflow_conn, tmp_path: Path, gcs, bucket: str, fmt: str) -> str:
    out = tmp_path / f"backup.{fmt}"
    PgDumpHook(airflow_conn(pg18, sample)).dump(PgDumpOptions.build(format=fmt), str(out))
    return upload_local_backup(gcs, bucket, out, prefix="staging/shop")


def _promote(source: str, destination: str, **kwargs) -> PgBackupPromoteOperator:
    return PgBackupPromoteOperator(task_id="promote", source=source, destination=destination, **kwargs)


@pytest.mark.parametrize("dump_format", ["custom", "directory"])
def test_promoted_copy_of_a_staged_backup_verifies_and_an_identical_rerun_copies_nothing(
    pg18: PgCluster, sample: str, airflow_conn, tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str, dump_format
) -> None:
    staged = _staged(pg18, sample, airflow_conn, tmp_path, gcs, gcs_bucket, dump_format)
    staged_objects = _objects(gcs, gcs_bucket, "staging/")

    result = _promote(staged, f"gs://{gcs_bucket}/final/shop").execute(context={})

    name = staged.rsplit("/", 1)[1]
    assert result["artifact_uri"] == f"gs://{gcs_bucket}/final/shop/{name}"
    assert result["manifest_uri"] == f"gs://{gcs_bucket}/final/shop/{name}.manifest.json"
    assert result["source_uri"] == staged
    assert result["object_uris"][-1] == result["manifest_uri"]  # the manifest is written last
    final = _objects(gcs, gcs_bucket, "final/")
    assert {k.replace("final/", "staging/", 1): v for k, v in final.items()} == staged_objects
    report = verify_backup(open_source(result["artifact_uri"]))  # every check, contents included
    assert report.ok
    assert [c.name for c in report.checks][-2:] == ["contents", "tables"]

    again = _promote(staged, f"gs://{gcs_bucket}/final/shop").execute(context={})
    assert again["copied_bytes"] == 0
    assert again["skipped_objects"] == len(final)
    assert _objects(gcs, gcs_bucket, "final/") == final


def test_a_different_object_at_the_target_is_never_overwritten(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, _ = synthetic_backup(tmp_path, "nightly.dump")
    staged = upload_local_backup(gcs, gcs_bucket, artifact, prefix="staging")
    squatter = gcs.client().bucket(gcs_bucket).blob("final/nightly.dump")
    squatter.upload_from_string(b"someone else's object")

    with pytest.raises(AirflowFailException, match="already exists with different content"):
        _promote(staged, f"gs://{gcs_bucket}/final").execute(context={})

    assert _objects(gcs, gcs_bucket, "final/") == {"final/nightly.dump": b"someone else's object"}


def test_a_promotion_cancelled_before_its_manifest_leaves_no_manifest(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, _ = synthetic_backup(tmp_path, "nightly.dump", size=300_000)
    staged = upload_local_backup(gcs, gcs_bucket, artifact, prefix="staging")
    cancel = threading.Event()

    class StopAfterTheArtifact(logging.LoggerAdapter):
        """A real logger that sets the cancel event when the artifact copy reports itself done."""

        def info(self, msg, *args, **kwargs):
            cancel.set()
            super().info(msg, *args, **kwargs)

    # The artifact object is already at the destination (identical): promote logs that, is cancelled
    # there, and must stop before the manifest.
    bucket = gcs.client().bucket(gcs_bucket)
    bucket.copy_blob(bucket.blob("staging/nightly.dump"), bucket, "final/nightly.dump")
    with pytest.raises(UploadCancelled, match="before its manifest was written"):
        promote_backup(
            staged, f"gs://{gcs_bucket}/final", log=StopAfterTheArtifact(logging.getLogger(__name__)),
            cancel=cancel,
        )  # fmt: skip
    assert set(_objects(gcs, gcs_bucket, "final/")) == {"final/nightly.dump"}

    operator = _promote(staged, f"gs://{gcs_bucket}/killed")
    operator.on_kill()  # the task was killed before it started copying
    with pytest.raises(UploadCancelled):
        operator.execute(context={})
    assert _objects(gcs, gcs_bucket, "killed/") == {}


def test_a_staged_backup_changed_after_verification_is_not_promoted(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, _ = synthetic_backup(tmp_path, "nightly.dump")
    staged = upload_local_backup(gcs, gcs_bucket, artifact, prefix="staging")
    with pytest.raises(AirflowFailException, match="changed after it was verified"):
        _promote(staged, f"gs://{gcs_bucket}/final", expected_sha256="0" * 64).execute(context={})
    assert _objects(gcs, gcs_bucket, "final/") == {}


def test_discard_deletes_the_staged_copy_only_once_an_identical_copy_is_promoted(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, _ = synthetic_backup(tmp_path, "nightly.dump")
    staged = upload_local_backup(gcs, gcs_bucket, artifact, prefix="staging")
    promoted = f"gs://{gcs_bucket}/final/nightly.dump"

    def discard() -> dict:
        return PgBackupDiscardStagedOperator(task_id="discard", staged=staged, promoted=promoted).execute({})

    with pytest.raises(AirflowFailException, match="is not there"):
        discard()  # nothing promoted yet: nothing deleted
    assert len(_objects(gcs, gcs_bucket, "staging/")) == 2

    _promote(staged, f"gs://{gcs_bucket}/final").execute(context={})
    assert discard()["deleted"] == [f"{staged}.manifest.json", staged]  # the manifest first
    assert _objects(gcs, gcs_bucket, "staging/") == {}
    assert len(_objects(gcs, gcs_bucket, "final/")) == 2
    assert discard()["deleted"] == []  # a retry is a no-op


def test_discard_refuses_a_staged_backup_that_differs_from_the_promoted_one(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, _ = synthetic_backup(tmp_path / "a", "nightly.dump")
    other, _ = synthetic_backup(tmp_path / "b", "nightly.dump")
    staged = upload_local_backup(gcs, gcs_bucket, artifact, prefix="staging")
    upload_local_backup(gcs, gcs_bucket, other, prefix="final")

    with pytest.raises(AirflowFailException, match="nothing was deleted"):
        PgBackupDiscardStagedOperator(
            task_id="discard", staged=staged, promoted=f"gs://{gcs_bucket}/final/nightly.dump"
        ).execute({})
    assert len(_objects(gcs, gcs_bucket, "staging/")) == 2


def test_local_to_local_promotion_copies_checks_and_reruns_as_a_no_op(tmp_path: Path) -> None:
    artifact, _ = synthetic_backup(tmp_path / "staging", "nightly.dump")
    final = tmp_path / "final"

    result = _promote(str(artifact), str(final)).execute(context={})

    assert result["artifact_uri"] == str(final / "nightly.dump")
    assert (final / "nightly.dump").read_bytes() == artifact.read_bytes()
    assert manifest_path_for(final / "nightly.dump").read_bytes() == manifest_path_for(artifact).read_bytes()
    assert _promote(str(artifact), str(final)).execute(context={})["copied_bytes"] == 0

    deleted = PgBackupDiscardStagedOperator(
        task_id="discard", staged=str(artifact), promoted=result["artifact_uri"]
    ).execute({})["deleted"]
    assert deleted == [str(manifest_path_for(artifact)), str(artifact)]
    assert not artifact.exists()
    assert (final / "nightly.dump").exists()


def test_a_local_staged_backup_is_uploaded_then_its_local_copy_discarded(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, _ = synthetic_backup(tmp_path, "nightly.dump")
    result = _promote(str(artifact), f"gs://{gcs_bucket}/final").execute(context={})
    assert result["artifact_uri"] == f"gs://{gcs_bucket}/final/nightly.dump"
    assert _objects(gcs, gcs_bucket)["final/nightly.dump"] == artifact.read_bytes()
    PgBackupDiscardStagedOperator(
        task_id="discard", staged=str(artifact), promoted=result["artifact_uri"]
    ).execute({})
    assert not artifact.exists()
    assert len(_objects(gcs, gcs_bucket, "final/")) == 2


def test_promotion_from_an_object_store_to_a_local_folder_is_refused(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact, _ = synthetic_backup(tmp_path, "nightly.dump")
    staged = upload_local_backup(gcs, gcs_bucket, artifact, prefix="staging")
    with pytest.raises(AirflowFailException, match="copies within one kind of store"):
        _promote(staged, str(tmp_path / "final")).execute(context={})


def test_asset_outlet_is_the_static_destination_folder() -> None:
    assert static_folder_uri("gs://bkt/pg/{{ params.db }}") == "gs://bkt/pg"
    assert static_folder_uri("gs://{{ params.bucket }}/pg") is None
    operator = _promote("gs://bkt/staging/{{ ds }}.dump", "gs://bkt/final")
    assert [outlet.uri for outlet in operator.outlets] == ["gs://bkt/final"]


def test_promote_then_discard_on_every_object_store(store: Store, tmp_path: Path) -> None:
    """GCS, S3 and Azure (each on its emulator): publish server-side, rerun as a no-op, discard staging."""
    import logging

    from airflow_provider_pgbackup.storage import upload_backup

    container = store.new_container()
    artifact, _ = synthetic_backup(tmp_path, "nightly.dump", size=300_000)
    upload_backup(artifact, store.uri(container, "staging"), settings=store.settings(),
                  log=logging.getLogger(__name__))  # fmt: skip
    staged = store.uri(container, "staging/nightly.dump")
    destination = store.uri(container, "final")

    result = _promote(staged, destination, **store.conn_kwargs).execute(context={})
    assert result["artifact_uri"] == store.uri(container, "final/nightly.dump")
    assert store.objects(container)["final/nightly.dump"] == artifact.read_bytes()
    assert _promote(staged, destination, **store.conn_kwargs).execute(context={})["copied_bytes"] == 0

    discard = PgBackupDiscardStagedOperator(
        task_id="discard", staged=staged, promoted=result["artifact_uri"], **store.conn_kwargs
    )
    assert discard.execute({})["deleted"] == [f"{staged}.manifest.json", staged]
    assert sorted(store.objects(container)) == ["final/nightly.dump", "final/nightly.dump.manifest.json"]
