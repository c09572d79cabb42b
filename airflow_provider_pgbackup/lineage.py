"""What a finished task tells Airflow about the backup it handled: asset-event metadata and OpenLineage.

Two reports, one source (the manifest and where the backup is):

- :func:`backup_event_metadata` / :func:`publish_asset_events`: the ``extra`` of the asset events of a
  task's outlets (database, size, sha256, format, verified...), never a secret;
  :func:`retention_event_metadata`: what a retention run kept and deleted in a folder;
  :func:`restore_verdict`: what a restore compared (the XCom :data:`RESTORE_XCOM_KEY`, pushed also when
  the comparison fails, when no asset event is emitted). The "Backups" page of the Airflow UI is built
  from these: the events of the assets in the group :data:`CATALOGUE_GROUP`, and those XComs;
- :func:`operator_lineage`: the ``OperatorLineage`` an operator's ``get_openlineage_facets_on_complete``
  returns. OpenLineage is imported here, lazily: only the OpenLineage listener calls it, and it exists
  only where ``apache-airflow-providers-openlineage`` is installed.

Dataset naming follows OpenLineage's conventions: a PostgreSQL database is ``postgres://host:port`` /
``<database>`` (the namespace the postgres provider's SQL lineage uses, so both join in a lineage
graph); an artifact is named by :attr:`~airflow_provider_pgbackup.storage.Location.dataset`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    Location,
    LocationLike,
    StorageSettings,
    object_url,
    parse_location,
)

DEFAULT_PORT = 5432
#: The asset group whose events the "Backups" page reads: give a backup task an outlet
#: ``Asset(name=..., group=CATALOGUE_GROUP)`` and its backups appear there.
CATALOGUE_GROUP = "pgbackup"
#: The XCom key under which a restore (a drill too) keeps its verdict, identical or not.
RESTORE_XCOM_KEY = "pgbackup_restore"
#: Differences kept in a verdict (the task log has them all).
VERDICT_DIFFERENCES_CAP = 20

log = logging.getLogger(__name__)

Dataset = tuple[str, str]  # (namespace, name)


def postgres_dataset(host: str | None, port: int | None, database: str) -> Dataset:
    """OpenLineage's name of a PostgreSQL database: ``postgres://<host>:<port>`` and the database name.

    The host is lower-cased, as the postgres provider's lineage (``urlparse(...).hostname``) does; no
    user or password is ever part of it."""
    authority = f"{(host or 'localhost').lower()}:{port or DEFAULT_PORT}"
    return f"postgres://{authority}", database


def backup_event_metadata(
    manifest: Manifest,
    artifact: Location,
    *,
    verified: bool,
    settings: StorageSettings | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The asset-event ``extra`` of a backup: what a downstream DAG (or a person reading the asset's
    events in the UI) needs to pick it, without opening the manifest. ``verified`` is true only when
    the task that emits the event checked the bytes (the sensor, the restore drill, a promotion of
    the sha256 a verification saw). ``settings``: the store's, for the object's web page
    (``object_url``: the cloud console, or the emulator the connection names)."""
    source = manifest.source or {}
    metadata: dict[str, Any] = {
        "event": "backup",
        "database": manifest.database,
        "kind": manifest.kind,
        "format": manifest.format,
        "compression": manifest.compression,
        "size_bytes": manifest.size_bytes,
        "sha256": manifest.sha256,
        "encrypted": manifest.encryption is not None,
        "server_version": manifest.server_version,
        "finished_at": manifest.finished_at,
        "duration_seconds": manifest.duration_seconds,
        "artifact_uri": artifact.uri,
        "manifest_uri": artifact.manifest_uri,
        "object_url": _object_url(artifact, settings),
        "verified": verified,
    }
    if source.get("postgres_conn_id"):
        metadata["postgres_conn_id"] = source["postgres_conn_id"]
    if source.get("host"):
        metadata["server"] = f"{source['host']}:{source.get('port') or DEFAULT_PORT}"
    if manifest.mode is not None:
        metadata["mode"] = manifest.mode
    if manifest.lock is not None:
        metadata["lock"] = manifest.lock
    metadata.update(more)
    return metadata


def _object_url(artifact: Location, settings: StorageSettings | None) -> str | None:
    try:
        return object_url(artifact, settings)
    except Exception as err:  # a link is a convenience: it never fails the task that reports it
        log.warning("no web page for %s: %s", artifact.uri, err)
        return None


