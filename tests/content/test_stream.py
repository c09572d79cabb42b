"""Rows counted and checksummed from pg_dump's own output (issue 21), against real pg_dump 18 and 15: the
same figures from every format and chunking, equal to sha256 of the table's ``COPY ... TO STDOUT``, and a
drill that reads the restored tables back the same way."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_pgbackup.binaries import choose_binary
from airflow_provider_pgbackup.content import (
    STREAM_METHOD,
    ContentRecord,
    CopyDigest,
    StreamResult,
    compare_content,
    digest_directory,
)
from airflow_provider_pgbackup.manifest import manifest_path_for, read_manifest
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from devtools.pgcluster import PgCluster

EDGE_CASES = r"""
CREATE TABLE public.edge (
    id int PRIMARY KEY,
    note text,
    blob bytea,
    at timestamptz,
    money_left money,
    twice int GENERATED ALWAYS AS (id * 2) STORED
);
INSERT INTO public.edge (id, note, blob, at, money_left) VALUES
    (1, E'line one\nline two', '\x00ff', '2026-01-02 03:04:05+02', 12.5),
    (2, E'back\\slash \\. and a dot', NULL, NULL, NULL),
    (3, E'\\.', '', 'infinity', 0),
    (4, 'ten bytes', '\x0a0a', '1999-12-31 23:59:59.999999+00', -1),
    (5, repeat('x', 300000), NULL, NULL, NULL);
CREATE TABLE public.empty_one (id int);
CREATE TABLE public.no_columns ();
INSERT INTO public.no_columns DEFAULT VALUES;
INSERT INTO public.no_columns DEFAULT VALUES;
CREATE TABLE public.tens AS SELECT 'abcdefghi'::text AS t FROM generate_series(1, 300);
"""
FORMATS = [("custom", "gzip:6"), ("custom", "none"), ("tar", "none"), ("plain", "none"), ("plain", "gzip:1")]


@pytest.fixture
def edge_db(pg: PgCluster, fresh_db: Callable[[str], str]) -> str:
    name = fresh_db("stream edge cases")
    pg.execute(EDGE_CASES, name)
    return name


def pg_dump_output(pg: PgCluster, dbname: str, dump_format: str, compression: str, out: Path) -> Path:
    binary = choose_binary("pg_dump", pg.major, pg.version)
    flag = compression if pg.major >= 16 else {"none": "0", "gzip:6": "6", "gzip:1": "1"}[compression]
    subprocess.run(
        [str(binary.path), f"--format={dump_format}", f"--compress={flag}", f"--file={out}"],
        env=pg.libpq_env(dbname),
        check=True,
        capture_output=True,
    )
    return out


def read(path: Path, dump_format: str, compression: str, chunk: int) -> StreamResult:
    digest = CopyDigest(dump_format, gzip=dump_format == "plain" and compression.startswith("gzip"))
    data = path.read_bytes()
    for start in range(0, len(data), chunk):
        digest.feed(data[start : start + chunk])
    return digest.close()


def figures(result: StreamResult) -> dict[tuple[str, str], tuple[int, str | None]]:
    assert result.unsupported is None, result.unsupported
    return {(t.schema, t.table): (t.rows, t.checksum) for t in result.tables}


def copy_text_sha(pg: PgCluster, dbname: str, table: str, columns: str) -> tuple[int, str]:
    """sha256 of ``COPY ... TO STDOUT`` as pg_dump's session runs it: the definition of the checksum."""
    with pg.connect(dbname) as conn:
        conn.execute("SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3")
        data = bytearray()
        with conn.cursor().copy(f"COPY public.{table} ({columns}) TO STDOUT") as copy:
            for block in copy:
                data += block
    return data.count(b"\n"), hashlib.sha256(data).hexdigest()[:32]


def test_every_format_and_chunking_gives_the_checksum_of_the_copy_text(
    pg: PgCluster, edge_db: str, tmp_path: Path
) -> None:
    results = {}
    for dump_format, compression in FORMATS:
        artifact = pg_dump_output(
            pg, edge_db, dump_format, compression, tmp_path / f"a-{dump_format}-{compression}"
        )
        for chunk in (7, 4093, 1 << 20):  # every item split somewhere, a long row across many pieces
            results[(dump_format, compression, chunk)] = figures(
                read(artifact, dump_format, compression, chunk)
            )
    directory = pg_dump_output(pg, edge_db, "directory", "gzip:6", tmp_path / "a.dir")
    results[("directory", "gzip:6", 0)] = figures(digest_directory(directory, workers=2))
    plain_dir = pg_dump_output(pg, edge_db, "directory", "none", tmp_path / "n.dir")
    results[("directory", "none", 0)] = figures(digest_directory(plain_dir))

    first = next(iter(results.values()))
    assert all(found == first for found in results.values()), {k: v for k, v in results.items() if v != first}
    assert first[("public", "edge")] == copy_text_sha(pg, edge_db, "edge", "id, note, blob, at, money_left")
    assert first[("public", "empty_one")] == (0, hashlib.sha256(b"").hexdigest()[:32])
    assert first[("public", "no_columns")] == (2, hashlib.sha256(b"\n\n").hexdigest()[:32])
    assert first[("public", "tens")][0] == 300  # rows of 10 bytes: a frame length of 0x0a in the archive


