"""GCS emulator fixtures: a real fake-gcs-server (devtools.gcs_emulator) on 127.0.0.1 for the session.

``STORAGE_EMULATOR_HOST`` is set for the whole session,
so :func:`~airflow_provider_pgbackup.storage.gcs.client.get_storage_client` talks to it anonymously.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_pgbackup.manifest import Manifest, manifest_path_for
from devtools.gcs_emulator import GCSEmulator, emulator_binary


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    """fake-gcs-server for the whole session; ``STORAGE_EMULATOR_HOST`` points at it."""
    log_dir = Path(tempfile.mkdtemp(prefix="pgbackup-gcs-"))
    emulator = GCSEmulator(emulator_binary(), log_dir / "fake-gcs-server.log")
    emulator.start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.endpoint
    try:
        yield emulator
    finally:
        emulator.stop()
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


@pytest.fixture
def gcs_persistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GCSEmulator]:
    """A private emulator whose objects survive :meth:`GCSEmulator.stop` / ``start`` (failure injection)."""
    emulator = GCSEmulator(
        emulator_binary(), tmp_path / "fake-gcs-server.log", data_dir=tmp_path / "gcs-data"
    )
    emulator.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    try:
        yield emulator
    finally:
        emulator.stop()


def synthetic_backup(
    folder: Path,
    name: str,
    *,
    size: int = 1024,
    finished_at: datetime.datetime | None = None,
    data: bytes | None = None,
) -> tuple[Path, Manifest]:
    """A file artifact with random bytes and a valid manifest beside it (no PostgreSQL needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = data if data is not None else os.urandom(size)
    artifact = folder / name
    artifact.write_bytes(payload)
    finished = finished_at or datetime.datetime.now(datetime.timezone.utc)
    manifest = Manifest(
        kind="pg_dump",
        artifact=name,
        format="custom",
        compression="none",
        database="synthetic",
        server_version="18.0",
        server_version_num=180000,
        client_tool="pg_dump",
        client_version="18.0",
        started_at=(finished - datetime.timedelta(minutes=1)).isoformat(),
        finished_at=finished.isoformat(),
        duration_seconds=60.0,
        size_bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
    )
    manifest_path_for(artifact).write_text(manifest.to_json())  # no fsync: histories have hundreds
    return artifact, manifest


@pytest.fixture
def gcs(gcs_emulator: GCSEmulator) -> GCSEmulator:
    """The session emulator, restarted if a previous test stopped it."""
    if not gcs_emulator.running:
        gcs_emulator.start()
    return gcs_emulator


@pytest.fixture
def gcs_bucket(gcs: GCSEmulator) -> str:
    """A fresh, empty bucket in the emulator."""
    return gcs.new_bucket()


def upload_local_backup(gcs: GCSEmulator, bucket: str, artifact: Path, prefix: str = "pg") -> str:
    """Upload a local backup (file or directory artifact, then its manifest); returns the artifact's URI."""
    import logging

    from airflow_provider_pgbackup.storage import StorageSettings, parse_location
    from airflow_provider_pgbackup.storage.gcs import GCSObjectClient
    from airflow_provider_pgbackup.storage.objects import upload_backup

    settings = StorageSettings(chunk_size=256 * 1024)
    result, _ = upload_backup(  # the backend itself: this test's client, whatever STORAGE_EMULATOR_HOST says
        GCSObjectClient(bucket, settings, gcs.client()),
        parse_location(artifact),
        parse_location(f"gs://{bucket}/{prefix}", folder=True),
        log=logging.getLogger(__name__),
    )
    return result.artifact_uri


def private_downloads() -> set[str]:
    """The provider's temporary download folders (``pgbackup-download-*``) now in the temporary directory."""
    return {p.name for p in Path(tempfile.gettempdir()).glob("pgbackup-download-*")}


@pytest.fixture
def gcp_emulator_conn(gcs: GCSEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow ``google_cloud_platform`` connection (``AIRFLOW_CONN_GCP_EMULATOR`` JSON) whose extras
    point at the emulator; ``STORAGE_EMULATOR_HOST`` is removed, so only the connection leads there."""
    import json

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GCP_EMULATOR",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"emulator_host": gcs.endpoint, "project": "pgbackup-conn"},
            }
        ),
    )
    return "gcp_emulator"
