"""Issue 21: what the content record costs. Part 5 (dump and drill, side by side with bare pg_dump, plus
the candidate methods measured per row and per byte on the same data) and part 8 (5,000 small tables).

Imported by :mod:`benchmarks.run`; every measured dump or drill runs in a fresh worker process.
"""

from __future__ import annotations

import os
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.run import Bench, Database, SpecMaker, bare_spec, cleanup, interleaved, operator_spec

#: Part 5's dump sides: name -> (record, force the server method)
DUMP_SIDES = {
    "record none": ("none", False),
    "record row_counts": ("row_counts", False),
    "record content (stream)": ("content", False),
    "record content (server md5)": ("content", True),
}
DRILL_SIDES = ("record row_counts", "record content (stream)", "record content (server md5)")
MANY_TABLES = 5000
ROWS_PER_TABLE = 20


def _dump_side(bench: Bench, db: Database, record: str, server: bool) -> SpecMaker:
    def make(out: Path) -> dict[str, Any]:
        spec = operator_spec(bench, db, out, compression="gzip:6", record=record)
        spec["force_server_method"] = server
        return spec

    return make


def part5_content(bench: Bench, db: Database, rounds: int) -> dict[str, Any]:
    """Dump: bare ``pg_dump -Fc`` and the operator recording nothing, row counts, the content record
    from the stream (the default) and the content record by the server (the previous default). Drill:
    row counts only vs the full content comparison, for both methods. Then the candidates table."""
    bench.log(f"part 5: what the content record costs, dump side, {db.name}")
    sides: dict[str, tuple[SpecMaker, str]] = {
        "p5 bare pg_dump -Fc gzip:6": (
            lambda out: bare_spec(bench, db, out, "custom", "gzip:6", None),
            ".dump",
        )
    }
    for name, (record, server) in DUMP_SIDES.items():
        sides[f"p5 dump {name}"] = (_dump_side(bench, db, record, server), ".dump")
    interleaved(bench, sides, rounds)
    bench.log(f"part 5: the drill side, {db.name}")
    artifacts = {}
    for name in DRILL_SIDES:
        record, server = DUMP_SIDES[name]
        out = bench.output_path(f"p5 artifact {name}", ".dump")
        bench.worker(_dump_side(bench, db, record, server)(out))
        artifacts[name] = out
    drills: dict[str, tuple[SpecMaker, str]] = {
        f"p5 drill {name}": (
            lambda out, a=artifacts[name]: {
                "kind": "drill",
                "drill": {
                    "postgres_conn_id": db.conn_id,
                    "artifact_path": str(a),
                    "pg_bin_dir": str(bench.pg_bin),
                },
            },
            ".unused",
        )
        for name in DRILL_SIDES
    }
    interleaved(bench, drills, rounds)
    candidates = measure_candidates(bench, db, artifacts["record content (stream)"])
    for out in artifacts.values():
        cleanup(out)
    return candidates


# ------------------------------------------------------------------------------------- the candidates
FLOOR_SQL = "SELECT count(ROW(t.*)::text) FROM pgbench_accounts t"
MD5_SQL = """
    SELECT count(*), sum(('x' || substr(h, 1, 16))::bit(64)::int8),
           sum(('x' || substr(h, 17, 16))::bit(64)::int8)
    FROM (SELECT md5(ROW(t.*)::text) AS h FROM pgbench_accounts t) d
"""
HASHTEXT_SQL = """
    SELECT count(*), sum(hashtextextended(r, 1)::numeric), sum(hashtextextended(r, 2)::numeric)
    FROM (SELECT ROW(t.*)::text AS r FROM pgbench_accounts t {where}) d
"""


def _timed_sql(bench: Bench, db: Database, query: str) -> float:
    with bench.cluster.connect(db.name) as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")  # one backend, as the snapshot session
        started = time.perf_counter()
        conn.execute(query).fetchone()
        return time.perf_counter() - started


def _parallel_hashtext(bench: Bench, db: Database, sessions: int) -> float:
    """hashtextextended in ``sessions`` sessions importing one exported snapshot, each over a TID range."""
    with bench.cluster.connect(db.name, autocommit=False) as exporter:
        exporter.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = exporter.execute(
            "SELECT pg_export_snapshot(),"
            " pg_relation_size('pgbench_accounts') / current_setting('block_size')::int"
        ).fetchone()
        assert row is not None
        snapshot, pages = str(row[0]), int(row[1])
        bounds = [pages * i // sessions for i in range(sessions + 1)]
        errors: list[BaseException] = []

        def one(low: int, high: int) -> None:
            try:
                with bench.cluster.connect(db.name, autocommit=False) as conn:
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                    conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                    where = f"WHERE ctid >= '({low},0)'::tid AND ctid < '({high},0)'::tid"
                    conn.execute(HASHTEXT_SQL.format(where=where)).fetchone()
                    conn.rollback()
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=one, args=(bounds[i], bounds[i + 1])) for i in range(sessions)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        exporter.rollback()
    if errors:
        raise errors[0]
    return seconds


def _stream_cpu(path: Path, dump_format: str, checksums: bool = True) -> float:
    """CPU seconds of the provider's COPY reader over one archive, fed in 1 MiB pieces as from the pipe."""
    from airflow_provider_pgbackup.content import CopyDigest

    digest = CopyDigest(dump_format, checksums=checksums)
    started = time.process_time()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.feed(chunk)
    result = digest.close()
    assert result.unsupported is None, result.unsupported
    return time.process_time() - started


