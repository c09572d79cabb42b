"""What the transfer operators (upload to GCS, upload to any store, promote) share: the Asset outlet
of their destination folder, the cancel event ``on_kill`` sets, the shrink guard before publishing
(:mod:`~airflow_provider_pgbackup.shrink`), and what they publish when done (metrics too)."""

from __future__ import annotations

import datetime
import threading
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.lineage import (
    backup_event_metadata,
    dumped_rows,
    operator_lineage,
    operator_link,
    publish_asset_events,
)
from airflow_provider_pgbackup.links import push_link
from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.options import InvalidOptionError, is_templated, parse_flag
from airflow_provider_pgbackup.shrink import ShrinkGuard, ShrinkReport
from airflow_provider_pgbackup.shrink.folder import check_before_publishing
from airflow_provider_pgbackup.storage import (
    ArtifactSource,
    Location,
    LocationLike,
    LockRequest,
    StorageSettings,
    TransferResult,
    check_lock_destination,
    check_on_this_worker,
    lock_request,
    open_source,
    parse_location,
    portable_location,
)


def static_folder_uri(destination: Any) -> str | None:
    """The object-store folder a transfer lands in, up to the first template marker (for the Asset
    outlet); None when the store or its bucket is only known at run time, or for a local folder."""
    if not isinstance(destination, str):
        return None
    static = destination
    for marker in ("{{", "{%"):
        static = static.split(marker, 1)[0]
    if static != destination:
        static = static.rsplit("/", 1)[0]  # "gs://bucket/pre{{ x }}" -> "gs://bucket"
    try:
        location = parse_location(static, what="destination", folder=True)
    except InvalidOptionError:  # the bucket itself is templated ("gs://{{ params.bucket }}/...")
        return None
    return None if location.is_local else location.uri


class TransferOperator(BaseOperator):
    """Base of the operators that move a finished backup: declares the destination folder as an Asset
    outlet (unless ``outlets`` is given), stops before the next object on ``on_kill``, and publishes
    the console link (XCom, under ``console_url_key``, which the operator's extra link reads), the
    asset event's metadata and the OpenLineage datasets when done."""

    console_url_key: str
    transfer_kind = "upload"  # the metrics' kind: upload | promote
    _finished: tuple[Manifest, Location, Location] | None = None  # what execute moved, for lineage
    _shrink: ShrinkReport | None = None  # what the shrink guard found

    def __init__(
        self,
        *,
        outlet_uri: str | None,
        lock_for: datetime.timedelta | float | str | None = None,
        lock_mode: str | None = None,
        lock_legal_hold: bool = False,
        shrink_guard: ShrinkGuard | bool | dict[str, Any] | None = None,
        shrink_acknowledged: bool | str = False,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs and outlet_uri is not None:
            from airflow.sdk import Asset

            kwargs["outlets"] = [Asset(uri=outlet_uri, name=outlet_uri)]
        super().__init__(**kwargs)
        self.lock_for = lock_for
        self.lock_mode = lock_mode
        self.lock_legal_hold = lock_legal_hold
        self._lock(None)
        self.shrink_guard = ShrinkGuard.of(shrink_guard)
        self.shrink_acknowledged = shrink_acknowledged
        if not is_templated(shrink_acknowledged):
            parse_flag("shrink_acknowledged", shrink_acknowledged)

    def _lock(self, destination: Location | None) -> LockRequest | None:
        """The lock to publish with (``lock_for``, ``lock_mode``, ``lock_legal_hold``: see the README's
        "Immutable backups"), checked against ``destination`` when given; None while templated."""
        if is_templated(self.lock_for):
            return None
        lock = lock_request(self.lock_for, self.lock_mode, self.lock_legal_hold)
        if destination is not None:
            check_lock_destination(lock, destination.scheme, destination.uri)
        return lock

    def _read_source(
        self, source: LocationLike, settings: StorageSettings
    ) -> tuple[ArtifactSource, Manifest]:
        """The backup about to be published, opened, and its manifest: read once for the checks before
        publishing (a missing local backup says where it is, not "no manifest")."""
        check_on_this_worker(source)
        opened = open_source(source, what="source", settings=settings)
        return opened, Manifest.from_json(opened.manifest_bytes())

    def _check_shrink(
        self, opened: ArtifactSource, manifest: Manifest, destination: Location, settings: StorageSettings
    ) -> None:
        """The shrink guard, before anything is published: raises ``BackupShrank`` when the backup is
        held (much smaller than the newest verified one of its database in ``destination``)."""
        self._shrink = check_before_publishing(
            manifest,
            destination.child(opened.location.basename),
            destination,
            settings=settings,
            guard=self.shrink_guard,
            acknowledged=parse_flag("shrink_acknowledged", self.shrink_acknowledged),
            logger=self.log,
        )

    @cached_property
    def _cancel(self) -> threading.Event:
        # Created on first use, not in __init__: operators are deep-copied and an Event cannot be.
        return threading.Event()

    def on_kill(self) -> None:
        """Stop before the next chunk or object: nothing is finalized after it, no manifest appears."""
        self._cancel.set()

    def _publish(
        self,
        context: Any,
        result: TransferResult,
        manifest: Manifest,
        *,
        source: Location,
        verified: bool = False,
        settings: StorageSettings | None = None,
    ) -> None:
        """The console link for the extra link (XCom), the outlets' asset-event metadata, and what
        :meth:`get_openlineage_facets_on_complete` reports."""
        # A file's page on the store (its emulator's in the demo), a folder's listing.
        file_page = result.console_url == result.artifact.console_url
        link = operator_link(result.artifact, self) if file_page else result.console_url
        push_link(context, self.console_url_key, link or result.console_url)
        source = portable_location(source)  # a local source: file://<this worker>/<path>
        self._finished = (manifest, source, result.artifact)
        metrics.emit_transfer(
            manifest,
            result.artifact.scheme,
            self.transfer_kind,
            result.transferred_bytes,
            result.duration_seconds,
        )
        shrink = {"shrink": self._shrink.to_dict()} if self._shrink is not None else {}
        publish_asset_events(
            context,
            self.outlets,
            backup_event_metadata(
                manifest,
                result.artifact,
                verified=verified,
                settings=settings,
                source_uri=source.uri,
                **shrink,
            ),
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the backup read in, the copy written out (with its size)."""
        if self._finished is None:
            return operator_lineage([], [])
        manifest, source, artifact = self._finished
        return operator_lineage(
            [source.dataset],
            [artifact.dataset],
            output_size_bytes=manifest.size_bytes,
            output_rows=dumped_rows(manifest),
        )
