"""The script scanner: what a plain SQL script would do beyond its database, read as psql reads it.

Text inside COPY data, string literals, dollar-quoted bodies, quoted identifiers and comments is never
taken for a statement; the same script cut into chunks anywhere gives the same answer. The model of
psql is checked against psql itself (a real replay on PostgreSQL 18): what the scanner says psql runs,
psql runs, and what it says psql does not run, psql does not run.
"""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_pgbackup.sqlscript import ScriptScanner, scan_sql
from devtools.pgcluster import PgCluster

# Text that reads like statements reaching beyond the database: inside a decoy it must never count.
DANGEROUS_LINES = [
    "DROP DATABASE victim;",
    'DROP ROLE "postgres";',
    "\\connect victim",
    "\\! rm -rf /",
    "GRANT pg_read_server_files TO alice;",
    "ALTER SYSTEM SET fsync = off;",
    "CREATE TABLESPACE t LOCATION '/srv';",
    "COPY t FROM PROGRAM 'id';",
    "UPDATE pg_catalog.pg_database SET datistemplate = true;",
    "'; DROP DATABASE victim; --",
    '" ; \\connect victim',
    "$$; DROP DATABASE victim; $$",
    "*/ DROP DATABASE victim; /*",
    "-- \\.",
    "\\\\.",
    "\\.x",
    "BEGIN ATOMIC END; DROP DATABASE victim;",
]
TEXT = st.lists(
    st.one_of(st.sampled_from(DANGEROUS_LINES), st.text("abc ;'\"$-/*\\.\n()eE", max_size=20)), max_size=4
).map(" ".join)


def copy_block(lines: list[str]) -> str:
    """COPY data as pg_dump writes it: a backslash is doubled, so no data line is "\\." alone."""
    data = "".join(line.replace("\\", "\\\\").replace("\n", "\\n") + "\n" for line in lines)
    return f"COPY public.t (s) FROM stdin;\n{data}\\.\n"


def standard_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def escape_string(text: str) -> str:
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dollar_body(text: str) -> str:
    tag = "$fn$"
    return f"CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS {tag}{text.replace(tag, '')}{tag};\n"


DECOYS = st.one_of(
    st.lists(TEXT, max_size=3).map(copy_block),
    TEXT.map(lambda t: f"SELECT {standard_string(t)};\n"),
    TEXT.map(lambda t: f"SELECT {escape_string(t)};\n"),
    TEXT.map(dollar_body),
    TEXT.map(lambda t: "-- " + t.replace("\n", " ") + "\n"),
    TEXT.map(lambda t: "/* /* */ " + t.replace("*/", "").replace("/*", "") + " */\n"),
    TEXT.map(lambda t: 'CREATE TABLE public."' + t.replace('"', '""') + '" (a int);\n'),
    TEXT.map(lambda t: f"COMMENT ON TABLE public.t IS {standard_string(t)};\n"),
    st.just("CREATE FUNCTION public.g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"),
    st.just("INSERT INTO public.t VALUES (1, 'a;b', '(', ')');\n"),
)
NAMES = st.sampled_from(["billing", "accounting", 'we ird"q ü', "Alice"])


def quoted(name: str) -> str:
    return name if name.isidentifier() and name.islower() else '"' + name.replace('"', '""') + '"'


def connect_line(name: str) -> str:
    """``\\connect`` as pg_dump writes it for a name that needs quoting: a conninfo in psql quotes."""
    conninfo = "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return '\\connect -reuse-previous=on "' + conninfo.replace('"', '""') + '"\n'


# A statement that does reach beyond the database, and what the scanner must report for it.
REAL = st.one_of(
    NAMES.map(lambda n: (f"DROP DATABASE IF EXISTS {quoted(n)};\n", ("database", n), "DROP DATABASE")),
    NAMES.map(lambda n: (f"CREATE ROLE {quoted(n)};\n", ("role", n), "CREATE ROLE")),
    NAMES.map(lambda n: (f"ALTER ROLE {quoted(n)} WITH LOGIN;\n", ("role", n), "ALTER ROLE")),
    NAMES.map(
        lambda n: (
            f"GRANT team TO {quoted(n)} GRANTED BY postgres;\n",
            ("role", n),
            "GRANT (role membership)",
        )
    ),
    NAMES.map(
        lambda n: (
            connect_line(n),
            ("database", n),
            "\\connect",
        )
    ),
    NAMES.map(
        lambda n: (
            f"GRANT CONNECT ON DATABASE {quoted(n)} TO PUBLIC;\n",
            ("database", n),
            "GRANT ON DATABASE",
        )
    ),
)


