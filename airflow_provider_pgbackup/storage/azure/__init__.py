"""The Azure Blob Storage backend (``az://container/name``): what the storage registry calls.

``location`` parses URIs and checks settings; ``client`` builds the ``BlobServiceClient`` (through the
Microsoft Azure provider's ``WasbHook`` when a connection is given) and implements the object-store
calls; the streamed block writer, the dump target, sources, stores, upload and promote are the shared
ones of :mod:`airflow_provider_pgbackup.storage.objects`. The Azure SDK is imported only when used.
"""

from __future__ import annotations

from airflow_provider_pgbackup.storage.azure.client import AzureObjectClient, get_blob_service
from airflow_provider_pgbackup.storage.azure.location import SCHEME, AzureLocation, check_settings, parse
from airflow_provider_pgbackup.storage.objects.backend import ObjectBackend

_BACKEND = ObjectBackend(AzureObjectClient, check_settings)
client_for = _BACKEND.client_for
open_target = _BACKEND.open_target
open_source = _BACKEND.open_source
open_store = _BACKEND.open_store
upload = _BACKEND.upload
promote = _BACKEND.promote
discard_promoted = _BACKEND.discard_promoted

__all__ = [
    "SCHEME",
    "AzureLocation",
    "AzureObjectClient",
    "check_settings",
    "discard_promoted",
    "get_blob_service",
    "open_source",
    "open_store",
    "open_target",
    "parse",
    "promote",
    "upload",
]
