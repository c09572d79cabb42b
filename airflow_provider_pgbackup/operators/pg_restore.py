"""PgRestoreOperator: the restore drill. Verify a backup, restore it, and compare row counts."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_pgbackup.failures import failure_policy
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook, load_identities
from airflow_provider_pgbackup.lineage import (
    backup_event_metadata,
    dumped_rows,
    operator_lineage,
    publish_asset_events,
)
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.restore_comparison import RestoreComparison
from airflow_provider_pgbackup.operators.restore_run import PARALLEL_FORMATS, RestoreRun
from airflow_provider_pgbackup.operators.restore_source import verified_backup
from airflow_provider_pgbackup.operators.restore_target import check_database_name, check_subset
from airflow_provider_pgbackup.options import (
    InvalidOptionError,
    check_bin_dir,
    check_conn_id,
    check_optional_name,
    is_templated,
    parse_flag,
)
from airflow_provider_pgbackup.selection import RestoreSubset
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    Location,
    StorageSettings,
    open_source,
    parse_location,
    portable_location,
)

__all__ = ["PARALLEL_FORMATS", "PgRestoreOperator"]


class PgRestoreOperator(BaseOperator):
    """Restore a backup into a database, then check that every table has the rows the manifest counted.

    Run as a restore drill (the default): the backup is verified first (size, sha256, content), a scratch
    database is created, the backup restored into it, row counts compared with the manifest, and the
    scratch database dropped, also when anything failed. custom / tar / directory archives go through
    ``pg_restore --exit-on-error``; plain pg_dump and pg_dumpall SQL through ``psql -v ON_ERROR_STOP=1``,
    decompressed on the fly. The operator refuses to restore into an existing non-empty database unless
    ``allow_non_empty_database`` is set, and never drops a database it did not create.

    Nor does the SQL it replays drop, alter or write into a database, role or tablespace it did not
    create: before anything runs, plain SQL is read as psql splits it (in the ``contents`` pass) and
    refused, naming them, when what it creates, alters, drops or ``\\connect``-s to exists on the server
    (pg_dumpall: its roles, ``template1``...; see the README, "Restore drills"). pg_dumpall SQL is
    cluster-wide and is not dropped afterwards: drill it on an empty, disposable server.

    A ``gs://bucket/path/name`` artifact is restored straight from Google Cloud Storage. It is verified
    there first (as :class:`~airflow_provider_pgbackup.sensors.backup_artifact.PgBackupArtifactSensor`
    does), and the restore then reads the very object generation that was verified. custom and tar
    archives stream into pg_restore's stdin and plain SQL, decompressed on the fly, into psql's: no
    local copy. pg_restore can read neither a directory-format artifact nor a custom archive with
    ``jobs`` > 1 from a stream, so those are downloaded into a private temporary folder (mode 0700,
    under ``TMPDIR``: it needs room for the artifact) and removed after the restore, also on failure.

    Returns (XCom) the target database, whether it was created and dropped, the verification report, and
    per table ``expected``, ``restored`` and ``ok``.

    :param artifact_path: the artifact (file or folder) to restore: an absolute local path or a
        ``gs://bucket/path/name`` URI; its manifest is beside it. Templated, typically
        ``"{{ ti.xcom_pull(task_ids='dump')['artifact_path'] }}"``.
    :param postgres_conn_id: Airflow ``postgres`` connection of the server to restore into. Templated.
    :param database: target database. Default with ``create_database``: a new name
        ``pgbackup_restore_<random>``; required otherwise. Templated.
    :param create_database: create ``database`` (it must not exist yet) from ``template0``. Templated
        (as are ``allow_non_empty_database`` and ``allow_source_database``: a rendered "true"/"false").
    :param drop_after: drop the database at the end, also on failure; only allowed for a database this
        operator creates. Default: the value of ``create_database``.
    :param jobs: parallel pg_restore workers for custom and directory archives (ignored for tar and plain
        SQL, which restore serially). A ``gs://`` custom archive with ``jobs`` > 1 is downloaded to a
        temporary file first; without ``jobs`` it is streamed.
    :param no_owner: restore without ownership (``--no-owner``; archives only).
    :param no_acl: restore without privileges (``--no-acl``; archives only).
    :param allow_non_empty_database: restore into an existing database that already holds relations.
    :param compare_row_counts: compare restored row counts with the manifest's and fail on a mismatch.
    :param compare_content: when the manifest records checksums (``record_checksums``, the default),
        compare every table's rows by checksum, the sequences, the large objects and the schema
        inventory with the restored database, and fail (non-retryably) on any difference, naming each
        table or object with expected vs found; the verdict (``IDENTICAL``) and the differences are in
        the XCom and in the log as a table. A sequence restored *ahead* of its recorded value is
        accepted (it advanced while pg_dump ran); the inventory is compared only when the target
        server has the source's major version (definitions are deparsed per version).
    :param verify_contents: run the content checks (``pg_restore --list`` / SQL trailer) before restoring;
        size and sha256 are always checked.
    :param pg_bin_dir: folder searched first for ``pg_restore`` and ``psql``.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for a ``gs://`` artifact_path
        (Application Default Credentials when the default connection does not exist;
        ``STORAGE_EMULATOR_HOST`` selects an emulator). Unused for a local path. Templated.
    :param transaction_size: ``pg_restore --transaction-size=N`` (PostgreSQL 17+): commit every N
        objects, much faster for schemas with many objects; a pg_restore without it restores as
        before (logged).
    :param restore_statistics: ``pg_restore --statistics`` (PostgreSQL 18+): restore the planner
        statistics the archive holds (dump with ``statistics=True``); logged and skipped where
        unsupported.
    :param aws_conn_id: Airflow ``aws`` connection for an ``s3://`` artifact_path, resolved by the Amazon
        provider's ``S3Hook`` (boto3's default credential chain when the default connection does not
        exist). Templated.
    :param wasb_conn_id: Airflow ``wasb`` connection for an ``az://`` artifact_path, resolved by the Microsoft
        Azure provider's ``WasbHook`` (``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL``
        when the default connection does not exist). Templated.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (one e-mail, or a chain
        whose last account is impersonated; needs the ``google`` extra). Templated.
    :param decryption_conn_id: for an age-encrypted backup: an Airflow connection whose password holds
        the ``AGE-SECRET-KEY-1...`` identity (keep it in a secrets backend). The backup is verified
        (plaintext sha256, ``pg_restore --list``) and restored decrypted on the fly; the identity is
        masked in the log and never written to disk, argv or the environment. Templated.
    :param tables: restore only the tables of these names (pg_restore ``--table``: exact names, each in
        every schema, or only in ``schemas`` when both are given; the tables without their indexes,
        constraints and triggers). Archive formats only. A list, or a comma-separated string. Templated.
    :param schemas: restore only the objects of these schemas (pg_restore ``--schema``). Templated.
        With either, the schemas are created in the target first, the backup's tables the subset does
        not name are left out, and the comparison covers exactly what was restored (rows and
        checksums of those tables, the schemas' sequences; no inventory or large objects). A name that
        matches no table of the backup fails the task before anything is restored.
    :param allow_source_database: restore into the very database the backup was taken from (same
        server, by its ``system_identifier``, and same name). Refused by default: it would add the
        backup's objects and rows to the live database.
    """

    template_fields: Sequence[str] = (
        "artifact_path",
        "postgres_conn_id",
        "database",
        "tables",
        "schemas",
        "create_database",
        "allow_non_empty_database",
        "allow_source_database",
        "gcp_conn_id",
        "aws_conn_id",
        "wasb_conn_id",
        "impersonation_chain",
        "decryption_conn_id",
    )
    ui_color = "#e8d5f5"

    def __init__(
        self,
        *,
        artifact_path: str,
        postgres_conn_id: str = PgDumpHook.default_conn_name,
        database: str | None = None,
        create_database: bool = True,
        drop_after: bool | None = None,
        jobs: int | None = None,
        no_owner: bool = True,
        no_acl: bool = True,
        allow_non_empty_database: bool = False,
        compare_row_counts: bool = True,
        compare_content: bool = True,
        verify_contents: bool = True,
        pg_bin_dir: str | None = None,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        transaction_size: int | None = None,
        restore_statistics: bool = False,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        decryption_conn_id: str | None = None,
        tables: Sequence[str] | str | None = None,
        schemas: Sequence[str] | str | None = None,
        allow_source_database: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.decryption_conn_id = decryption_conn_id
        self.tables = tables
        self.schemas = schemas
        self.allow_source_database = allow_source_database
        self._restore_seconds: float | None = None  # how long the replay took (a metric)
        self._identities: list[Any] | None = None
        self._finished: tuple[Manifest, Location, str | None] | None = None  # for lineage
        self.artifact_path = artifact_path
        self.postgres_conn_id = postgres_conn_id
        self.database = database
        self.create_database = create_database
        self.drop_after = create_database if drop_after is None else drop_after
        self.jobs = jobs
        self.no_owner = no_owner
        self.no_acl = no_acl
        self.allow_non_empty_database = allow_non_empty_database
        self.compare_row_counts = compare_row_counts
        self.compare_content = compare_content
        self.verify_contents = verify_contents
        self.pg_bin_dir = pg_bin_dir
        self.gcp_conn_id = gcp_conn_id
        self.transaction_size = transaction_size
        self.restore_statistics = restore_statistics
        self.impersonation_chain = impersonation_chain
        self._check_flags()
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        if not is_templated(artifact_path):
            self._check_artifact_path()
        if not is_templated(database):
            check_optional_name("database", database)
            if database:
                check_database_name(database)
        if not is_templated(postgres_conn_id):
            check_conn_id("postgres_conn_id", postgres_conn_id)
        if decryption_conn_id is not None and not is_templated(decryption_conn_id):
            check_conn_id("decryption_conn_id", decryption_conn_id)
        if not is_templated(tables, schemas):
            RestoreSubset.build(tables, schemas)

    #: The on/off arguments (a rendered "true"/"false" is accepted).
    FLAGS = (
        "create_database",
        "drop_after",
        "no_owner",
        "no_acl",
        "allow_non_empty_database",
        "compare_row_counts",
        "compare_content",
        "verify_contents",
        "restore_statistics",
        "allow_source_database",
    )

    def _check_flags(self) -> None:
        for name in self.FLAGS:
            value = getattr(self, name)
            if not is_templated(value):  # create_database and the allow_* flags may be templated
                setattr(self, name, parse_flag(name, value))
        known = not is_templated(self.create_database, self.drop_after)
        if known and self.drop_after and not self.create_database:
            raise InvalidOptionError(
                "drop_after=True needs create_database=True: the operator never drops a database it did "
                "not create"
            )
        for name in ("jobs", "transaction_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidOptionError(f"{name} {value!r} must be a whole number >= 1")
        if known and self.database is None and not self.create_database:
            raise InvalidOptionError("database is required with create_database=False")
        check_bin_dir(self.pg_bin_dir)
        StorageSettings(gcp_conn_id=self.gcp_conn_id or None)

    def validate(self) -> None:
        """Check every argument without touching a server or storage (at construction for literal
        values, again at the start of ``execute``); raise :class:`InvalidOptionError` naming the value."""
        self._check_flags()
        self._check_artifact_path()
        check_conn_id("postgres_conn_id", self.postgres_conn_id)
        if check_optional_name("database", self.database):
            check_database_name(self.database)  # type: ignore[arg-type]
        RestoreSubset.build(self.tables, self.schemas)

    @property
    def subset(self) -> RestoreSubset | None:
        """The tables / schemas to restore (None: the whole backup), from the rendered arguments."""
        return RestoreSubset.build(self.tables, self.schemas)

    def _check_artifact_path(self) -> str:
        return parse_location(self.artifact_path, what="artifact_path").uri

    @cached_property
    def hook(self) -> PgDumpHook:
        return PgDumpHook(postgres_conn_id=self.postgres_conn_id, pg_bin_dir=self.pg_bin_dir)

    def execute(self, context: Any) -> dict[str, Any]:
        with failure_policy(self.postgres_conn_id):
            return self._execute(context)

    def _execute(self, context: Any) -> dict[str, Any]:
        self.validate()
        database = self.database or f"pgbackup_restore_{secrets.token_hex(4)}"
        check_database_name(database)
        settings = StorageSettings(
            gcp_conn_id=self.gcp_conn_id or None,
            aws_conn_id=self.aws_conn_id or None,
            wasb_conn_id=self.wasb_conn_id or None,
            impersonation_chain=self.impersonation_chain or None,
        )
        source = open_source(self._check_artifact_path(), what="artifact_path", settings=settings)
        if self.decryption_conn_id:
            self._identities = load_identities(check_conn_id("decryption_conn_id", self.decryption_conn_id))
        report, manifest = verified_backup(
            source,
            runner=self.hook.runner,
            verify_contents=bool(self.verify_contents),
            pg_bin_dir=self.pg_bin_dir,
            identities=self._identities,
            log=self.log,
        )
        self.hook.restore_client(manifest)  # a client too old for the archive fails before any database
        subset = check_subset(self.subset, manifest, self.log)
        run = RestoreRun(self, source, manifest, database, identities=self._identities)
        script = run.guard_sql_script(report)
        comparison = RestoreComparison(
            self.hook,
            self.log,
            subset=subset,
            compare_row_counts=bool(self.compare_row_counts),
            compare_content=bool(self.compare_content),
            jobs=self.jobs,
        )
        artifact = portable_location(source.location)
        try:
            tables, content = run.run(comparison, script, subset)
        finally:
            created = run.created
            restore_seconds = self._restore_seconds = run.restore_seconds
            comparison.push_verdict(
                context,
                manifest,
                artifact,
                database,
                dropped=created and self.drop_after,
                restore_seconds=restore_seconds,
            )
        dropped = False
        if created and self.drop_after:
            self.hook.drop_database(database)
            dropped = True
        self._finished = (manifest, artifact, None if dropped else database)
        publish_asset_events(
            context,
            self.outlets,
            backup_event_metadata(
                manifest,
                artifact,
                verified=True,
                settings=settings,
                restored_into=database,
                dropped_after=dropped,
                restore_verdict=(comparison.verdict or {}).get("verdict"),
            ),
        )
        return {
            "database": database,
            "artifact_path": source.location.uri,
            "kind": manifest.kind,
            "format": manifest.format,
            "created_database": created,
            "dropped_database": dropped,
            "restore_seconds": restore_seconds,
            "row_counts_compared": tables is not None,
            "tables": tables or [],
            "content": content,
            "subset": subset.to_dict() if subset is not None else None,
            "verification": report.to_dict(),
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the backup in; out, the database it was restored into, unless that was a drill's
        scratch database, dropped at the end."""
        if self._finished is None:
            return operator_lineage([], [])
        manifest, artifact, kept = self._finished
        outputs = [self.hook.lineage_dataset(kept)] if kept is not None else []
        return operator_lineage([artifact.dataset], outputs, output_rows=dumped_rows(manifest))

    def on_kill(self) -> None:
        self.hook.kill()
