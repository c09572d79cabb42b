"""S3 (moto server) and Azure Blob Storage (Azurite) emulators on 127.0.0.1, for tests, demo and benchmarks.

- :class:`S3Emulator`: ``moto[server]`` as a real HTTP server. ``in_process=True`` runs it in a thread of
  this process (moto's state then lives here and survives :meth:`S3Emulator.stop` / ``start`` on the
  same port: failure injection); otherwise ``python -m moto.server`` in a child process.
- :class:`AzuriteEmulator`: ``azurite-blob`` from the npm package the Makefile installs into
  ``.tools/node`` (``make venv``), with a private data folder, so blobs survive a stop / start.

Both are addressed through real Airflow connections (:meth:`connection_json`): an ``aws`` connection
with an ``endpoint_url`` extra, and a ``wasb`` connection with a connection string.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[1]
AZURITE_BIN = _REPO / ".tools" / "node" / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's well-known development account (public, documented by Microsoft; not a secret of anyone).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: moto accepts any key pair; this one is distinctive so tests can look for it in logs and XCom.
S3_ACCESS_KEY = "AKIAPGBACKUPTEST0001"
S3_SECRET_KEY = "pgbackup/S3cr3t+Key/never-in-logs-0123456789"  # noqa: S105 - a test key for moto


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited early; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within 30 s; see {log}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class S3Emulator:
    """One moto S3 server; :meth:`stop` / :meth:`start` keep the port (and, in-process, the objects)."""

    def __init__(self, log_path: Path, *, in_process: bool = False) -> None:
        self.log_path = log_path
        self.in_process = in_process
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._server: Any = None

    def start(self) -> None:
        if self.in_process:
            from moto.server import ThreadedMotoServer

            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            self._server.start()
        else:
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        _wait_for_port(self.port, self._proc, "moto server", self.log_path)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        proc, self._proc = self._proc, None
        _stop(proc)

    @property
    def running(self) -> bool:
        return self._server is not None or (self._proc is not None and self._proc.poll() is None)

    def connection_json(self) -> str:
        """An Airflow ``aws`` connection (``AIRFLOW_CONN_<ID>`` JSON form) pointing at this server."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": S3_ACCESS_KEY,
                "password": S3_SECRET_KEY,
                "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
            }
        )

    def client(self) -> Any:
        """A plain boto3 client for test assertions (not the provider's)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name="us-east-1",
        )

    def new_bucket(self, *, object_lock: bool = False) -> str:
        """A new bucket; ``object_lock``: created with S3 Object Lock enabled (and so versioning)."""
        name = f"pgbackup-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(
            Bucket=name, **({"ObjectLockEnabledForBucket": True} if object_lock else {})
        )
        return name


def azurite_binary() -> Path:
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"{AZURITE_BIN} is missing: `make venv` installs the pinned azurite npm package")
    return AZURITE_BIN


class AzuriteEmulator:
    """One azurite-blob process with a data folder: blobs survive :meth:`stop` / :meth:`start`."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(azurite_binary()),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(self.port),
                    "--location",
                    str(self.data_dir),
                    "--skipApiVersionCheck",
                    "--loose",
                    "--silent",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_port(self.port, self._proc, "azurite", self.log_path)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        _stop(proc)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def connection_json(self) -> str:
        """An Airflow ``wasb`` connection (``AIRFLOW_CONN_<ID>`` JSON form) with a connection string."""
        return json.dumps({"conn_type": "wasb", "extra": {"connection_string": self.connection_string}})

    def client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def new_container(self) -> str:
        name = f"pgbackup-{uuid.uuid4().hex[:12]}"
        self.client().create_container(name)
        return name
