"""The scheme registry: ``BACKENDS`` maps a URI's scheme to the backend that serves it, and every question
about a location (parse it, where it is, open it) is answered by asking its backend. The only place a
scheme is looked at; :mod:`airflow_provider_pgbackup.storage` exports all of it."""

from __future__ import annotations

import importlib
import os
from typing import Any

from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import (
    ArtifactSource,
    ArtifactTarget,
    BackupStore,
    Location,
    StorageSettings,
)
from airflow_provider_pgbackup.storage.object_lock import check_lock_destination

__all__ = [
    "BACKENDS",
    "LocationLike",
    "backend_of",
    "check_output_path",
    "check_settings",
    "default_settings",
    "is_local",
    "object_url",
    "open_source",
    "open_store",
    "open_target",
    "parse_location",
    "portable_location",
    "portable_uri",
    "remove_backup",
]

#: scheme -> backend module ("" is a local absolute path; file://<host>/<path> names its writer too).
BACKENDS: dict[str, str] = {
    "": "airflow_provider_pgbackup.storage.local",
    "file": "airflow_provider_pgbackup.storage.local",
    "gs": "airflow_provider_pgbackup.storage.gcs",
    "s3": "airflow_provider_pgbackup.storage.s3",
    "az": "airflow_provider_pgbackup.storage.azure",
    "abfs": "airflow_provider_pgbackup.storage.azure",  # adlfs's names for the same blobs: read as az://
    "abfss": "airflow_provider_pgbackup.storage.azure",
}

LocationLike = str | os.PathLike[str] | Location


def default_settings() -> StorageSettings:
    """What a dump, verification or store uses when the caller passes no settings."""
    return StorageSettings()


def _scheme(text: str, what: str = "path") -> str:
    scheme, sep, _rest = text.partition("://")
    if not sep:
        return ""
    if scheme not in BACKENDS:
        supported = ", ".join(f"{s}://" for s in BACKENDS if s)
        raise InvalidOptionError(
            f"{what} {text!r} uses the scheme {scheme}://, which is not supported; use an absolute local "
            f"path or one of: {supported}"
        )
    return scheme


def backend_of(scheme: str) -> Any:
    """The backend of ``scheme``: an object store's ``BACKEND`` (an ``ObjectBackend``), else the module."""
    module = importlib.import_module(BACKENDS[scheme])
    return getattr(module, "BACKEND", module)


def parse_location(value: LocationLike, *, what: str = "path", folder: bool = False) -> Location:
    """The :class:`Location` of ``value``, validated without touching storage.

    :param value: an absolute local path, a URI of a supported scheme, or a Location.
    :param what: the argument's name, for error messages.
    :param folder: a folder (prefix) of backups rather than an artifact.
    :raises InvalidOptionError: naming the value and what is allowed.
    """
    if isinstance(value, Location):
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidOptionError(
            f"{what} {value!r} must be a string: an absolute local path or a URI such as gs://bucket/name"
        )
    text = os.fspath(value)
    if not isinstance(text, str):
        raise InvalidOptionError(f"{what} {text!r} must be a text path")
    location: Location = backend_of(_scheme(text, what)).parse(text, what=what, folder=folder)
    return location


def is_local(value: LocationLike) -> bool:
    """True for a local path (decided here, like every other scheme question)."""
    return parse_location(value).is_local


def portable_location(value: LocationLike) -> Location:
    """``value`` as another task can use it: an object-store location as it is; a local path with the
    host that wrote it (this one unless recorded), whose :attr:`~Location.uri` is ``file://<host>/<path>``,
    so a task on another worker knows at once that it cannot read it."""
    location = parse_location(value)
    if not location.is_local:
        return location
    portable: Location = backend_of(location.scheme).host_location(location)
    return portable


def portable_uri(value: LocationLike) -> str:
    """The URI of :func:`portable_location`: what a dump's XCom gives later tasks as ``artifact_uri``."""
    return portable_location(value).uri


def object_url(value: LocationLike, settings: StorageSettings | None = None) -> str | None:
    """Where a person looks at a stored backup in a browser: the store's web console (GCS: the object's
    Cloud Console page, its emulator's JSON metadata when the connection names one); None for a local
    path or a store without a page. Reads no credential."""
    location = parse_location(value)
    if location.is_local:
        return None
    backend = backend_of(location.scheme)
    if hasattr(backend, "object_url"):
        url: str | None = backend.object_url(location, settings or default_settings())
        return url
    return location.console_url


def check_output_path(value: LocationLike, *, directory: bool = False, what: str = "output_path") -> Location:
    """Validate a dump's output location: directory-format artifacts need a backend that can stage a
    folder (local paths today). Raises :class:`InvalidOptionError` naming the value."""
    location = parse_location(value, what=what)
    if isinstance(value, str) and value.endswith("/") and not location.is_local and not directory:
        raise InvalidOptionError(f"{what} {value!r} must name an object, not a folder")
    if directory and not location.is_local:
        raise InvalidOptionError(
            f"{what} {location.uri!r} is an object-store URI, which cannot take format 'directory' (pg_dump "
            "writes a directory itself); dump to a local folder and upload it with PgBackupUploadOperator "
            "or PgBackupToGCSOperator, or use format 'custom', 'tar' or 'plain'"
        )
    return location


def check_settings(scheme: str, settings: StorageSettings) -> StorageSettings:
    """Check ``settings`` against what the backend of ``scheme`` (``"gs"``...) accepts (storage classes...),
    without touching storage; raises :class:`InvalidOptionError` naming the value."""
    if scheme not in BACKENDS:
        raise InvalidOptionError(f"scheme {scheme!r} is not one of {', '.join(repr(s) for s in BACKENDS)}")
    check = getattr(backend_of(scheme), "check_settings", None)
    if check is not None:
        check(settings)
    return settings


def open_target(
    value: LocationLike,
    *,
    directory: bool = False,
    overwrite: bool = False,
    settings: StorageSettings | None = None,
) -> ArtifactTarget:
    """The target a dump writes into (nothing with the final name exists before its commit)."""
    location = check_output_path(value, directory=directory)
    check_lock_destination((settings or default_settings()).lock, location.scheme, location.uri)
    target: ArtifactTarget = backend_of(location.scheme).open_target(
        location, directory=directory, overwrite=overwrite, settings=settings or default_settings()
    )
    return target


def open_source(
    value: LocationLike, *, what: str = "path", settings: StorageSettings | None = None
) -> ArtifactSource:
    """The source a verification or a restore reads a backup from."""
    location = parse_location(value, what=what)
    source: ArtifactSource = backend_of(location.scheme).open_source(
        location, settings=settings or default_settings()
    )
    return source


def open_store(value: LocationLike, *, settings: StorageSettings | None = None) -> BackupStore:
    """A folder (prefix) of backups, for retention and for finding the newest backup."""
    location = parse_location(value, what="location", folder=True)
    store: BackupStore = backend_of(location.scheme).open_store(
        location, settings=settings or default_settings()
    )
    return store


def remove_backup(value: LocationLike) -> None:
    """Delete a backup the provider wrote: the manifest first, so a half-deleted backup never looks
    finished. Local paths only (object stores are cleaned by retention, with generation preconditions)."""
    location = parse_location(value)
    if not location.is_local:
        raise InvalidOptionError(f"remove_backup takes a local path, not {location.uri!r}")
    from airflow_provider_pgbackup.storage.local import remove_backup as remove_local

    remove_local(location)
