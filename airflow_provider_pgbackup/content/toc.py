"""pg_dump's archive header and table of contents (custom, tar and directory formats), read as its
sources write them (pg_backup_archiver.c ``WriteHead``/``WriteToc``; the extra TOC data of
pg_backup_custom.c and pg_backup_tar.c). Versions 1.12 to 1.16: pg_dump 11 to 18.

:class:`ArchiveToc` reads from a buffer that grows (pg_dump's output as it arrives): :meth:`ArchiveToc.parse`
takes what is complete, entry by entry, and says where to go on when more bytes come. It keeps only
what the readers of the COPY data need: the data entries' names, whether they hold COPY rows, their file.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

MAGIC = b"PGDMP"
FORMATS = {1: "custom", 3: "tar", 5: "directory"}
GZIP, LZ4, ZSTD = 1, 2, 3  # pg_compress_algorithm
ENCODING = re.compile(rb"SET client_encoding = '([^']+)';")
_FIRST, _LAST = (1, 12, 0), (1, 16, 255)


class ArchiveFormatError(ValueError):
    """pg_dump's output is not what its format says it is (the caller falls back to the server)."""


class UnreadableData(Exception):
    """The dump's data cannot be read in-stream (reason in the message)."""


class ShortRead(Exception):
    """The buffer ends before the item being read: call again with more bytes."""


def decode(raw: bytes | None, encoding: str | None) -> str:
    if raw is None:
        return ""
    try:
        return raw.decode(_python_codec(encoding), errors="surrogateescape")
    except LookupError:
        return raw.decode("utf-8", errors="surrogateescape")


def _python_codec(encoding: str | None) -> str:
    from psycopg._encodings import pg2pyenc

    try:
        return pg2pyenc((encoding or "UTF8").encode())
    except Exception:
        return "utf-8"


def unquote(ident: bytes) -> bytes:
    return ident[1:-1].replace(b'""', b'"') if ident.startswith(b'"') else ident


@dataclass(frozen=True)
class TocEntry:
    """A TABLE DATA entry: the table, whether its data is COPY rows (else INSERTs), its file."""

    dump_id: int
    namespace: str
    tag: str
    copy: bool
    filename: str | None


class _Cursor:
    """Reads pg_dump's ints (sign byte, then ``size`` bytes little-endian) and strings at ``pos``."""

    def __init__(self, buf: bytes | bytearray, pos: int, int_size: int) -> None:
        self.buf, self.pos, self.int_size, self.end = buf, pos, int_size, len(buf)

    def take(self, count: int) -> bytes:
        if self.pos + count > self.end:
            raise ShortRead
        data = bytes(self.buf[self.pos : self.pos + count])
        self.pos += count
        return data

    def int_(self) -> int:
        size = self.int_size
        if self.pos + 1 + size > self.end:
            raise ShortRead
        value = int.from_bytes(self.buf[self.pos + 1 : self.pos + 1 + size], "little")
        negative = self.buf[self.pos]
        self.pos += 1 + size
        return -value if negative else value

    def str_(self) -> bytes | None:
        length = self.int_()
        return None if length < 0 else self.take(length)

    def skip_str(self) -> None:
        length = self.int_()
        if length > 0:
            if self.pos + length > self.end:
                raise ShortRead
            self.pos += length


