"""Row counts and checksums taken from the COPY data pg_dump writes: no second read of the database.

:class:`CopyDigest` is fed pg_dump's output as it streams through the provider (a custom archive, a tar
archive or plain SQL) and keeps, per table whose data the dump holds, the number of rows and a digest
of their COPY text; :func:`~.directory.digest_directory` reads a directory archive's files the same way.
The drill runs pg_dump ``--data-only`` on the restored database and feeds the same class, so both sides
are serialised by pg_dump itself (its ``DateStyle``, ``IntervalStyle``, ``extra_float_digits``, column
lists without generated columns), with the copy settings recorded at the dump (time zone, encoding...).

Method ``pgdump-copy-sha256`` (:data:`STREAM_METHOD`): the checksum of a table is the first 128 bits of
sha256 over its COPY rows (one line each, ``\\n``-terminated) in the order pg_dump wrote them, without
pg_dump's ``\\.`` end marker. A restore loads every table in that order and a sequential scan from the
first page (``synchronize_seqscans=off``, as pg_dump runs) reads it back in that order, so an identical
table gives an identical digest. Any changed, missing, extra or duplicated row changes it; the chance
that a different table has the same checksum is 2**-128 (no collision of sha256 is known).

What pg_dump writes is parsed as it is documented in its sources (pg_backup_archiver.c,
pg_backup_custom.c, pg_backup_tar.c): custom archives 1.12 to 1.16 (pg_dump 11 to 18), data blocks
uncompressed or gzip (zlib), inflated in-stream; lz4 and zstd blocks, and data dumped as ``INSERT``
statements, cannot be read here: :attr:`StreamResult.unsupported` says why, and the caller measures with
the server instead.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_pgbackup.content.toc import (
    ENCODING,
    ArchiveFormatError,
    ArchiveToc,
    ShortRead,
    TocEntry,
    UnreadableData,
    decode,
    unquote,
)

#: A parser step that waits for bytes; it returns what was asked for.
Pull = Generator[int, None, bytes]

#: What ends every table's COPY data in every format (dumpTableData_copy).
COPY_END = b"\\.\n\n\n"
_BLK_DATA, _BLK_BLOBS = 1, 3
_IDENT = rb'(?:"(?:[^"]|"")*"|[^".\s(]+)'
# "COPY s.t (a, b) FROM stdin;" ("COPY s.t  FROM stdin;" for a table without columns)
_PLAIN_COPY = re.compile(rb"\nCOPY (" + _IDENT + rb")\.(" + _IDENT + rb") +(?:\([^\n]*\) )?FROM stdin;\n")
_PLAIN_DATA_HEADER = b"; Type: TABLE DATA; "


@dataclass
class TableDigest:
    """Rows and digest of one table's COPY data, fed in pieces (``\\.`` end marker excluded).

    ``checksums=False`` counts rows only."""

    schema: str
    table: str
    checksums: bool = True
    rows: int = 0
    _sha: Any = field(default_factory=hashlib.sha256, repr=False)
    _tail: bytes = b""

    def update(self, data: bytes) -> None:
        """Add COPY text; the last 5 bytes are held back until the next piece (the end marker)."""
        keep = len(COPY_END)
        if len(data) < keep:
            data, self._tail = self._tail + data, b""
            if len(data) < keep:
                self._tail = data
                return
        if self._tail:
            self._take(self._tail, len(self._tail))
        self._take(data, len(data) - keep)
        self._tail = data[-keep:]

    def _take(self, data: bytes, end: int) -> None:
        if self.checksums:
            self._sha.update(memoryview(data)[:end])
        self.rows += data.count(b"\n", 0, end)

    def finish(self) -> None:
        if self._tail != COPY_END:  # no end marker: every byte is a row
            if self.checksums:
                self._sha.update(self._tail)
            self.rows += self._tail.count(b"\n")
        self._tail = b""

    @property
    def checksum(self) -> str | None:
        return self._sha.hexdigest()[:32] if self.checksums else None


@dataclass(frozen=True)
class StreamResult:
    """What the COPY data of one dump holds: ``tables`` in dump order, the client ``encoding`` of the
    data, and why it could not be read (``unsupported``: the caller measures with the server)."""

    tables: tuple[TableDigest, ...]
    encoding: str | None
    unsupported: str | None = None


# ------------------------------------------------------------------------------------ the stream reader
class CopyDigest:
    """Feed pg_dump's output (``feed``), then ``close()`` for the :class:`StreamResult`.

    :param dump_format: ``custom``, ``tar`` or ``plain`` (the directory format: :func:`digest_directory`).
    :param gzip: the output is one gzip stream (plain SQL with gzip compression).
    :param checksums: checksum the rows (else count them only).
    """

    def __init__(self, dump_format: str, *, gzip: bool = False, checksums: bool = True) -> None:
        self.format = dump_format
        self.checksums = checksums
        self._gunzip = zlib.decompressobj(wbits=31).decompress if gzip else None
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._tables: list[TableDigest] = []
        self._unsupported: str | None = None
        self._toc = ArchiveToc()
        self._by_file: dict[str, TocEntry] = {}
        self._encoding: str | None = None
        parse = {"custom": self._custom, "tar": self._tar, "plain": self._plain}.get(dump_format)
        if parse is None:
            raise ValueError(f"CopyDigest reads custom, tar or plain output, not {dump_format!r}")
        self._parser: Generator[int, None, None] | None = parse()
        self._advance()

    # -- the byte source of the parser: it yields the number of bytes it waits for
    def _take(self, count: int) -> Pull:
        while len(self._buf) - self._pos < count:
            if self._eof:
                raise ArchiveFormatError("pg_dump's output ends in the middle of an item")
            yield count
        data = bytes(self._buf[self._pos : self._pos + count])
        self._pos += count
        return data

    def _some(self, limit: int) -> Pull:
        """Up to ``limit`` bytes, at least one (or b"" at the end of the stream)."""
        while len(self._buf) == self._pos and not self._eof:
            yield 1
        data = bytes(self._buf[self._pos : self._pos + limit])
        self._pos += len(data)
        return data

    def _advance(self) -> None:
        if self._parser is None:
            return
        try:
            next(self._parser)
        except StopIteration:
            self._parser = None
        except UnreadableData as err:
            self._unsupported = str(err)
            self._parser = None
        except (ArchiveFormatError, struct.error, zlib.error) as err:
            self._unsupported = f"the output could not be parsed: {err}"
            self._parser = None
        if self._pos > 1 << 20:  # drop what was read
            del self._buf[: self._pos]
            self._pos = 0

    def feed(self, chunk: bytes) -> None:
        if self._parser is None:
            return
        self._buf += self._gunzip(chunk) if self._gunzip is not None else chunk
        self._advance()

    def close(self) -> StreamResult:
        self._eof = True
        while self._parser is not None:
            self._advance()
        for table in self._tables:
            table.finish()
        tables = tuple(sorted(self._tables, key=lambda t: (t.schema, t.table)))
        return StreamResult(tables, self._toc.encoding or self._encoding, self._unsupported)

    # -- custom: header, TOC, then one block per TOC entry with data
    def _custom(self) -> Generator[int, None, None]:
        toc = self._toc
        while not toc.complete:
            try:
                self._pos = toc.parse(self._buf, self._pos)
            except ShortRead as short:
                self._pos = short.args[0]
                if self._eof:
                    raise ArchiveFormatError("pg_dump's output ends inside its table of contents") from None
                yield 1
        while True:
            kind = yield from self._some(1)
            if not kind:
                return
            dump_id = yield from self._int()
            if kind[0] == _BLK_BLOBS:
                while (yield from self._int()) != 0:  # each large object: its oid, then its chunks
                    yield from self._chunks(None, None)
                continue
            if kind[0] != _BLK_DATA:
                raise ArchiveFormatError(f"unknown data block type {kind[0]}")
            entry = toc.table_entry(dump_id)
            table = self._table(entry) if entry is not None else None
            yield from self._chunks(table, toc.inflater() if table is not None else None)

    def _int(self) -> Generator[int, None, int]:
        raw = yield from self._take(1 + self._toc.int_size)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def _chunks(
        self, table: TableDigest | None, inflate: Callable[[bytes], bytes] | None
    ) -> Generator[int, None, None]:
        """One block's chunks (``int length`` + bytes, up to a zero length), into ``table``."""
        header = self._toc.int_size + 1
        if table is not None and inflate is None and self._toc.compression == 0:
            yield from self._framed_rows(table, header)
            return
        while True:
            length = yield from self._int()
            if length == 0:
                return
            yield from self._pass(length, table, inflate, "a data block")

    def _framed_rows(self, table: TableDigest, header: int) -> Generator[int, None, None]:
        """Uncompressed blocks frame every row (``int length`` + the row): walk the frames in place,
        hashing each row's bytes where it lies (no copy), the end marker's frame left out."""
        unpack = struct.Struct(f"<x{header - 1}s" if header != 5 else "<xI").unpack_from
        while True:
            while len(self._buf) - self._pos < header:
                if self._eof:
                    raise ArchiveFormatError("pg_dump's output ends inside a data block")
                yield header
            buf, pos, end, rows = self._buf, self._pos, len(self._buf), 0
            update = table._sha.update if table.checksums else None  # the C method: once per row
            done = False
            with memoryview(buf) as view:
                while pos + header <= end:
                    (length,) = unpack(buf, pos)
                    if not isinstance(length, int):
                        length = int.from_bytes(length, "little")
                    if length == 0:
                        pos, done = pos + header, True
                        break
                    stop = pos + header + length
                    if stop > end:
                        break
                    if length != len(COPY_END) or buf[pos + header : stop] != COPY_END:
                        if update is not None:
                            update(view[pos + header : stop])
                        rows += 1
                    pos = stop
            table.rows += rows
            self._pos = pos
            if done:
                return
            yield header

    def _pass(
        self, count: int, table: TableDigest | None, inflate: Callable[[bytes], bytes] | None, where: str
    ) -> Generator[int, None, None]:
        """The next ``count`` bytes of the stream into ``table`` (inflated first with ``inflate``)."""
        while count:
            data = yield from self._some(count)
            if not data:
                raise ArchiveFormatError(f"pg_dump's output ends inside {where}")
            count -= len(data)
            if table is not None:
                table.update(inflate(data) if inflate else data)

    def _table(self, entry: TocEntry) -> TableDigest:
        table = TableDigest(entry.namespace, entry.tag, self.checksums)
        self._tables.append(table)
        return table

    # -- tar: 512-byte headers; toc.dat first, then one member per table (COPY text as written)
    def _tar(self) -> Generator[int, None, None]:
        while True:
            head = yield from self._take(512)
            if head == bytes(512):
                return
            name = head[:100].rstrip(b"\0").decode("ascii", "replace")
            size = int(head[124:136].rstrip(b"\0 ") or b"0", 8)
            padded = (size + 511) // 512 * 512
            if name == "toc.dat":
                member = yield from self._take(size)
                yield from self._take(padded - size)
                self._read_tar_toc(member)
                continue
            table = self._tar_member(name)
            yield from self._pass(size, table, None, "a tar member")
            yield from self._take(padded - size)

    def _read_tar_toc(self, member: bytes) -> None:
        self._toc = ArchiveToc().read_all(member)
        self._by_file = {e.filename: e for e in self._toc.entries.values() if e.filename}

    def _tar_member(self, name: str) -> TableDigest | None:
        entry = self._by_file.get(name)
        if entry is None or self._toc.table_entry(entry.dump_id) is None:
            return None
        return self._table(entry)

    # -- plain SQL: "-- Data for Name: ...; Type: TABLE DATA; ...", "--", "", "COPY s.t (cols) FROM stdin;",
    #    the rows, "\.": pg_dump's layout of a data entry (pg_backup_archiver.c, _printTocEntry)
    def _plain(self) -> Generator[int, None, None]:
        while True:
            start = self._buf.find(_PLAIN_DATA_HEADER, self._pos)
            self._note_encoding(start if start >= 0 else len(self._buf))
            line_end = self._buf.find(b"\n", start) if start >= 0 else -1
            statement_end = self._buf.find(b"\n", line_end + 5) if line_end >= 0 else -1
            if statement_end < 0:  # no data entry yet, or not all of its first lines
                if self._eof:
                    return
                if start < 0:
                    self._pos = max(self._pos, len(self._buf) - len(_PLAIN_DATA_HEADER))
                yield 1
                continue
            body = line_end + 1
            if self._buf[body : body + 4] != b"--\n\n":  # not pg_dump's entry header (text in a body)
                self._pos = start + 1
                continue
            match = _PLAIN_COPY.match(self._buf, body + 3, statement_end + 1)
            if match is None:
                if self._buf.startswith(b"INSERT ", body + 4):
                    raise UnreadableData("the table data is INSERT statements (--inserts), not COPY rows")
                self._pos = start + 1
                continue
            table = TableDigest(
                decode(unquote(match.group(1)), self._encoding),
                decode(unquote(match.group(2)), self._encoding),
                self.checksums,
            )
            self._tables.append(table)
            self._pos = match.end()
            yield from self._plain_rows(table)

    def _note_encoding(self, before: int) -> None:
        if self._encoding is None:
            match = ENCODING.search(self._buf, 0, before)
            if match is not None:
                self._encoding = match.group(1).decode("ascii", "replace")

    def _plain_rows(self, table: TableDigest) -> Generator[int, None, None]:
        """The rows up to the end marker: a line ``\\.`` of its own (a row never holds ``\\.``:
        COPY doubles backslashes)."""
        line_start = True  # the last byte taken was a newline (the COPY line's)
        while True:
            end = self._buf.find(b"\\.\n", self._pos)
            while end >= 0 and not (line_start if end == self._pos else self._buf[end - 1] == 0x0A):
                end = self._buf.find(b"\\.\n", end + 1)
            if end >= 0:
                table.update(bytes(self._buf[self._pos : end]) + COPY_END)
                self._pos = end + 3
                return
            keep = len(self._buf) - 2  # a marker may be split across chunks
            if keep > self._pos:
                table.update(bytes(self._buf[self._pos : keep]))
                line_start = self._buf[keep - 1] == 0x0A
                self._pos = keep
            if self._eof:
                raise ArchiveFormatError("the SQL ends inside a COPY block")
            yield 1
