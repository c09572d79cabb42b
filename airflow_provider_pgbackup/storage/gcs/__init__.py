"""The Google Cloud Storage backend (``gs://bucket/name``): what the storage registry calls.

Split by direction: ``location`` (URIs, settings), ``client`` (credentials), ``write`` (resumable
uploads, the dump target), ``read`` (sources and stores), ``transfer`` (upload and server-side promote).
The Google libraries are imported only when a function here is used.
"""

from __future__ import annotations

from airflow_provider_pgbackup.storage.gcs.client import object_url
from airflow_provider_pgbackup.storage.gcs.location import SCHEME, GCSLocation, check_settings, parse
from airflow_provider_pgbackup.storage.gcs.read import (
    GCSArtifactSource,
    GCSBackupStore,
    open_source,
    open_store,
)
from airflow_provider_pgbackup.storage.gcs.transfer import discard_promoted, promote, upload
from airflow_provider_pgbackup.storage.gcs.write import GCSArtifactTarget, GCSObjectWriter, open_target

__all__ = [
    "SCHEME",
    "GCSArtifactSource",
    "GCSArtifactTarget",
    "GCSBackupStore",
    "GCSLocation",
    "GCSObjectWriter",
    "check_settings",
    "discard_promoted",
    "object_url",
    "open_source",
    "open_store",
    "open_target",
    "parse",
    "promote",
    "upload",
]
