"""The values of the PostgreSQL tools' options a user chooses: the archive format, the compression (one
typed :class:`Compression`), what a dump records, pg_dumpall's mode and the lock wait timeout."""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass
from typing import Literal, cast

from airflow_provider_pgbackup.options.arguments import InvalidOptionError, parse_flag

DumpFormat = Literal["custom", "directory", "tar", "plain"]


DUMP_FORMATS: tuple[DumpFormat, ...] = ("custom", "directory", "tar", "plain")


FORMAT_FLAGS: dict[DumpFormat, str] = {"custom": "c", "directory": "d", "tar": "t", "plain": "p"}


RecordMode = Literal["content", "row_counts", "none"]


#: What a dump records about the data it dumps (``record``): the content proof (row counts, per-table
#: checksums, sequences, large objects, schema inventory), row counts only, or nothing.
RECORD_MODES: tuple[RecordMode, ...] = ("content", "row_counts", "none")


DumpAllMode = Literal["full", "globals", "roles"]


DUMPALL_MODES: tuple[DumpAllMode, ...] = ("full", "globals", "roles")


CompressionMethod = Literal["none", "gzip", "lz4", "zstd"]


#: method -> (lowest level, highest level, pg_dump's default level)
COMPRESSION_LEVELS: dict[str, tuple[int, int, int]] = {
    "gzip": (1, 9, 6),
    "lz4": (1, 12, 1),
    "zstd": (1, 22, 3),
}


_LOCK_WAIT_TIMEOUT = re.compile(r"^(\d+)\s*(ms|s|min|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
#: PostgreSQL keeps lock_timeout in an int of milliseconds: about 24.8 days at the most.
MAX_LOCK_WAIT_MS = 2**31 - 1


@dataclass(frozen=True)
class Compression:
    """A parsed ``compression`` spec: ``none``, ``gzip[:level]``, ``lz4[:level]``, ``zstd[:level]``."""

    method: CompressionMethod = "none"
    level: int | None = None

    @classmethod
    def parse(cls, spec: str | None) -> Compression:
        """Parse a spec string, raising :class:`InvalidOptionError` naming what is allowed."""
        if spec is None or str(spec).strip().lower() in ("", "none"):
            return cls()
        text = str(spec).strip().lower()
        method, _, level_text = text.partition(":")
        if method not in COMPRESSION_LEVELS:
            raise InvalidOptionError(
                f"compression {spec!r} is not supported; "
                "use one of: none, gzip[:1-9], lz4[:1-12], zstd[:1-22]"
            )
        low, high, _default = COMPRESSION_LEVELS[method]
        level: int | None = None
        if level_text:
            if not level_text.isdigit() or not low <= int(level_text) <= high:
                raise InvalidOptionError(
                    f"compression level {level_text!r} in {spec!r} is out of range; "
                    f"{method} takes a level from {low} to {high}"
                )
            level = int(level_text)
        return cls(cast("CompressionMethod", method), level)

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    @property
    def effective_level(self) -> int | None:
        if not self.enabled:
            return None
        return self.level if self.level is not None else COMPRESSION_LEVELS[self.method][2]

    def __str__(self) -> str:
        if not self.enabled:
            return "none"
        return f"{self.method}:{self.effective_level}"

    @property
    def file_suffix(self) -> str:
        return {"none": "", "gzip": ".gz", "lz4": ".lz4", "zstd": ".zst"}[self.method]


def default_compression(dump_format: DumpFormat) -> Compression:
    """What ``pg_dump`` itself does when no ``--compress`` is given: custom and directory archives are
    gzip-compressed at zlib's default level, tar and plain SQL are not."""
    return Compression("gzip") if dump_format in ("custom", "directory") else Compression()


def parse_format(value: str) -> DumpFormat:
    """Return the dump format, or raise naming the allowed ones."""
    if value not in DUMP_FORMATS:
        raise InvalidOptionError(f"format {value!r} is not supported; use one of: {', '.join(DUMP_FORMATS)}")
    return value  # type: ignore[return-value]


def parse_dumpall_mode(value: str) -> DumpAllMode:
    if value not in DUMPALL_MODES:
        raise InvalidOptionError(f"mode {value!r} is not supported; use one of: {', '.join(DUMPALL_MODES)}")
    return value  # type: ignore[return-value]


def parse_lock_wait_timeout(value: str | int | float | datetime.timedelta | None) -> str | None:
    """Return a PostgreSQL duration for ``--lock-wait-timeout`` (``"5min"``, ``"30s"``, ``"500ms"``)."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool):
        raise InvalidOptionError(f"lock_wait_timeout {value!r} is not a duration")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise InvalidOptionError(
                f"lock_wait_timeout {value!r} must be a positive, finite number of seconds"
            )
        _check_lock_wait_limit(value, value * 1000)
        return f"{max(1, round(value * 1000))}ms"
    match = _LOCK_WAIT_TIMEOUT.match(str(value).strip())
    if not match or int(match.group(1)) <= 0:
        raise InvalidOptionError(
            f"lock_wait_timeout {value!r} is not a positive duration; use a number with a unit "
            "(ms, s, min, h, d), e.g. '5min', a number of seconds, or a timedelta"
        )
    _check_lock_wait_limit(value, int(match.group(1)) * _UNIT_MS[match.group(2) or "ms"])
    return f"{match.group(1)}{match.group(2) or 'ms'}"


def _check_lock_wait_limit(value: object, milliseconds: float) -> None:
    """PostgreSQL refuses a lock_timeout beyond an int of milliseconds: say so before pg_dump starts."""
    if milliseconds > MAX_LOCK_WAIT_MS:
        raise InvalidOptionError(
            f"lock_wait_timeout {value!r} is longer than PostgreSQL allows ({MAX_LOCK_WAIT_MS} ms, about "
            "24.8 days)"
        )


def parse_record(
    record: str | None,
    record_row_counts: bool | str | None = None,
    record_checksums: bool | str | None = None,
) -> RecordMode:
    """``record`` (``content``, ``row_counts`` or ``none``), or what the older two booleans meant.

    ``record_checksums=False`` is ``row_counts`` (``none`` with ``record_row_counts=False`` too);
    ``record_row_counts=False`` alone is ``none``. Both booleans with ``record``, or
    ``record_row_counts=False`` with ``record_checksums=True`` (a content record holds row counts), are
    refused, saying what to use.
    """
    counts = None if record_row_counts is None else parse_flag("record_row_counts", record_row_counts)
    checksums = None if record_checksums is None else parse_flag("record_checksums", record_checksums)
    if record is not None:
        if not isinstance(record, str) or record.strip().lower() not in RECORD_MODES:
            raise InvalidOptionError(
                f"record {record!r} is not supported; use one of: content (row counts and the content "
                "proof, the default), row_counts, none"
            )
        if counts is not None or checksums is not None:
            raise InvalidOptionError(
                "record_row_counts and record_checksums cannot be combined with record; use record alone "
                "(content, row_counts or none)"
            )
        return cast("RecordMode", record.strip().lower())
    if counts is False and checksums:
        raise InvalidOptionError(
            "record_row_counts=False with record_checksums=True is contradictory: the content record "
            "holds the row counts; use record='content' or record='none'"
        )
    if counts is False:
        return "none"
    return "row_counts" if checksums is False else "content"
