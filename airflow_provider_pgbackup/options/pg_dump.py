"""pg_dump's and pg_dumpall's options as one validated value each (:class:`PgDumpOptions`,
:class:`PgDumpAllOptions`), and the ``extra_args`` a user may add (documented ``--long`` flags only)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from airflow_provider_pgbackup.options.arguments import (
    InvalidOptionError,
    check_name,
    check_names,
    parse_flag,
)
from airflow_provider_pgbackup.options.pg_values import (
    Compression,
    DumpAllMode,
    DumpFormat,
    RecordMode,
    default_compression,
    parse_dumpall_mode,
    parse_format,
    parse_lock_wait_timeout,
    parse_record,
)

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


_CONNECTION_STRING_HINT = re.compile(r"(postgres(ql)?://|\b(password|passfile|host|user|dbname)\s*=)", re.I)


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
