"""What a backend implements (:class:`ObjectClient`, :class:`PartUpload`), what it returns
(:class:`ObjectInfo`), the metadata encoding and the part-size rule."""

import datetime
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import (
    Location,
    StorageSettings,
)
from airflow_provider_pgbackup.storage.object_lock import LockRequest, ObjectLock

#: Object metadata key holding a random id per upload, so undoing a commit only ever deletes our object.
UPLOAD_ID_KEY = "pgbackup-upload-id"
MIB = 1024 * 1024
#: A part is at least 1/(max_parts / PART_GROWTH) of the bytes already sent: on S3 (10,000 parts) a
#: thousandth, so from its smallest part (5 MiB) 1 TiB needs about 6,300 parts; on Azure (50,000
#: blocks) a five-thousandth; on GCS (no limit) the chunk size stays.
PART_GROWTH = 10
#: Parts kept in reserve when the size is known in advance (a local file): size / (max_parts - reserve).
PART_RESERVE = 500
_METADATA_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")


def encode_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata values as printable ASCII (HTTP headers carry them): anything else is %-encoded."""
    return {k: urllib.parse.quote(v, safe=_METADATA_SAFE) for k, v in metadata.items()}


def decode_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    return {k: urllib.parse.unquote(v) for k, v in (metadata or {}).items()}


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a HEAD or a listing sees it; ``etag`` pins the exact bytes for later reads/deletes."""

    name: str
    size: int
    etag: str
    updated: datetime.datetime
    metadata: dict[str, str] | None = None  # None: the listing does not carry metadata (S3)


class PartUpload(Protocol):
    """A multipart upload (S3) / staged blocks (Azure): nothing is visible before :meth:`complete`."""

    def send(self, number: int, data: bytes) -> None:
        """Upload part ``number`` (1, 2, ...) with a per-part checksum the server verifies."""
        ...

    def complete(self) -> None:
        """Make the object appear; :class:`ObjectConflictError` when create-only and the name is taken."""
        ...

    def abort(self) -> None:
        """Drop the parts (S3 aborts the multipart upload; Azure leaves uncommitted blocks to expire)."""
        ...


class ObjectClient(Protocol):
    """A backend's calls on one bucket/container (converted to the storage errors)."""

    settings: StorageSettings
    min_part_size: int
    max_part_size: int
    max_parts: int
    #: every part but the last is a multiple of this (GCS: 256 KiB; 1 elsewhere)
    part_multiple: int
    #: the size of a part before it grows (the store's own default, or what the settings ask)
    base_part_size: int
    #: parts may be sent at once (S3 part numbers, Azure block ids); False: one after the other (GCS)
    parallel_parts: bool

    @property
    def location(self) -> Location:
        """The bucket / container itself (name ``""``)."""
        ...

    def head(self, name: str) -> ObjectInfo | None: ...

    def list(self, prefix: str, *, limit: int | None = None) -> list[ObjectInfo]: ...

    def start_upload(
        self, name: str, *, metadata: dict[str, str], content_type: str, create_only: bool
    ) -> PartUpload: ...

    def put(
        self, name: str, data: bytes, *, metadata: dict[str, str], content_type: str, create_only: bool
    ) -> None: ...

    def stream(self, name: str, etag: str, chunk_size: int) -> Iterator[bytes]: ...

    def delete(self, name: str, etag: str) -> None: ...

    def copy(
        self, source: ObjectInfo, source_container: str, destination: str, *, metadata: dict[str, str]
    ) -> None:
        """Server-side, create-only copy of exactly ``source.etag`` (from a container of the same store)."""
        ...

    def set_metadata(self, name: str, etag: str, metadata: dict[str, str]) -> bool:
        """Replace the object's metadata if it still has ``etag``; False where the store cannot."""
        ...


class LockingObjectClient(ObjectClient, Protocol):
    """A client of a store that can lock objects (S3 Object Lock, Azure version-level immutability, GCS
    object retention and holds)."""

    def check_locking(self, request: LockRequest) -> None:
        """Raise :class:`~airflow_provider_pgbackup.storage.object_lock.LockNotSupported`, saying what to
        enable, unless the bucket/container can hold objects locked as ``request`` asks."""
        ...

    def lock_of(self, name: str) -> ObjectLock | None:
        """The object's lock (also one whose date has passed); None: never locked, or no such object."""
        ...

    def set_lock(self, name: str, lock: ObjectLock) -> None: ...

    def delete_locked(self, name: str, etag: str, *, bypass: bool) -> None:
        """Delete the exact version that has ``etag`` (freeing its storage), lifting a governance/unlocked
        lock first when ``bypass``; a lock in force raises
        :class:`~airflow_provider_pgbackup.storage.object_lock.ObjectLockedError`."""
        ...


def part_size(
    sent: int,
    base: int,
    *,
    minimum: int,
    maximum: int,
    expected: int | None,
    max_parts: int,
    multiple: int = 1,
) -> int:
    """Bytes of the next part: ``base`` (at least the store's minimum), growing with the stream.

    With a known size every part is about ``expected / (max_parts - reserve)``; with an unknown one
    (pg_dump's output) a part is at least ``sent / (max_parts / PART_GROWTH)``, so the count stays far
    under the store's limit (10,000 parts on S3) while memory stays a few parts. Rounded up to
    ``multiple`` (GCS's 256 KiB).
    """
    size = max(base, minimum)
    if expected is not None:
        size = max(size, -(-expected // (max_parts - PART_RESERVE)))
    size = max(size, -(-(sent // max(1, max_parts // PART_GROWTH)) // MIB) * MIB)
    size = -(-size // multiple) * multiple
    return min(size, maximum - maximum % multiple)


def check_part_size(client: ObjectClient, what: str = "part_size") -> None:
    """Refuse a part size the store cannot take, naming it and the store's limits."""
    size = client.base_part_size
    if size < client.min_part_size or size > client.max_part_size or size % client.part_multiple:
        multiple = f", a multiple of {client.part_multiple} bytes" if client.part_multiple > 1 else ""
        raise InvalidOptionError(
            f"{what} {size!r} is not a part size {client.location.scheme}:// takes: from "
            f"{client.min_part_size} to {client.max_part_size} bytes{multiple}"
        )