def measure_candidates(bench: Bench, db: Database, custom_gzip: Path) -> dict[str, Any]:
    """Each candidate on pgbench_accounts of ``db`` (its rows, and the bytes of its COPY text): the
    server-side SQL (one backend, median of 3), the in-stream reader's CPU over real archives."""
    bench.log(f"part 5: candidates per row and per byte, {db.name}")
    import subprocess

    work = custom_gzip.parent
    archives = {}
    for name, fmt, compression in (("custom none", "custom", "0"), ("tar", "tar", None)):
        out = work / f"p5-candidate-{name.replace(' ', '-')}"
        argv = [str(bench.pg_bin / "pg_dump"), f"--format={fmt}", f"--file={out}", "--table=pgbench_accounts"]
        if compression is not None:
            argv.append(f"--compress={compression}")
        subprocess.run(
            argv, env={**os.environ, **bench.cluster.libpq_env(db.name)}, check=True, capture_output=True
        )
        archives[name] = out
    with tarfile.open(archives["tar"]) as tar:
        copy_bytes = max(member.size for member in tar.getmembers() if member.name.endswith(".dat")) - 5
    rows = db.scale * 100_000

    def median(run: Callable[[], float]) -> float:
        return sorted(run() for _ in range(3))[1]

    results: dict[str, dict[str, Any]] = {
        "floor: one more scan with output functions (server)": {
            "seconds": median(lambda: _timed_sql(bench, db, FLOOR_SQL))
        },
        "md5-sum128, the previous method (server)": {
            "seconds": median(lambda: _timed_sql(bench, db, MD5_SQL))
        },
        "hashtextextended, two seeds (server)": {
            "seconds": median(lambda: _timed_sql(bench, db, HASHTEXT_SQL.format(where="")))
        },
        "hashtextextended, 2 sessions in one snapshot (server, wall)": {
            "seconds": median(lambda: _parallel_hashtext(bench, db, 2))
        },
        "stream: inflate + sha256 of the -Fc gzip:6 data (client)": {
            "seconds": median(lambda: _stream_cpu(custom_gzip, "custom"))
        },
        "stream: row counts only, -Fc gzip:6 (client)": {
            "seconds": median(lambda: _stream_cpu(custom_gzip, "custom", checksums=False))
        },
        "stream: sha256 of the -Fc uncompressed data, one frame per row (client)": {
            "seconds": median(lambda: _stream_cpu(archives["custom none"], "custom"))
        },
        "stream: sha256 of the tar member (client)": {
            "seconds": median(lambda: _stream_cpu(archives["tar"], "tar"))
        },
    }
    for name in archives.values():
        cleanup(name)
    for figures in results.values():
        figures["ns_per_row"] = figures["seconds"] / rows * 1e9
        figures["ns_per_byte"] = figures["seconds"] / copy_bytes * 1e9
    return {"rows": rows, "copy_bytes": copy_bytes, "table": "pgbench_accounts", "candidates": results}


# ----------------------------------------------------------------------------------- part 8: many tables
def create_many_tables(bench: Bench, tables: int = MANY_TABLES, rows: int = ROWS_PER_TABLE) -> Database:
    """``many_tables``: ``tables`` tables (``id int PRIMARY KEY, v text``) of ``rows`` rows each."""
    db = Database("many_tables", 0)
    bench.cluster.drop_database(db.name)
    bench.cluster.create_database(db.name)
    started = time.monotonic()
    with bench.cluster.connect(db.name) as conn:
        for first in range(1, tables + 1, 250):  # a transaction per 250 tables: each holds a lock
            last = min(first + 249, tables)
            conn.execute(
                f"""
                DO $$ BEGIN
                  FOR i IN {first}..{last} LOOP
                    EXECUTE format('CREATE TABLE public.t_%s (id int PRIMARY KEY, v text)', i);
                    EXECUTE format('INSERT INTO public.t_%s SELECT g, md5(g::text)'
                                   ' FROM generate_series(1, {rows}) g', i);
                  END LOOP;
                END $$
                """
            )
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    db.size_bytes = int(row[0]) if row else 0
    db.conn_id = "bench_many_tables"
    bench.env[f"AIRFLOW_CONN_{db.conn_id.upper()}"] = bench.cluster.airflow_conn_json(db.name)
    bench.log(f"generated {db.name}: {tables} tables of {rows} rows in {time.monotonic() - started:.0f} s")
    return db


def part8_many_tables(bench: Bench, rounds: int) -> dict[str, Any]:
    """bare ``pg_dump -Fc`` vs the operator's default (content record) and ``record='none'``."""
    db = create_many_tables(bench)
    bench.log(f"part 8: {MANY_TABLES} tables of {ROWS_PER_TABLE} rows, bare vs operator")
    sides: dict[str, tuple[SpecMaker, str]] = {
        "p8 bare pg_dump -Fc gzip:6": (
            lambda out: bare_spec(bench, db, out, "custom", "gzip:6", None),
            ".dump",
        ),
        "p8 operator record none": (_dump_side(bench, db, "none", False), ".dump"),
        "p8 operator record content (default)": (_dump_side(bench, db, "content", False), ".dump"),
    }
    interleaved(bench, sides, rounds)
    return {"tables": MANY_TABLES, "rows_per_table": ROWS_PER_TABLE, "size_bytes": db.size_bytes}
