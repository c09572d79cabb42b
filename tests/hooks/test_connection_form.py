"""Connections as the postgres provider's form makes them: registered type, its extras, the Test button."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.options import InvalidOptionError, PgDumpOptions
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD, log_text
from tests.helpers import leftovers, watch_children

# What PostgresHook users put in the extras box: Python-only settings next to libpq ones.
POSTGRES_PROVIDER_EXTRAS = {
    "sslmode": "disable",
    "client_encoding": "UTF8",
    "connect_timeout": "10",
    "keepalives_idle": "30",
    "cursor": "realdictcursor",
    "enable_log_db_messages": "true",
    "sqlalchemy_scheme": "postgresql+psycopg",
    "sqlalchemy_query": {"options": "-c search_path=public"},
}


def test_the_postgres_connection_type_is_registered_with_its_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook = manager.hooks["postgres"]  # what Connection.get_hook() (the Test button) looks up
    assert hook is not None
    # The postgres provider owns the type (its form, and the hook SQL operators get from it): the
    # UI's Test button therefore runs PostgresHook.test_connection, not PgDumpHook's (see README).
    assert hook.hook_class_name == "airflow.providers.postgres.hooks.postgres.PostgresHook"
    assert manager.field_behaviours["postgres"]["relabeling"] == {"schema": "Database"}


def test_extras_set_for_the_postgres_provider_work_unchanged(
    pg18: PgCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, task_log: list
) -> None:
    conn = json.loads(pg18.airflow_conn_json("postgres"))
    conn["extra"] = POSTGRES_PROVIDER_EXTRAS
    monkeypatch.setenv("AIRFLOW_CONN_PG_FORM", json.dumps(conn))
    hook = PgDumpHook("pg_form")
    with watch_children(("pg_dump",)) as children:
        manifest = hook.dump(PgDumpOptions.build(), str(tmp_path / "form.dump"))
    assert manifest.database == "postgres"
    environs = [environ for _cmdline, environ in children.values() if b"PGPASSFILE=" in environ]
    assert environs, "pg_dump was never sampled"
    env = dict(item.split(b"=", 1) for item in environs[0].split(b"\0") if b"=" in item)
    assert env[b"PGSSLMODE"] == b"disable"
    assert env[b"PGCLIENTENCODING"] == b"UTF8"
    assert not any(b"cursor" in k.lower() or b"KEEPALIVE" in k for k in env)
    with hook.session() as session:
        assert session.params["keepalives_idle"] == "30"  # the provider's own SQL connections use it
        with session.connect() as pg:
            assert pg.info.get_parameters()["client_encoding"] == "UTF8"
    # Python-only extras are ignored quietly: no "Ignoring connection extras" line for them.
    assert "Ignoring connection extras" not in log_text(task_log)


def test_an_unknown_extra_is_named_in_the_log(
    pg18: PgCluster, airflow_conn, tmp_path: Path, task_log: list
) -> None:
    hook = PgDumpHook(airflow_conn(pg18, "postgres", typo_sslmdoe="require"))
    with hook.session():
        pass
    assert "Ignoring connection extras that are not libpq settings: typo_sslmdoe" in log_text(task_log)


@pytest.mark.parametrize("value", [True, "true", "True"])
def test_iam_token_login_is_refused_naming_the_extra_before_anything_starts(
    pg18: PgCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: object
) -> None:
    conn = json.loads(pg18.airflow_conn_json("postgres"))
    conn["extra"] = {"iam": value, "aws_conn_id": "aws_default"}
    monkeypatch.setenv("AIRFLOW_CONN_PG_IAM", json.dumps(conn))
    with watch_children() as children, pytest.raises(InvalidOptionError, match="extra 'iam'"):
        PgDumpHook("pg_iam").dump(PgDumpOptions.build(), str(tmp_path / "iam.dump"))
    assert children == {}
    assert leftovers(tmp_path) == []
    ok, message = PgDumpHook("pg_iam").test_connection()
    assert not ok
    assert "'iam'" in message


def test_test_connection_says_the_server_version_and_which_pg_dump(pg: PgCluster, airflow_conn) -> None:
    ok, message = PgDumpHook(airflow_conn(pg, "postgres")).test_connection()
    assert ok, message
    assert f"PostgreSQL {pg.major}" in message
    assert "pg_dump" in message
    assert f"127.0.0.1:{pg.port}" in message
    assert PASSWORD not in message


def test_test_connection_with_a_wrong_password_fails_without_showing_it(
    pg18: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "N0t:the-Passw0rd'!"
    conn = json.loads(pg18.airflow_conn_json("postgres"))
    conn["password"] = wrong
    monkeypatch.setenv("AIRFLOW_CONN_PG_WRONG", json.dumps(conn))
    ok, message = PgDumpHook("pg_wrong").test_connection()
    assert not ok
    assert "password authentication failed" in message
    assert wrong not in message
    assert PASSWORD not in message


def test_test_connection_to_a_closed_port_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from devtools.airflow_stack import free_port

    port = free_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_PG_CLOSED",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": port,
                "login": "x",
                "password": PASSWORD,
                "extra": {"connect_timeout": "3"},
            }
        ),
    )
    ok, message = PgDumpHook("pg_closed").test_connection()
    assert not ok
    assert str(port) in message
    assert PASSWORD not in message


# A password libpq's passfile cannot carry (it reads line by line and strips trailing \r and \n): the
# provider's own psycopg connection, which takes the password directly, logs in with it; pg_dump never
# could. NUL: no role can even have it, it is refused the same way.
UNCARRIABLE = {
    "line_break": "Nl-s3cr3t\nsecond-line",
    "trailing_cr": "Cr-s3cr3t\r",
    "trailing_crlf": "CrLf-s3cr3t\r\n",
    "nul": "Nul-s3cr3t\0x",
}


@pytest.mark.parametrize("case", sorted(UNCARRIABLE))
def test_a_password_the_passfile_cannot_carry_fails_now_naming_the_connection_never_the_password(
    pg18: PgCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str
) -> None:
    from psycopg import sql

    from airflow_provider_pgbackup.compat import AirflowFailException
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator

    password = UNCARRIABLE[case]
    role = f"pw_{case}"
    if "\0" not in password:  # the role really has it: the Test button's SQL login would succeed
        pg18.execute(f"DROP ROLE IF EXISTS {role}")
        with pg18.connect() as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
    conn = json.loads(pg18.airflow_conn_json("postgres"))
    conn.update(login=role, password=password)
    monkeypatch.setenv("AIRFLOW_CONN_PG_UNCARRIABLE", json.dumps(conn))
    secret_parts = [part for part in password.replace("\0", "\n").split() if part]
    try:
        ok, message = PgDumpHook("pg_uncarriable").test_connection()
        assert not ok, message
        assert "'pg_uncarriable'" in message
        assert "password file cannot hold it" in message
        from airflow_provider_pgbackup.libpq import UnusablePassword

        with watch_children() as children, pytest.raises(UnusablePassword) as refused:
            PgDumpHook("pg_uncarriable").dump(PgDumpOptions.build(), str(tmp_path / "x.dump"))
        assert children == {}, "refused before any pg tool starts"
        operator = PgDumpOperator(
            task_id="dump", postgres_conn_id="pg_uncarriable", output_path=str(tmp_path / "y.dump")
        )
        with pytest.raises(AirflowFailException, match="connection 'pg_uncarriable'") as failed:
            operator.execute(context={})  # fail now: a retry has the same password
        for text in (message, str(refused.value), str(failed.value)):
            assert not any(part in text for part in secret_parts), text
        assert leftovers(tmp_path) == []
    finally:
        pg18.execute(f"DROP ROLE IF EXISTS {role}")
