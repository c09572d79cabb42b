"""Validated dump options: every user-supplied value is checked here, before any subprocess starts.

Nothing in this module touches the network, the disk or a subprocess, so operators can call it in
``__init__`` (for literal arguments) and again at the start of ``execute`` (for templated ones).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

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

# pg_dump flags a user may add through ``extra_args``. Everything that selects the connection, the
# output, the format or the snapshot is the provider's job and is refused. Flags in the first set take
# no value; flags in the second need ``--flag=value``.
PG_DUMP_SWITCHES = frozenset(
    {
        "--clean",
        "--column-inserts",
        "--create",
        "--data-only",
        "--disable-dollar-quoting",
        "--disable-triggers",
        "--enable-row-security",
        "--if-exists",
        "--inserts",
        "--large-objects",
        "--blobs",
        "--no-large-objects",
        "--no-blobs",
        "--load-via-partition-root",
        "--no-acl",
        "--no-privileges",
        "--no-comments",
        "--no-owner",
        "--no-publications",
        "--no-security-labels",
        "--no-subscriptions",
        "--no-table-access-method",
        "--no-tablespaces",
        "--no-toast-compression",
        "--no-unlogged-table-data",
        "--on-conflict-do-nothing",
        "--quote-all-identifiers",
        "--schema-only",
        "--serializable-deferrable",
        "--verbose",
    }
)
PG_DUMP_VALUED = frozenset(
    {"--exclude-table-data", "--extension", "--rows-per-insert", "--section", "--encoding"}
)
# pg_dumpall takes the same output flags, except those that only make sense for one database.
PG_DUMPALL_SWITCHES = PG_DUMP_SWITCHES - {
    "--create",
    "--enable-row-security",
    "--large-objects",
    "--blobs",
    "--no-large-objects",
    "--no-blobs",
    "--serializable-deferrable",
}
PG_DUMPALL_VALUED = frozenset({"--exclude-database", "--rows-per-insert", "--encoding"})

_LOCK_WAIT_TIMEOUT = re.compile(r"^(\d+)\s*(ms|s|min|h|d)?$")
_CONNECTION_STRING_HINT = re.compile(r"(postgres(ql)?://|\b(password|passfile|host|user|dbname)\s*=)", re.I)


def is_templated(*values: Any) -> bool:
    """True when a value is only known at run time: Jinja, or an XComArg / MappedArgument (``.expand``).

    Such values are validated at the start of ``execute``, once rendered or resolved.
    """

    def has_jinja(value: Any) -> bool:
        if isinstance(value, str):
            return "{{" in value or "{%" in value
        if isinstance(value, (list, tuple)):
            return any(has_jinja(v) for v in value)
        return value is not None and not isinstance(value, (int, float, datetime.timedelta))

    return any(has_jinja(v) for v in values)


class InvalidOptionError(ValueError):
    """A user-supplied option is not allowed; the message names the value and what is allowed."""


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
        return f"{max(1, round(value * 1000))}ms"
    match = _LOCK_WAIT_TIMEOUT.match(str(value).strip())
    if not match or int(match.group(1)) <= 0:
        raise InvalidOptionError(
            f"lock_wait_timeout {value!r} is not a positive duration; use a number with a unit "
            "(ms, s, min, h, d), e.g. '5min', a number of seconds, or a timedelta"
        )
    return f"{match.group(1)}{match.group(2) or 'ms'}"


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


def parse_flag(name: str, value: bool | str) -> bool:
    """A boolean, also from a rendered template ("True"/"false"/"1"/"0"); anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidOptionError(f"{name} {value!r} is not a boolean; use true or false")


def check_name(kind: str, value: str) -> str:
    """Refuse names and patterns that cannot be passed safely to libpq or the pg tools."""
    if not isinstance(value, str) or not value:
        raise InvalidOptionError(f"{kind} {value!r} must be a non-empty string")
    bad = [c for c in ("\n", "\r", "\x00") if c in value]
    if bad:
        raise InvalidOptionError(
            f"{kind} {value!r} contains a newline, carriage return or NUL byte, which pg_dump cannot take"
        )
    return value


def check_names(kind: str, values: Iterable[str] | str | None) -> tuple[str, ...]:
    """A list of names or patterns (one string is one name); None or anything else is refused."""
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, (list, tuple)):
        raise InvalidOptionError(f"{kind}s {values!r} must be a list of strings (or one string)")
    return tuple(check_name(kind, v) for v in values)


