"""Content records against real PostgreSQL 18 and 15: a restored copy measures IDENTICAL, and every kind
of tampering with the copy is named."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_pgbackup.binaries import choose_binary
from airflow_provider_pgbackup.content import (
    DETERMINISTIC_SETTINGS,
    INVENTORY_ITEMS_CAP,
    INVENTORY_KINDS,
    ContentDifference,
    ContentRecord,
    ContentRecordError,
    InventoryItem,
    InventoryKind,
    LargeObjectsContent,
    SequenceValue,
    TableContent,
    compare_content,
    content_verdict,
    format_differences,
    measure_content,
    user_tables,
)
from airflow_provider_pgbackup.content.inventory import _inventory_kind
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import manifest_path_for, read_manifest
from devtools import sample_db
from devtools.pgcluster import PgCluster
from tests.helpers import restore

FORMATS = ("custom", "directory", "tar", "plain")


def measure(cluster: PgCluster, dbname: str, tables: list[tuple[str, str]] | None = None) -> ContentRecord:
    """Measure a database from an idle autocommit connection (what the drill does on the copy)."""
    with cluster.connect(dbname) as conn:
        return measure_content(conn, user_tables(conn) if tables is None else tables)


@pytest.fixture
def restored_copy(
    pg: PgCluster,
    sample: str,
    pg_backup: Callable[..., Path],
    fresh_db: Callable[[str], str],
    airflow_conn: Callable[..., str],
) -> Callable[[str], str]:
    """``make(format)``: a real backup of the sample database restored into a fresh database."""

    def make(dump_format: str) -> str:
        artifact = pg_backup(dump_format)
        target = fresh_db(f"content copy {dump_format}")
        hook = PgDumpHook(airflow_conn(pg, sample))
        restore(hook, artifact, read_manifest(manifest_path_for(artifact)), target)
        return target

    return make


def _assert_identical(expected: ContentRecord, found: ContentRecord) -> None:
    differences = compare_content(expected, found)
    assert differences == [], format_differences(differences)
    assert content_verdict(differences) == "IDENTICAL"


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("dump_format", FORMATS)
def test_restored_sample_measures_identical_to_its_source(
    pg: PgCluster, sample: str, restored_copy: Callable[[str], str], dump_format: str
) -> None:
    copy = restored_copy(dump_format)
    with pg.connect(sample) as conn:
        tables = user_tables(conn)
    source = measure(pg, sample, tables)
    found = measure(pg, copy, tables)

    _assert_identical(source, found)
    # What is compared is not trivially empty: every table, the partitions' leaves, the unlogged table.
    rows = {(t.schema, t.table): t.rows for t in source.tables}
    assert rows[("shop", "orders_2025")]
    assert rows[("shop", "orders_2026")]
    assert rows[("shop", "session_cache")] == 20
    assert ("shop", "orders") not in rows  # a partitioned parent holds no rows of its own
    assert source.large_objects == found.large_objects
    assert source.large_objects is not None
    assert source.large_objects.count == 1
    inventory = source.inventory_map
    assert inventory["triggers"].count == 1
    assert inventory["partitions"].count == 2
    assert inventory["materialized_views"].count == 1
    assert inventory["types"].count == 2
    assert {s.sequence for s in source.sequences or ()} >= {"invoice_no", "orders_id_seq", "customers_id_seq"}
    # The record survives JSON unchanged.
    assert ContentRecord.from_dict(json.loads(json.dumps(found.to_dict()))) == found


def test_checksum_is_the_sum_of_row_md5s_and_ignores_row_order(pg: PgCluster, sample: str) -> None:
    with pg.connect(sample, autocommit=False) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for name, value in DETERMINISTIC_SETTINGS:
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        texts = [r[0] for r in conn.execute("SELECT ROW(t.*)::text FROM ONLY shop.orders_2025 AS t")]
        conn.rollback()
    total = sum(int(hashlib.md5(t.encode()).hexdigest(), 16) for t in texts) % (1 << 128)
    with pg.connect(sample) as conn:
        conn.execute("DROP TABLE IF EXISTS public.shuffled")
        conn.execute("CREATE TABLE public.shuffled AS SELECT * FROM shop.orders_2025 ORDER BY random()")
        try:
            record = measure_content(
                conn, [("shop", "orders_2025"), ("public", "shuffled")], sequences=[], inventory=False
            )
        finally:
            conn.execute("DROP TABLE public.shuffled")
    original, shuffled = record.tables
    assert original.checksum == f"{total:032x}"
    assert original.rows == len(texts)
    assert (shuffled.rows, shuffled.checksum) == (original.rows, original.checksum)


def test_measure_in_the_callers_snapshot_leaves_its_transaction_and_settings(
    pg: PgCluster, sample: str
) -> None:
    with pg.connect(sample, autocommit=False) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL TimeZone = 'Asia/Tokyo'")
        record = measure_content(conn, [("shop", "customers")])
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        row = conn.execute("SELECT current_setting('TimeZone'), current_setting('search_path')").fetchone()
        assert row == ("Asia/Tokyo", '"$user", public')
        conn.rollback()
    assert record.tables[0].rows == 200


def test_idle_connection_is_measured_in_a_transaction_of_its_own(pg: PgCluster, sample: str) -> None:
    with pg.connect(sample, autocommit=False) as conn:
        record = measure_content(conn, [("shop", "customers")], inventory=False)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert record.tables[0].rows == 200


def test_read_committed_transaction_is_refused(pg: PgCluster, sample: str) -> None:
    with pg.connect(sample, autocommit=False) as conn:
        conn.execute("SELECT 1")  # an implicit READ COMMITTED transaction: every query another snapshot
        with pytest.raises(ValueError, match="REPEATABLE READ"):
            measure_content(conn, [("shop", "customers")])


# ------------------------------------------------------------------------------ tampered copies
TAMPERING = {
    "one value of one row": (
        "UPDATE shop.orders_2025 SET amount = amount + 0.01"
        " WHERE id = (SELECT min(id) FROM shop.orders_2025)",
        "table",
        "shop.orders_2025",
    ),
    "setval": ("SELECT setval('shop.invoice_no', 5007)", "sequence", "shop.invoice_no"),
    "index dropped": (
        "ALTER TABLE public.documents DROP CONSTRAINT documents_pkey",
        "indexes",
        "public.documents_pkey",
    ),
    "trigger dropped": (
        "DROP TRIGGER customers_touch ON shop.customers",
        "triggers",
        "shop.customers.customers_touch",
    ),
    "table dropped": (
        'DROP TABLE "Ünïcode schéma"."Tâble ☃ ""q"" x"',
        "table",
        '"Ünïcode schéma"."Tâble ☃ ""q"" x"',
    ),
    "large object changed": (
        "SELECT lo_put(body_oid, 0, convert_to('L', 'UTF8')) FROM public.documents",
        "large_objects",
        "(all)",
    ),
}


@pytest.mark.parametrize("change", TAMPERING)
def test_tampered_copy_differs_naming_the_object(
    pg: PgCluster, sample: str, restored_copy: Callable[[str], str], change: str
) -> None:
    statement, kind, name = TAMPERING[change]
    copy = restored_copy("custom")
    with pg.connect(sample) as conn:
        tables = user_tables(conn)
    source = measure(pg, sample, tables)
    pg.execute(statement, copy)

    differences = compare_content(source, measure(pg, copy, tables))

    assert content_verdict(differences) == "DIFFERENT"
    assert (kind, name) in {(d.kind, d.object) for d in differences}, format_differences(differences)
    if change == "one value of one row":  # equal row counts: only the checksum tells
        (difference,) = differences
        assert difference.expected.startswith(
            f"{source.table_map[('shop', 'orders_2025')].rows} rows, checksum "
        )
    if change == "table dropped":
        shown = {(d.kind, d.object): (d.expected, d.found) for d in differences}
        assert shown[(kind, name)] == ("3 rows", "missing")
        assert ("tables", name) in shown
    if change == "trigger dropped":
        assert len(differences) == 1
        assert differences[0].found == "missing"
    text = format_differences(differences)
    assert text.startswith("DIFFERENT")
    assert name in text
    assert "KIND" in text


# ----------------------------------------------------------------------- consistency under writes
@pytest.fixture
def churned_db(pg: PgCluster, fresh_db: Callable[[str], str]) -> str:
    """The sample database plus ``public.churn`` (3000 rows). Its ids are chosen by the writer, not by a
    sequence: sequences are not transactional, so a sequence advancing during the dump would differ."""
    name = fresh_db("content churn")
    sample_db.seed(pg.connect_kwargs(name))
    pg.execute(
        "CREATE TABLE public.churn (id int PRIMARY KEY, payload text, n int NOT NULL);"
        "INSERT INTO public.churn SELECT g, md5(g::text), 0 FROM generate_series(1, 3000) g",
        name,
    )
    return name


@pytest.fixture
def writer(pg: PgCluster, churned_db: str) -> Iterator[dict[str, Any]]:
    """A session that inserts, updates and deletes churn rows in a loop (at most 60 s, 20000 rounds)."""
    state: dict[str, Any] = {"rounds": 0, "error": None}
    stop = threading.Event()

    def run() -> None:
        rng = random.Random(7)
        next_id = 3001
        try:
            with pg.connect(churned_db) as conn:
                deadline = time.monotonic() + 60
                while not stop.is_set() and state["rounds"] < 20000 and time.monotonic() < deadline:
                    with conn.transaction():
                        conn.execute(
                            "UPDATE public.churn SET n = n + 1, payload = md5(random()::text) WHERE id = %s",
                            (rng.randint(1, next_id),),
                        )
                        conn.execute("INSERT INTO public.churn VALUES (%s, 'new', 0)", (next_id,))
                        conn.execute("DELETE FROM public.churn WHERE id = %s", (rng.randint(1, next_id),))
                    next_id += 1
                    state["rounds"] += 1
        except Exception as err:
            state["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(timeout=30)
    assert state["error"] is None, state["error"]


def _wait_rounds(state: dict[str, Any], count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while state["rounds"] < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state["rounds"] >= count, f"writer made only {state['rounds']} rounds"


def test_measure_in_the_dump_snapshot_matches_restore_despite_concurrent_writes(
    pg: PgCluster, churned_db: str, writer: dict[str, Any], fresh_db: Callable[[str], str], tmp_path: Path
) -> None:
    artifact = tmp_path / "churn.dump"
    pg_dump = choose_binary("pg_dump", pg.major, pg.version)
    _wait_rounds(writer, 20)
    with pg.connect(churned_db) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        tables = user_tables(conn)
        dump = subprocess.Popen(
            [str(pg_dump.path), "--format=custom", f"--snapshot={snapshot}", f"--file={artifact}"],
            env=pg.libpq_env(churned_db),
            stderr=subprocess.PIPE,
        )
        rounds_at_snapshot = writer["rounds"]
        expected = measure_content(conn, tables)
        _, stderr = dump.communicate(timeout=120)
        assert dump.returncode == 0, stderr.decode(errors="replace")
        conn.execute("ROLLBACK")
    _wait_rounds(writer, rounds_at_snapshot + 50)  # the writer kept going while dump and measure ran

    # The source has moved on ...
    moved = compare_content(expected, measure(pg, churned_db, tables))
    assert {(d.kind, d.object) for d in moved} == {("table", "public.churn")}, format_differences(moved)
    # ... the restored copy is exactly the snapshot that was measured.
    target = fresh_db("content churn copy")
    pg_restore = choose_binary("pg_restore", pg.major, pg.version)
    subprocess.run(
        [str(pg_restore.path), "--exit-on-error", "--no-owner", f"--dbname={target}", str(artifact)],
        env=pg.libpq_env(target),
        check=True,
        capture_output=True,
    )
    _assert_identical(expected, measure(pg, target, tables))


# --------------------------------------------------------------------------------------- the cost
def test_cost_of_measuring_the_sample_database(pg: PgCluster, sample: str) -> None:
    with pg.connect(sample) as conn:
        tables = user_tables(conn)
        timings = {}
        for checksums in (True, False):
            started = time.perf_counter()
            for _ in range(3):
                record = measure_content(conn, tables, checksums=checksums)
            timings[checksums] = (time.perf_counter() - started) / 3
    rows = sum(t.rows or 0 for t in record.tables)
    size = len(json.dumps(record.to_dict()))
    print(
        f"\nmeasure_content on the sample db (PostgreSQL {pg.version}, {len(tables)} tables, {rows} rows): "
        f"{timings[True] * 1000:.1f} ms with checksums, {timings[False] * 1000:.1f} ms counts only; "
        f"record {size} bytes of JSON"
    )


# ----------------------------------------------------------------------------- parsing is strict
def _valid_record() -> ContentRecord:
    return ContentRecord(
        tables=(
            TableContent("shop", "orders_2025", 1234, "0" * 31 + "a"),
            TableContent("x", "gone", None, None),
        ),
        sequences=(SequenceValue("shop", "invoice_no", 5000, True),),
        large_objects=LargeObjectsContent(1, "f" * 32),
        inventory=tuple(
            InventoryKind(kind, 1, "a" * 64, (InventoryItem("shop.x", "CREATE ..."),))
            for kind in INVENTORY_KINDS
        ),
        server_version_num=180001,
        encoding="UTF8",
        duration_seconds=0.25,
    )


def test_valid_record_round_trips_through_json() -> None:
    record = _valid_record()
    assert ContentRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert compare_content(record, record) == []
    assert format_differences([]).startswith("IDENTICAL")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON)
@settings(max_examples=300, deadline=None)
def test_from_dict_on_arbitrary_json_raises_only_content_record_error(data: object) -> None:
    with pytest.raises(ContentRecordError):
        ContentRecord.from_dict(data)


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


_VALID = _valid_record().to_dict()
_VALID_PATHS = [p for p in _paths(_VALID) if p]


@given(st.sampled_from(_VALID_PATHS), JSON, st.booleans())
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_from_dict_on_a_damaged_record_raises_only_content_record_error(
    path: tuple[Any, ...], garbage: object, delete: bool
) -> None:
    data = json.loads(json.dumps(_VALID))
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = garbage
    try:
        record = ContentRecord.from_dict(data)
    except ContentRecordError as err:
        message = str(err)
        assert message.startswith("content record field"), message
        return
    # Whatever was accepted is a well-formed record that serialises back to what was given.
    assert record.to_dict() == json.loads(json.dumps(record.to_dict()))


def test_error_names_the_field_and_its_type() -> None:
    data = _valid_record().to_dict()
    data["tables"][0]["rows"] = "12"
    with pytest.raises(
        ContentRecordError, match=r"tables\[0\]\.rows must be a non-negative integer or null, got str"
    ):
        ContentRecord.from_dict(data)
    data = _valid_record().to_dict()
    data["inventory"]["indexes"]["items"][0] = ["shop.x"]
    with pytest.raises(
        ContentRecordError, match=r"inventory\.indexes\.items\[0\] must be an object, got list"
    ):
        ContentRecord.from_dict(data)
    with pytest.raises(ContentRecordError, match="schema_version is 3"):
        ContentRecord.from_dict({**_valid_record().to_dict(), "schema_version": 3})


def _kind(names: list[str]) -> InventoryKind:
    return _inventory_kind("indexes", [(name, f"CREATE INDEX {name}") for name in names])


def test_inventory_differences_name_objects_even_when_the_lists_are_capped() -> None:
    names = [f"shop.idx_{i:04d}" for i in range(INVENTORY_ITEMS_CAP + 50)]
    full = _kind(names)
    assert full.count == INVENTORY_ITEMS_CAP + 50
    assert len(full.items) == INVENTORY_ITEMS_CAP

    early = compare_content(_with_inventory(full), _with_inventory(_kind(names[:10] + names[11:])))
    assert [(d.kind, d.object, d.found) for d in early] == [("indexes", "shop.idx_0010", "missing")]
    # Beyond the listed items the digest still tells, without a name.
    late = compare_content(_with_inventory(full), _with_inventory(_kind(names[:-1])))
    assert [(d.kind, d.object) for d in late] == [("indexes", "(all)")]
    assert late[0].expected.startswith(f"{INVENTORY_ITEMS_CAP + 50} objects, sha256 ")


def _with_inventory(kind: InventoryKind) -> ContentRecord:
    return dataclasses.replace(_valid_record(), inventory=(kind,))


def test_format_differences_is_a_readable_table() -> None:
    text = format_differences(
        [
            ContentDifference(
                "table", "shop.orders_2025", "1400 rows, checksum 0123456789ab", "checksum ba9876543210"
            ),
            ContentDifference("indexes", "public.documents_pkey", "CREATE UNIQUE INDEX ...", "missing"),
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "DIFFERENT: 2 differences"
    assert lines[1].split() == ["KIND", "OBJECT", "EXPECTED", "FOUND"]
    assert lines[3].startswith("table    shop.orders_2025")
    assert lines[4].endswith("missing")
