"""Reading what an archive holds: ``pg_restore --list`` and its table of contents, and plain SQL's trailer."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_pgbackup.binaries import PgBinary
from airflow_provider_pgbackup.options import FORMAT_FLAGS, parse_format
from airflow_provider_pgbackup.pipeline import StreamCorrupt
from airflow_provider_pgbackup.process import PgProcessRunner, tool_env
from airflow_provider_pgbackup.sqlscript import ScriptScanner

log = logging.getLogger(__name__)

#: The last line pg_dump / pg_dumpall write to a complete plain SQL dump.
SQL_TRAILERS: dict[str, bytes] = {
    "pg_dump": b"-- PostgreSQL database dump complete",
    "pg_dumpall": b"-- PostgreSQL database cluster dump complete",
}
# Bytes of decompressed SQL kept to look for the trailer: never the whole stream.
SQL_TAIL_BYTES = 4096
# pg_restore --list entry types made of several words, longest first (the rest are one word).
MULTI_WORD_TOC_TYPES = tuple(
    sorted(
        (
            "TABLE DATA",
            "TABLE ATTACH",
            "INDEX ATTACH",
            "SEQUENCE SET",
            "SEQUENCE OWNED BY",
            "FK CONSTRAINT",
            "CHECK CONSTRAINT",
            "MATERIALIZED VIEW",
            "MATERIALIZED VIEW DATA",
            "DEFAULT ACL",
            "BLOB METADATA",
            "LARGE OBJECT",
            "LARGE OBJECTS",
            "ROW SECURITY",
            "EVENT TRIGGER",
            "FOREIGN TABLE",
            "FOREIGN DATA WRAPPER",
            "FOREIGN SERVER",
            "USER MAPPING",
            "OPERATOR CLASS",
            "OPERATOR FAMILY",
            "ACCESS METHOD",
            "PUBLICATION TABLE",
            "PUBLICATION TABLES IN SCHEMA",
            "SHELL TYPE",
            "PROCEDURAL LANGUAGE",
            "TEXT SEARCH CONFIGURATION",
            "TEXT SEARCH DICTIONARY",
            "TEXT SEARCH PARSER",
            "TEXT SEARCH TEMPLATE",
            "DATABASE PROPERTIES",
            "STATISTICS DATA",
            "EXTENDED STATISTICS",
        ),
        key=len,
        reverse=True,
    )
)


def check_sql_stream(chunks: Iterable[bytes], kind: str, scanner: ScriptScanner | None = None) -> int:
    """Read decompressed plain SQL to its end; raise :class:`StreamCorrupt` unless it ends with the
    completion trailer of ``kind`` (``pg_dump`` or ``pg_dumpall``). Returns the number of SQL bytes.

    Only a small tail is kept. After the trailer, pg_dump may write blank lines, ``--`` lines and the
    ``\\unrestrict`` meta-command (PostgreSQL 17.6 / 16.10 / 15.14 and later); nothing else may follow.

    :param scanner: also fed every chunk, so the restore guard's scan costs no second read.
    """
    trailer = SQL_TRAILERS[kind]
    tail = b""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        tail = (tail + chunk)[-SQL_TAIL_BYTES:]
        if scanner is not None:
            scanner.feed(chunk)
    if total == 0:
        raise StreamCorrupt("the SQL stream is empty")
    lines = tail.split(b"\n")
    while lines and (
        not lines[-1].strip() or lines[-1].strip() == b"--" or lines[-1].startswith(b"\\unrestrict ")
    ):
        lines.pop()
    last = lines[-1].strip() if lines else b""
    if last != trailer:
        shown = last[-80:].decode("utf-8", errors="backslashreplace")
        raise StreamCorrupt(
            f"the SQL does not end with {kind}'s completion trailer {trailer.decode()!r} "
            f"(its last line is {shown!r}): the dump is cut short"
        )
    return total


@dataclass(frozen=True)
class TocSummary:
    """What ``pg_restore --list`` showed: entry counts by type and the ``TABLE DATA`` entries."""

    entries: int
    counts: dict[str, int]
    table_data: tuple[str, ...]  # "schema name owner" as pg_restore prints it


def parse_toc(lines: Iterable[str]) -> TocSummary:
    """Parse ``pg_restore --list`` output (``id; catalog oid TYPE schema name owner``; ``;`` comments)."""
    counts: Counter[str] = Counter()
    table_data = []
    for line in lines:
        if not line.strip() or line.startswith(";"):
            continue
        _id, sep, rest = line.partition("; ")
        parts = rest.split(" ", 2)
        if not sep or len(parts) < 3:
            continue
        entry = parts[2]
        kind = next((t for t in MULTI_WORD_TOC_TYPES if entry.startswith(t + " ")), entry.split(" ", 1)[0])
        counts[kind] += 1
        if kind == "TABLE DATA":
            table_data.append(entry[len(kind) + 1 :])
    return TocSummary(sum(counts.values()), dict(sorted(counts.items())), tuple(table_data))


def list_archive(
    binary: PgBinary,
    dump_format: str,
    *,
    chunks: Iterable[bytes] | None = None,
    directory: Path | None = None,
    runner: PgProcessRunner | None = None,
) -> TocSummary:
    """Run ``pg_restore --list`` on an archive streamed to its stdin (custom, tar) or on a local folder
    (directory). Raises :class:`PgCommandError` when pg_restore cannot read it.

    :param binary: the pg_restore to run (see :func:`pg_restore_for`).
    :param dump_format: ``custom``, ``tar`` or ``directory``.
    :param chunks: the archive's bytes (custom, tar).
    :param directory: the archive's folder (directory).
    :param runner: the process runner (default: a new one logging to this module's logger).
    """
    fmt = parse_format(dump_format)
    argv = [str(binary.path), "--list", f"--format={FORMAT_FLAGS[fmt]}"]
    if fmt == "directory":
        if directory is None:
            raise ValueError("a directory-format archive is listed from a local folder")
        argv.append(str(directory))
    elif chunks is None:
        raise ValueError(f"a {fmt} archive is listed from a stream of chunks")
    lines: list[str] = []
    pending = b""

    def collect(chunk: bytes) -> None:
        nonlocal pending
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines.extend(raw.decode("utf-8", errors="backslashreplace") for raw in complete)

    (runner or PgProcessRunner(log)).run(
        argv, tool_env(), stdout=collect, stdin=chunks if fmt != "directory" else None
    )
    if pending:
        lines.append(pending.decode("utf-8", errors="backslashreplace"))
    return parse_toc(lines)
