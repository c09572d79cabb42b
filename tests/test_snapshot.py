"""The session whose snapshot pg_dump dumps (issue 20, items 6, 7 and 8), on real servers with real pg tools:
its locks keep a TRUNCATE from emptying what it measures, it runs with the settings pg_dump gives itself
(a role's timeouts cannot break it), row security follows ``--enable-row-security``, and a measurement
that fails is the error the user sees."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from airflow_provider_pgbackup import snapshot
from airflow_provider_pgbackup.binaries import choose_binary
from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.storage.local import LocalArtifactTarget
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD

ON_PG18 = pytest.mark.parametrize("pg", ["pg18"], indirect=True)


def dump(conn_id: str, out: Path, **kwargs: Any) -> dict[str, Any]:
    operator = PgDumpOperator(task_id="dump", postgres_conn_id=conn_id, output_path=str(out), **kwargs)
    return operator.execute(context={})


def drill(conn_id: str, artifact: Path) -> dict[str, Any]:
    operator = PgRestoreOperator(task_id="drill", postgres_conn_id=conn_id, artifact_path=str(artifact))
    return operator.execute(context={})


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


@pytest.fixture
def role(pg: PgCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """``make(name, *grants_sql, superuser=True, **settings)``: a login role with settings of its own
    (``ALTER ROLE ... SET``) and an Airflow connection ``<name>`` for it; dropped afterwards."""
    made: list[str] = []

    def make(
        name: str, *grants: str, superuser: bool = True, dbname: str = "postgres", **settings: str
    ) -> str:
        with pg.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                    sql.Identifier(name), sql.SQL("SUPERUSER" if superuser else ""), sql.Literal(PASSWORD)
                )
            )
            for key, value in settings.items():
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(name), sql.Identifier(key), sql.Literal(value)
                    )
                )
        made.append(name)
        for grant in grants:
            pg.execute(grant, dbname)
        conn_json = json.loads(pg.airflow_conn_json(dbname))
        conn_json["login"] = name
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(conn_json))
        return name

    yield make
    for name in made:
        with pg.connect() as conn:
            for (db,) in conn.execute("SELECT datname FROM pg_database WHERE datallowconn").fetchall():
                with pg.connect(db) as other:
                    other.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


# ------------------------------------------------------------------------------ item 6: TRUNCATE race
#: The rows measured from pg_dump's COPY data (the default), and by the server (data as INSERTs).
PATHS = pytest.mark.parametrize("extra_args", [[], ["--rows-per-insert=1000"]], ids=["stream", "server"])


@ON_PG18
@PATHS
def test_a_truncate_committed_after_pg_dump_exits_cannot_empty_the_record(
    pg: PgCluster,
    fresh_db,
    airflow_conn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra_args: list[str],
) -> None:
    source = fresh_db("truncate race")
    pg.execute(
        # a_first is dumped first and is large enough for pg_dump's output to flow while it runs
        "CREATE TABLE public.a_first AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g;"
        "CREATE TABLE public.z_small AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g",
        source,
    )
    state: dict[str, Any] = {"pid": None, "done": threading.Event()}

    def truncate() -> None:
        with pg.connect(source) as conn:
            state["pid"] = conn.info.backend_pid
            conn.execute("TRUNCATE public.z_small")
        state["done"].set()

    def blockers(watcher: psycopg.Connection[Any]) -> list[int]:
        row = watcher.execute("SELECT pg_blocking_pids(%s)", (state["pid"],)).fetchone()
        return list(row[0]) if row and row[0] else []

    def pg_dump_running(watcher: psycopg.Connection[Any]) -> bool:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND datname = %s",
            (source,),
        ).fetchone()
        return bool(row and row[0])

    # pg_dump holds its table locks while its output flows: at its first byte, a TRUNCATE is started,
    # and pg_dump goes on only once that TRUNCATE waits for a lock.
    real_write = LocalArtifactTarget.write
    truncator = threading.Thread(target=truncate, daemon=True)

    def write(self: LocalArtifactTarget, chunk: bytes) -> None:
        if not truncator.is_alive() and not state["done"].is_set():
            truncator.start()
            with pg.connect(source) as watcher:
                wait_until(
                    lambda: state["pid"] is not None and bool(blockers(watcher)), "TRUNCATE never waited"
                )
        real_write(self, chunk)

    # The measurement reaches the tables only after pg_dump exited and the TRUNCATE had its chance:
    # it committed (nothing held it), or it still waits for the snapshot session's own lock.
    real_measure = snapshot.measure_content

    def measure(conn: psycopg.Connection[Any], tables: Any, **kwargs: Any) -> Any:
        if tables:
            with pg.connect(source) as watcher:
                wait_until(lambda: state["pid"] is not None, "pg_dump's output never flowed")
                wait_until(lambda: not pg_dump_running(watcher), "pg_dump never ended")
                wait_until(
                    lambda: state["done"].is_set() or conn.info.backend_pid in blockers(watcher),
                    "the TRUNCATE neither committed nor waited for the snapshot session",
                )
        return real_measure(conn, tables, **kwargs)

    monkeypatch.setattr(LocalArtifactTarget, "write", write)
    monkeypatch.setattr(snapshot, "measure_content", measure)
    artifact = tmp_path / "race.dump"
    xcom = dump(airflow_conn(pg, source), artifact, extra_args=extra_args)
    monkeypatch.undo()
    truncator.join(30)
    assert state["done"].is_set(), "the TRUNCATE ran once the snapshot session ended"

    counted = {(r["schema"], r["table"]): r["rows"] for r in xcom["row_counts"]}
    assert counted[("public", "z_small")] == 1000, "the record is the snapshot pg_dump dumped"
    result = drill(airflow_conn(pg, "postgres"), artifact)
    assert result["content"]["verdict"] == "IDENTICAL", result["content"]["differences"]


# ------------------------------------------------------------------- item 7: a role's own timeouts
ROLE_SETTINGS = {
    # the server's measurement (md5 of 300k rows: the data dumped as INSERTs) outlasts 50 ms, in the dump
    # and in the drill
    "statement_timeout": ({"statement_timeout": "50ms"}, {"extra_args": ["--rows-per-insert=1000"]}),
    # nothing measured: the snapshot session is idle in its transaction while pg_dump waits on a lock
    "idle_in_transaction_session_timeout": (
        {"idle_in_transaction_session_timeout": "300ms"},
        {"record_row_counts": False, "record_checksums": False},
    ),
    # PostgreSQL 17+: the snapshot's transaction lasts as long as the dump
    "transaction_timeout": ({"transaction_timeout": "300ms"}, {}),
    # the drill reads the restored tables back with pg_dump and measures the rest with a session
    "statement_timeout, stream": ({"statement_timeout": "50ms"}, {}),
}


@ON_PG18
@pytest.mark.parametrize("setting", ROLE_SETTINGS)
def test_a_role_with_short_timeouts_dumps_and_drills_like_bare_pg_dump(
    pg: PgCluster, fresh_db, role, tmp_path: Path, setting: str
) -> None:
    settings, dump_options = ROLE_SETTINGS[setting]
    source = fresh_db(f"strict {setting}")
    setting = setting.split(",")[0]
    pg.execute(
        "CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g;"
        "CREATE TABLE public.held (id int)",
        source,
    )
    name = role(f"pgbackup_{setting}", dbname=source, **settings)
    pg_dump = choose_binary("pg_dump", pg.major, pg.version)
    env = {**pg.libpq_env(source), "PGUSER": name}
    bare = subprocess.run(
        [str(pg_dump.path), "--format=custom", f"--file={tmp_path / 'bare.dump'}"],
        env=env,
        capture_output=True,
    )
    assert bare.returncode == 0, bare.stderr.decode()  # pg_dump zeroes these settings for itself

    with psycopg.connect(**pg.connect_kwargs(source)) as locker:
        locker.execute("LOCK TABLE public.held IN ACCESS EXCLUSIVE MODE")  # pg_dump waits ~1 s for it
        release = threading.Timer(1.0, locker.rollback)
        release.start()
        xcom = dump(name, tmp_path / "strict.dump", **dump_options)
        release.join()
    if dump_options.get("record_row_counts") is False:
        return
    assert {(r["table"], r["rows"]) for r in xcom["row_counts"]} == {("big", 300000), ("held", 0)}
    result = drill(role(f"pgbackup_{setting}_drill", **settings), tmp_path / "strict.dump")
    assert result["content"]["verdict"] == "IDENTICAL", result["content"]["differences"]


# ---------------------------------------------------------------------- item 8: row-level security
@pytest.fixture
def policed(pg: PgCluster, fresh_db, role) -> tuple[str, str]:
    """A database whose ``public.notes`` lets role ``pgbackup_reader`` see its own 3 rows of 10."""
    source = fresh_db("policed")
    pg.execute(
        "CREATE TABLE public.notes (owner text NOT NULL, body text);"
        "INSERT INTO public.notes SELECT CASE WHEN g <= 3 THEN 'pgbackup_reader' ELSE 'someone' END, "
        "'note ' || g FROM generate_series(1, 10) g;"
        "CREATE TABLE public.plain AS SELECT g AS id FROM generate_series(1, 5) g;"
        "ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;"
        "CREATE POLICY own_notes ON public.notes FOR SELECT USING (owner = current_user)",
        source,
    )
    name = role(
        "pgbackup_reader",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgbackup_reader",
        superuser=False,
        dbname=source,
    )
    return source, name


@ON_PG18
def test_enable_row_security_dumps_counts_and_drills_the_rows_the_role_may_see(
    pg: PgCluster, policed: tuple[str, str], airflow_conn, tmp_path: Path
) -> None:
    _source, reader = policed
    artifact = tmp_path / "policed.dump"
    xcom = dump(reader, artifact, extra_args=["--enable-row-security"])
    counted = {(r["schema"], r["table"]): r["rows"] for r in xcom["row_counts"]}
    assert counted == {("public", "notes"): 3, ("public", "plain"): 5}
    result = drill(airflow_conn(pg, "postgres"), artifact)
    assert result["content"]["verdict"] == "IDENTICAL", result["content"]["differences"]


@ON_PG18
@PATHS
def test_a_policy_the_role_is_subject_to_fails_now_saying_so_not_as_a_lost_snapshot(
    pg: PgCluster, policed: tuple[str, str], tmp_path: Path, extra_args: list[str]
) -> None:
    _source, reader = policed
    with pytest.raises(AirflowFailException) as err:
        dump(reader, tmp_path / "policed.dump", extra_args=extra_args)
    message = str(err.value)
    assert 'row-level security policy for table "notes"' in message
    assert "--enable-row-security" in message
    assert "could not import the requested snapshot" not in message.split("pg_dump then failed")[0]
    if extra_args:  # the server measures the rows: its error is the one reported, pg_dump's after it
        assert message.startswith("measuring the dump's snapshot"), message
        assert message.index("row-level security") < message.find("pg_dump then failed")
    assert not (tmp_path / "policed.dump").exists()


@ON_PG18
def test_a_kill_while_the_snapshot_session_waits_for_a_table_lock_stops_the_dump_at_once(
    pg: PgCluster, fresh_db, airflow_conn, tmp_path: Path
) -> None:
    from airflow_provider_pgbackup.hooks.pg_dump import PgCommandError, PgDumpHook
    from airflow_provider_pgbackup.options import PgDumpOptions

    source = fresh_db("kill while locking")
    pg.execute("CREATE TABLE public.t AS SELECT 1 AS x", source)
    hook = PgDumpHook(airflow_conn(pg, source))
    errors: list[BaseException] = []

    def run() -> None:
        try:  # no lock_wait_timeout: only the kill ends the wait
            hook.dump(PgDumpOptions.build(lock_wait_timeout=None), str(tmp_path / "k.dump"))
        except BaseException as err:
            errors.append(err)

    with psycopg.connect(**pg.connect_kwargs(source)) as locker, pg.connect(source) as watcher:
        locker.execute("LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=run)
        worker.start()

        def snapshot_session_waits() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'LOCK TABLE%%' AND application_name = 'airflow-provider-pgbackup'"
            ).fetchone()
            return bool(row and row[0])

        wait_until(snapshot_session_waits, "the snapshot session never waited for the lock")
        hook.kill()
        worker.join(10)
    assert not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], PgCommandError)
    assert errors[0].killed
    assert list(tmp_path.iterdir()) == []
