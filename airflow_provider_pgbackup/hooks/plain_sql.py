"""Plain SQL backups on the way into ``psql``: the script read decrypted and decompressed on the fly, and
refused before anything runs when it would drop, alter or write into what exists on the server beyond
its target (:mod:`~airflow_provider_pgbackup.sqlscript` reads what it would do). A mixin of the hook's
restore half (:class:`~airflow_provider_pgbackup.hooks.restore.RestoreMixin`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from airflow_provider_pgbackup.catalog import server_object_names
from airflow_provider_pgbackup.hooks.connection import HookHalf
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.pipeline import decompressed_chunks
from airflow_provider_pgbackup.sqlscript import ALWAYS_EXISTING_ROLES, SqlScript, SqlScriptRefused, scan_sql
from airflow_provider_pgbackup.storage import ArtifactSource
from airflow_provider_pgbackup.verify.decrypt import decrypted_stream

#: Objects and statements a refusal names at most; the rest are counted.
REFUSAL_ENTRIES_SHOWN = 20


def script_refusals(
    script: SqlScript, kind: str, existing: dict[str, set[str]]
) -> tuple[list[str], list[str]]:
    """What in a ``kind`` (``pg_dump`` / ``pg_dumpall``) script may not run on a server whose databases,
    roles and tablespaces are ``existing``: ``(objects, statements)``. An object is refused when it
    exists (the script did not create it, so the restore may not drop, alter or write into it); in a
    pg_dump script any other database is (only ``--create`` writes one: the script would restore
    there, not into the target). A statement is refused whatever exists (``script.refused``)."""
    objects = []
    for (object_kind, name), statements in script.touches.items():
        exists = name in existing.get(object_kind, set()) or (
            object_kind == "role" and name in ALWAYS_EXISTING_ROLES
        )
        if exists or (kind == "pg_dump" and object_kind == "database"):
            state = "exists" if exists else "not the target"
            objects.append(f"{object_kind} {name!r} ({', '.join(statements)}; {state})")
    return objects, list(script.refused)


def _shown(entries: list[str]) -> str:
    more = len(entries) - REFUSAL_ENTRIES_SHOWN
    return "; ".join(entries[:REFUSAL_ENTRIES_SHOWN]) + (f"; and {more} more" if more > 0 else "")


class PlainSqlMixin(HookHalf):
    """Read a plain backup's SQL and guard what it would do (the hook provides ``_maintenance_connection``
    and ``log``)."""

    @contextlib.contextmanager
    def _plain_sql(
        self, source: ArtifactSource, manifest: Manifest, identities: Sequence[Any] | None
    ) -> Iterator[Iterator[bytes]]:
        """The SQL of a plain backup, decrypted and decompressed on the fly; closing it on exit also
        stops a zstd/lz4 decompressor whose reader stopped early (an error, a kill)."""
        method = manifest.compression_spec.method
        if manifest.encryption is None:
            chunks = decompressed_chunks(source.chunks(), method, runner_log=self.log)
            try:
                yield chunks
            finally:
                chunks.close()
            return
        plain = decrypted_stream(source, manifest, identities or [])
        chunks = decompressed_chunks(plain, method, runner_log=self.log)
        try:
            yield chunks
        finally:
            chunks.close()
            plain.close()

    def guard_sql_script(
        self,
        source: ArtifactSource,
        manifest: Manifest,
        database: str,
        *,
        script: SqlScript | None = None,
        identities: Sequence[Any] | None = None,
    ) -> SqlScript:
        """Refuse, before anything runs, a plain SQL backup that would drop, alter or write into what
        exists on the server beyond ``database``: databases, roles and tablespaces it names that exist
        (the script did not create them), another database in a pg_dump script (``--create``), and
        what no restore may run (:mod:`~airflow_provider_pgbackup.sqlscript`).

        :param script: what verification's contents check found (``VerificationReport.sql_script``);
            None: the script is read here, once more, to its end.
        :raises SqlScriptRefused: naming the objects and statements; nothing of the script ran.
        """
        if script is None:
            self.log.info("Reading %s to see what it would do beyond %s", source.location.uri, database)
            with self._plain_sql(source, manifest, identities) as chunks:
                script = scan_sql(chunks)
        with self._maintenance_connection(database) as conn:
            existing = server_object_names(conn)
        objects, statements = script_refusals(script, manifest.kind, existing)
        if objects or statements:
            parts = [f"refusing to restore {source.location.uri} into {database!r}; nothing of it ran."]
            if objects:
                parts.append(f"It would drop, alter or write into what it did not create: {_shown(objects)}.")
            if statements:
                parts.append(f"It holds what no restore may run: {_shown(statements)}.")
            if manifest.kind == "pg_dumpall":
                parts.append(
                    "A pg_dumpall script creates its roles and databases server-wide (a full one also "
                    "writes into template1 and postgres): restore it on a server that has none of them."
                )
            elif any(kind == "database" for kind, _name in script.touches):
                parts.append(
                    "A pg_dump script written with --create restores into the database it names: dump "
                    "without --create (or in the custom, tar or directory format, whose --clean and "
                    "--create pg_restore ignores)."
                )
            raise SqlScriptRefused(" ".join(parts))
        touched = sorted({kind for kind, _name in script.touches})
        self.log.info(
            "%s touches nothing that exists on this server beyond %s%s",
            source.location.uri,
            database,
            f" (the {' and '.join(kind + 's' for kind in touched)} it names are new here)" if touched else "",
        )
        return script
