"""Kill paths with real task processes, real signals and real servers (issue 12, items 4 and 5; issue 20,
item 4: nothing secret or plaintext outlives a SIGKILLed task).

Each test runs one task with ``dag.test()`` in a process of its own (``tests/dags/pgbackup_test_kill.py``),
so the task runs through the SDK's task runner exactly as a worker runs it: SIGTERM reaches the
operator's ``on_kill`` through Airflow's own handler, on the thread running ``execute``, and the
supervisor's SIGKILL follows a few seconds later (``ActivitySubprocess.kill(SIGTERM, force=True)``
escalates after 5 s). Every task process gets a TMPDIR of its own: the pg tools inherit it, so
``TMPDIR=<that folder>`` in ``/proc/<pid>/environ`` finds every process the task started, however it
was re-parented, and the folder shows exactly which passfile folders (``pgbackup-*``) it left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pyrage
import pytest

from airflow_provider_pgbackup.hooks.dump_output import PLAINTEXT_FOLDER
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.options import PgDumpOptions
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.helpers import leftovers

REPO = Path(__file__).resolve().parents[2]
BIG_DB = "kill paths big"
CONN_ID = "pg_kill"
APP = "airflow-provider-pgbackup"
# Two tables, so pg_dump -j 2 and pg_restore -j 2 keep both workers busy for a few seconds.
BIG_ROWS = 600_000
SUPERVISOR_ESCALATION_SECONDS = 5.0  # Airflow's supervisor: SIGTERM, then SIGKILL after this delay
TASK = (
    "import json, sys\n"
    "from tests.dags.pgbackup_test_kill import DAGS\n"
    "DAGS[sys.argv[1]].test(run_conf=json.loads(sys.argv[2]), conn_file_path=sys.argv[3])\n"
)
# An operator's execute() in a process of its own: what a task process runs once the SDK has rendered it.
# A SIGKILL runs no handler, so for it the SDK's supervision adds nothing (and its start-up is spared).
OPERATOR_TASK = (
    "import json, sys\n"
    "from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator\n"
    "from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator\n"
    "operator = {'dump': PgDumpOperator, 'drill': PgRestoreOperator}[sys.argv[1]]\n"
    "operator(task_id=sys.argv[1], **json.loads(sys.argv[2])).execute(context={})\n"
)
AGE_KEY = pyrage.x25519.Identity.generate()
AGE_RECIPIENT = str(AGE_KEY.to_public())
AGE_CONN_ID = "age_kill"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(0.05)


def processes_with_tmpdir(tmpdir: Path) -> dict[int, str]:
    """pid -> program name of every live process whose environment holds ``TMPDIR=<tmpdir>``."""
    marker = b"\0TMPDIR=" + os.fsencode(tmpdir) + b"\0"
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = b"\0" + Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone in between
        if marker in environ and cmdline:  # a zombie has neither: it runs nothing any more
            found[int(entry)] = os.path.basename(cmdline.split(b"\0", 1)[0].decode(errors="replace"))
    return found


def passfile_folders(tmpdir: Path) -> list[str]:
    """The provider's private credential folders (``libpq.open_session``) left in a task's TMPDIR.

    (``pgbackup-airflow-home-*`` is not one: the task process imports ``tests.conftest``, which makes it.)
    """
    return [p.name for p in tmpdir.glob("pgbackup-*") if not p.name.startswith("pgbackup-airflow-home-")]


def provider_sessions(cluster: PgCluster) -> list[tuple[str, str, str]]:
    """(database, application_name, state) of every client session the provider's tools opened."""
    with psycopg.connect(**cluster.connect_kwargs(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname, application_name, coalesce(state, '') FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "AND (application_name = %s OR application_name LIKE 'pg\\_%%')",
            (APP,),
        ).fetchall()
    return [(str(d), str(a), str(s)) for d, a, s in rows]


def scratch_databases(cluster: PgCluster) -> list[str]:
    with psycopg.connect(**cluster.connect_kwargs(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'pgbackup\\_restore\\_%' ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


class TaskProcess:
    """One task run by ``dag.test()`` in a process of its own, with its own TMPDIR."""

    def __init__(self, kind: str, conf: dict[str, str], folder: Path, conn_json: str) -> None:
        self.tmpdir = folder / "tmp"
        self.tmpdir.mkdir()
        self.log = folder / "task.log"
        # dag.test() reads connections from a file (a fresh task process does not see AIRFLOW_CONN_*
        # through the in-process API server); it sits beside the log, outside the task's TMPDIR.
        connections = folder / "connections.json"
        connections.write_text(json.dumps({CONN_ID: json.loads(conn_json)}))
        env = {**os.environ, "TMPDIR": str(self.tmpdir)}
        argv = [sys.executable, "-c", TASK, kind, json.dumps({"conn_id": CONN_ID, **conf}), str(connections)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.ended_in_time = False

    def children(self) -> dict[int, str]:
        return {p: n for p, n in processes_with_tmpdir(self.tmpdir).items() if p != self.proc.pid}

    def wait_for(self, tool: str, count: int, timeout: float = 120.0) -> None:
        def started() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the task ended before {tool} ran:\n{self.log.read_text()[-3000:]}")
            return sum(1 for name in self.children().values() if name == tool) >= count

        wait_until(started, timeout, f"{count} {tool} processes of the task did not appear")

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def sigterm_then_sigkill(self) -> None:
        """What Airflow's supervisor does: SIGTERM, then SIGKILL if the process is still there 5 s later.

        ``ended_in_time`` says whether the task had ended (its run recorded as finished) by then. That,
        not the process exit, is the operator's part: dag.test()'s interpreter sometimes spends seconds
        in its final garbage collection on these busy cores after the run has finished.
        """
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SUPERVISOR_ESCALATION_SECONDS
        while time.monotonic() < deadline and self.proc.poll() is None and not self.finished():
            time.sleep(0.05)
        self.ended_in_time = self.proc.poll() is not None or self.finished()
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.sigkill()

    def finished(self) -> bool:
        return b"DagRun Finished" in self.log.read_bytes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.sigkill()


class OperatorTaskProcess(TaskProcess):
    """One operator's ``execute()`` in a process of its own (``OPERATOR_TASK``), with its own TMPDIR."""

    def __init__(self, kind: str, kwargs: dict[str, object], folder: Path, env: dict[str, str]) -> None:
        self.tmpdir = folder / "tmp"
        self.tmpdir.mkdir()
        self.log = folder / "task.log"
        argv = [sys.executable, "-c", OPERATOR_TASK, kind, json.dumps(kwargs)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env={**os.environ, **env, "TMPDIR": str(self.tmpdir)}, stdout=out, stderr=out
            )
        self.ended_in_time = False


def private_folders(tmpdir: Path, kind: str) -> list[Path]:
    """The provider's private folders (``scratch.private_folder``) of ``kind`` in a task's TMPDIR."""
    return sorted(tmpdir.glob(f"pgbackup-{kind}-*"))


def passfile_of(pid: int) -> bytes:
    """What ``PGPASSFILE`` names in the environment of process ``pid``."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(item for item in environ if item.startswith(b"PGPASSFILE=")).split(b"=", 1)[1]


def files_holding(needle: bytes, *roots: Path) -> list[Path]:
    """Every file under ``roots`` whose bytes contain ``needle`` (read while the task may still write)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue  # removed in between
    return found


#: The passfile holds the password escaped (``:`` and ``\``); this part of it is the same either way.
PASSWORD_PART = b"s3cr3t"
assert PASSWORD_PART in PASSWORD.encode()


def the_next_task_starts(tmpdir: Path, monkeypatch: pytest.MonkeyPatch, nowhere: Path) -> None:
    """A provider task starts on the same worker (same TMPDIR): here the sensor, whose first poke finds
    nothing and waits; like every provider task it passes through ``failures.failure_policy`` first."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    assert PgBackupArtifactSensor(task_id="next", path=str(nowhere)).poke(context={}) is False


@pytest.fixture(scope="module")
def big_db(pg18: PgCluster) -> Iterator[str]:
    """A database whose dump and restore run a few seconds on 2 busy cores (two tables, ~100 MB)."""
    pg18.drop_database(BIG_DB)
    pg18.create_database(BIG_DB)
    for table in ("t1", "t2"):
        pg18.execute(
            f"CREATE TABLE {table} AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS payload "
            f"FROM generate_series(1, {BIG_ROWS}) g",
            dbname=BIG_DB,
        )
    yield BIG_DB
    pg18.drop_database(BIG_DB)


def dump_big_db(pg18: PgCluster, folder: Path, name: str, **kwargs: object) -> Path:
    """A directory-format backup of ``big_db`` (``kwargs``: the hook's, e.g. encryption_recipients)."""
    artifact = folder / name
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", pg18.airflow_conn_json(BIG_DB))
        PgDumpHook(CONN_ID).dump(
            PgDumpOptions.build(format="directory", jobs=2, compression="gzip:1"), str(artifact), **kwargs
        )
    return artifact


@pytest.fixture(scope="module")
def big_backup(pg18: PgCluster, big_db: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory-format backup of ``big_db``, made once, for the drills to restore."""
    return dump_big_db(pg18, tmp_path_factory.mktemp("kill-backups"), "big.dir")


@pytest.fixture(scope="module")
def big_encrypted_backup(pg18: PgCluster, big_db: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, encrypted with age, for the drill to decrypt and restore."""
    folder = tmp_path_factory.mktemp("kill-backups")
    return dump_big_db(pg18, folder, "big.dir.age", encryption_recipients=AGE_RECIPIENT)


@pytest.fixture
def started() -> Iterator[list[TaskProcess]]:
    """The task processes a test starts; any still running at its end is killed."""
    processes: list[TaskProcess] = []
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
def task(airflow_db: str, tmp_path: Path, started: list[TaskProcess]) -> Callable[..., TaskProcess]:
    def start(kind: str, conf: dict[str, str], conn_json: str) -> TaskProcess:
        started.append(TaskProcess(kind, conf, tmp_path, conn_json))
        return started[-1]

    return start


@pytest.fixture
def operator_task(tmp_path: Path, started: list[TaskProcess]) -> Callable[..., OperatorTaskProcess]:
    def start(kind: str, kwargs: dict[str, object], env: dict[str, str]) -> OperatorTaskProcess:
        started.append(OperatorTaskProcess(kind, kwargs, tmp_path, env))
        return started[-1]

    return start


def assert_nothing_outlives(task: TaskProcess, cluster: PgCluster) -> None:
    """No process of the task within a few seconds of its death, and no session of its tools."""
    wait_until(lambda: not task.children(), 5.0, f"processes outlived the task: {task.children()}")
    wait_until(lambda: not provider_sessions(cluster), 10.0, f"sessions stayed: {provider_sessions(cluster)}")


# ------------------------------------------------------------------------------------------ item 4
@pytest.mark.parametrize("how", ["sigkill", "sigterm_then_sigkill"])
def test_dump_with_parallel_workers_leaves_no_process_no_session_and_after_sigterm_no_file(
    pg18: PgCluster, big_db: str, task: Callable[..., TaskProcess], tmp_path: Path, how: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    run = task("dump", {"path": str(out / "big.dir")}, pg18.airflow_conn_json(big_db))
    run.wait_for("pg_dump", 3)  # the leader and its 2 workers: the snapshot is held, data flows
    assert provider_sessions(pg18), "the dump's sessions are visible while it runs"

    getattr(run, how)()

    assert_nothing_outlives(run, pg18)
    if how == "sigterm_then_sigkill":
        assert run.ended_in_time, "on_kill must end the task before the supervisor's SIGKILL"
        assert leftovers(out) == [], "no partial artifact, no lock file"
        assert passfile_folders(run.tmpdir) == []


@pytest.mark.parametrize("how", ["sigkill", "sigterm_then_sigkill"])
def test_dumpall_whose_pg_dump_waits_on_a_lock_leaves_no_process_and_after_sigterm_no_file(
    pg18: PgCluster, big_db: str, task: Callable[..., TaskProcess], tmp_path: Path, how: str
) -> None:
    """pg_dumpall runs pg_dump through ``sh -c``: grandchildren of the task, which PR_SET_PDEATHSIG on
    pg_dumpall alone does not reach. A lock keeps that pg_dump waiting, so only a kill can end it."""
    out = tmp_path / "out"
    out.mkdir()
    with psycopg.connect(**pg18.connect_kwargs(big_db)) as locker:
        locker.execute("LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE")
        run = task("dumpall", {"path": str(out / "all.sql")}, pg18.airflow_conn_json("postgres"))
        run.wait_for("pg_dump", 1)
        wait_until(
            lambda: any(db == big_db for db, _app, _state in provider_sessions(pg18)),
            60.0,
            "pg_dumpall's pg_dump did not reach the locked database",
        )

        getattr(run, how)()

        assert_nothing_outlives(run, pg18)
    if how == "sigterm_then_sigkill":
        assert run.ended_in_time, "on_kill must end the task before the supervisor's SIGKILL"
        assert leftovers(out) == [], "no partial artifact, no lock file"
        assert passfile_folders(run.tmpdir) == []


@pytest.mark.parametrize("how", ["sigkill", "sigterm_then_sigkill"])
def test_drill_with_parallel_pg_restore_leaves_no_process_and_after_sigterm_no_scratch_database(
    pg18: PgCluster, big_backup: Path, task: Callable[..., TaskProcess], how: str
) -> None:
    before = leftovers(big_backup.parent)
    assert scratch_databases(pg18) == []
    run = task("drill", {"path": str(big_backup)}, pg18.airflow_conn_json("postgres"))
    run.wait_for("pg_restore", 3)  # the leader and its 2 workers are restoring data
    try:
        getattr(run, how)()

        assert_nothing_outlives(run, pg18)
        assert leftovers(big_backup.parent) == before
        if how == "sigterm_then_sigkill":
            assert run.ended_in_time, "on_kill must end the task before the supervisor's SIGKILL"
            assert scratch_databases(pg18) == [], "the drill drops its own scratch database on SIGTERM"
            assert passfile_folders(run.tmpdir) == []
        else:
            # SIGKILL runs no code in the task: the scratch database it created stays (documented in
            # SECURITY.md); its tools and their sessions are gone, so it can be dropped at once.
            assert len(scratch_databases(pg18)) == 1
    finally:
        for name in scratch_databases(pg18):
            pg18.drop_database(name)


# ------------------------------------------------------------------------------------- issue 20, item 4
def test_sigkilled_encrypted_directory_dump_strands_no_password_and_the_next_task_removes_its_plaintext(
    pg18: PgCluster,
    big_db: str,
    operator_task: Callable[..., OperatorTaskProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The OOM killer's SIGKILL, mid-dump: no code of the task runs. The password is never on a file
    system, not even while pg_dump runs (its passfile is an inherited in-memory file); pg_dump's plaintext
    is in a private TMPDIR folder, never in the destination, and the next task's sweep removes it. (The
    fallback without memfd, a credentials folder: ``tests/test_scratch.py`` strands one with a real
    SIGKILL, ``tests/hooks/test_pg_dump.py::test_passfile_is_private_while_the_tool_runs`` runs it.)"""
    out = tmp_path / "out"
    out.mkdir()
    kwargs = {
        "postgres_conn_id": CONN_ID,
        "output_path": str(out / "big.dir.age"),
        "format": "directory",
        "jobs": 2,
        "encryption_recipients": AGE_RECIPIENT,
        "record_row_counts": False,  # nothing to prove here: spare the busy cores the measurement
    }
    run = operator_task("dump", kwargs, {f"AIRFLOW_CONN_{CONN_ID.upper()}": pg18.airflow_conn_json(big_db)})
    run.wait_for("pg_dump", 3)
    wait_until(
        lambda: any(p.stat().st_size for root in (run.tmpdir, out) for p in root.rglob("*.dat*")),
        60.0,
        "pg_dump wrote no table data",
    )
    on_disk = files_holding(PASSWORD_PART, run.tmpdir, out)  # while pg_dump runs
    passfiles = {passfile_of(pid) for pid, name in run.children().items() if name == "pg_dump"}
    assert on_disk == []
    assert passfiles
    assert all(p.startswith(b"/proc/self/fd/") for p in passfiles), passfiles

    run.sigkill()

    assert_nothing_outlives(run, pg18)
    plaintext = list(run.tmpdir.glob(f"pgbackup-plaintext-*/{PLAINTEXT_FOLDER}/*.dat*"))
    assert plaintext, "the kill stranded pg_dump's plaintext in its private folder"
    assert private_folders(run.tmpdir, "credentials") == []
    written = [p for p in out.rglob("*") if p.is_file()]
    assert all(p.name.endswith((".age", ".lock")) for p in written), written  # ciphertext only, ever
    the_next_task_starts(run.tmpdir, monkeypatch, out / "nothing-yet.dump")
    assert passfile_folders(run.tmpdir) == []
    assert files_holding(PASSWORD_PART, run.tmpdir, out) == []


def test_sigkilled_drill_of_an_encrypted_backup_leaves_no_plaintext_after_the_next_task_starts(
    pg18: PgCluster,
    big_encrypted_backup: Path,
    operator_task: Callable[..., OperatorTaskProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pg_restore reads a directory archive only from local files: the drill decrypts it into a private
    folder. A SIGKILL while pg_restore runs strands that plaintext copy; the next task's sweep removes it."""
    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": pg18.airflow_conn_json("postgres"),
        f"AIRFLOW_CONN_{AGE_CONN_ID.upper()}": json.dumps({"conn_type": "generic", "password": str(AGE_KEY)}),
    }
    kwargs = {
        "postgres_conn_id": CONN_ID,
        "artifact_path": str(big_encrypted_backup),
        "jobs": 2,
        "decryption_conn_id": AGE_CONN_ID,
        "verify_contents": False,  # the checks decrypt in memory; only the restore needs the copy
    }
    run = operator_task("drill", kwargs, env)
    try:
        run.wait_for("pg_restore", 3, timeout=240.0)  # the leader and its 2 workers: data is restoring
        run.sigkill()

        assert_nothing_outlives(run, pg18)
        (copy,) = private_folders(run.tmpdir, "decrypted")
        assert (copy / "big.dir" / "toc.dat").is_file(), "the kill stranded the decrypted copy"
        the_next_task_starts(run.tmpdir, monkeypatch, big_encrypted_backup.parent / "nothing-yet.dump")
        assert passfile_folders(run.tmpdir) == []
    finally:
        for name in scratch_databases(pg18):
            pg18.drop_database(name)
