"""pg_dump's archive header and table of contents (custom, tar and directory formats), read as its
sources write them (pg_backup_archiver.c ``WriteHead``/``WriteToc``; the extra TOC data of
pg_backup_custom.c and pg_backup_tar.c). Versions 1.12 to 1.16: pg_dump 11 to 18."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass

MAGIC = b"PGDMP"
FORMATS = {1: "custom", 3: "tar", 5: "directory"}
GZIP, LZ4, ZSTD = 1, 2, 3  # pg_compress_algorithm
ENCODING = re.compile(rb"SET client_encoding = '([^']+)';")
#: A parser step that waits for bytes; it returns what was asked for.
Pull = Generator[int, None, bytes]
PullInt = Generator[int, None, int]


class ArchiveFormatError(ValueError):
    """pg_dump's output is not what its format says it is (the caller falls back to the server)."""


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


@dataclass
class TocEntry:
    dump_id: int
    desc: str
    namespace: str
    tag: str
    copy_stmt: bytes | None
    defn: bytes | None
    filename: str | None


class ArchiveToc:
    """The archive header and table of contents, read from a byte source ``take(n)``."""

    def __init__(self, take: Callable[[int], Pull]) -> None:
        self.take = take
        self.version = (0, 0, 0)
        self.int_size = 4
        self.off_size = 8
        self.format = ""
        self.compression = 0  # pg_compress_algorithm
        self.entries: dict[int, TocEntry] = {}
        self.encoding: str | None = None

    def int_(self) -> PullInt:
        raw = yield from self.take(1 + self.int_size)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def str_(self) -> Generator[int, None, bytes | None]:
        length = yield from self.int_()
        if length < 0:
            return None
        return (yield from self.take(length))

    def read(self) -> Generator[int, None, None]:
        head = yield from self.take(11)
        if head[:5] != MAGIC:
            raise ArchiveFormatError("not a pg_dump archive (no PGDMP header)")
        self.version = (head[5], head[6], head[7])
        self.int_size, self.off_size = head[8], head[9]
        self.format = FORMATS.get(head[10], str(head[10]))
        if self.version < (1, 12, 0) or self.version > (1, 16, 255):
            raise ArchiveFormatError(f"archive version {'.'.join(map(str, self.version))} is not read here")
        if self.version >= (1, 15, 0):
            self.compression = (yield from self.take(1))[0]
        else:
            self.compression = GZIP if (yield from self.int_()) != 0 else 0
        for _ in range(7):  # creation time
            yield from self.int_()
        for _ in range(3):  # database, server version, pg_dump version
            yield from self.str_()
        count = yield from self.int_()
        for _ in range(count):
            yield from self._entry()

    def _entry(self) -> Generator[int, None, None]:
        dump_id = yield from self.int_()
        yield from self.int_()  # had a data dumper
        yield from self.str_()  # table oid
        yield from self.str_()  # oid
        tag = yield from self.str_()
        desc = decode((yield from self.str_()), "UTF8")
        yield from self.int_()  # section
        defn = yield from self.str_()
        yield from self.str_()  # drop statement
        copy_stmt = yield from self.str_()
        namespace = yield from self.str_()
        yield from self.str_()  # tablespace
        if self.version >= (1, 14, 0):
            yield from self.str_()  # table access method
        if self.version >= (1, 16, 0):
            yield from self.int_()  # relkind
        yield from self.str_()  # owner
        yield from self.str_()  # "false" (with oids)
        while (yield from self.str_()) is not None:  # dependencies
            pass
        filename = None
        if self.format == "custom":
            yield from self.take(1 + self.off_size)  # data offset (not set when streamed)
        else:
            filename = decode((yield from self.str_()), "UTF8")
        if desc == "ENCODING" and defn:
            match = ENCODING.search(defn)
            self.encoding = match.group(1).decode("ascii", "replace") if match else None
        self.entries[dump_id] = TocEntry(
            dump_id,
            desc,
            decode(namespace, self.encoding),
            decode(tag, self.encoding),
            copy_stmt,
            defn,
            filename,
        )

    def table_entry(self, dump_id: int) -> TocEntry | None:
        """The TABLE DATA entry of ``dump_id``; an entry without a COPY statement holds INSERTs."""
        entry = self.entries.get(dump_id)
        if entry is None or entry.desc != "TABLE DATA":
            return None
        if not entry.copy_stmt:
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


class UnreadableData(Exception):
    """The dump's data cannot be read in-stream (reason in the message)."""