def test_inserts_are_not_read_from_the_stream_but_say_why(
    pg: PgCluster, edge_db: str, tmp_path: Path
) -> None:
    binary = choose_binary("pg_dump", pg.major, pg.version)
    out = tmp_path / "inserts.dump"
    subprocess.run(
        [str(binary.path), "--format=custom", "--inserts", f"--file={out}"],
        env=pg.libpq_env(edge_db),
        check=True,
        capture_output=True,
    )
    assert "INSERT statements" in (read(out, "custom", "gzip:6", 1 << 20).unsupported or "")


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
@pytest.mark.parametrize(
    ("extra_args", "method"),
    [([], STREAM_METHOD), (["--rows-per-insert=100"], "md5-sum128")],
    ids=["copy", "inserts"],
)
def test_the_drill_of_each_method_proves_the_edge_cases_identical_and_an_edit_different(
    pg: PgCluster, edge_db: str, airflow_conn, tmp_path: Path, extra_args: list[str], method: str
) -> None:
    artifact = tmp_path / "edge.dump"
    PgDumpOperator(
        task_id="dump",
        postgres_conn_id=airflow_conn(pg, edge_db),
        output_path=str(artifact),
        extra_args=extra_args,
    ).execute(context={})
    content = read_manifest(manifest_path_for(artifact)).content
    assert content is not None
    assert content["checksum_method"] == method
    pg.drop_database("edge drill")
    drill = PgRestoreOperator(
        task_id="drill",
        postgres_conn_id=airflow_conn(pg, "postgres"),
        artifact_path=str(artifact),
        database="edge drill",
        drop_after=False,
    )
    try:
        xcom = drill.execute(context={})
        assert xcom["content"]["verdict"] == "IDENTICAL", xcom["content"]["differences"]
        assert {t["table"]: t["restored"] for t in xcom["tables"]} == {
            "edge": 5,
            "empty_one": 0,
            "no_columns": 2,
            "tens": 300,
        }
        pg.execute("UPDATE public.edge SET note = note || ' ' WHERE id = 2", "edge drill")
        expected = ContentRecord.from_dict(content)
        differences = compare_content(expected, drill.hook.measure_restored("edge drill", expected))
    finally:
        pg.drop_database("edge drill")
    assert [(d.kind, d.object) for d in differences] == [("table", "public.edge")]
    assert differences[0].expected.startswith("5 rows, checksum ")


@pytest.mark.parametrize("pg", ["pg18"], indirect=True)
def test_the_drill_reads_the_largest_tables_back_in_pg_dumps_of_their_own(
    pg: PgCluster, sample: str, pg_backup, airflow_conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from airflow_provider_pgbackup import catalog, process

    started: list[list[str]] = []  # every child the runner starts, recorded as it starts (real processes)

    class RecordingPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: list[str], *rest: object, **options: object) -> None:
            started.append([str(a) for a in args])
            super().__init__(args, *rest, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(catalog, "OWN_READER_BYTES", 0)  # every table is "large": jobs - 1 of their own
    artifact = pg_backup("custom")
    monkeypatch.setattr(process.subprocess, "Popen", RecordingPopen)
    xcom = PgRestoreOperator(
        task_id="drill",
        postgres_conn_id=airflow_conn(pg, "postgres"),
        artifact_path=str(artifact),
        jobs=3,
    ).execute(context={})
    assert xcom["content"]["verdict"] == "IDENTICAL", xcom["content"]["differences"]
    # Counted at start, not sampled from /proc: a reader of a small table can end between two samples.
    readers = [
        "\0".join(argv).encode() for argv in started
        if argv[0].endswith("pg_dump") and "--data-only" in argv
    ]  # fmt: skip
    assert len(readers) == 3
    assert sum(b"--exclude-table=" in cmdline for cmdline in readers) == 1  # the rest, in one pg_dump