class ArchiveToc:
    """The archive header and table of contents, read as they arrive (:meth:`parse`)."""

    def __init__(self) -> None:
        self.version = (0, 0, 0)
        self.int_size = 4
        self.off_size = 8
        self.format = ""
        self.compression = 0  # pg_compress_algorithm
        self.entries: dict[int, TocEntry] = {}
        self.encoding: str | None = None
        self._left: int | None = None  # entries still to read (None: the header is not read yet)

    @property
    def complete(self) -> bool:
        return self._left == 0

    def parse(self, buf: bytes | bytearray, pos: int) -> int:
        """Read what is complete of the header and the entries from ``buf[pos:]``; returns the position
        after them. When the TOC goes on past the buffer, raises :class:`ShortRead` whose first argument
        is the position after the last complete item: call again from there with more bytes."""
        cursor = _Cursor(buf, pos, self.int_size)
        try:
            if self._left is None:
                self._header(cursor)
                pos = cursor.pos
            while self._left:
                self._entry(cursor)
                self._left -= 1
                pos = cursor.pos
        except ShortRead:
            raise ShortRead(pos) from None
        return pos

    def _header(self, cursor: _Cursor) -> None:
        head = cursor.take(11)
        if head[:5] != MAGIC:
            raise ArchiveFormatError("not a pg_dump archive (no PGDMP header)")
        version = (head[5], head[6], head[7])
        if not _FIRST <= version <= _LAST:
            raise ArchiveFormatError(f"archive version {'.'.join(map(str, version))} is not read here")
        cursor.int_size = head[8]
        # 1.15+: the compression algorithm; before: a compression level (0: none, else gzip)
        compression = cursor.take(1)[0] if version >= (1, 15, 0) else (GZIP if cursor.int_() != 0 else 0)
        for _ in range(7):  # creation time
            cursor.int_()
        for _ in range(3):  # database, server version, pg_dump version
            cursor.skip_str()
        count = cursor.int_()
        self.version, self.int_size, self.off_size = version, head[8], head[9]
        self.format, self.compression = FORMATS.get(head[10], str(head[10])), compression
        self._left = count

    def _entry(self, cursor: _Cursor) -> None:
        dump_id = cursor.int_()
        cursor.int_()  # had a data dumper
        cursor.skip_str()  # table oid
        cursor.skip_str()  # oid
        tag = cursor.str_()
        desc = cursor.str_()
        cursor.int_()  # section
        defn = None
        if desc == b"ENCODING":
            defn = cursor.str_()
        else:
            cursor.skip_str()
        cursor.skip_str()  # drop statement
        copy_stmt = cursor.str_()
        namespace = cursor.str_()
        cursor.skip_str()  # tablespace
        if self.version >= (1, 14, 0):
            cursor.skip_str()  # table access method
        if self.version >= (1, 16, 0):
            cursor.int_()  # relkind
        cursor.skip_str()  # owner
        cursor.skip_str()  # "false" (with oids)
        while cursor.str_() is not None:  # dependencies
            pass
        filename = None
        if self.format == "custom":
            cursor.take(1 + self.off_size)  # data offset (not set when streamed)
        else:
            filename = decode(cursor.str_(), "UTF8")
        if defn:
            match = ENCODING.search(defn)
            self.encoding = match.group(1).decode("ascii", "replace") if match else None
        if desc == b"TABLE DATA":
            self.entries[dump_id] = TocEntry(
                dump_id,
                decode(namespace, self.encoding),
                decode(tag, self.encoding),
                bool(copy_stmt),
                filename,
            )

    def read_all(self, data: bytes) -> ArchiveToc:
        """A whole toc.dat (tar and directory formats)."""
        try:
            self.parse(data, 0)
        except ShortRead:
            raise ArchiveFormatError("toc.dat is cut short") from None
        return self

    def table_entry(self, dump_id: int) -> TocEntry | None:
        """The TABLE DATA entry of ``dump_id`` (None: other data); refuses INSERT data."""
        entry = self.entries.get(dump_id)
        if entry is not None and not entry.copy:
            raise UnreadableData("the table data is INSERT statements (--inserts), not COPY rows")
        return entry

    def inflater(self) -> Callable[[bytes], bytes] | None:
        """Per data block: None (stored as written), or a fresh zlib decompressor's ``decompress``."""
        if self.compression == 0:
            return None
        if self.compression == GZIP:
            return zlib.decompressobj().decompress
        name = {LZ4: "lz4", ZSTD: "zstd"}.get(self.compression, str(self.compression))
        raise UnreadableData(f"the archive's data is {name}-compressed")
