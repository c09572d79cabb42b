"""The registry functions of an object-store backend, once for every store built on this layer.

GCS, S3 and Azure differ only in their :class:`~airflow_provider_pgbackup.storage.objects.ObjectClient`,
their URIs and the settings they accept; each backend package binds one :class:`ObjectBackend` as its
``BACKEND``, which the storage registry calls.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.storage.base import Location, StorageSettings, TransferResult
from airflow_provider_pgbackup.storage.objects.client import ObjectClient
from airflow_provider_pgbackup.storage.objects.read import ObjectArtifactSource, ObjectBackupStore
from airflow_provider_pgbackup.storage.objects.transfer import discard_promoted, promote_backup, upload_backup
from airflow_provider_pgbackup.storage.objects.write import ObjectArtifactTarget, open_object_target


def endpoint_object_url(endpoint: str, container: str, name: str) -> str:
    """The object's URL on the store's own endpoint (an emulator, MinIO...), path-style:
    ``<endpoint>/<container>/<name>``. What the endpoint carries beside its scheme, host, port and path
    (a ``user:password@``, a query such as a SAS token) is left out: a link never holds a credential."""
    parts = urllib.parse.urlsplit(endpoint.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    base = urllib.parse.urlunsplit((parts.scheme or "http", netloc, parts.path.rstrip("/"), "", ""))
    return f"{base}/{urllib.parse.quote(container, safe='')}/{urllib.parse.quote(name, safe='/')}"


class ObjectBackend:
    """What the storage registry calls for one kind of object store (a backend package's ``BACKEND``):
    ``parse``, ``check_settings``, ``open_target``, ``open_source``, ``open_store``, ``upload``,
    ``promote`` and ``discard_promoted``.

    :param client: builds the store's client for a container (bucket) and the settings.
    :param parse: the store's URI parser (``parse(text, *, what, folder) -> Location``, no I/O).
    :param check_settings: refuses settings the store cannot use (storage class, encryption...).
    :param object_url: where a person looks at an object (default: the location's console page).
    """

    def __init__(
        self,
        client: Callable[[str, StorageSettings], ObjectClient],
        *,
        parse: Callable[..., Location],
        check_settings: Callable[[StorageSettings], None],
        object_url: Callable[[Any, StorageSettings], str | None] | None = None,
    ) -> None:
        self._client = client
        self.parse = parse
        self.check_settings = check_settings
        self._check_settings = check_settings
        self._object_url = object_url

    def object_url(self, location: Location, settings: StorageSettings) -> str | None:
        return self._object_url(location, settings) if self._object_url else location.console_url

    def client_for(self, location: Location, settings: StorageSettings) -> ObjectClient:
        return self._client(location.container, settings)

    def open_target(
        self, location: Location, *, directory: bool, overwrite: bool, settings: StorageSettings
    ) -> ObjectArtifactTarget:
        self._check_settings(settings)
        return open_object_target(
            self.client_for(location, settings), location, directory=directory, overwrite=overwrite
        )

    def open_source(self, location: Location, *, settings: StorageSettings) -> ObjectArtifactSource:
        return ObjectArtifactSource(self.client_for(location, settings), location)

    def open_store(self, location: Location, *, settings: StorageSettings) -> ObjectBackupStore:
        return ObjectBackupStore(self.client_for(location, settings), location)

    def upload(
        self,
        source: Location,
        destination: Location,
        *,
        settings: StorageSettings,
        log: Any,
        cancel: threading.Event | None = None,
    ) -> tuple[TransferResult, Manifest]:
        """A finished local backup (artifact, then manifest) into ``destination``."""
        return upload_backup(
            self.client_for(destination, settings), source, destination, log=log, cancel=cancel
        )

    def promote(
        self,
        source: ObjectArtifactSource,
        destination: Location,
        *,
        settings: StorageSettings,
        log: Any,
        cancel: threading.Event | None = None,
    ) -> tuple[TransferResult, Manifest]:
        """Server-side copy of the pinned objects to ``destination`` (the source's client when the
        container is the same)."""
        # A lock is asked with these settings: the destination's client carries them.
        same = destination.container == source.location.container and settings.lock is None
        client = source.client if same else self.client_for(destination, settings)
        return promote_backup(source, client, destination, log=log, cancel=cancel)

    @staticmethod
    def discard_promoted(
        staged: ObjectArtifactSource, promoted: ObjectArtifactSource, *, log: Any
    ) -> list[str]:
        return discard_promoted(staged, promoted, log=log)
