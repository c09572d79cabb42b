"""What every storage backend provides: the location value, the settings, the errors and the protocols.

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
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from airflow_provider_pgbackup.manifest import DEFAULT_FILE_MODE, MANIFEST_SUFFIX, FileDigest, Manifest
from airflow_provider_pgbackup.options import InvalidOptionError

HASH_CHUNK_BYTES = 1024 * 1024
#: Object stores take upload chunks in multiples of 256 KiB (GCS resumable uploads require it).
CHUNK_MULTIPLE = 256 * 1024
DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024
DEFAULT_PARTS_IN_FLIGHT = 4
DEFAULT_RETRY_TIMEOUT = 300.0
DEFAULT_GCP_CONN_ID = "google_cloud_default"
DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_WASB_CONN_ID = "wasb_default"


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


_ENCRYPTION_SCOPE = re.compile(r"^[A-Za-z0-9]{3,63}$")


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


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


@dataclass(frozen=True)
class StorageSettings:
    """How the provider talks to object storage (ignored for local paths).

    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for ``gs://`` (else Application
        Default Credentials; ``STORAGE_EMULATOR_HOST`` selects an emulator).
    :param aws_conn_id: Airflow ``aws`` connection for ``s3://``, resolved by the Amazon provider's
        ``S3Hook`` (keys, assume-role, web identity, ``endpoint_url`` extra...); None, or the default id
        when no such connection exists: boto3's default credential chain.
    :param wasb_conn_id: Airflow ``wasb`` connection for ``az://``, resolved by the Microsoft Azure
        provider's ``WasbHook`` (connection string, account key, SAS, service principal, managed
        identity...); None, or the default id when no such connection exists:
        ``AZURE_STORAGE_CONNECTION_STRING``, else ``AZURE_STORAGE_ACCOUNT_URL`` with
        ``DefaultAzureCredential``.
    :param chunk_size: bytes per request on GCS (a multiple of 256 KiB): the resumable upload's chunk
        (its part) and every store's download read size. S3 and Azure size their parts with
        ``part_size``.
    :param part_size: bytes of an S3 part / Azure block before parts grow with the stream (None: the
        store's default, 8 MiB on S3, 4 MiB on Azure); each store checks its own limits (S3: 5 MiB to
        5 GiB, 10,000 parts; Azure: up to 4000 MiB, 50,000 blocks). Unused on GCS.
    :param parts_in_flight: parts an upload holds at once, sent beside the producer (pg_dump, or a file
        being read): S3 and Azure send that many at once; GCS's resumable upload takes its bytes in
        order, so there they wait in line for the one session. Memory is bounded by about
        ``(parts_in_flight + 1) x part size``.
    :param retry_timeout: seconds a request (or chunk) is retried on transient errors, with backoff.
    :param storage_class: storage class of new objects (``STANDARD``, ``NEARLINE``, ``COLDLINE``,
        ``ARCHIVE`` on GCS; ``STANDARD``, ``STANDARD_IA``, ``INTELLIGENT_TIERING``... on S3), or the
        access tier of new blobs on Azure (``Hot``, ``Cool``, ``Cold``, ``Archive``); each backend checks
        its own list. None keeps the bucket's (account's) default.
    :param kms_key_name: KMS key for new objects: a Cloud KMS key name on GCS; a KMS key id, ARN or
        alias on S3 (SSE-KMS). None keeps the bucket's default encryption. Unused on Azure.
    :param encryption_scope: Azure encryption scope for new blobs (the account's default when None).
    :param progress_interval: seconds between progress log lines of an upload.
    :param file_mode: mode of a finished local backup's files (artifact, manifest); its folders get
        the matching search bits (0o600 -> 0o700). Default owner-only; 0o640 shares with the group.
    :param impersonation_chain: ``gs://``: service account(s) to impersonate with the connection's
        credentials (the Google provider's ``impersonation_chain``: one account, or a chain whose last
        account is impersonated, each granting the previous the Token Creator role). Needs
        ``apache-airflow-providers-google``. Stored as a tuple.
    """

    gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID
    chunk_size: int = DEFAULT_CHUNK_SIZE
    retry_timeout: float = DEFAULT_RETRY_TIMEOUT
    storage_class: str | None = None
    kms_key_name: str | None = None
    progress_interval: float = 5.0
    parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT
    part_size: int | None = None
    file_mode: int = DEFAULT_FILE_MODE
    aws_conn_id: str | None = DEFAULT_AWS_CONN_ID
    wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID
    encryption_scope: str | None = None
    impersonation_chain: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        size = self.chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % CHUNK_MULTIPLE:
            raise InvalidOptionError(
                f"chunk_size {size!r} must be a positive multiple of 256 KiB ({CHUNK_MULTIPLE} bytes)"
            )
        timeout = self.retry_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidOptionError(f"retry_timeout {timeout!r} must be a positive number of seconds")
        for field in ("gcp_conn_id", "aws_conn_id", "wasb_conn_id"):
            conn_id = getattr(self, field)
            if conn_id is not None and not isinstance(conn_id, str):
                raise InvalidOptionError(f"{field} {conn_id!r} must be a connection id (a string)")
        for field in ("storage_class", "kms_key_name"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value or _has_control(value)):
                raise InvalidOptionError(f"{field} {value!r} must be a non-empty string on one line")
        scope = self.encryption_scope
        if scope is not None and (not isinstance(scope, str) or not _ENCRYPTION_SCOPE.match(scope)):
            raise InvalidOptionError(
                f"encryption_scope {scope!r} must be an Azure encryption scope name (3 to 63 letters and "
                "digits)"
            )
        mode = self.file_mode
        if isinstance(mode, bool) or not isinstance(mode, int) or mode & ~0o666 or mode & 0o600 != 0o600:
            raise InvalidOptionError(
                f"file_mode {mode!r} must be a file mode that lets the owner read and write (0o600) and "
                "grants nothing more than read/write (at most 0o666), e.g. 0o600 or 0o640"
            )
        for field, optional in (("parts_in_flight", False), ("part_size", True)):
            value = getattr(self, field)
            if (value is not None or not optional) and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidOptionError(f"{field} {value!r} must be a whole number >= 1")
        object.__setattr__(self, "impersonation_chain", check_impersonation_chain(self.impersonation_chain))


def check_impersonation_chain(value: object) -> tuple[str, ...] | None:
    """None, or a non-empty tuple of service-account e-mails; raises naming a bad value."""
    if value is None or value == "" or value == ():
        return None
    accounts = [value] if isinstance(value, str) else value
    if not isinstance(accounts, (list, tuple)) or not all(
        isinstance(a, str) and a.strip() and "@" in a and not any(c in a for c in " \n\r\t,")
        for a in accounts
    ):
        raise InvalidOptionError(
            f"impersonation_chain {value!r} must be a service account e-mail "
            "(name@project.iam.gserviceaccount.com) or a list of them"
        )
    return tuple(a.strip() for a in accounts)


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