def operator_link(artifact: LocationLike, operator: object) -> str:
    """An extra link's URL for ``artifact`` (a Location, or a path or URI from the task's XCom): the
    object's web page as :func:`~airflow_provider_pgbackup.storage.object_url` finds it with the
    operator's store connections (the emulator's or the endpoint's page where they name one); "" when
    there is none."""
    try:
        location = parse_location(artifact)
    except ValueError:
        return ""

    def conn_id(name: str, default: str | None) -> str | None:
        value = getattr(operator, name, default)
        return value if isinstance(value, str) and value else None

    settings = StorageSettings(
        gcp_conn_id=conn_id("gcp_conn_id", None),
        aws_conn_id=conn_id("aws_conn_id", DEFAULT_AWS_CONN_ID),
        wasb_conn_id=conn_id("wasb_conn_id", DEFAULT_WASB_CONN_ID),
    )
    return _object_url(location, settings) or ""


def retention_event_metadata(
    location: Location,
    *,
    kept: Sequence[Location],
    deleted: Sequence[tuple[Manifest, Location]],
    held: Sequence[Location] = (),
) -> dict[str, Any]:
    """The asset-event ``extra`` of a retention run over ``location``: the artifacts it kept (all the
    complete backups the folder holds now), those of them the shrink guard holds (``held``: kept, not
    counted), and each backup it deleted, described by :func:`backup_event_metadata`. A reader of the
    events drops what was deleted, and what the folder no longer holds, from its list of backups."""
    return {
        "event": "retention",
        "location": location.uri,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "kept": [artifact.uri for artifact in kept],
        "held": [artifact.uri for artifact in held],
        "deleted": [
            backup_event_metadata(manifest, artifact, verified=False) for manifest, artifact in deleted
        ],
    }


def restore_verdict(
    manifest: Manifest,
    artifact: Location,
    *,
    restored_into: str,
    dropped_after: bool,
    verdict: str,
    differences: Sequence[Mapping[str, Any]] = (),
    tables_compared: int | None = None,
    subset: Mapping[str, Sequence[str]] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """What a restore of ``artifact`` found (the XCom :data:`RESTORE_XCOM_KEY`): the verdict
    (``IDENTICAL``, ``DIFFERENT`` or ``ROW COUNTS DIFFER``), the first differences, the tables compared
    and the subset restored (``{"tables": [...], "schemas": [...]}``), beside the backup's identity."""
    return {
        "event": "restore",
        "artifact_uri": artifact.uri,
        "sha256": manifest.sha256,
        "database": manifest.database,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "restored_into": restored_into,
        "dropped_after": dropped_after,
        "verdict": verdict,
        "differences": [dict(d) for d in differences[:VERDICT_DIFFERENCES_CAP]],
        "differences_count": len(differences),
        "tables_compared": tables_compared,
        "subset": {k: list(v) for k, v in subset.items()} if subset else None,
        "notes": list(notes),
    }


def publish_asset_events(context: Any, outlets: Iterable[Any] | None, metadata: Mapping[str, Any]) -> None:
    """Attach ``metadata`` to the asset event of every outlet of the task (nothing without outlets)."""
    getter = context.get if hasattr(context, "get") else None
    events = getter("outlet_events") if getter else None
    if events is None:
        return
    for outlet in outlets or ():
        try:
            events[outlet].extra = dict(metadata)
        except (KeyError, TypeError, AttributeError):  # not an asset (an asset alias, a dataset URI)
            continue


def operator_lineage(
    inputs: Iterable[Dataset],
    outputs: Iterable[Dataset],
    *,
    output_size_bytes: int | None = None,
    output_rows: int | None = None,
) -> Any:
    """An ``OperatorLineage`` with these datasets; the outputs carry the output-statistics facet (bytes
    written and, when known, the rows dumped)."""
    from airflow.providers.common.compat.openlineage.facet import (
        Dataset as OpenLineageDataset,
    )
    from airflow.providers.common.compat.openlineage.facet import (
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    output_facets: dict[str, Any] = {}
    if output_size_bytes is not None:
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
            rowCount=output_rows, size=output_size_bytes
        )
    return OperatorLineage(
        inputs=[OpenLineageDataset(namespace=namespace, name=name) for namespace, name in inputs],
        outputs=[
            OutputDataset(namespace=namespace, name=name, outputFacets=output_facets)
            for namespace, name in outputs
        ],
    )


def dumped_rows(manifest: Manifest) -> int | None:
    """Rows the dump holds, when the manifest counted them."""
    if manifest.row_counts is None:
        return None
    return sum(count.rows for count in manifest.row_counts)
