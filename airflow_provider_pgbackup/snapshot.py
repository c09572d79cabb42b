"""What a dump records about the database in the dump's own snapshot: row counts, and with
``record_checksums`` the content record (checksums, sequences, large objects, schema inventory).

:class:`DumpSnapshot` is the session whose snapshot pg_dump dumps (``pg_dump --snapshot``): it runs with
the settings pg_dump gives its own session (:func:`~airflow_provider_pgbackup.catalog.prepare_session`),
and measures in a thread while pg_dump runs. A measurement that fails is raised as
:class:`SnapshotMeasurementError`, before pg_dump's consequential error (a failed measurement aborts the
exported snapshot).

Where pg_dump's output can be read (:func:`stream_unreadable` is None), the rows of every table are
counted and checksummed from the COPY data pg_dump writes (:mod:`~airflow_provider_pgbackup.content.stream`,
fed by the hook): the server reads nothing twice, and this session measures only the sequences, the
large objects and the schema inventory. Otherwise (lz4/zstd archives, ``--inserts``) the server counts
and checksums every table in this snapshot, which first takes the ``ACCESS SHARE`` locks pg_dump takes on
them, *before* pg_dump starts, so a ``TRUNCATE`` cannot empty a table between pg_dump's end and its
measurement.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql

from airflow_provider_pgbackup.catalog import dumped_tables, exact_count, prepare_session
from airflow_provider_pgbackup.compat import AirflowException
from airflow_provider_pgbackup.content import (
    STREAM_METHOD,
    ContentRecord,
    SequenceValue,
    StreamResult,
    TableContent,
    display_name,
    measure_content,
)
from airflow_provider_pgbackup.libpq import LibpqSession
from airflow_provider_pgbackup.manifest import TableRowCount
from airflow_provider_pgbackup.options import PgDumpOptions
from airflow_provider_pgbackup.process import PgCommandError, PgLockTimeout
from airflow_provider_pgbackup.selection import TableSelection

Facts = tuple[tuple[TableRowCount, ...] | None, ContentRecord | None]
#: Tables per ``LOCK TABLE`` statement (pg_dump batches its locks too).
LOCK_BATCH = 1000
#: What pg_dump says when the snapshot it was given is gone (the exporting transaction failed).
SNAPSHOT_GONE = "could not import the requested snapshot"
#: How long to wait for the measurement's own error once pg_dump said the snapshot is gone.
MEASUREMENT_ERROR_WAIT_SECONDS = 10.0


class SnapshotMeasurementError(AirflowException):
    """Measuring the dump's snapshot failed; ``sqlstate`` is the server's error code (None: not SQL).

    ``failures.py`` decides from it whether a retry can help.
    """

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _sqlstate(err: BaseException) -> str | None:
    return getattr(err, "sqlstate", None) if isinstance(err, psycopg.Error) else None


def _checksummed(options: PgDumpOptions) -> str:
    return " and checksummed the rows of" if options.record_checksums else " the rows of"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def sequences_before_dump(
    conn: psycopg.Connection[Any], options: PgDumpOptions
) -> tuple[SequenceValue, ...] | None:
    """The sequences a whole-database content record holds, read before pg_dump starts.

    Sequences are not transactional: the snapshot does not freeze them. Read before pg_dump reads
    them, the recorded value is never ahead of the dumped one, so a sequence that advanced while
    pg_dump ran restores *ahead* of the record, which the drill accepts. Read after the table
    checksums (seconds later on a busy server), it was ahead and the drill saw a false difference.
    """
    if not (options.record_checksums and options.dumps_whole_database):
        return None
    early = measure_content(conn, [], checksums=False, large_objects=False, inventory=False)
    return early.sequences


def snapshot_facts(
    log: Any,
    conn: psycopg.Connection[Any],
    options: PgDumpOptions,
    tables: Sequence[tuple[str, str]],
    sequences: tuple[SequenceValue, ...] | None = None,
) -> Facts:
    """Row counts (and, with ``record_checksums``, the content record) of ``tables`` (what pg_dump
    dumps, locked by the caller), taken in the transaction whose snapshot pg_dump dumps.

    The schema inventory and sequences only for a whole-database dump (no patterns, every section),
    large objects only where pg_dump dumps them."""
    if not options.record_checksums:
        counts = tuple(TableRowCount(s, t, exact_count(conn, s, t)) for s, t in tables)
        log.info("Counted rows of %d tables in the dump's snapshot", len(counts))
        return (counts if options.dumps_data else None), None
    whole = options.dumps_whole_database
    content = measure_content(
        conn,
        tables,
        checksums=True,
        sequences=None if whole and sequences is None else (),
        large_objects=options.dumps_large_objects,
        inventory=whole,
    )
    if not whole:
        content = dataclasses.replace(content, sequences=None)  # not measured: not compared
    elif sequences is not None:  # read before pg_dump started
        content = dataclasses.replace(content, sequences=sequences)
    counts = tuple(TableRowCount(t.schema, t.table, t.rows or 0) for t in content.tables)
    log.info(
        "Measured %d tables%s in the dump's snapshot in %.1f s (row counts and checksums)",
        len(content.tables),
        ", sequences, large objects and the schema inventory" if whole else "",
        content.duration_seconds,
    )
    return (counts if options.dumps_data else None), content


def stream_unreadable(options: PgDumpOptions) -> str | None:
    """Why the rows of this dump cannot be measured from pg_dump's output (None: they can)."""
    if options.compression.method in ("lz4", "zstd"):
        return f"{options.compression.method}-compressed data cannot be read in-stream"
    if any(
        a in ("--inserts", "--column-inserts") or a.startswith("--rows-per-insert=")
        for a in options.extra_args
    ):
        return "the data is dumped as INSERT statements, not COPY rows"
    if options.format == "plain" and "--load-via-partition-root" in options.extra_args:
        return "plain SQL with --load-via-partition-root names the root, not the table, in COPY"
    return None


