"""What the two dump operators share: the storage settings from their arguments, the XCom of a finished
dump, and the base class (the hook, validation, the asset event, the extra link, lineage, on_kill).
:class:`~.pg_dump.PgDumpOperator` and :class:`~.pg_dumpall.PgDumpAllOperator` are the two kinds."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.encryption import check_artifact_name, parse_recipients
from airflow_provider_pgbackup.failures import failure_policy
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.lineage import (
    backup_event_metadata,
    dumped_rows,
    operator_lineage,
    publish_asset_events,
)
from airflow_provider_pgbackup.links import XCOM_LINK, BackupConsoleLink, published_link, push_link
from airflow_provider_pgbackup.manifest import DEFAULT_FILE_MODE, Manifest
from airflow_provider_pgbackup.options import (
    InvalidOptionError,
    PgDumpAllOptions,
    PgDumpOptions,
    check_bin_dir,
    check_conn_id,
    check_optional_name,
    is_templated,
    parse_flag,
)
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    Location,
    LocationLike,
    StorageSettings,
    check_lock_destination,
    check_output_path,
    lock_request,
    portable_location,
)

#: What ``lock_wait_timeout`` takes: a duration, seconds, or PostgreSQL's text (``"5min"``).
TimeoutValue = str | int | float | datetime.timedelta | None


def storage_settings(operator: Any, where: Location | None = None) -> StorageSettings:
    """Where the dump goes and how; raises InvalidOptionError naming a bad gcs_chunk_size or file_mode.
    ``where``: the output_path already parsed (else it is parsed here when a lock must be checked)."""
    try:
        lock = (
            None
            if is_templated(operator.lock_for)
            else lock_request(operator.lock_for, operator.lock_mode, operator.lock_legal_hold)
        )
        if lock is not None and (where is not None or not is_templated(operator.output_path)):
            where = where or check_output_path(operator.output_path)
            check_lock_destination(lock, where.scheme, where.uri)  # a local path: refused now
        return StorageSettings(
            lock=lock,
            gcp_conn_id=operator.gcp_conn_id or None,
            aws_conn_id=operator.aws_conn_id or None,
            wasb_conn_id=operator.wasb_conn_id or None,
            chunk_size=operator.gcs_chunk_size,
            file_mode=operator.file_mode,
            impersonation_chain=None
            if is_templated(operator.impersonation_chain)
            else (operator.impersonation_chain or None),
        )
    except InvalidOptionError as err:
        raise InvalidOptionError(str(err).replace("chunk_size", "gcs_chunk_size", 1)) from err


def xcom_result(manifest: Manifest, output_path: LocationLike) -> dict[str, Any]:
    """The dump operators' XCom: the manifest plus where the artifact and manifest are. No secret.

    ``artifact_uri`` is what later tasks should read: the ``gs://`` URI, or for a local artifact
    ``file://<worker>/<path>``, naming the worker that wrote it (``artifact_path`` stays the plain path).
    """
    location = check_output_path(output_path, directory=manifest.format == "directory")
    result = manifest.to_dict()
    result["artifact_path"] = location.uri
    result["manifest_path"] = location.manifest_uri
    result["artifact_uri"] = portable_location(location).uri
    return result


@dataclasses.dataclass(frozen=True)
class _Rendered:
    """A dump's rendered arguments, parsed once (:meth:`BackupOperator._rendered`)."""

    options: PgDumpOptions | PgDumpAllOptions
    where: Location  # output_path
    settings: StorageSettings
    recipients: tuple[str, ...]