def check_optional_name(kind: str, value: object) -> str | None:
    """None or "" (use the default), else a name as :func:`check_name` accepts it."""
    if value is None or value == "":
        return None
    return check_name(kind, value)  # type: ignore[arg-type]


def check_conn_id(kind: str, value: object) -> str:
    """An Airflow connection id: a non-empty string without whitespace control characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidOptionError(
            f"{kind} {value!r} must be the id of an Airflow connection (a non-empty string)"
        )
    return check_name(kind, value)


def check_bin_dir(value: object) -> str | None:
    """``pg_bin_dir``: None, or the absolute path of a folder."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value or "\n" in value:
        raise InvalidOptionError(f"pg_bin_dir {value!r} must be the absolute path of a folder (or None)")
    return value


def check_positive_number(kind: str, value: object, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``): seconds, intervals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidOptionError(f"{kind} {value!r} must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        least = "a number >= 0" if allow_zero else "a positive number"
        raise InvalidOptionError(f"{kind} {value!r} must be {least}")
    return float(value)


def check_extra_args(
    extra_args: Sequence[str] | str, switches: frozenset[str], valued: frozenset[str], tool: str
) -> tuple[str, ...]:
    """Allow only documented ``--long`` flags; refuse anything that could carry a connection string."""
    if isinstance(extra_args, str):
        raise InvalidOptionError(f"extra_args {extra_args!r} must be a list of flags, not one string")
    if not isinstance(extra_args, (list, tuple)):
        raise InvalidOptionError(f"extra_args {extra_args!r} must be a list of flags")
    allowed = ", ".join(sorted(switches | {f"{v}=..." for v in valued}))
    checked = []
    for arg in extra_args:
        if not isinstance(arg, str):
            raise InvalidOptionError(f"extra_args item {arg!r} must be a string")
        check_name("extra_args item", arg)
        name, has_value, value = arg.partition("=")
        if name in switches and not has_value:
            checked.append(arg)
            continue
        if name in valued and has_value and value:
            if _CONNECTION_STRING_HINT.search(value):
                raise InvalidOptionError(
                    f"extra_args item {arg!r} looks like it carries a connection string; "
                    "connection settings come from the Airflow connection only"
                )
            checked.append(arg)
            continue
        raise InvalidOptionError(f"extra_args item {arg!r} is not allowed for {tool}; allowed: {allowed}")
    return tuple(checked)


@dataclass(frozen=True)
class PgDumpOptions:
    """Everything that decides a pg_dump run, validated on construction."""

    format: DumpFormat = "custom"
    compression: Compression = field(default_factory=Compression)
    jobs: int | None = None
    schemas: tuple[str, ...] = ()
    exclude_schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    lock_wait_timeout: str | None = "5min"
    record: RecordMode = "content"
    statistics: bool = False
    extra_args: tuple[str, ...] = ()

    @property
    def record_row_counts(self) -> bool:
        """Row counts are recorded (``record`` is ``content`` or ``row_counts``)."""
        return self.record != "none"

    @property
    def record_checksums(self) -> bool:
        """The content record (checksums, sequences, large objects, inventory) is taken."""
        return self.record == "content"

    @classmethod
    def build(
        cls,
        *,
        format: str = "custom",
        compression: str | None = None,
        jobs: int | None = None,
        schemas: Iterable[str] | str = (),
        exclude_schemas: Iterable[str] | str = (),
        tables: Iterable[str] | str = (),
        exclude_tables: Iterable[str] | str = (),
        lock_wait_timeout: str | int | float | datetime.timedelta | None = "5min",
        record: str | None = None,
        record_row_counts: bool | str | None = None,
        record_checksums: bool | str | None = None,
        statistics: bool | str = False,
        extra_args: Sequence[str] = (),
    ) -> PgDumpOptions:
        """Validate raw operator arguments; raises :class:`InvalidOptionError` on the first bad one."""
        dump_format = parse_format(format)
        parsed = (
            Compression.parse(compression) if compression is not None else default_compression(dump_format)
        )
        if jobs is not None:
            if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
                raise InvalidOptionError(f"jobs {jobs!r} must be a whole number >= 1")
            if dump_format != "directory":
                raise InvalidOptionError(
                    f"jobs={jobs} needs format='directory'; pg_dump dumps in parallel only to a directory "
                    f"(format is {dump_format!r})"
                )
        if dump_format == "tar" and parsed.enabled:
            raise InvalidOptionError(
                f"compression {str(parsed)!r} cannot be used with format 'tar'; pg_dump's tar format is "
                "never compressed (use format 'custom' or 'directory', or compression 'none')"
            )
        return cls(
            format=dump_format,
            compression=parsed,
            jobs=jobs,
            schemas=check_names("schema pattern", schemas),
            exclude_schemas=check_names("exclude_schemas pattern", exclude_schemas),
            tables=check_names("table pattern", tables),
            exclude_tables=check_names("exclude_tables pattern", exclude_tables),
            lock_wait_timeout=parse_lock_wait_timeout(lock_wait_timeout),
            record=parse_record(record, record_row_counts, record_checksums),
            statistics=parse_flag("statistics", statistics),
            extra_args=check_extra_args(extra_args, PG_DUMP_SWITCHES, PG_DUMP_VALUED, "pg_dump"),
        )

    @property
    def sections(self) -> frozenset[str]:
        """The sections pg_dump writes: ``pre-data``, ``data``, ``post-data`` (all by default)."""
        chosen = {a.partition("=")[2] for a in self.extra_args if a.startswith("--section=")}
        sections = set(chosen) if chosen else {"pre-data", "data", "post-data"}
        if "--schema-only" in self.extra_args:
            sections.discard("data")
        if "--data-only" in self.extra_args:
            sections &= {"data"}
        return frozenset(sections)

    @property
    def dumps_data(self) -> bool:
        """Whether the dump holds table rows (not with --schema-only, --section=pre-data/post-data)."""
        return "data" in self.sections

    @property
    def dumps_whole_database(self) -> bool:
        """Every schema object of the database, and its data: no pattern selects or leaves out objects.

        Only then can a restore be compared object for object (schema inventory, sequences)."""
        patterns = self.schemas or self.exclude_schemas or self.tables or self.exclude_tables
        return (
            not patterns
            and self.sections == {"pre-data", "data", "post-data"}
            and not any(a.startswith("--extension=") for a in self.extra_args)
        )

    @property
    def row_security(self) -> bool:
        """``--enable-row-security``: pg_dump (and the provider's sessions) read only the rows the role's
        policies let it see; without it, ``row_security=off``: a table a policy hides rows of fails."""
        return "--enable-row-security" in self.extra_args

    @property
    def dumps_large_objects(self) -> bool:
        """pg_dump's rule: large objects come with the data of a whole-database dump, or on request."""
        args = set(self.extra_args)
        if not self.dumps_data or args & {"--no-large-objects", "--no-blobs"}:
            return False
        return bool(args & {"--large-objects", "--blobs"}) or not (self.schemas or self.tables)

    @property
    def exclude_table_data(self) -> tuple[str, ...]:
        return tuple(a.partition("=")[2] for a in self.extra_args if a.startswith("--exclude-table-data="))


@dataclass(frozen=True)
class PgDumpAllOptions:
    """Everything that decides a pg_dumpall run, validated on construction."""

    mode: DumpAllMode = "full"
    no_role_passwords: bool = False
    compression: Compression = field(default_factory=Compression)
    lock_wait_timeout: str | None = "5min"
    extra_args: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        mode: str = "full",
        no_role_passwords: bool | str = False,
        compression: str | None = None,
        lock_wait_timeout: str | int | float | datetime.timedelta | None = "5min",
        extra_args: Sequence[str] = (),
    ) -> PgDumpAllOptions:
        parsed = Compression.parse(compression)
        if parsed.method not in ("none", "gzip"):
            raise InvalidOptionError(
                f"compression {str(parsed)!r} is not supported for pg_dumpall; the provider compresses "
                "pg_dumpall output itself and offers: none, gzip[:1-9]"
            )
        return cls(
            mode=parse_dumpall_mode(mode),
            no_role_passwords=parse_flag("no_role_passwords", no_role_passwords),
            compression=parsed,
            lock_wait_timeout=parse_lock_wait_timeout(lock_wait_timeout),
            extra_args=check_extra_args(extra_args, PG_DUMPALL_SWITCHES, PG_DUMPALL_VALUED, "pg_dumpall"),
        )