def pieces(script: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(script) + 1) for c in cuts})
    return [script[a:b] for a, b in zip([0, *points], [*points, len(script)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.one_of(DECOYS, REAL), max_size=8), cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_only_real_statements_count_and_chunks_change_nothing(parts: list[object], cuts: list[int]) -> None:
    script = "SET standard_conforming_strings = on;\n"
    expected: dict[tuple[str, str], list[str]] = {}
    for part in parts:
        if isinstance(part, tuple):
            text, key, statement = part
            script += text
            expected.setdefault(key, [])
            if statement not in expected[key]:
                expected[key].append(statement)
        else:
            script += str(part)
    data = script.encode()
    found = scan_sql([data])
    assert found.touches == expected, script
    assert found.refused == [], script
    chunked = scan_sql(pieces(data, cuts))
    assert (chunked.touches, chunked.refused) == (found.touches, found.refused)


@pytest.mark.parametrize(
    ("script", "refused"),
    [
        ("\\! touch /tmp/x\n", "the psql meta-command \\! (pg_dump never writes it)"),
        ("\\set ON_ERROR_STOP 0\n", "the psql meta-command \\set"),
        ("\\connect `hostname`\n", "the psql meta-command \\connect"),
        (
            '\\connect "dbname=x host=elsewhere password=s3cret"\n',
            "a \\connect that also sets host, password",
        ),
        ("ALTER SYSTEM SET fsync = off;\n", "ALTER SYSTEM"),
        ("UPDATE pg_catalog.pg_database SET datistemplate = false;\n", "UPDATE pg_catalog.pg_database"),
        ('INSERT INTO "pg_catalog"."pg_authid" VALUES (1);\n', "INSERT pg_catalog.pg_authid"),
        ("COPY public.t FROM PROGRAM 'id';\n", "COPY FROM a file or program of the server"),
        ("COPY public.t TO '/tmp/t.csv';\n", "COPY TO a file or program of the server"),
        ("CREATE TABLESPACE ts LOCATION '/srv/ts';\n", "CREATE TABLESPACE 'ts'"),
        ("DO $$ BEGIN EXECUTE 'DROP ROLE x'; END $$;\n", "DO (an anonymous code block"),
        ("SELECT 'never closed;\n", "the script ends inside a string"),
        ("COPY public.t (s) FROM stdin; SELECT 1;\nrow\n\\.\n", "text after COPY ... FROM stdin on its line"),
        ('DROP ROLE U&"d\\0061ve";\n', 'a U&"..." name'),
    ],
)
def test_what_no_restore_may_run_is_refused_naming_it(script: str, refused: str) -> None:
    found = scan_sql([script.encode()])
    assert any(refused in r for r in found.refused), found
    assert not any("s3cret" in r for r in found.refused)


def test_a_pg_dumpall_script_names_every_database_and_role_it_would_touch() -> None:
    # The shape of PostgreSQL 18's pg_dumpall --clean (trimmed): what the guard must see.
    script = b"""\\restrict h64Q5jG34i5LACp9xn1x6zpCc0gYIbBgnZcraaQHOMzhvqCSWCYWAiqT5VO9YZH
SET default_transaction_read_only = off;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
DROP DATABASE accounting;
DROP DATABASE "we ird""q \xc3\xbc";
DROP ROLE alice;
CREATE ROLE alice;
ALTER ROLE alice WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:Z5z1v48zq8coDo6KBh1iuw==$fO8=:9Gt=';
GRANT team TO alice WITH INHERIT TRUE GRANTED BY postgres;
\\unrestrict h64Q5jG34i5LACp9xn1x6zpCc0gYIbBgnZcraaQHOMzhvqCSWCYWAiqT5VO9YZH
\\encoding SQL_ASCII
\\connect -reuse-previous=on "dbname='we ird""q \xc3\xbc'"
SET client_encoding = 'UTF8';
COMMENT ON DATABASE "we ird""q \xc3\xbc" IS 'b';
\\connect template1
REVOKE CONNECT,TEMPORARY ON DATABASE template1 FROM PUBLIC;
ALTER ROLE alice IN DATABASE template1 SET search_path = public;
-- PostgreSQL database cluster dump complete
"""
    found = scan_sql([script])
    assert found.refused == []
    assert found.touches == {
        ("database", "accounting"): ["DROP DATABASE"],
        ("database", 'we ird"q ü'): ["DROP DATABASE", "\\connect", "COMMENT ON DATABASE"],
        ("role", "alice"): ["DROP ROLE", "CREATE ROLE", "ALTER ROLE", "GRANT (role membership)"],
        ("database", "template1"): ["\\connect", "REVOKE ON DATABASE", "ALTER ROLE IN DATABASE"],
    }
    assert "SCRAM" not in repr(found)  # a role's password hash is never kept


def test_psql_runs_what_the_scanner_reports_and_nothing_it_does_not(pg18: PgCluster) -> None:
    """The decoys hide statements whose effect would show (a dropped database, a created role); psql
    replays the script without a transaction (as a pg_dumpall script is) and ON_ERROR_STOP."""
    for name in ("pgbackup_scan_target", "pgbackup_scan_victim"):
        pg18.drop_database(name)
        pg18.create_database(name)
    pg18.execute("DROP ROLE IF EXISTS pgbackup_scan_decoy")
    decoy = "DROP DATABASE pgbackup_scan_victim; CREATE ROLE pgbackup_scan_decoy;"
    script = f"""SET standard_conforming_strings = on;
SET check_function_bodies = false;
CREATE TABLE public.t (s text);
COPY public.t (s) FROM stdin;
{decoy}
\\\\connect pgbackup_scan_victim
\\\\.
\\.
SELECT {standard_string(decoy)}, {escape_string("it's; " + decoy)};
{dollar_body(decoy)}CREATE FUNCTION public.g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;
-- {decoy}
/* /* nested */ {decoy} */
CREATE TABLE public."{decoy}" (a int);
COMMENT ON TABLE public.t IS {standard_string(decoy)};
\\connect pgbackup_scan_victim
CREATE TABLE public.after_connect (a int);
"""
    found = scan_sql([script.encode()])
    assert found.refused == []
    assert found.touches == {("database", "pgbackup_scan_victim"): ["\\connect"]}
    env = {**pg18.libpq_env("pgbackup_scan_target")}
    psql = str(pg18.bin_dir / "psql")
    run = subprocess.run(
        [psql, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1"],
        input=script.encode(),
        env=env,
        capture_output=True,
        check=False,
    )
    try:
        assert run.returncode == 0, run.stderr.decode()
        with pg18.connect() as conn:
            assert (
                conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pgbackup_scan_decoy'").fetchone()
                is None
            )
        with psycopg.connect(**pg18.connect_kwargs("pgbackup_scan_victim")) as victim:  # not dropped
            assert victim.execute("SELECT to_regclass('public.after_connect')").fetchone() == (
                "after_connect",
            )
        with psycopg.connect(**pg18.connect_kwargs("pgbackup_scan_target")) as target:
            rows = target.execute("SELECT s FROM public.t").fetchall()
        assert rows == [(decoy,), ("\\connect pgbackup_scan_victim",), ("\\.",)]
    finally:
        pg18.execute("DROP ROLE IF EXISTS pgbackup_scan_decoy")
        for name in ("pgbackup_scan_target", "pgbackup_scan_victim"):
            pg18.drop_database(name)


def test_a_scanner_fed_byte_by_byte_finds_what_it_finds_in_one_piece() -> None:
    script = (
        b"COPY public.t (s) FROM stdin;\nx\n\\.\r\n"
        b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;\n"
        b"SELECT $a$ ; DROP DATABASE x; $a$, E'\\'; DROP DATABASE y;';\n"
        b"DROP DATABASE z;"
    )
    scanner = ScriptScanner()
    for byte in script:
        scanner.feed(bytes([byte]))
    assert scanner.finish().touches == {("database", "z"): ["DROP DATABASE"]}
    assert scan_sql([script]).touches == {("database", "z"): ["DROP DATABASE"]}
