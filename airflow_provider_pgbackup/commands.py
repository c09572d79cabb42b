"""Command lines of the pg tools, built from validated options: no connection setting is ever on argv.

Connection settings travel in the environment (:mod:`~airflow_provider_pgbackup.libpq`); these functions
only translate options into flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from airflow_provider_pgbackup.binaries import PgBinary
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.options import FORMAT_FLAGS, PgDumpAllOptions, PgDumpOptions
from airflow_provider_pgbackup.selection import RestoreSubset


def pg_dump_argv(
    binary: PgBinary,
    options: PgDumpOptions,
    snapshot: str | None,
    file: Path | None,
    filter_file: Path | None = None,
) -> list[str]:
    """Translate validated options into pg_dump's argv (no connection settings: those are in env)."""
    argv = [str(binary.path), f"--format={FORMAT_FLAGS[options.format]}"]
    if file is not None:
        argv.append(f"--file={file}")
    if options.compression.enabled:
        if binary.major >= 16:
            argv.append(f"--compress={options.compression}")
        else:
            argv.append(f"--compress={options.compression.effective_level}")
    elif options.format in ("custom", "directory"):
        argv.append("--compress=0")
    if options.jobs:
        argv.append(f"--jobs={options.jobs}")
    if options.statistics:
        argv.append("--statistics")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    if options.lock_wait_timeout:
        argv.append(f"--lock-wait-timeout={options.lock_wait_timeout}")
    if filter_file is not None:
        argv.append(f"--filter={filter_file}")
    else:
        argv += [f"--schema={p}" for p in options.schemas]
        argv += [f"--exclude-schema={p}" for p in options.exclude_schemas]
        argv += [f"--table={p}" for p in options.tables]
        argv += [f"--exclude-table={p}" for p in options.exclude_tables]
    argv += list(options.extra_args)
    return argv


def pg_dumpall_argv(binary: PgBinary, options: PgDumpAllOptions) -> list[str]:
    argv = [str(binary.path)]
    if options.mode == "globals":
        argv.append("--globals-only")
    elif options.mode == "roles":
        argv.append("--roles-only")
    if options.no_role_passwords:
        argv.append("--no-role-passwords")
    if options.lock_wait_timeout and options.mode == "full":
        argv.append(f"--lock-wait-timeout={options.lock_wait_timeout}")
    argv += list(options.extra_args)
    return argv


def pg_restore_argv(
    binary: PgBinary,
    manifest: Manifest,
    artifact: Path | None,
    *,
    jobs: int | None = None,
    no_owner: bool = True,
    no_acl: bool = True,
    transaction_size: int | None = None,
    statistics: bool = False,
    subset: RestoreSubset | None = None,
) -> list[str]:
    """pg_restore's argv. ``--dbname=`` is empty on purpose: libpq then takes the database from
    ``PGDATABASE`` (the session's), so no name (and never a conninfo string) is parsed from argv.
    ``artifact`` None: pg_restore reads the archive from its stdin (custom and tar only). ``subset``:
    only those tables / schemas (``--table=`` / ``--schema=``)."""
    argv = [
        str(binary.path),
        "--dbname=",
        "--exit-on-error",
        "--no-password",
        f"--format={FORMAT_FLAGS[manifest.format]}",  # type: ignore[index]
    ]
    if jobs and manifest.format in ("custom", "directory"):
        argv.append(f"--jobs={jobs}")
    if no_owner:
        argv.append("--no-owner")
    if no_acl:
        argv.append("--no-acl")
    if transaction_size:
        argv.append(f"--transaction-size={transaction_size}")
    if statistics:
        argv.append("--statistics")
    argv += subset_flags(subset)
    if artifact is not None:
        argv.append(str(artifact))
    return argv


def subset_flags(subset: RestoreSubset | None) -> list[str]:
    """pg_restore's ``--schema=`` and ``--table=`` flags of a subset restore (none for a whole one)."""
    if subset is None:
        return []
    return [f"--schema={s}" for s in subset.schemas] + [f"--table={t}" for t in subset.tables]


def filter_lines(options: PgDumpOptions) -> str | None:
    """The pattern lists as a ``pg_dump --filter`` file (PostgreSQL 17+): one ``include|exclude
    schema|table PATTERN`` line each, so long lists stay off the command line. None when there is no
    pattern, or one the file format cannot carry as given (leading or trailing blanks)."""
    lines = [
        f"{verb} {kind} {pattern}"
        for verb, kind, patterns in (
            ("include", "schema", options.schemas),
            ("exclude", "schema", options.exclude_schemas),
            ("include", "table", options.tables),
            ("exclude", "table", options.exclude_tables),
        )
        for pattern in patterns
    ]
    patterns = (*options.schemas, *options.exclude_schemas, *options.tables, *options.exclude_tables)
    if not lines or any(p != p.strip() for p in patterns):
        return None
    return "".join(line + "\n" for line in lines)


def psql_restore_argv(psql: PgBinary, manifest: Manifest) -> list[str]:
    """psql's argv for plain SQL on stdin: stop at the first error; pg_dump's SQL in one transaction."""
    argv = [
        str(psql.path),
        "--no-psqlrc",
        "--no-password",
        "--quiet",
        "--output=/dev/null",
        "--set=ON_ERROR_STOP=1",
    ]
    if manifest.kind == "pg_dump":
        argv.append("--single-transaction")
    return argv


def pg_dump_data_argv(
    binary: PgBinary,
    copy_settings: dict[str, str],
    *,
    tables: Sequence[tuple[str, str]] = (),
    exclude_tables: Sequence[tuple[str, str]] = (),
    row_security: bool = False,
) -> list[str]:
    """pg_dump's argv to read a (restored) database's table rows back as plain COPY text, serialised as
    the dump was: its client encoding and ``--quote-all-identifiers`` (the other copy settings travel in
    the environment, :func:`copy_settings_env`); ``tables`` only, or all but ``exclude_tables``."""
    argv = [
        str(binary.path),
        "--data-only",
        "--format=p",
        "--no-large-objects" if binary.major >= 16 else "--no-blobs",
    ]
    if copy_settings.get("client_encoding"):
        argv.append(f"--encoding={copy_settings['client_encoding']}")
    if copy_settings.get("quote_all_identifiers") == "on":
        argv.append("--quote-all-identifiers")
    if row_security:
        argv.append("--enable-row-security")
    argv += [f"--table={table_pattern(schema, table)}" for schema, table in tables]
    argv += [f"--exclude-table={table_pattern(schema, table)}" for schema, table in exclude_tables]
    return argv


def copy_settings_env(env: dict[str, str], copy_settings: dict[str, str]) -> dict[str, str]:
    """``env`` with the dump's time zone (``PGTZ``), ``bytea_output`` and ``lc_monetary`` (``PGOPTIONS``);
    a session's env stays one (``ChildEnv.copy``: the child still inherits its passfile)."""
    env = env.copy()
    if copy_settings.get("TimeZone"):
        env["PGTZ"] = copy_settings["TimeZone"]
    options = [
        f"-c {name}={_options_escape(copy_settings[name])}"
        for name in ("bytea_output", "lc_monetary")
        if copy_settings.get(name)
    ]
    if options:
        env["PGOPTIONS"] = " ".join([env["PGOPTIONS"], *options] if env.get("PGOPTIONS") else options)
    return env


def _options_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def table_pattern(schema: str, table: str) -> str:
    """A pg_dump ``--table`` pattern matching exactly this table (quoted: no wildcard, no case folding)."""
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
