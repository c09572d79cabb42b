"""The Google Cloud Storage backend (``gs://bucket/name``): what the storage registry calls.

``location`` parses URIs and checks settings; ``client`` builds the storage client from an Airflow
connection, ADC or an emulator; ``objects`` implements the object-store calls on one bucket (generations
as version tags). The streamed writer, the dump target, sources, stores, upload and promote are the
shared ones of :mod:`airflow_provider_pgbackup.storage.objects`, as for S3 and Azure. The Google
libraries are imported only when a function here is used.
"""

from __future__ import annotations

from airflow_provider_pgbackup.storage.gcs.client import object_url
from airflow_provider_pgbackup.storage.gcs.location import SCHEME, GCSLocation, check_settings, parse
from airflow_provider_pgbackup.storage.gcs.objects import GCSObjectClient
from airflow_provider_pgbackup.storage.objects.backend import ObjectBackend

BACKEND = ObjectBackend(GCSObjectClient, parse=parse, check_settings=check_settings, object_url=object_url)

__all__ = [
    "BACKEND",
    "SCHEME",
    "GCSLocation",
    "GCSObjectClient",
    "check_settings",
    "object_url",
    "parse",
]
