"""Row counts and checksums of a directory-format archive: pg_dump wrote one file per table, read here
after it finished, several at a time (the readers of a streaming dump are in
:mod:`~airflow_provider_pgbackup.content.stream`; both count and hash a table the same way)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from airflow_provider_pgbackup.content.stream import StreamResult, TableDigest
from airflow_provider_pgbackup.content.toc import ArchiveFormatError, ArchiveToc, TocEntry, UnreadableData

__all__ = ["digest_directory"]


def digest_directory(folder: Path, workers: int = 1, *, checksums: bool = True) -> StreamResult:
    """Rows and checksums of a directory-format archive's data files (gzip or uncompressed), read after
    pg_dump wrote them, ``workers`` files at a time (zlib and sha256 run outside the GIL)."""
    toc = ArchiveToc()
    try:
        toc.read_all((folder / "toc.dat").read_bytes())
        entries = [e for e in toc.entries.values() if toc.table_entry(e.dump_id) is not None]
        inflate = toc.compression
        toc.inflater()  # refuses lz4 / zstd
    except UnreadableData as err:
        return StreamResult((), toc.encoding, str(err))
    except ArchiveFormatError as err:
        return StreamResult((), toc.encoding, f"toc.dat could not be parsed: {err}")

    def one(entry: TocEntry) -> TableDigest:
        table = TableDigest(entry.namespace, entry.tag, checksums)
        name = entry.filename or f"{entry.dump_id}.dat"
        path = folder / (name + ".gz" if inflate and not name.endswith(".gz") else name)
        decompress = zlib.decompressobj(wbits=47).decompress if inflate else None  # gzip or zlib header
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                table.update(decompress(chunk) if decompress else chunk)
        table.finish()
        return table

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="digest") as pool:
        tables = list(pool.map(one, _largest_first(entries, folder)))
    return StreamResult(tuple(sorted(tables, key=lambda t: (t.schema, t.table))), toc.encoding)


def _largest_first(entries: Iterable[TocEntry], folder: Path) -> list[TocEntry]:
    def size(entry: TocEntry) -> int:
        for name in (f"{entry.filename}.gz", str(entry.filename)):
            path = folder / name
            if path.exists():
                return path.stat().st_size
        return 0

    return sorted(entries, key=size, reverse=True)
