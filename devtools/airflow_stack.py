"""Run Airflow's own components on 127.0.0.1, as `make ui` and the end-to-end test need them.

Not `airflow standalone` (its log servers bind every interface): the api-server, scheduler,
dag-processor and triggerer are started one by one, log servers off, parallelism small, with a
SQLite metadata DB and LocalExecutor. Logins use Airflow's simple auth manager (the ``admin`` user, and
any other user/role given), each with a password generated for this run. The UI's connection *Test*
button is enabled. ``worker_env`` (storage connections) reaches only the components that run tasks, never
the api-server: what it serves (the Backups page included) must not need them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(home: Path, dags_folder: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for Airflow commands: a private home, SQLite, no example DAGs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PG", "STORAGE_EMULATOR"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        }
    )
    env.update(extra or {})
    return env


def run_airflow(args: list[str], env: dict[str, str], log: Path) -> None:
    """Run one `airflow ...` command to completion, its output appended to ``log``."""
    with open(log, "ab") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(
            f"airflow {' '.join(args[:2])} failed (exit {result.returncode}); log {log}:\n{tail}"
        )


@dataclass
class AirflowStack:
    """api-server + scheduler + dag-processor + triggerer on 127.0.0.1, stopped by :meth:`stop`."""

    home: Path
    dags_folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    username: str = "admin"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: More logins: user name -> simple auth manager role (``viewer``, ``user``, ``op``, ``admin``, or
    #: ``""``: signed in, allowed nothing); their passwords are in :attr:`passwords`.
    users: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    #: Environment of the components that run tasks only (scheduler, triggerer, dag-processor).
    worker_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        passwords = self.home / "simple_auth_manager_passwords.json"
        return airflow_env(
            self.home,
            self.dags_folder,
            {
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": self._secret("api_secret_key"),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                    f"{name}:{role}" for name, role in {self.username: "admin", **self.users}.items()
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                **self.extra_env,
            },
        )

    def _secret(self, name: str) -> str:
        path = self.home / f".{name}"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(64))
            path.chmod(0o600)
        return path.read_text()

    def start(self, timeout: float = 180.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        passwords = self.home / "simple_auth_manager_passwords.json"
        self.passwords = {
            self.username: self.password,
            **{name: self.passwords.get(name) or secrets.token_urlsafe(12) for name in self.users},
        }
        passwords.write_text(json.dumps(self.passwords))
        passwords.chmod(0o600)
        env = self.env()
        logs = self.home / "component-logs"
        logs.mkdir(exist_ok=True)
        run_airflow(["db", "migrate"], env, logs / "db-migrate.log")
        for name, args in COMPONENTS.items():
            argv = [sys.executable, "-m", "airflow", *(a.format(port=self.port) for a in args)]
            component_env = env if name == "api-server" else {**env, **self.worker_env}
            with open(logs / f"{name}.log", "ab") as log:
                self.processes[name] = subprocess.Popen(
                    argv, env=component_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                health = f"{self.url}/api/v2/monitor/health"  # always http://127.0.0.1
                with urllib.request.urlopen(health, timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise TimeoutError(f"the Airflow api-server did not answer on {self.url} within {timeout} s")

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                log = self.home / "component-logs" / f"{name}.log"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ REST API client
    def token(self, username: str | None = None) -> str:
        """A JWT from /auth/token for ``username`` (default: the admin), exactly what the UI's login does."""
        name = username or self.username
        password = self.password if name == self.username else self.passwords[name]
        body = self._request("POST", "/auth/token", {"username": name, "password": password})
        return str(body["access_token"])

    def _request(self, method: str, path: str, payload: Any = None, token: str | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                text = response.read()
        except urllib.error.HTTPError as err:
            raise RuntimeError(
                f"{method} {path} -> {err.code}: {err.read().decode(errors='replace')}"
            ) from err
        return json.loads(text) if text else None

    def api(self, method: str, path: str, payload: Any = None) -> Any:
        return self._request(method, path, payload, token=self.token())

    def create_connection(self, conn_id: str, fields: dict[str, Any]) -> None:
        """Create a connection in Airflow's metadata DB through the REST API (JSON body over 127.0.0.1,
        never argv): the UI lists it, unlike an ``AIRFLOW_CONN_*`` variable."""
        body = {"connection_id": conn_id, **fields}
        if isinstance(body.get("extra"), dict):
            body["extra"] = json.dumps(body["extra"])  # the API takes the extras as a JSON string
        self.api("POST", "/api/v2/connections", body)

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed ``dag_id`` (it then exists in the REST API)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                self.api("GET", f"/api/v2/dags/{dag_id}")
                return
            except RuntimeError as err:
                if "-> 404" not in str(err):
                    raise
            time.sleep(1)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout} s")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Unpause and trigger a run the way the UI's trigger button does; returns the run id."""
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        state = "queued"
        while time.monotonic() < deadline:
            self._check_alive()
            state = str(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout} s")