def server_extras(
    log: Any,
    conn: psycopg.Connection[Any],
    options: PgDumpOptions,
    sequences: tuple[SequenceValue, ...] | None,
) -> ContentRecord:
    """What the server measures beside a dump whose rows are measured from its stream: sequences, large
    objects and the schema inventory (a whole-database dump), large objects (where pg_dump dumps them)."""
    whole = options.dumps_whole_database
    record = measure_content(
        conn,
        [],
        sequences=() if not whole or sequences is not None else None,
        large_objects=options.dumps_large_objects,
        inventory=whole,
    )
    if whole and sequences is not None:
        record = dataclasses.replace(record, sequences=sequences)
    log.info("Measured%s in the dump's snapshot in %.1f s", _extras(whole, options), record.duration_seconds)
    return record if whole else dataclasses.replace(record, sequences=None)


def _extras(whole: bool, options: PgDumpOptions) -> str:
    if whole:
        return " sequences, large objects and the schema inventory"
    return " large objects" if options.dumps_large_objects else " nothing else"


def stream_facts(
    options: PgDumpOptions,
    stream: StreamResult,
    extras: ContentRecord | None,
    copy_settings: tuple[tuple[str, str], ...],
) -> Facts:
    """Row counts and content record of a dump whose rows were measured from its COPY data."""
    counts = tuple(TableRowCount(t.schema, t.table, t.rows) for t in stream.tables)
    if not options.record_checksums or extras is None:
        return counts, None
    settings = (("client_encoding", stream.encoding or ""), *copy_settings)
    content = dataclasses.replace(
        extras,
        tables=tuple(TableContent(t.schema, t.table, t.rows, t.checksum) for t in stream.tables),
        checksum_method=STREAM_METHOD,
        copy_settings=settings,
    )
    return counts, content


