"""Local (or mounted) folders: staged targets renamed into place, sources read in place, a backup store.

Split by responsibility, as the other backends are: ``location`` (paths, ``file://<host>/<path>``, which
worker wrote a backup), ``write`` (the staged target and its writer lock), ``read`` (sources and the
backup store), ``transfer`` (promote, upload, discard, remove).
"""

from __future__ import annotations

from airflow_provider_pgbackup.storage.base import Location, StorageSettings
from airflow_provider_pgbackup.storage.local.location import (
    FILE_PREFIX,
    SCHEME,
    STAGING_HINT,
    host_location,
    host_uri,
    not_on_this_worker,
    parse,
    this_host,
)
from airflow_provider_pgbackup.storage.local.read import LocalArtifactSource, LocalBackupStore
from airflow_provider_pgbackup.storage.local.transfer import discard_promoted, promote, remove_backup, upload
from airflow_provider_pgbackup.storage.local.write import LocalArtifactTarget


def open_target(
    location: Location, *, directory: bool, overwrite: bool, settings: StorageSettings
) -> LocalArtifactTarget:
    return LocalArtifactTarget(
        location, directory=directory, overwrite=overwrite, file_mode=settings.file_mode
    )


def open_source(location: Location, *, settings: StorageSettings) -> LocalArtifactSource:
    return LocalArtifactSource(location)


def open_store(location: Location, *, settings: StorageSettings) -> LocalBackupStore:
    return LocalBackupStore(location)


__all__ = [
    "FILE_PREFIX",
    "SCHEME",
    "STAGING_HINT",
    "LocalArtifactSource",
    "LocalArtifactTarget",
    "LocalBackupStore",
    "discard_promoted",
    "host_location",
    "host_uri",
    "not_on_this_worker",
    "open_source",
    "open_store",
    "open_target",
    "parse",
    "promote",
    "remove_backup",
    "this_host",
    "upload",
]
