"""Consistency under load (issue 12, item 14): sessions write while pg_dump runs; the drill restores exactly
the snapshot the manifest counted and checksummed, on real servers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from devtools.pgcluster import PgCluster

# ~150 MB of table and index: about as large as keeps this test well under a minute per server on 2
# busy cores (dump, checksums at the source, drill restore, checksums of the copy). 300k rows took
# ~10 s per server; "a few hundred MB" would take minutes per server here.
ROWS = 1_000_000
WRITERS = 2
MAX_WRITES = 50_000  # per writer: the loop stops itself even if the dump never ends


def writer(cluster: PgCluster, dbname: str, number: int, stop: threading.Event, done: list[int]) -> None:
    """Insert (explicit ids, in a range of its own), update and delete rows of ``load``, and insert into
    ``events`` (a serial column: the sequence advances while pg_dump runs), in autocommit, until stopped."""
    next_id = ROWS + 1 + number * MAX_WRITES
    with psycopg.connect(**cluster.connect_kwargs(dbname), autocommit=True) as conn:
        for step in range(MAX_WRITES):
            if stop.is_set():
                break
            target = 1 + (step * 7919 + number * 104729) % ROWS
            conn.execute("INSERT INTO load VALUES (%s, 0, md5(%s::text))", (next_id, next_id))
            conn.execute("UPDATE load SET n = n + 1, payload = md5(payload) WHERE id = %s", (target + 1,))
            conn.execute("DELETE FROM load WHERE id = %s", (target,))
            conn.execute("INSERT INTO events (note) VALUES (%s)", (f"writer {number} step {step}",))
            next_id += 1
            done[number] = step + 1


@pytest.mark.parametrize("dump_format", ["directory"])
def test_rows_written_during_the_dump_restore_exactly_as_counted_and_identical(
    pg: PgCluster, fresh_db, airflow_conn, tmp_path: Path, dump_format: str
) -> None:
    source = fresh_db("under load")
    pg.execute(
        "CREATE TABLE load (id bigint PRIMARY KEY, n int NOT NULL, payload text NOT NULL);"
        f"INSERT INTO load SELECT g, 0, md5(g::text) || md5((g * 3)::text) FROM generate_series(1, {ROWS}) g;"
        "CREATE TABLE events (id serial PRIMARY KEY, note text NOT NULL, at timestamptz DEFAULT now());",
        dbname=source,
    )
    conn_id = airflow_conn(pg, source)
    artifact = tmp_path / "load.dir"
    stop = threading.Event()
    done = [0] * WRITERS
    threads = [
        threading.Thread(target=writer, args=(pg, source, n, stop, done), daemon=True) for n in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)  # the writers are running before the snapshot is taken
        before = sum(done)
        dump = PgDumpOperator(
            task_id="dump", postgres_conn_id=conn_id, output_path=str(artifact), format=dump_format, jobs=2
        ).execute(context={})
        during = sum(done) - before
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert during > 0, "sessions must have written while pg_dump ran"
    assert dump["content"] is not None, "record_checksums is on by default"

    drill = PgRestoreOperator(task_id="drill", postgres_conn_id=conn_id, artifact_path=str(artifact), jobs=2)
    xcom = drill.execute(context={})

    counted = {(r["schema"], r["table"]): r["rows"] for r in dump["row_counts"]}
    restored = {(t["schema"], t["table"]): t["restored"] for t in xcom["tables"]}
    assert restored == counted, "the restore holds exactly the rows the manifest counted"
    assert counted[("public", "events")] > 0, "the serial column's sequence advanced under the dump"
    assert xcom["content"]["verdict"] == "IDENTICAL", xcom["content"]["differences"]
    assert xcom["dropped_database"]
