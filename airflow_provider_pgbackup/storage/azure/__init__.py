"""The Azure Blob Storage backend (``az://container/name``): what the storage registry calls.

``location`` parses URIs and checks settings; ``client`` builds the ``BlobServiceClient`` (through the
Microsoft Azure provider's ``WasbHook`` when a connection is given) and implements the object-store
calls; the streamed block writer, the dump target, sources, stores, upload and promote are the shared
ones of :mod:`airflow_provider_pgbackup.storage.objects`. The Azure SDK is imported only when used.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.storage import objects
from airflow_provider_pgbackup.storage.azure.client import AzureObjectClient, get_blob_service
from airflow_provider_pgbackup.storage.azure.location import SCHEME, AzureLocation, check_settings, parse
from airflow_provider_pgbackup.storage.base import Location, StorageSettings, TransferResult


def client_for(location: Location, settings: StorageSettings) -> AzureObjectClient:
    return AzureObjectClient(location.container, settings)


def open_target(
    location: AzureLocation, *, directory: bool, overwrite: bool, settings: StorageSettings
) -> objects.ObjectArtifactTarget:
    check_settings(settings)
    return objects.open_object_target(
        client_for(location, settings), location, directory=directory, overwrite=overwrite
    )


def open_source(location: AzureLocation, *, settings: StorageSettings) -> objects.ObjectArtifactSource:
    return objects.ObjectArtifactSource(client_for(location, settings), location)


def open_store(location: AzureLocation, *, settings: StorageSettings) -> objects.ObjectBackupStore:
    return objects.ObjectBackupStore(client_for(location, settings), location)


def upload(
    source: Location,
    destination: AzureLocation,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """A finished local backup (artifact, then manifest) into ``az://container/prefix``."""
    return objects.upload_backup(
        client_for(destination, settings), source, destination, log=log, cancel=cancel
    )


def promote(
    source: objects.ObjectArtifactSource,
    destination: AzureLocation,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Server-side copy (Copy Blob of the pinned ETags) to another prefix of the account's store."""
    same = destination.container == source.location.container
    client: objects.ObjectClient = source.client if same else client_for(destination, settings)
    return objects.promote_backup(source, client, destination, log=log, cancel=cancel)


def discard_promoted(
    staged: objects.ObjectArtifactSource, promoted: objects.ObjectArtifactSource, *, log: Any
) -> list[str]:
    return objects.discard_promoted(staged, promoted, log=log)


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
