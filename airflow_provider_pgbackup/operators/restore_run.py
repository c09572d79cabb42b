"""The restore's execution steps, apart from the operator's arguments: :class:`RestoreRun` prepares the
target database, replays the backup through pg_restore or psql, compares it, and drops the database it
created when anything failed. :class:`RestoreArguments` is what it needs of the operator."""

from __future__ import annotations

import time
from typing import Any, Protocol

from airflow_provider_pgbackup.failures import restore_failure
from airflow_provider_pgbackup.hooks.pg_dump import PgCommandError, PgDumpHook
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.restore_comparison import RestoreComparison
from airflow_provider_pgbackup.operators.restore_target import (
    check_not_the_source,
    check_target_is_empty,
    prepare_database,
    subset_schemas,
)
from airflow_provider_pgbackup.selection import RestoreSubset
from airflow_provider_pgbackup.sqlscript import SqlScript
from airflow_provider_pgbackup.storage import ArtifactSource
from airflow_provider_pgbackup.verify import VerificationReport

#: The archive formats pg_restore restores with parallel workers.
PARALLEL_FORMATS = ("custom", "directory")


class RestoreArguments(Protocol):
    """The operator arguments a restore run reads (rendered and checked by ``validate()``)."""

    @property
    def hook(self) -> PgDumpHook: ...
    @property
    def log(self) -> Any: ...
    @property
    def subset(self) -> RestoreSubset | None: ...

    jobs: int | None
    no_owner: bool
    no_acl: bool
    transaction_size: int | None
    restore_statistics: bool
    create_database: bool
    drop_after: bool
    allow_non_empty_database: bool
    allow_source_database: bool


class RestoreRun:
    """One restore of a verified backup into one database.

    :param arguments: the operator's arguments (:class:`RestoreArguments`).
    :param source: the verified artifact.
    :param manifest: its manifest.
    :param database: the target database.
    :param identities: the age identities of an encrypted backup.
    """

    def __init__(
        self,
        arguments: RestoreArguments,
        source: ArtifactSource,
        manifest: Manifest,
        database: str,
        *,
        identities: list[Any] | None = None,
    ) -> None:
        self.arguments = arguments
        self.source = source
        self.manifest = manifest
        self.database = database
        self.identities = identities
        self.created = False  # this run created the target database
        self.restore_seconds: float | None = None  # how long the replay took (a metric)

    @property
    def hook(self) -> PgDumpHook:
        return self.arguments.hook

    @property
    def log(self) -> Any:
        return self.arguments.log

    def guard_sql_script(self, report: VerificationReport) -> SqlScript | None:
        """Plain SQL: refuse, before the target is created or anything runs, a script that would drop,
        alter or write into what exists on the server (read during verification's contents check, or
        now when that check is off)."""
        if self.manifest.format != "plain":
            return None  # pg_restore applies --clean / --create only when given them: it never is
        return self.hook.guard_sql_script(
            self.source, self.manifest, self.database, script=report.sql_script, identities=self.identities
        )

    def run(
        self, comparison: RestoreComparison, script: SqlScript | None, subset: RestoreSubset | None
    ) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
        """Prepare the target, restore, compare: the comparison's (tables, content). When anything
        fails, the database this run created is dropped (with ``drop_after``) and the error raised."""
        try:
            self.created = self.prepare_target(subset)
            started = time.monotonic()
            self.restore(script)
            self.restore_seconds = round(time.monotonic() - started, 3)
            return comparison.compare(self.manifest, self.database)
        except BaseException:
            if self.created and self.arguments.drop_after:
                self.drop_after_failure()
            raise

    def prepare_target(self, subset: RestoreSubset | None) -> bool:
        """Create the target database (returns True) or check the existing one; refuse a non-empty one
        and the backup's own source; create the schemas a subset needs."""
        arguments, database = self.arguments, self.database
        created = prepare_database(self.hook, database, create=bool(arguments.create_database))
        check_target_is_empty(self.hook, database, allow_non_empty=bool(arguments.allow_non_empty_database))
        check_not_the_source(
            self.hook, self.manifest, database, allow_source=bool(arguments.allow_source_database)
        )
        if subset is not None:
            self.hook.create_schemas(database, subset_schemas(self.manifest, subset))
        return created

    def restore(self, script: SqlScript | None) -> None:
        """Replay the backup: pg_restore for an archive, psql for plain SQL."""
        arguments, manifest = self.arguments, self.manifest
        jobs = arguments.jobs
        if jobs and manifest.format not in PARALLEL_FORMATS:
            self.log.info("jobs=%s ignored: a %s artifact restores serially", jobs, manifest.format)
            jobs = None
        if manifest.format == "plain" and (arguments.no_owner or arguments.no_acl):
            self.log.info("no_owner / no_acl do not apply to plain SQL: it restores as pg_dump wrote it")
        try:
            self.hook.restore(
                self.source,
                manifest,
                self.database,
                jobs=jobs,
                no_owner=arguments.no_owner,
                no_acl=arguments.no_acl,
                transaction_size=arguments.transaction_size,
                statistics=arguments.restore_statistics,
                identities=self.identities,
                subset=arguments.subset,
                script=script,
            )
        except PgCommandError as err:
            raise restore_failure(
                err, f"restoring {self.source.location.uri} into {self.database!r}"
            ) from err

    def drop_after_failure(self) -> None:
        """Drop the database this run created; a failure here is logged, the original error is kept."""
        try:
            self.hook.drop_database(self.database)
        except Exception:
            self.log.exception(
                "Could not drop database %s after the failed restore; drop it by hand", self.database
            )
