"""The Amazon S3 backend (``s3://bucket/key``): what the storage registry calls.

``location`` parses URIs and checks settings; ``client`` builds the boto3 client (through the Amazon
provider's ``S3Hook`` when a connection is given) and implements the object-store calls; the streamed
multipart writer, the dump target, sources, stores, upload and promote are the shared ones of
:mod:`airflow_provider_pgbackup.storage.objects`. boto3 is imported only when a function here is used.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.storage import objects
from airflow_provider_pgbackup.storage.base import Location, StorageSettings, TransferResult
from airflow_provider_pgbackup.storage.s3.client import S3ObjectClient, get_s3_client
from airflow_provider_pgbackup.storage.s3.location import SCHEME, S3Location, check_settings, parse


def client_for(location: Location, settings: StorageSettings) -> S3ObjectClient:
    return S3ObjectClient(location.container, settings)


def open_target(
    location: S3Location, *, directory: bool, overwrite: bool, settings: StorageSettings
) -> objects.ObjectArtifactTarget:
    check_settings(settings)
    return objects.open_object_target(
        client_for(location, settings), location, directory=directory, overwrite=overwrite
    )


def open_source(location: S3Location, *, settings: StorageSettings) -> objects.ObjectArtifactSource:
    return objects.ObjectArtifactSource(client_for(location, settings), location)


def open_store(location: S3Location, *, settings: StorageSettings) -> objects.ObjectBackupStore:
    return objects.ObjectBackupStore(client_for(location, settings), location)


def upload(
    source: Location,
    destination: S3Location,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """A finished local backup (artifact, then manifest) into ``s3://bucket/prefix``."""
    return objects.upload_backup(
        client_for(destination, settings), source, destination, log=log, cancel=cancel
    )


def promote(
    source: objects.ObjectArtifactSource,
    destination: S3Location,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Server-side copy (UploadPartCopy of the pinned ETags) to another prefix of the bucket's store."""
    same = destination.container == source.location.container
    client: objects.ObjectClient = source.client if same else client_for(destination, settings)
    return objects.promote_backup(source, client, destination, log=log, cancel=cancel)


def discard_promoted(
    staged: objects.ObjectArtifactSource, promoted: objects.ObjectArtifactSource, *, log: Any
) -> list[str]:
    return objects.discard_promoted(staged, promoted, log=log)


__all__ = [
    "SCHEME",
    "S3Location",
    "S3ObjectClient",
    "check_settings",
    "discard_promoted",
    "get_s3_client",
    "open_source",
    "open_store",
    "open_target",
    "parse",
    "promote",
    "upload",
]
