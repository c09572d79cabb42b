"""Which tables a pg_dump run dumps data for, following pg_dump's own selection rules.

Used to count rows of exactly the tables whose data the dump holds. Patterns follow psql's rules
(https://www.postgresql.org/docs/current/app-psql.html#APP-PSQL-PATTERNS): ``*`` and ``?`` are
wildcards, ``.`` separates schema from table, double quotes keep case and make everything literal,
unquoted letters are folded to lower case, other regular-expression syntax passes through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_pgbackup.options import InvalidOptionError, PgDumpOptions, check_name

_REGEX_SPECIALS = set("|*+?()[]{}.^$\\")


def _pattern_part_regex(part: list[tuple[str, bool]]) -> str:
    out = []
    for ch, quoted in part:
        if quoted:
            out.append("\\" + ch if ch in _REGEX_SPECIALS else ch)
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "$":
            out.append("\\$")
        else:
            out.append(ch.lower())
    return "".join(out)


def psql_pattern(pattern: str) -> tuple[re.Pattern[str] | None, re.Pattern[str]]:
    """``"schema.table"`` pattern -> (schema regex or None, name regex), both anchored."""
    parts: list[list[tuple[str, bool]]] = [[]]
    in_quotes = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '"':
            if in_quotes and i + 1 < len(pattern) and pattern[i + 1] == '"':
                parts[-1].append(('"', True))
                i += 2
                continue
            in_quotes = not in_quotes
        elif ch == "." and not in_quotes:
            parts.append([])
        else:
            parts[-1].append((ch, in_quotes))
        i += 1
    regexes = [re.compile(f"^(?:{_pattern_part_regex(p)})$") for p in parts]
    if len(regexes) == 1:
        return None, regexes[0]
    # "db.schema.table" is accepted by pg_dump when db is the current database; keep the last two parts.
    return regexes[-2], regexes[-1]


def _schema_matches(patterns: tuple[str, ...], schema: str) -> bool:
    return any(psql_pattern(p)[1].match(schema) for p in patterns)


def _table_matches(patterns: tuple[str, ...], schema: str, table: str, visible: bool) -> bool:
    for pattern in patterns:
        schema_regex, name_regex = psql_pattern(pattern)
        if not name_regex.match(table):
            continue
        if (schema_regex is None and visible) or (schema_regex is not None and schema_regex.match(schema)):
            return True
    return False


@dataclass(frozen=True)
class TableSelection:
    """pg_dump's ``--schema``/``--exclude-schema``/``--table``/``--exclude-table`` (+ data exclusions)."""

    schemas: tuple[str, ...] = ()
    exclude_schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    exclude_table_data: tuple[str, ...] = ()
    skip_unlogged_data: bool = False

    @classmethod
    def from_options(cls, options: PgDumpOptions) -> TableSelection:
        return cls(
            schemas=options.schemas,
            exclude_schemas=options.exclude_schemas,
            tables=options.tables,
            exclude_tables=options.exclude_tables,
            exclude_table_data=options.exclude_table_data,
            skip_unlogged_data="--no-unlogged-table-data" in options.extra_args,
        )

    def dumps_data_of(self, schema: str, table: str, *, unlogged: bool = False, visible: bool = True) -> bool:
        """Whether pg_dump would dump this table's rows (pg_dump.c: selectDumpableTable and friends)."""
        if self.tables:
            # Tables named by --table are dumped whatever --schema / --exclude-schema say.
            selected = _table_matches(self.tables, schema, table, visible)
        elif self.schemas:
            selected = _schema_matches(self.schemas, schema) and not _schema_matches(
                self.exclude_schemas, schema
            )
        else:
            selected = not _schema_matches(self.exclude_schemas, schema)
        if not selected or _table_matches(self.exclude_tables, schema, table, visible):
            return False
        if _table_matches(self.exclude_table_data, schema, table, visible):
            return False
        return not (unlogged and self.skip_unlogged_data)


#: PostgreSQL keeps at most this many bytes of an identifier (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63


def _restore_names(kind: str, values: object) -> tuple[str, ...]:
    """Exact object names for pg_restore: a list (or one comma-separated string, as a form gives it)."""
    if values is None or values == "":
        return ()
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",")]
    if not isinstance(values, (list, tuple)):
        raise InvalidOptionError(
            f"{kind}s {values!r} must be a list of names (or one comma-separated string)"
        )
    names = []
    for value in values:
        if value == "":
            continue
        check_name(kind, value)
        if len(value.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
            raise InvalidOptionError(
                f"{kind} {value!r} is longer than {MAX_IDENTIFIER_BYTES} bytes: no PostgreSQL name is"
            )
        names.append(value)
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class RestoreSubset:
    """Part of an archive to restore: pg_restore's ``--table`` and ``--schema`` (exact names, no patterns).

    A table is restored when its name is one of ``tables`` (in any schema, or only in ``schemas`` when
    both are given); with ``schemas`` alone, everything in those schemas. pg_restore restores a table
    named by ``--table`` without its indexes, constraints, triggers or sequences; ``--schema`` restores
    all of a schema's objects. Neither creates the schema itself.
    """

    tables: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ()

    @classmethod
    def build(cls, tables: object = None, schemas: object = None) -> RestoreSubset | None:
        """Validate the names (raises :class:`InvalidOptionError` naming the value); None: restore all."""
        subset = cls(_restore_names("table", tables), _restore_names("schema", schemas))
        return subset if subset.tables or subset.schemas else None

    def check_format(self, dump_format: str) -> None:
        """Refuse a backup that cannot be restored in part: plain SQL is one script."""
        if dump_format not in ("custom", "directory", "tar"):
            raise InvalidOptionError(
                f"tables / schemas {self.to_dict()} cannot be restored from a {dump_format} SQL backup; only "
                "the custom, directory and tar formats can be restored in part"
            )

    def restores(self, schema: str, table: str) -> bool:
        """Whether pg_restore restores the table ``schema.table`` of the archive."""
        if self.tables and table not in self.tables:
            return False
        return not self.schemas or schema in self.schemas

    def selected(self, tables: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The ``(schema, table)`` of ``tables`` (the archive's) that this subset restores."""
        return [(schema, table) for schema, table in tables if self.restores(schema, table)]

    def unmatched(self, tables: list[tuple[str, str]]) -> list[str]:
        """Names of the subset that match none of ``tables`` (a typo restores nothing, silently)."""
        names = {table for _schema, table in tables}
        schemas = {schema for schema, _table in tables}
        missing = [f"table {t!r}" for t in self.tables if t not in names]
        missing += [f"schema {s!r}" for s in self.schemas if s not in schemas]
        if not missing and not self.selected(tables):
            missing.append(f"tables {list(self.tables)!r} in schemas {list(self.schemas)!r}")
        return missing

    def to_dict(self) -> dict[str, list[str]]:
        return {"tables": list(self.tables), "schemas": list(self.schemas)}