class BackupOperator(BaseOperator):
    """What both dump operators share: their connection, output, storage and encryption arguments (each
    documented on the operators), the hook, validation errors as non-retryable failures, on_kill."""

    def __init__(
        self,
        *,
        output_path: str,
        postgres_conn_id: str = PgDumpHook.default_conn_name,
        pg_bin_dir: str | None = None,
        overwrite: bool = False,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        gcs_chunk_size: int = DEFAULT_CHUNK_SIZE,
        file_mode: int = DEFAULT_FILE_MODE,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        encryption_recipients: str | Sequence[str] | None = None,
        lock_for: datetime.timedelta | float | str | None = None,
        lock_mode: str | None = None,
        lock_legal_hold: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lock_for = lock_for
        self.lock_mode = lock_mode
        self.lock_legal_hold = lock_legal_hold
        self.encryption_recipients = encryption_recipients
        self.postgres_conn_id = postgres_conn_id
        self.output_path = output_path
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        self.gcs_chunk_size = gcs_chunk_size
        self.file_mode = file_mode
        self.impersonation_chain = impersonation_chain
        self.pg_bin_dir = pg_bin_dir
        self.overwrite = overwrite

    postgres_conn_id: str
    pg_bin_dir: str | None
    output_path: str
    operator_extra_links = (BackupConsoleLink(name="Backup in console", key=XCOM_LINK),)
    encryption_recipients: str | Sequence[str] | None
    _finished: tuple[Manifest, Location] | None = None  # what execute wrote, for lineage

    @cached_property
    def hook(self) -> PgDumpHook:
        return PgDumpHook(postgres_conn_id=self.postgres_conn_id, pg_bin_dir=self.pg_bin_dir)

    def _rendered(self) -> _Rendered:
        """The rendered arguments checked and parsed, each once: what :meth:`execute` passes down typed
        (the hook, the storage target, the manifest, the XCom, the link and the asset event)."""
        self._check_connection_arguments()
        options = self._options()
        where = check_output_path(self.output_path, directory=getattr(options, "format", None) == "directory")
        settings = storage_settings(self, where)
        recipients = parse_recipients(self.encryption_recipients)
        check_artifact_name(self.output_path, recipients)
        return _Rendered(options, where, settings, recipients)

    def _backup(self, rendered: _Rendered) -> Manifest:
        """Dump with what both tools take."""
        return self._dump(
            rendered.options,
            rendered.where,
            overwrite=parse_flag("overwrite", self.overwrite),
            storage_settings=rendered.settings,
            encryption_recipients=rendered.recipients,
        )

    def _dump(self, options: PgDumpOptions | PgDumpAllOptions, where: Location, **common: Any) -> Manifest:
        """Run the tool through the hook into ``where``; ``common``: ``overwrite``, ``storage_settings``
        and ``encryption_recipients``."""
        raise NotImplementedError

    def _check_connection_arguments(self) -> None:
        """postgres_conn_id, pg_bin_dir and overwrite (and database where there is one)."""
        if not is_templated(self.postgres_conn_id):
            check_conn_id("postgres_conn_id", self.postgres_conn_id)
        if not is_templated(getattr(self, "database", None)):
            check_optional_name("database", getattr(self, "database", None))
        check_bin_dir(self.pg_bin_dir)
        parse_flag("overwrite", self.overwrite)  # type: ignore[attr-defined]

    def validate(self) -> None:
        """Check every argument without touching a server or storage; raise :class:`InvalidOptionError`
        naming the first bad value. Run at construction for literal values, and again at the start of
        ``execute`` once templates are rendered."""
        self._rendered()

    def _options(self) -> PgDumpOptions | PgDumpAllOptions:
        """The tool's options from the (rendered) arguments; raises :class:`InvalidOptionError`."""
        raise NotImplementedError

    def execute(self, context: Any) -> dict[str, Any]:
        with failure_policy(self.postgres_conn_id):
            return self._execute(context)

    def _execute(self, context: Any) -> dict[str, Any]:
        rendered = self._rendered()
        manifest = self._backup(rendered)
        lock, where = rendered.settings.lock, rendered.where
        if lock is not None:  # what the object layer recorded in the stored manifest (the same date)
            manifest = dataclasses.replace(
                manifest, lock=lock.lock_for(where.scheme, manifest.finished_at).to_dict()
            )
        result = xcom_result(manifest, where)
        artifact = portable_location(where)  # what result["artifact_uri"] names
        self._finished = (manifest, artifact)
        metrics.emit_dump(manifest, artifact.scheme)
        push_link(context, XCOM_LINK, published_link(self, context, artifact))
        publish_asset_events(
            context,
            self.outlets,
            backup_event_metadata(manifest, artifact, verified=False, settings=rendered.settings),
        )
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the dumped database in, the artifact out (with its size and dumped rows).
        ``pg_dumpall`` reads a whole server, not one database: no input dataset."""
        if self._finished is None:
            return operator_lineage([], [])
        manifest, artifact = self._finished
        inputs = [self.hook.lineage_dataset(manifest.database)] if manifest.kind == "pg_dump" else []
        return operator_lineage(
            inputs,
            [artifact.dataset],
            output_size_bytes=manifest.size_bytes,
            output_rows=dumped_rows(manifest),
        )

    def on_kill(self) -> None:
        self.hook.kill()

    def _check_encryption_literal(self) -> None:
        """At parse time: literal recipients are checked (a malformed one is named), and with a literal
        output_path its ``.age`` suffix."""
        recipients = self.encryption_recipients
        if is_templated(recipients):
            return
        parsed = parse_recipients(recipients)
        if not is_templated(self.output_path):
            check_artifact_name(self.output_path, parsed)
