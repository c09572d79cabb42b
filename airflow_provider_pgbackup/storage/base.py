"""What every storage backend provides: the location value, the errors and the protocols (the settings
are in ``settings``, re-exported here).

A backup is an *artifact* (one file or object, or a folder of them for pg_dump's directory format) and
its *manifest* (``<artifact>.manifest.json``), written last: its presence marks a finished backup.

- :class:`ArtifactTarget` (write): bytes stream in; nothing with the final name exists before
  :meth:`~ArtifactTarget.commit`; :meth:`~ArtifactTarget.abort` leaves nothing.
- :class:`ArtifactSource` (read): the manifest, sizes, digests and a stream of the bytes.
- :class:`BackupStore` (list/delete): a folder of backups, for retention.
- promote (server-side copy) and upload are module functions of each backend; see ``__init__``.

Backends import only this module (and the leaves below it), never verify or the hook.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import airflow_provider_pgbackup.storage.settings as _settings
from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX, FileDigest, Manifest

# Re-exported: every backend and operator imports the settings from here.
CHUNK_MULTIPLE = _settings.CHUNK_MULTIPLE
DEFAULT_AWS_CONN_ID = _settings.DEFAULT_AWS_CONN_ID
DEFAULT_CHUNK_SIZE = _settings.DEFAULT_CHUNK_SIZE
DEFAULT_GCP_CONN_ID = _settings.DEFAULT_GCP_CONN_ID
DEFAULT_PARTS_IN_FLIGHT = _settings.DEFAULT_PARTS_IN_FLIGHT
DEFAULT_RETRY_TIMEOUT = _settings.DEFAULT_RETRY_TIMEOUT
DEFAULT_WASB_CONN_ID = _settings.DEFAULT_WASB_CONN_ID
StorageSettings = _settings.StorageSettings
check_impersonation_chain = _settings.check_impersonation_chain

HASH_CHUNK_BYTES = 1024 * 1024


# ------------------------------------------------------------------------------------------- errors
class StorageError(Exception):
    """Base class of the storage errors."""


class ArtifactMismatchError(StorageError):
    """Bytes read do not match the manifest (sha256 or size): the artifact is corrupt or was changed."""


class ObjectConflictError(StorageError):
    """A different object already exists at the name; the provider never overwrites it."""


class CredentialsError(StorageError):
    """The credentials for a store cannot be used; the message never contains key material."""


class StoreNotFound(StorageError):
    """The bucket (or container) of a URI does not exist: a configuration error, not "not there yet"."""


#: The GCS name of :class:`StoreNotFound`.
BucketNotFound = StoreNotFound


class UploadCancelled(StorageError):
    """The upload was stopped (task killed); the object being written was not finalized."""


class ArtifactInUse(StorageError):
    """Another run is writing a backup to the same output path right now (retryable)."""


class ArtifactNotOnThisWorker(StorageError):
    """A local backup is not on this machine: the task that wrote it ran on another worker, and the two
    share no disk. Waiting cannot help here; a retry may run on the worker that has it (Celery), or may
    not (Kubernetes): object storage (a ``gs://`` staging location) is the fix."""


class ArtifactRefused(StorageError):
    """A source refuses to read what is at a path (a symbolic link instead of the artifact itself)."""


class EntryChanged(StorageError):
    """An entry of a backup folder changed after it was listed (another run replaced it): not deleted."""


class UnsafeObjectName(StorageError):
    """An object of a directory-format artifact has a name that cannot be a relative local path (a ``..``
    segment, an absolute name): the same object gives the same answer, so it fails now."""


# ------------------------------------------------------------------------------------------ location
_L = TypeVar("_L", bound="Location")


@dataclass(frozen=True)
class Location:
    """Where an artifact (or a folder of backups) is: the one value every layer passes around.

    ``scheme`` is ``""`` for a local path, else the URI scheme (``"gs"``...); ``container`` is the bucket,
    or for a local path the host that wrote it when known (``file://<host>/<path>``, else ``""``);
    ``name`` the object name or absolute path, without a trailing ``/`` (``""`` is a bucket's root).
    Build one with :func:`airflow_provider_pgbackup.storage.parse_location`, the only place a URI's
    scheme is looked at.
    """

    scheme: str
    container: str
    name: str

    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def uri(self) -> str:
        """What :func:`~airflow_provider_pgbackup.storage.parse_location` reads back: the URI, or a local
        path (``file://<host>/<quoted path>`` when the host that wrote it is known)."""
        if self.is_local:
            if self.container:
                quote = urllib.parse.quote
                return f"file://{quote(self.container, safe='')}{quote(self.name, safe='/')}"
            return self.name
        return (
            f"{self.scheme}://{self.container}/{self.name}"
            if self.name
            else f"{self.scheme}://{self.container}"
        )

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def manifest(self: _L) -> _L:
        """The manifest beside this artifact."""
        return self.sibling(self.basename + MANIFEST_SUFFIX)

    @property
    def manifest_uri(self) -> str:
        return self.manifest.uri

    @property
    def parent(self: _L) -> _L:
        parent = self.name.rsplit("/", 1)[0] if "/" in self.name else ""
        if self.is_local and not parent:
            parent = "/"
        return type(self)(self.scheme, self.container, parent)

    def child(self: _L, relative: str) -> _L:
        if not self.name or self.name == "/":
            name = (self.name + relative) if self.is_local else relative
        else:
            name = f"{self.name}/{relative}"
        return type(self)(self.scheme, self.container, name)

    def sibling(self: _L, name: str) -> _L:
        return self.parent.child(name)

    @property
    def console_url(self) -> str | None:
        """A web page showing the object (a cloud console); None where there is none."""
        return None

    @property
    def dataset(self) -> tuple[str, str]:
        """``(namespace, name)`` of this location as an OpenLineage dataset: ``gs://bucket`` / ``s3://bucket``
        / ``az://container`` and the object name; a local path is ``file://<host>`` (``file`` when the
        host is unknown) and the absolute path, as Airflow's own file assets are translated."""
        if self.is_local:
            return (f"file://{self.container}" if self.container else "file"), self.name
        return f"{self.scheme}://{self.container}", self.name or "/"

    @property
    def console_folder_url(self) -> str | None:
        return None

    def __str__(self) -> str:
        return self.uri


# ------------------------------------------------------------------------------------------ digests
@dataclass(frozen=True)
class ArtifactDigest:
    """Size and sha256 of a committed artifact; ``files`` is set for directory artifacts."""

    size_bytes: int
    sha256: str
    files: tuple[FileDigest, ...] | None = None


class Sha256Counter:
    """The hashing stage: sha256 and size of the bytes that pass through (what a target stores)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def write(self, data: bytes) -> int:
        """File-object form, so downloads can stream into it without a local copy."""
        self.update(data)
        return len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def digest(self) -> ArtifactDigest:
        return ArtifactDigest(self.size, self.sha256)


def combine_file_digests(files: tuple[FileDigest, ...]) -> str:
    """One digest over a directory: sha256 of ``"<sha256>  <path>\\n"`` lines sorted by path."""
    lines = "".join(f"{f.sha256}  {f.path}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def directory_digest(files: tuple[FileDigest, ...]) -> ArtifactDigest:
    return ArtifactDigest(sum(f.size_bytes for f in files), combine_file_digests(files), files)


# ---------------------------------------------------------------------------------------- protocols
class ArtifactTarget(Protocol):
    """What the hook writes a dump into (one per backend).

    The hook streams bytes with :meth:`write` (or, for a directory artifact, lets pg_dump write into
    :attr:`staging_directory`), calls :meth:`commit`, then :meth:`write_manifest`; when that fails it
    calls :meth:`remove_committed`, and :meth:`abort` on any earlier failure or kill.
    """

    @property
    def location(self) -> Location: ...

    @property
    def staging_directory(self) -> Path | None: ...

    @property
    def bytes_written(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> ArtifactDigest: ...

    def abort(self) -> None: ...

    def write_manifest(self, manifest: Manifest) -> str: ...

    def remove_committed(self) -> None: ...


class ArtifactSource(Protocol):
    """Where a backup's bytes are read from (one per backend).

    ``FileNotFoundError`` from :meth:`manifest_bytes` or :meth:`artifact_sizes` means "not there yet".
    """

    @property
    def location(self) -> Location: ...

    @property
    def local_path(self) -> Path | None:
        """The artifact's own local path, or None when its bytes must be streamed or downloaded."""
        ...

    def present(self) -> bool:
        """A cheap look, no download: True once the manifest and the artifact both exist."""
        ...

    def manifest_bytes(self) -> bytes:
        """The manifest's JSON; raises ``FileNotFoundError`` when there is none."""
        ...

    def artifact_sizes(self) -> dict[str, int] | int:
        """A file artifact's size, or a directory artifact's ``{relative '/' path: size}``."""
        ...

    def digest(self) -> ArtifactDigest:
        """Size and sha256 (and per-file digests for a directory), computed from the bytes."""
        ...

    def chunks(self) -> Iterator[bytes]:
        """A fresh stream of a file artifact's bytes."""
        ...

    def local_copy(self) -> contextlib.AbstractContextManager[Path]:
        """The artifact (file or folder) as a local path for the duration of a ``with`` block.

        pg_restore cannot read a directory-format artifact, or a custom archive with several jobs,
        from a stream. A local source yields its own path; a remote one downloads into a private
        temporary folder (0700) that is removed when the block ends.
        """
        ...


@dataclass(frozen=True)
class StoredEntry:
    """One top-level name in a backup folder: a manifest, a file artifact, or a folder (artifact or partial).

    :param name: the name directly under the folder.
    :param is_folder: a directory (local) or a ``name/`` prefix (object store).
    :param size_bytes: total size of its files.
    :param updated: newest modification time of anything in it (UTC).
    :param files: a folder's ``(relative path, size)``.
    :param objects: object stores: ``(object name, generation or ETag)`` of every object, deleted with that
        precondition; a local folder: ``(name, "<inode>:<mtime ns>")``, deleted only while it is that version.
    :param metadata: object stores: the single object's metadata.
    :param provider_written: the store has evidence that this provider wrote the entry: every object
        carries the provider's upload id (object stores); the record in the lock file of one of its local
        writers names it (a local folder). Never a name alone; False where there is no evidence.
    :param in_use: a running writer of this provider holds the lock that names it (local folders).
    """

    name: str
    is_folder: bool
    size_bytes: int
    updated: datetime.datetime
    files: tuple[tuple[str, int], ...] = ()
    objects: tuple[tuple[str, int | str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    provider_written: bool = False
    in_use: bool = False


class BackupStore(Protocol):
    """A folder of backups that retention can list, read and delete from.

    Another run may delete (or replace) entries at any time: an entry that vanished after it was listed
    raises ``FileNotFoundError`` from :meth:`read` and is no error for :meth:`delete`; one that changed
    since it was listed is not deleted (:class:`EntryChanged`).
    """

    @property
    def location(self) -> Location: ...

    def entries(self) -> list[StoredEntry]: ...

    def read(self, entry: StoredEntry) -> bytes: ...

    def delete(self, entry: StoredEntry) -> None: ...

    def location_of(self, entry: StoredEntry) -> Location: ...


@dataclass(frozen=True)
class TransferResult:
    """What an upload or a promotion did: where the backup is now, and how much it moved."""

    artifact: Location
    manifest: Location
    object_uris: tuple[str, ...]
    transferred_bytes: int
    skipped_objects: int
    duration_seconds: float
    console_url: str | None

    @property
    def artifact_uri(self) -> str:
        return self.artifact.uri

    @property
    def manifest_uri(self) -> str:
        return self.manifest.uri

    @property
    def rate_bytes_per_second(self) -> float:
        return self.transferred_bytes / self.duration_seconds if self.duration_seconds > 0 else 0.0


def backup_metadata(manifest: Manifest) -> dict[str, str]:
    """Object metadata describing a backup (strings only; never a secret)."""
    values = {
        "sha256": manifest.sha256,
        "backup-kind": manifest.kind,
        "format": manifest.format,
        "compression": manifest.compression,
        "database": manifest.database,
        "server-version": manifest.server_version,
        "finished-at": manifest.finished_at,
    }
    return {k: str(v) for k, v in values.items() if v not in (None, "")}
