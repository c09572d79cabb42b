"""What a restore checks about where it restores to, before anything is restored.

The target database's name, the subset of the backup asked for (it must name tables the backup holds),
the database itself (created new, or existing and empty), and that it is not the very database the
backup was taken from. Each refusal is an :class:`~airflow.sdk.exceptions.AirflowFailException` (or an
:class:`~airflow_provider_pgbackup.options.InvalidOptionError`) naming the value: retrying changes none
of them.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.options import InvalidOptionError, check_name
from airflow_provider_pgbackup.selection import RestoreSubset

# PostgreSQL silently truncates longer identifiers (NAMEDATALEN - 1 bytes).
MAX_DATABASE_NAME_BYTES = 63


def check_database_name(database: str) -> str:
    """A database name PostgreSQL keeps as given: no newline or NUL, at most 63 bytes in UTF-8."""
    check_name("database", database)
    if len(database.encode("utf-8")) > MAX_DATABASE_NAME_BYTES:
        raise InvalidOptionError(
            f"database {database!r} is longer than {MAX_DATABASE_NAME_BYTES} bytes; PostgreSQL would "
            "silently truncate it"
        )
    return database


def archive_tables(manifest: Manifest) -> list[tuple[str, str]] | None:
    """The backup's tables, from its content record or row counts (None when it recorded neither)."""
    if manifest.content is not None:
        return [(t["schema"], t["table"]) for t in manifest.content.get("tables", [])]
    if manifest.row_counts is not None:
        return [(r.schema, r.table) for r in manifest.row_counts]
    return None


def check_subset(
    subset: RestoreSubset | None, manifest: Manifest, log: logging.Logger | Any
) -> RestoreSubset | None:
    """The subset to restore, refused before anything is created when the backup cannot be restored
    in part (plain SQL) or a name matches none of its tables."""
    if subset is None:
        return None
    subset.check_format(manifest.format)
    tables = archive_tables(manifest)
    if tables is None:
        log.info("The manifest lists no tables: restoring %s without checking the names", subset)
        return subset
    missing = subset.unmatched(tables)
    if missing:
        shown = ", ".join(f"{s}.{t}" for s, t in tables[:20])
        raise AirflowFailException(
            f"{' and '.join(missing)} match no table of the backup; it holds: {shown}"
            + (" ..." if len(tables) > 20 else "")
        )
    return subset


def subset_schemas(manifest: Manifest, subset: RestoreSubset) -> set[str]:
    """The schemas a subset restore needs in the target (pg_restore does not create them)."""
    tables = archive_tables(manifest) or []
    return set(subset.schemas) | {schema for schema, _table in subset.selected(tables)}


def prepare_database(hook: PgDumpHook, database: str, *, create: bool) -> bool:
    """Create the target (returns True) or check that it exists (returns False)."""
    exists = hook.database_exists(database)
    if create:
        if exists:
            raise AirflowFailException(
                f"database {database!r} already exists; create_database=True restores only into a new "
                "database (choose another name, drop it yourself, or pass create_database=False)"
            )
        hook.create_database(database)
        return True
    if not exists:
        raise AirflowFailException(
            f"database {database!r} does not exist; pass create_database=True to create it"
        )
    return False


def check_target_is_empty(hook: PgDumpHook, database: str, *, allow_non_empty: bool) -> None:
    """Refuse a target holding relations outside the system schemas (unless ``allow_non_empty``)."""
    if allow_non_empty or hook.database_is_empty(database):
        return
    raise AirflowFailException(
        f"database {database!r} is not empty (it has tables, views or sequences outside the system "
        "schemas); refusing to restore into it. Pass allow_non_empty_database=True to do it anyway"
    )


def check_not_the_source(hook: PgDumpHook, manifest: Manifest, database: str, *, allow_source: bool) -> None:
    """Refuse the database the backup was taken from (unless ``allow_source``): the same name on the
    same server, known by its ``system_identifier`` (else by host and port)."""
    if allow_source or database != manifest.database:
        return
    recorded = manifest.source or {}
    where, identifier = hook.server_identity()
    if recorded.get("system_identifier") and identifier:
        same = recorded["system_identifier"] == identifier
    elif recorded.get("host"):
        same = f"{recorded['host']}:{recorded.get('port') or 5432}" == where
    else:
        same = True  # an older manifest does not say where it came from: assume the worst
    if same:
        raise AirflowFailException(
            f"database {database!r} on {where} is the database this backup was taken from; refusing "
            "to restore into it (it would add the backup's objects and rows to the live database). "
            "Restore into a new database, or pass allow_source_database=True"
        )
