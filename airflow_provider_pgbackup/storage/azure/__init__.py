"""The Azure Blob Storage backend (``az://container/name``): what the storage registry calls.

``location`` parses URIs and checks settings; ``client`` builds the ``BlobServiceClient`` (through the
Microsoft Azure provider's ``WasbHook`` when a connection is given) and implements the object-store
calls; the streamed block writer, the dump target, sources, stores, upload and promote are the shared
ones of :mod:`airflow_provider_pgbackup.storage.objects`. The Azure SDK is imported only when used.
"""

from __future__ import annotations

from airflow_provider_pgbackup.storage.azure.client import AzureObjectClient, get_blob_service, object_url
from airflow_provider_pgbackup.storage.azure.location import SCHEME, AzureLocation, check_settings, parse
from airflow_provider_pgbackup.storage.objects.backend import ObjectBackend

BACKEND = ObjectBackend(AzureObjectClient, parse=parse, check_settings=check_settings, object_url=object_url)

__all__ = [
    "BACKEND",
    "SCHEME",
    "AzureLocation",
    "AzureObjectClient",
    "check_settings",
    "get_blob_service",
    "object_url",
    "parse",
]
