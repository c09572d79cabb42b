"""The drill's reading of a restored copy for a record taken from pg_dump's COPY data
(``pgdump-copy-sha256``): ``pg_dump --data-only`` of the restored tables, under the copy settings the dump
had, through the same reader (:class:`~airflow_provider_pgbackup.content.CopyDigest`), so both sides
are serialised and hashed alike."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_provider_pgbackup.binaries import PgBinary
from airflow_provider_pgbackup.catalog import copy_groups
from airflow_provider_pgbackup.commands import copy_settings_env, pg_dump_data_argv
from airflow_provider_pgbackup.content import ContentRecord, CopyDigest, StreamResult, TableContent
from airflow_provider_pgbackup.content.toc import ArchiveFormatError
from airflow_provider_pgbackup.libpq import LibpqSession
from airflow_provider_pgbackup.process import PgProcessRunner


def read_tables_back(
    session: LibpqSession,
    binary: PgBinary,
    expected: ContentRecord,
    sizes: dict[tuple[str, str], int],
    *,
    row_security: bool,
    jobs: int,
    hook: Any,
) -> dict[tuple[str, str], TableContent]:
    """Rows and checksums of the restored tables, read back by ``pg_dump --data-only`` with the
    dump's copy settings and hashed as the dump was; the largest tables each in a pg_dump of their
    own, ``jobs`` at a time. ``hook`` gives the runner and the log, and keeps the other runners in
    ``_copy_runners`` so its ``kill`` stops them too."""
    settings = dict(expected.copy_settings or ())
    env = copy_settings_env(session.env, settings)
    groups = copy_groups(sizes, jobs)
    runners = [
        hook.runner,
        *(PgProcessRunner(hook.log, hook.runner.progress_interval) for _ in groups[1:]),
    ]
    hook._copy_runners = runners[1:]

    def read(
        runner: PgProcessRunner, group: tuple[list[tuple[str, str]], list[tuple[str, str]]]
    ) -> StreamResult:
        if hook.runner.killed:
            runner.kill()
        digest = CopyDigest("plain")
        argv = pg_dump_data_argv(
            binary, settings, tables=group[0], exclude_tables=group[1], row_security=row_security
        )
        runner.run(argv, env, stdout=digest.feed)
        return digest.close()

    try:
        with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="copy-back") as pool:
            futures = [
                pool.submit(read, runner, group) for runner, group in zip(runners, groups, strict=True)
            ]
            results = [future.result() for future in futures]
    finally:
        hook._copy_runners = []
    tables: dict[tuple[str, str], TableContent] = {}
    for result in results:
        if result.unsupported:
            raise ArchiveFormatError(f"could not read the restored tables back: {result.unsupported}")
        for table in result.tables:
            if (table.schema, table.table) in sizes:
                tables[(table.schema, table.table)] = TableContent(
                    table.schema, table.table, table.rows, table.checksum
                )
    return tables
