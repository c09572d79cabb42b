"""PgRestoreOperator: the restore drill. Verify a backup, restore it, and compare row counts."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.compat import AirflowException, AirflowFailException
from airflow_provider_pgbackup.content import (
    INVENTORY_KINDS,
    STREAM_METHOD,
    ContentRecord,
    ContentRecordError,
    allow_sequences_ahead,
    compare_content,
    content_verdict,
    format_differences,
    restricted_to,
)
from airflow_provider_pgbackup.failures import failure_policy, restore_failure
from airflow_provider_pgbackup.hooks.pg_dump import PgCommandError, PgDumpHook, load_identities
from airflow_provider_pgbackup.lineage import (
    RESTORE_XCOM_KEY,
    backup_event_metadata,
    dumped_rows,
    operator_lineage,
    publish_asset_events,
    restore_verdict,
)
from airflow_provider_pgbackup.manifest import Manifest, ManifestError
from airflow_provider_pgbackup.options import (
    InvalidOptionError,
    check_bin_dir,
    check_conn_id,
    check_name,
    check_optional_name,
    is_templated,
    parse_flag,
)
from airflow_provider_pgbackup.selection import RestoreSubset
from airflow_provider_pgbackup.sqlscript import SqlScript
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    ArtifactSource,
    Location,
    StorageSettings,
    StoreNotFound,
    open_source,
    parse_location,
    portable_uri,
)
from airflow_provider_pgbackup.verify import (
    ArtifactCorrupt,
    ArtifactMissing,
    VerificationReport,
    verify_backup,
)

PARALLEL_FORMATS = ("custom", "directory")
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


def _row_security(manifest: Manifest) -> bool:
    """Whether the dump read rows with ``--enable-row-security``: the drill then reads them so too."""
    extra = manifest.options.get("extra_args") if isinstance(manifest.options, dict) else None
    return isinstance(extra, list) and "--enable-row-security" in extra


def mismatch_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table of the tables whose restored row count differs from the manifest's."""
    bad = [r for r in rows if not r["ok"]]
    names = [f"{r['schema']}.{r['table']}" for r in bad]
    width = max([len("table"), *(len(n) for n in names)])
    lines = [f"  {'table':<{width}}  {'expected':>10}  {'restored':>10}"]
    for name, row in zip(names, bad, strict=True):
        restored = "missing" if row["restored"] is None else str(row["restored"])
        lines.append(f"  {name:<{width}}  {row['expected']:>10}  {restored:>10}")
    return "\n".join(lines)


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
        self._verdict: dict[str, Any] | None = None  # what the comparison found, pushed as an XCom
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
        path = self._check_artifact_path()
        database = self.database or f"pgbackup_restore_{secrets.token_hex(4)}"
        check_database_name(database)
        settings = StorageSettings(
            gcp_conn_id=self.gcp_conn_id or None,
            aws_conn_id=self.aws_conn_id or None,
            wasb_conn_id=self.wasb_conn_id or None,
            impersonation_chain=self.impersonation_chain or None,
        )
        source = open_source(path, what="artifact_path", settings=settings)
        if self.decryption_conn_id:
            self._identities = load_identities(check_conn_id("decryption_conn_id", self.decryption_conn_id))
        report = self._verify(source)
        try:
            manifest = Manifest.from_json(source.manifest_bytes())
        except (OSError, ManifestError) as err:
            raise AirflowException(
                f"could not read the manifest of {path} after verifying it: {err}"
            ) from err
        if manifest.sha256 != report.sha256:
            raise AirflowException(
                f"the manifest of {path} changed after verification (sha256 {manifest.sha256}, verified "
                f"{report.sha256}): the backup is being replaced; not restoring it"
            )
        if manifest.encryption is not None and self._identities is None:
            raise AirflowFailException(
                f"{path} is encrypted (age): give decryption_conn_id, a connection whose password holds "
                "an AGE-SECRET-KEY-1... identity of one of its recipients"
            )

        self.hook.restore_client(manifest)  # a client too old for the archive fails before any database
        subset = self._check_subset(manifest)
        artifact = parse_location(portable_uri(source.location))
        script = self._guard_sql_script(source, manifest, report, database)
        created = False
        try:
            created = self._prepare_database(database)
            self._check_target_is_empty(database)
            self._check_not_the_source(manifest, database)
            if subset is not None:
                self.hook.create_schemas(database, self._subset_schemas(manifest, subset))
            started = time.monotonic()
            self._restore(source, manifest, database, script)
            restore_seconds = self._restore_seconds = round(time.monotonic() - started, 3)
            tables, content = self._compare(manifest, database)
        except BaseException:
            if created and self.drop_after:
                self._drop_after_failure(database)
            raise
        finally:
            self._push_verdict(context, manifest, artifact, database, dropped=created and self.drop_after)
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
                restore_verdict=(self._verdict or {}).get("verdict"),
            ),
        )
        return {
            "database": database,
            "artifact_path": path,
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

    def _check_subset(self, manifest: Manifest) -> RestoreSubset | None:
        """The subset to restore, refused before anything is created when the backup cannot be restored
        in part (plain SQL) or a name matches none of its tables."""
        subset = self.subset
        if subset is None:
            return None
        subset.check_format(manifest.format)
        archive_tables = self._archive_tables(manifest)
        if archive_tables is None:
            self.log.info("The manifest lists no tables: restoring %s without checking the names", subset)
            return subset
        missing = subset.unmatched(archive_tables)
        if missing:
            shown = ", ".join(f"{s}.{t}" for s, t in archive_tables[:20])
            raise AirflowFailException(
                f"{' and '.join(missing)} match no table of the backup; it holds: {shown}"
                + (" ..." if len(archive_tables) > 20 else "")
            )
        return subset

    @staticmethod
    def _archive_tables(manifest: Manifest) -> list[tuple[str, str]] | None:
        """The backup's tables, from its content record or row counts (None when it recorded neither)."""
        if manifest.content is not None:
            return [(t["schema"], t["table"]) for t in manifest.content.get("tables", [])]
        if manifest.row_counts is not None:
            return [(r.schema, r.table) for r in manifest.row_counts]
        return None

    def _subset_schemas(self, manifest: Manifest, subset: RestoreSubset) -> set[str]:
        """The schemas a subset restore needs in the target (pg_restore does not create them)."""
        archive_tables = self._archive_tables(manifest) or []
        return set(subset.schemas) | {schema for schema, _table in subset.selected(archive_tables)}

    def _check_not_the_source(self, manifest: Manifest, database: str) -> None:
        """Refuse the database the backup was taken from (unless ``allow_source_database``): the same
        name on the same server, known by its ``system_identifier`` (else by host and port)."""
        if self.allow_source_database or database != manifest.database:
            return
        recorded = manifest.source or {}
        where, identifier = self.hook.server_identity()
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

    def _record_verdict(
        self,
        verdict: str,
        differences: Sequence[dict[str, Any]],
        tables_compared: int | None,
        notes: Any = (),
    ) -> None:
        self._verdict = {
            "verdict": verdict,
            "differences": list(differences),
            "tables_compared": tables_compared,
            "notes": list(notes),
        }

    def _push_verdict(
        self, context: Any, manifest: Manifest, artifact: Location, database: str, *, dropped: bool
    ) -> None:
        """The comparison's verdict as the XCom :data:`RESTORE_XCOM_KEY`, identical or not (a failed
        task emits no asset event; the "Backups" page reads this)."""
        getter = context.get if hasattr(context, "get") else None
        ti = getter("ti") if getter else None
        if self._verdict is not None:
            metrics.emit_drill(manifest, artifact.scheme, self._verdict, self._restore_seconds)
        if self._verdict is None or ti is None:
            return
        subset = self.subset
        verdict = restore_verdict(
            manifest,
            artifact,
            restored_into=database,
            dropped_after=dropped,
            subset=subset.to_dict() if subset is not None else None,
            **self._verdict,
        )
        try:
            ti.xcom_push(key=RESTORE_XCOM_KEY, value=verdict)
        except Exception:  # the restore's own outcome (and its exception) matters more than this record
            self.log.exception("Could not keep the restore's verdict as the XCom %s", RESTORE_XCOM_KEY)

    def _verify(self, source: ArtifactSource) -> VerificationReport:
        path = source.location.uri
        try:
            report = verify_backup(
                source,
                verify_checksum=True,
                verify_contents=self.verify_contents,
                pg_bin_dir=self.pg_bin_dir,
                runner=self.hook.runner,
                identities=self._identities,
                scan_script=True,
            )
        except ArtifactMissing as err:
            raise AirflowException(f"nothing to restore: {err}") from err
        except ArtifactCorrupt as err:
            raise AirflowFailException(
                f"refusing to restore {path}: check {err.check!r} failed: {err.reason}"
            ) from err
        except StoreNotFound as err:
            raise AirflowFailException(f"nothing to restore: {err}") from err
        self.log.info(
            "Backup %s verified: %s", path, ", ".join(f"{c.name} {c.status}" for c in report.checks)
        )
        return report

    def _guard_sql_script(
        self, source: ArtifactSource, manifest: Manifest, report: VerificationReport, database: str
    ) -> SqlScript | None:
        """Plain SQL: refuse, before the target is created or anything runs, a script that would drop,
        alter or write into what exists on the server (read during verification's contents check, or
        now when that check is off)."""
        if manifest.format != "plain":
            return None  # pg_restore applies --clean / --create only when given them: it never is
        return self.hook.guard_sql_script(
            source, manifest, database, script=report.sql_script, identities=self._identities
        )

    def _prepare_database(self, database: str) -> bool:
        """Create the target (returns True) or check that it exists (returns False)."""
        exists = self.hook.database_exists(database)
        if self.create_database:
            if exists:
                raise AirflowFailException(
                    f"database {database!r} already exists; create_database=True restores only into a new "
                    "database (choose another name, drop it yourself, or pass create_database=False)"
                )
            self.hook.create_database(database)
            return True
        if not exists:
            raise AirflowFailException(
                f"database {database!r} does not exist; pass create_database=True to create it"
            )
        return False

    def _check_target_is_empty(self, database: str) -> None:
        if self.allow_non_empty_database or self.hook.database_is_empty(database):
            return
        raise AirflowFailException(
            f"database {database!r} is not empty (it has tables, views or sequences outside the system "
            "schemas); refusing to restore into it. Pass allow_non_empty_database=True to do it anyway"
        )

    def _restore(
        self, source: ArtifactSource, manifest: Manifest, database: str, script: SqlScript | None
    ) -> None:
        jobs = self.jobs
        if jobs and manifest.format not in PARALLEL_FORMATS:
            self.log.info("jobs=%s ignored: a %s artifact restores serially", jobs, manifest.format)
            jobs = None
        if manifest.format == "plain" and (self.no_owner or self.no_acl):
            self.log.info("no_owner / no_acl do not apply to plain SQL: it restores as pg_dump wrote it")
        try:
            self.hook.restore(
                source,
                manifest,
                database,
                jobs=jobs,
                no_owner=self.no_owner,
                no_acl=self.no_acl,
                transaction_size=self.transaction_size,
                statistics=self.restore_statistics,
                identities=self._identities,
                subset=self.subset,
                script=script,
            )
        except PgCommandError as err:
            raise restore_failure(err, f"restoring {source.location.uri} into {database!r}") from err

    def _compare(
        self, manifest: Manifest, database: str
    ) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
        """Row counts (always, when recorded), then the content record (when recorded and asked).

        A record taken from pg_dump's COPY data is measured first: reading the restored tables back
        gives their row counts too, so they are not counted a second time."""
        expected = self._expected_content(manifest)
        found = None
        if expected is not None and expected.checksum_method == STREAM_METHOD:
            found = self._measure(manifest, database, expected)
        rows = self._compare_row_counts(manifest, database, found)
        if expected is None:
            return rows, None
        return rows, self._compare_content(
            database, expected, found or self._measure(manifest, database, expected)
        )

    def _expected_content(self, manifest: Manifest) -> ContentRecord | None:
        if not self.compare_content or manifest.content is None:
            return None
        try:
            expected = ContentRecord.from_dict(manifest.content)
        except ContentRecordError as err:  # verification parsed it already; this is belt and braces
            raise AirflowFailException(f"the manifest's content record is unreadable: {err}") from err
        subset = self.subset
        if subset is not None:
            expected = restricted_to(
                expected,
                subset.selected([(t.schema, t.table) for t in expected.tables]),
                schemas=subset.schemas,
            )
            self.log.info("Comparing only what the subset restored: %d tables", len(expected.tables))
        return expected

    def _measure(self, manifest: Manifest, database: str, expected: ContentRecord) -> ContentRecord:
        return self.hook.measure_restored(
            database, expected, row_security=_row_security(manifest), jobs=self.jobs
        )

    def _compare_row_counts(
        self, manifest: Manifest, database: str, found: ContentRecord | None
    ) -> list[dict[str, Any]] | None:
        if not self.compare_row_counts:
            return None
        if manifest.row_counts is None:
            self.log.info("The manifest has no row counts (pg_dumpall, or record='none')")
            return None
        subset = self.subset
        counted = [r for r in manifest.row_counts if subset is None or subset.restores(r.schema, r.table)]
        names = [(r.schema, r.table) for r in counted]
        if found is not None:
            measured = {(t.schema, t.table): t.rows for t in found.tables}
            restored = {name: measured.get(name) for name in names}
        else:
            restored = self.hook.count_table_rows(database, names, row_security=_row_security(manifest))
        rows = [
            {
                "schema": r.schema,
                "table": r.table,
                "expected": r.rows,
                "restored": restored[(r.schema, r.table)],
                "ok": restored[(r.schema, r.table)] == r.rows,
            }
            for r in counted
        ]
        bad = [r for r in rows if not r["ok"]]
        self._record_verdict(
            "ROW COUNTS DIFFER" if bad else "ROW COUNTS MATCH",
            [
                {
                    "kind": "rows",
                    "object": f"{r['schema']}.{r['table']}",
                    "expected": str(r["expected"]),
                    "found": "missing" if r["restored"] is None else str(r["restored"]),
                }
                for r in bad
            ],
            len(rows),
        )
        if bad:
            raise AirflowFailException(
                f"restored row counts differ from the manifest in {len(bad)} of {len(rows)} tables:\n"
                + mismatch_table(rows)
            )
        self.log.info("Row counts of all %d tables match the manifest", len(rows))
        return rows

    def _compare_content(
        self, database: str, expected: ContentRecord, found: ContentRecord
    ) -> dict[str, Any]:
        """Checksums, sequences, large objects and inventory of the restored database vs the manifest."""
        found, notes = allow_sequences_ahead(expected, found)
        for note in notes:
            self.log.info("%s", note)
        differences = compare_content(expected, found)
        skipped = []
        source_major, target_major = expected.server_version_num // 10000, found.server_version_num // 10000
        if source_major != target_major:
            kinds = set(INVENTORY_KINDS)
            differences = [d for d in differences if d.kind not in kinds]
            skipped.append(
                f"schema inventory not compared: dumped from PostgreSQL {source_major}, restored into "
                f"{target_major} (definitions are deparsed per version)"
            )
            self.log.info("%s", skipped[-1])
        verdict = content_verdict(differences)
        table = format_differences(differences)
        result = {
            "verdict": verdict,
            "differences": [d.to_dict() for d in differences],
            "tables": len(found.tables),
            "sequences": len(found.sequences) if found.sequences is not None else None,
            "large_objects": found.large_objects.count if found.large_objects is not None else None,
            "inventory_kinds": len(found.inventory) if found.inventory is not None else None,
            "notes": [*notes, *skipped],
            "seconds": found.duration_seconds,
        }
        self._record_verdict(
            verdict, [d.to_dict() for d in differences], len(found.tables), [*notes, *skipped]
        )
        if differences:
            raise AirflowFailException(
                f"the restored database {database!r} is not identical to the backup:\n{table}"
            )
        self.log.info("Restored database compared with the manifest's content record:\n%s", table)
        return result

    def _drop_after_failure(self, database: str) -> None:
        """Drop the database this run created; a failure here is logged, the original error is kept."""
        try:
            self.hook.drop_database(database)
        except Exception:
            self.log.exception(
                "Could not drop database %s after the failed restore; drop it by hand", database
            )

    def on_kill(self) -> None:
        self.hook.kill()
