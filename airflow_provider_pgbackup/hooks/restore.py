"""The restore half of :class:`~airflow_provider_pgbackup.hooks.pg_dump.PgDumpHook`: scratch databases,
``pg_restore``/``psql`` fed from any storage source (decrypted and decompressed on the fly), and the
measurement of a restored copy for the drill. A mixin: the hook composes it with its dump half, and it
uses only the hook's session, runner and log.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow_provider_pgbackup.binaries import (
    PgBinary,
    restore_binary,
    supports_option,
)
from airflow_provider_pgbackup.commands import (
    pg_restore_argv,
    psql_restore_argv,
)
from airflow_provider_pgbackup.compat import BaseHook
from airflow_provider_pgbackup.encryption import (
    IdentityError,
    parse_identities,
)
from airflow_provider_pgbackup.hooks.databases import DatabaseMixin
from airflow_provider_pgbackup.hooks.plain_sql import PlainSqlMixin
from airflow_provider_pgbackup.manifest import (
    Manifest,
)
from airflow_provider_pgbackup.process import CommandResult, PgProcessRunner
from airflow_provider_pgbackup.selection import RestoreSubset
from airflow_provider_pgbackup.sqlscript import SqlScript
from airflow_provider_pgbackup.storage import (
    ArtifactSource,
    Location,
    LocationLike,
    open_source,
)
from airflow_provider_pgbackup.verify.decrypt import decrypted_copy, decrypted_stream


def load_identities(conn_id: str) -> list[Any]:
    """The age identities in the password of Airflow connection ``conn_id``, masked in the task log
    first. Errors never contain the secret."""
    conn = BaseHook.get_connection(conn_id)
    secret = conn.password or ""
    if secret:
        from airflow_provider_pgbackup.compat import mask_secret

        mask_secret(secret)
        for line in secret.splitlines():
            if line.strip():
                mask_secret(line.strip())
    return parse_identities(secret, what=f"connection {conn_id!r}")


class RestoreMixin(DatabaseMixin, PlainSqlMixin):
    """Restore methods of the hook (it provides ``session``, ``runner`` and ``log``)."""

    runner: PgProcessRunner
    log: Any
    #: the pg_dump processes reading a restored copy back beside ``runner`` (the hook's kill stops them)
    _copy_runners: list[PgProcessRunner]

    # -------------------------------------------------------------------------------------- restore
    def _restore_features(
        self, pg_restore: PgBinary, transaction_size: int | None, statistics: bool
    ) -> dict[str, Any]:
        """The PostgreSQL 17/18 pg_restore options asked for that this binary has (probed)."""
        features: dict[str, Any] = {}
        for flag, key, value in (
            ("--transaction-size", "transaction_size", transaction_size),
            ("--statistics", "statistics", statistics),
        ):
            if not value:
                continue
            if supports_option(pg_restore, flag):
                features[key] = value
            else:
                self.log.info("%s has no %s: restoring without it", pg_restore, flag)
        return features

    def restore_client(self, manifest: Manifest) -> PgBinary:
        """The ``psql`` (plain SQL) or ``pg_restore`` (archives) :meth:`restore` runs for this backup. The
        drill asks before it creates a database: a client older than the archive's ``client_version``
        fails first, naming both versions (:class:`~airflow_provider_pgbackup.binaries.PgBinaryNotFound`)."""
        tool = "psql" if manifest.format == "plain" else "pg_restore"
        with self.session() as session:
            return restore_binary(tool, manifest.client_tool, manifest.client_version, session.pg_bin_dir)

    def restore(
        self,
        source: ArtifactSource | LocationLike,
        manifest: Manifest,
        database: str,
        *,
        jobs: int | None = None,
        no_owner: bool = True,
        no_acl: bool = True,
        transaction_size: int | None = None,
        statistics: bool = False,
        identities: Sequence[Any] | None = None,
        subset: RestoreSubset | None = None,
        script: SqlScript | None = None,
    ) -> CommandResult:
        """Restore a (verified) backup into the existing database ``database``.

        custom / tar / directory archives go through ``pg_restore --exit-on-error`` (``jobs`` in parallel
        for custom and directory); plain pg_dump and pg_dumpall SQL through ``psql -v ON_ERROR_STOP=1``,
        decompressed on the fly (pg_dump's plain SQL in one transaction). The client is chosen by the
        manifest's ``client_version``: its major version or newer.

        Where the bytes come from is the ``source``. A local artifact is read in place. A remote one
        (``gs://``) is streamed: plain SQL into psql's stdin, custom and tar archives into pg_restore's
        stdin, with no local copy. pg_restore cannot read a directory-format artifact, or a custom
        archive with ``jobs`` > 1, from a stream: those are downloaded into a private temporary folder
        (mode 0700, under ``TMPDIR``) for the restore and removed afterwards, also on failure or kill.

        :param source: the artifact: an :class:`~airflow_provider_pgbackup.storage.ArtifactSource`, or
            an absolute local path / object-store URI (read with the default storage settings).
        :param manifest: its manifest.
        :param database: the target database; it must exist.
        :param jobs: parallel pg_restore workers (custom and directory archives only).
        :param no_owner: ``--no-owner`` (archives only; plain SQL keeps what pg_dump wrote).
        :param no_acl: ``--no-acl`` (archives only).
        :param transaction_size: ``pg_restore --transaction-size`` (PostgreSQL 17+: commit every N
            objects, much faster for large schemas); ignored, with a log line, by a pg_restore without it.
        :param statistics: ``pg_restore --statistics`` (PostgreSQL 18+): restore the planner statistics
            the archive holds (dumped with ``statistics=True``); ignored, logged, where unsupported.
        :param identities: age identities (:func:`load_identities`) for an encrypted backup: it is
            decrypted on the fly into psql / pg_restore; a directory archive, or a custom one with
            ``jobs`` > 1, is decrypted into a private temporary folder (0700) removed afterwards.
        :param subset: only these tables / schemas (pg_restore ``--table`` / ``--schema``; archive formats
            only: plain SQL cannot be restored in part). Create the schemas first (:meth:`create_schemas`).
        :param script: plain SQL: what the script would do beyond ``database`` (from verification),
            checked against the server by :meth:`guard_sql_script` before psql starts; None: the
            script is read once more for that check.
        """
        if subset is not None:
            subset.check_format(manifest.format)
        if isinstance(source, (str, os.PathLike, Location)):
            source = open_source(source, what="artifact_path")
        if manifest.format == "plain":
            self.guard_sql_script(source, manifest, database, script=script, identities=identities)
        if manifest.encryption is not None:
            if not identities:
                raise IdentityError(
                    f"{source.location.uri} is encrypted (age): give decryption_conn_id, a connection "
                    "whose password holds an AGE-SECRET-KEY-1... identity"
                )
            return self._restore_encrypted(
                source,
                manifest,
                database,
                identities,
                jobs=jobs,
                no_owner=no_owner,
                no_acl=no_acl,
                transaction_size=transaction_size,
                statistics=statistics,
                subset=subset,
            )
        with self.session(database) as session:
            if manifest.format == "plain":
                psql = restore_binary(
                    "psql", manifest.client_tool, manifest.client_version, session.pg_bin_dir
                )
                self.log.info("Restoring %s into %s with %s", source.location.uri, database, psql)
                with self._plain_sql(source, manifest, None) as chunks:
                    return self.runner.run(psql_restore_argv(psql, manifest), session.env, stdin=chunks)
            pg_restore = restore_binary(
                "pg_restore", manifest.client_tool, manifest.client_version, session.pg_bin_dir
            )
            flags = {
                "no_owner": no_owner,
                "no_acl": no_acl,
                "subset": subset,
                **self._restore_features(pg_restore, transaction_size, statistics),
            }
            parallel = bool(jobs and jobs > 1 and manifest.format == "custom")
            if source.local_path is None and manifest.format != "directory" and not parallel:
                self.log.info(
                    "Restoring %s into %s with %s, streamed into its stdin",
                    source.location.uri,
                    database,
                    pg_restore,
                )
                argv = pg_restore_argv(pg_restore, manifest, None, jobs=None, **flags)
                return self.runner.run(argv, session.env, stdin=source.chunks())
            if source.local_path is None:
                self.log.info(
                    "Downloading %s into a private temporary folder: pg_restore reads a %s archive%s only "
                    "from a local %s",
                    source.location.uri,
                    manifest.format,
                    f" with jobs={jobs}" if parallel else "",
                    "folder" if manifest.format == "directory" else "file",
                )
            with source.local_copy() as artifact:
                self.log.info("Restoring %s into %s with %s", source.location.uri, database, pg_restore)
                argv = pg_restore_argv(pg_restore, manifest, artifact, jobs=jobs, **flags)
                return self.runner.run(argv, session.env)

    def _restore_encrypted(
        self,
        source: ArtifactSource,
        manifest: Manifest,
        database: str,
        identities: Sequence[Any],
        *,
        jobs: int | None,
        no_owner: bool,
        no_acl: bool,
        transaction_size: int | None,
        statistics: bool,
        subset: RestoreSubset | None = None,
    ) -> CommandResult:
        """:meth:`restore` of an age-encrypted backup: decrypted on the fly (plain, custom, tar), or into
        a private temporary folder where pg_restore needs local files (directory, custom with jobs > 1)."""
        with self.session(database) as session:
            if manifest.format == "plain":
                psql = restore_binary(
                    "psql", manifest.client_tool, manifest.client_version, session.pg_bin_dir
                )
                self.log.info(
                    "Restoring %s into %s with %s, decrypted on the fly", source.location.uri, database, psql
                )
                with self._plain_sql(source, manifest, identities) as chunks:
                    return self.runner.run(psql_restore_argv(psql, manifest), session.env, stdin=chunks)
            pg_restore = restore_binary(
                "pg_restore", manifest.client_tool, manifest.client_version, session.pg_bin_dir
            )
            flags = {
                "no_owner": no_owner,
                "no_acl": no_acl,
                "subset": subset,
                **self._restore_features(pg_restore, transaction_size, statistics),
            }
            parallel = bool(jobs and jobs > 1 and manifest.format == "custom")
            if manifest.format != "directory" and not parallel:
                self.log.info(
                    "Restoring %s into %s with %s, decrypted on the fly into its stdin",
                    source.location.uri,
                    database,
                    pg_restore,
                )
                argv = pg_restore_argv(pg_restore, manifest, None, jobs=None, **flags)
                plain = decrypted_stream(source, manifest, identities)
                try:
                    return self.runner.run(argv, session.env, stdin=plain)
                finally:
                    plain.close()
            self.log.info(
                "Decrypting %s into a private temporary folder: pg_restore reads a %s archive%s only from "
                "local files",
                source.location.uri,
                manifest.format,
                f" with jobs={jobs}" if parallel else "",
            )
            with decrypted_copy(source, manifest, identities) as artifact:
                argv = pg_restore_argv(pg_restore, manifest, artifact, jobs=jobs, **flags)
                return self.runner.run(argv, session.env)