def lock_tables(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str]], lock_wait_timeout: str | None
) -> None:
    """``LOCK TABLE ... IN ACCESS SHARE MODE`` on ``tables``, as pg_dump locks what it dumps.

    Waits at most ``lock_wait_timeout`` per lock (the session's ``lock_timeout``), then raises
    :class:`~airflow_provider_pgbackup.process.PgLockTimeout` (retryable), naming the tables.
    """
    for start in range(0, len(tables), LOCK_BATCH):
        batch = tables[start : start + LOCK_BATCH]
        names = sql.SQL(", ").join(sql.Identifier(schema, table) for schema, table in batch)
        try:
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(names))
        except psycopg.errors.LockNotAvailable as err:
            shown = ", ".join(display_name(schema, table) for schema, table in batch[:10])
            more = f" and {len(batch) - 10} more" if len(batch) > 10 else ""
            raise PgLockTimeout.for_session(
                "the snapshot session", lock_wait_timeout, f"LOCK TABLE {shown}{more} IN ACCESS SHARE MODE"
            ) from err


class DumpSnapshot:
    """The transaction whose snapshot pg_dump dumps, and what is measured in it while pg_dump runs.

    Use :meth:`open`; then :meth:`start_measurement` before pg_dump starts, :meth:`facts` once it
    succeeded, :meth:`failure` when it failed, :meth:`cancel` from ``on_kill``.
    """

    def __init__(self, conn: psycopg.Connection[Any], snapshot_id: str, options: PgDumpOptions, log: Any):
        self.conn = conn
        self.snapshot_id = snapshot_id
        self.options = options
        self.log = log
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-facts")
        self._future: Future[Any] | None = None
        #: The rows are measured from pg_dump's output (the hook feeds a CopyDigest), not by the server.
        self.from_stream = (
            options.dumps_data and options.record_row_counts and stream_unreadable(options) is None
        )
        row = conn.execute(
            "SELECT pg_catalog.current_setting('TimeZone'), pg_catalog.current_setting('bytea_output'),"
            " pg_catalog.current_setting('lc_monetary')"
        ).fetchone()
        assert row is not None
        quoted = "on" if "--quote-all-identifiers" in options.extra_args else "off"
        self.copy_settings = (
            ("TimeZone", str(row[0])),
            ("bytea_output", str(row[1])),
            ("lc_monetary", str(row[2])),
            ("quote_all_identifiers", quoted),
        )

    @classmethod
    @contextlib.contextmanager
    def open(cls, session: LibpqSession, options: PgDumpOptions, log: Any) -> Iterator[DumpSnapshot]:
        """``REPEATABLE READ, READ ONLY`` with pg_dump's session settings, its snapshot exported; the
        transaction is rolled back (and the measurement stopped) when the block ends."""
        with session.connect() as conn:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            prepare_session(conn, lock_timeout=options.lock_wait_timeout, row_security=options.row_security)
            row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
            assert row is not None
            snapshot = cls(conn, str(row[0]), options, log)
            try:
                yield snapshot
            finally:
                snapshot._stop()
            conn.rollback()

    @property
    def measuring(self) -> bool:
        return self.options.record_row_counts or self.options.record_checksums

    def start_measurement(self) -> None:
        """Before pg_dump starts: read the sequences, and for the server's own measurement of the rows
        lock the tables pg_dump dumps; then measure in a thread. A failure here raises
        :class:`SnapshotMeasurementError` (or ``PgLockTimeout``) and pg_dump is not started."""
        if not self.measuring:
            return
        options = self.options
        reason = stream_unreadable(options)
        if options.dumps_data and options.record_row_counts:
            how = "from pg_dump's COPY data" if self.from_stream else f"by the server ({reason})"
            self.log.info("Measuring the rows of the dump %s", how)
        try:
            tables = [] if self.from_stream else self._lock_measured_tables()
            # Sequences ignore snapshots: read them before pg_dump does, never after.
            sequences = sequences_before_dump(self.conn, options)
        except PgLockTimeout:
            raise
        except psycopg.Error as err:
            raise self._measurement_error(err) from err
        if not self.from_stream:
            self._future = self._pool.submit(snapshot_facts, self.log, self.conn, options, tables, sequences)
        elif options.record_checksums:
            self._future = self._pool.submit(server_extras, self.log, self.conn, options, sequences)

    def _lock_measured_tables(self) -> list[tuple[str, str]]:
        options = self.options
        if not options.dumps_data:
            return []
        tables = dumped_tables(self.conn, TableSelection.from_options(options))
        if tables:
            self.log.info(
                "Locking the %d tables to measure in ACCESS SHARE mode, as pg_dump does%s",
                len(tables),
                f" (lock_wait_timeout={options.lock_wait_timeout})" if options.lock_wait_timeout else "",
            )
            lock_tables(self.conn, tables, options.lock_wait_timeout)
        return tables

    def facts(self, stream: StreamResult | None = None) -> Facts:
        """Row counts and content record (``(None, None)`` when nothing is recorded); ``stream``: what
        the hook read from pg_dump's output when :attr:`from_stream`."""
        try:
            measured = self._future.result() if self._future is not None else None
            if not self.from_stream:
                return measured if measured is not None else (None, None)
            if stream is None or stream.unsupported:
                # pg_dump's output could not be read (unexpected): the server measures, post hoc
                self.log.warning(
                    "Could not read the rows from pg_dump's output (%s); measuring them with the server",
                    stream.unsupported if stream is not None else "nothing was read",
                )
                tables = self._lock_measured_tables()
                return snapshot_facts(self.log, self.conn, self.options, tables, None)
            self.log.info(
                "Counted%s %d tables from pg_dump's COPY data", _checksummed(self.options), len(stream.tables)
            )
            return stream_facts(self.options, stream, measured, self.copy_settings)
        except psycopg.Error as err:
            raise self._measurement_error(err) from err

    def failure(self, err: BaseException) -> BaseException:
        """What to raise for pg_dump's failure ``err``: the measurement's own error when it failed first
        (it aborted the snapshot pg_dump imports), else ``err`` (a lock timeout as ``PgLockTimeout``);
        a measurement still running is cancelled."""
        future = self._future
        if not isinstance(err, PgCommandError) or err.killed:
            self.cancel()  # the dump was killed, or its output failed: that is the cause to report
            return err
        if future is not None:
            if not future.done() and SNAPSHOT_GONE in str(err):
                with contextlib.suppress(Exception):
                    future.exception(timeout=MEASUREMENT_ERROR_WAIT_SECONDS)
            if future.done() and not future.cancelled() and future.exception() is not None:
                cause = future.exception()
                assert cause is not None
                measured = self._measurement_error(cause)
                measured.args = (f"{measured.args[0]}\n(pg_dump then failed: {_first_line(err)})",)
                measured.__cause__ = cause
                return measured
            self.cancel()
        return PgLockTimeout.from_error(err, self.options.lock_wait_timeout) or err

    def cancel(self) -> None:
        """Stop a measurement that is running, or a table lock being waited for (the dump failed or
        is being killed)."""
        if self._future is None or not self._future.done():
            self.conn.cancel_safe()

    def _stop(self) -> None:
        if self._future is not None:
            self.cancel()
        self._pool.shutdown(wait=True)

    def _measurement_error(self, err: BaseException) -> SnapshotMeasurementError:
        hint = ""
        if _sqlstate(err) == "42501" and "row-level security" in str(err) and not self.options.row_security:
            hint = (
                "; the role is subject to a row-level security policy: pass extra_args="
                "['--enable-row-security'] to dump (and count) only the rows it may see, or dump as a "
                "role that bypasses row-level security"
            )
        return SnapshotMeasurementError(
            f"measuring the dump's snapshot (row counts, checksums) failed: {str(err).strip()}{hint}",
            _sqlstate(err),
        )
