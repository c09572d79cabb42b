"""What a finished task tells Airflow about the backup it handled: asset-event metadata and OpenLineage.

Two reports, one source (the manifest and where the backup is):

- :func:`backup_event_metadata` / :func:`publish_asset_events`: the ``extra`` of the asset events of a
  task's outlets (database, size, sha256, format, verified...), never a secret;
- :func:`operator_lineage`: the ``OperatorLineage`` an operator's ``get_openlineage_facets_on_complete``
  returns. OpenLineage is imported here, lazily: only the OpenLineage listener calls it, and it exists
  only where ``apache-airflow-providers-openlineage`` is installed.

Dataset naming follows OpenLineage's conventions: a PostgreSQL database is ``postgres://host:port`` /
``<database>`` (the namespace the postgres provider's SQL lineage uses, so both join in a lineage
graph); an artifact is named by :attr:`~airflow_provider_pgbackup.storage.Location.dataset`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.storage import Location

DEFAULT_PORT = 5432

Dataset = tuple[str, str]  # (namespace, name)


def postgres_dataset(host: str | None, port: int | None, database: str) -> Dataset:
    """OpenLineage's name of a PostgreSQL database: ``postgres://<host>:<port>`` and the database name.

    The host is lower-cased, as the postgres provider's lineage (``urlparse(...).hostname``) does; no
    user or password is ever part of it."""
    authority = f"{(host or 'localhost').lower()}:{port or DEFAULT_PORT}"
    return f"postgres://{authority}", database


def backup_event_metadata(
    manifest: Manifest, artifact: Location, *, verified: bool, **more: Any
) -> dict[str, Any]:
    """The asset-event ``extra`` of a backup: what a downstream DAG (or a person reading the asset's
    events in the UI) needs to pick it, without opening the manifest. ``verified`` is true only when
    the task that emits the event checked the bytes (the sensor, the restore drill, a promotion of
    the sha256 a verification saw)."""
    metadata: dict[str, Any] = {
        "database": manifest.database,
        "kind": manifest.kind,
        "format": manifest.format,
        "compression": manifest.compression,
        "size_bytes": manifest.size_bytes,
        "sha256": manifest.sha256,
        "encrypted": manifest.encryption is not None,
        "server_version": manifest.server_version,
        "finished_at": manifest.finished_at,
        "artifact_uri": artifact.uri,
        "manifest_uri": artifact.manifest_uri,
        "verified": verified,
    }
    if manifest.mode is not None:
        metadata["mode"] = manifest.mode
    metadata.update(more)
    return metadata


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
