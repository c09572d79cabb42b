"""S3 and Azure emulator fixtures, and one ``store`` fixture parametrized over GCS, S3 and Azure.

A moto server (``python -m moto.server``) and Azurite (``azurite-blob``) run for the whole session on free
ports of 127.0.0.1; the provider reaches them only through real Airflow connections:
``AIRFLOW_CONN_AWS_DEFAULT`` (an ``aws`` connection with an ``endpoint_url`` extra) and
``AIRFLOW_CONN_WASB_DEFAULT`` (a ``wasb`` connection with a connection string), set for the session.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pgbackup.storage import StorageSettings
from devtools.object_stores import AzuriteEmulator, S3Emulator
from tests.gcs_emulator import GCSEmulator


def _set_env(name: str, value: str) -> str | None:
    previous = os.environ.get(name)
    os.environ[name] = value
    return previous


def _restore_env(name: str, previous: str | None) -> None:
    if previous is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = previous


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Emulator]:
    """moto's S3 server (a child process) for the session; ``aws_default`` points at it."""
    log_dir = Path(tempfile.mkdtemp(prefix="pgbackup-s3-"))
    emulator = S3Emulator(log_dir / "moto.log")
    emulator.start()
    previous = _set_env("AIRFLOW_CONN_AWS_DEFAULT", emulator.connection_json())
    try:
        yield emulator
    finally:
        emulator.stop()
        _restore_env("AIRFLOW_CONN_AWS_DEFAULT", previous)


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteEmulator]:
    """Azurite's blob service for the session (data on disk); ``wasb_default`` points at it."""
    folder = Path(tempfile.mkdtemp(prefix="pgbackup-azurite-"))
    emulator = AzuriteEmulator(folder / "data", folder / "azurite.log")
    emulator.start()
    previous = _set_env("AIRFLOW_CONN_WASB_DEFAULT", emulator.connection_json())
    try:
        yield emulator
    finally:
        emulator.stop()
        _restore_env("AIRFLOW_CONN_WASB_DEFAULT", previous)


@pytest.fixture
def s3(s3_server: S3Emulator) -> S3Emulator:
    if not s3_server.running:
        s3_server.start()
    return s3_server


@pytest.fixture
def azurite(azurite_server: AzuriteEmulator) -> AzuriteEmulator:
    if not azurite_server.running:
        azurite_server.start()
    return azurite_server


@pytest.fixture
def s3_persistent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Emulator]:
    """A private moto server in this process: its objects (and multipart uploads) survive stop / start."""
    emulator = S3Emulator(tmp_path / "moto.log", in_process=True)
    emulator.start()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", emulator.connection_json())
    try:
        yield emulator
    finally:
        emulator.stop()


@dataclass
class Store:
    """One object store under test, seen through its own SDK (for assertions) and the provider's settings.

    :param scheme: ``gs``, ``s3`` or ``az``.
    :param emulator: the running emulator (stoppable for failure injection where ``persistent``).
    :param conn_kwargs: the operator arguments that select its connection.
    """

    scheme: str
    emulator: Any
    conn_kwargs: dict[str, Any] = field(default_factory=dict)

    def new_container(self) -> str:
        if self.scheme == "az":
            return str(self.emulator.new_container())
        return str(self.emulator.new_bucket())

    def uri(self, container: str, name: str = "") -> str:
        return f"{self.scheme}://{container}/{name}" if name else f"{self.scheme}://{container}"

    def settings(self, **kwargs: Any) -> StorageSettings:
        """Small parts, so the tests' few MiB take several: 256 KiB on GCS, the smallest S3 part (5 MiB),
        1 MiB Azure blocks."""
        parts = {"s3": 5 * 1024 * 1024, "az": 1024 * 1024}.get(self.scheme)
        return StorageSettings(
            **{"chunk_size": 256 * 1024, "part_size": parts, "retry_timeout": 2.0, **kwargs}
        )

    def objects(self, container: str) -> dict[str, bytes]:
        """Every object in the container with its bytes."""
        if self.scheme == "gs":
            client = self.emulator.client()
            return {b.name: b.download_as_bytes() for b in client.list_blobs(container)}
        if self.scheme == "s3":
            client = self.emulator.client()
            listing = client.list_objects_v2(Bucket=container).get("Contents", [])
            return {
                o["Key"]: client.get_object(Bucket=container, Key=o["Key"])["Body"].read() for o in listing
            }
        service = self.emulator.client().get_container_client(container)
        return {b.name: service.download_blob(b.name).readall() for b in service.list_blobs()}

    def put(self, container: str, name: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        """Write an object behind the provider's back (overwriting), with optional metadata."""
        metadata = metadata or {}
        if self.scheme == "gs":
            blob = self.emulator.client().bucket(container).blob(name)
            blob.metadata = metadata or None
            blob.upload_from_string(data)
        elif self.scheme == "s3":
            self.emulator.client().put_object(Bucket=container, Key=name, Body=data, Metadata=metadata)
        else:
            azure_metadata = {k.replace("-", "_"): v for k, v in metadata.items()}  # C# identifiers
            blob = self.emulator.client().get_blob_client(container, name)
            blob.upload_blob(data, overwrite=True, metadata=azure_metadata)

    def metadata(self, container: str, name: str) -> dict[str, str]:
        from airflow_provider_pgbackup.storage.objects import decode_metadata

        if self.scheme == "gs":
            return dict(self.emulator.client().bucket(container).get_blob(name).metadata or {})
        if self.scheme == "s3":
            head = self.emulator.client().head_object(Bucket=container, Key=name)
            return decode_metadata(head["Metadata"])
        props = self.emulator.client().get_blob_client(container, name).get_blob_properties()
        return {k.replace("_", "-"): v for k, v in decode_metadata(props.metadata).items()}

    def pending_uploads(self, container: str) -> list[str]:
        """Unfinished multipart uploads (S3); [] elsewhere (GCS sessions and Azure blocks are invisible)."""
        if self.scheme != "s3":
            return []
        uploads = self.emulator.client().list_multipart_uploads(Bucket=container).get("Uploads", [])
        return [u["Key"] for u in uploads]


@pytest.fixture(params=["gs", "s3", "az"])
def store(request: pytest.FixtureRequest) -> Store:
    """Each test using this runs once per object store: GCS, S3 and Azure, each on its emulator."""
    if request.param == "gs":
        emulator: GCSEmulator = request.getfixturevalue("gcs")
        return Store("gs", emulator)
    if request.param == "s3":
        return Store("s3", request.getfixturevalue("s3"))
    return Store("az", request.getfixturevalue("azurite"))


@pytest.fixture(params=["gs", "s3", "az"])
def persistent_store(request: pytest.FixtureRequest) -> Store:
    """A store whose emulator keeps its objects across stop / start (failure injection)."""
    if request.param == "gs":
        return Store("gs", request.getfixturevalue("gcs_persistent"))
    if request.param == "s3":
        return Store("s3", request.getfixturevalue("s3_persistent"))
    return Store("az", request.getfixturevalue("azurite"))
