""":class:`GCSObjectClient`, the object-store calls of :mod:`~airflow_provider_pgbackup.storage.objects` on
one GCS bucket: the generation is the version tag (``ObjectInfo.etag`` holds it as text), create-only
writes carry ``if_generation_match=0``, reads, deletes and metadata changes carry the generation they
were given, and a promotion is a server-side rewrite of the pinned generation.

An upload is one resumable session fed part after part (GCS has no parallel parts: the offsets are
sequential); the writer keeps the session busy beside its producer. Every download is crc32c-checked
against the object's own crc32c.

Locks (object retention and temporary holds) are
:class:`~airflow_provider_pgbackup.storage.gcs.locks.GCSLocks`, a base class of the client.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.storage.base import (
    ArtifactMismatchError,
    EntryChanged,
    ObjectConflictError,
    StorageError,
    StorageSettings,
    StoreNotFound,
)
from airflow_provider_pgbackup.storage.gcs.client import make_client, retry
from airflow_provider_pgbackup.storage.gcs.location import SCHEME, GCSLocation
from airflow_provider_pgbackup.storage.gcs.locks import GCSLocks
from airflow_provider_pgbackup.storage.objects.client import ObjectInfo

if TYPE_CHECKING:
    from google.cloud import storage

#: A resumable upload's chunks are multiples of 256 KiB (all but the last); no limit on their number.
PART_MULTIPLE = 256 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 1_000_000_000


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(
        blob.name, int(blob.size or 0), str(blob.generation), blob.updated, dict(blob.metadata or {})
    )


class _SessionBytes:
    """The bytes of a resumable session not yet persisted, as the file the session's chunks are read from.

    The upload library reads each chunk with ``tell()``/``read()`` and rewinds with ``seek()``; a part
    handed in is read back as the same ``bytes`` object (no copy) when it is one whole chunk, so a part
    is held once, by the sender, and goes to the socket from there (``BlobWriter`` copied it into its
    buffer and out again).
    """

    def __init__(self) -> None:
        self._data = b""
        self._base = 0  # session offset of _data[0]
        self._pos = 0

    @property
    def available(self) -> int:
        return len(self._data) - self._pos

    def add(self, data: bytes) -> None:
        self._data = data if not self._data else self._data + data  # held back bytes: rare

    def persisted(self, offset: int) -> None:
        """Forget what the session has persisted (``offset``); what it has not is read again."""
        self._data, self._base, self._pos = self._data[offset - self._base :], offset, 0

    def tell(self) -> int:
        return self._base + self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or not self._base <= offset <= self._base + len(self._data):
            raise ValueError(
                f"offset {offset} is not held (held: {self._base}-{self._base + len(self._data)})"
            )
        self._pos = offset - self._base
        return offset

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
        chunk = self._data if self._pos == 0 and end == len(self._data) else self._data[self._pos : end]
        self._pos = end
        return chunk


class GCSPartUpload:
    """One resumable upload session: each full part is sent as it comes, as one chunk of the session
    (crc32c of the whole checked at finalize); the last, short part waits for :meth:`complete`, so the
    object appears only then, create-only with ``if_generation_match=0``."""

    def __init__(self, owner: GCSObjectClient, name: str, metadata: dict[str, str], content_type: str,
                 create_only: bool) -> None:  # fmt: skip
        self.owner = owner
        self.name = name
        self._bytes = _SessionBytes()
        self._chunk = owner.settings.chunk_size
        # The session BlobWriter would open (its own call), read from _SessionBytes instead of a buffer.
        self._upload, self._transport = owner.new_blob(name, metadata)._initiate_resumable_upload(
            owner.gcs, self._bytes, content_type, None, chunk_size=self._chunk,
            if_generation_match=0 if create_only else None, checksum="crc32c", retry=retry(owner.settings),
        )  # fmt: skip

    def _transmit(self) -> None:
        from google.cloud.storage.blob import _raise_from_invalid_response
        from google.cloud.storage.exceptions import InvalidResponse

        try:
            self._upload.transmit_next_chunk(self._transport)
        except InvalidResponse as err:
            _raise_from_invalid_response(err)  # as api_core's exceptions (PreconditionFailed, ...)
        self._bytes.persisted(self._upload.bytes_uploaded)  # GCS may persist less than it was sent

    def send(self, number: int, data: bytes) -> None:
        # Parts come in order (the writer sends them one after the other): the session's offsets.
        self._bytes.add(data)
        while self._bytes.available >= self._chunk:
            self._transmit()

    def complete(self) -> None:
        from google.api_core import exceptions

        try:
            while not self._upload.finished:  # the last chunk (maybe empty): the object appears now
                self._transmit()
        except exceptions.PreconditionFailed as err:
            raise ObjectConflictError(
                f"{self.owner.uri(self.name)} was created by someone else during the upload; not overwritten"
            ) from err

    def abort(self) -> None:
        """Cancel the session (a DELETE of its URI, as ``BlobWriter.terminate``): nothing appears."""
        self._transport.delete(self._upload.upload_url)


class GCSObjectClient(GCSLocks):
    """The object-store calls on one GCS bucket (generations as version tags)."""

    min_part_size = PART_MULTIPLE
    part_multiple = PART_MULTIPLE
    max_part_size = MAX_PART_SIZE
    max_parts = MAX_PARTS
    #: A resumable session takes its bytes in order: parts wait in line, one is sent at a time.
    parallel_parts = False

    def __init__(self, bucket: str, settings: StorageSettings, client: storage.Client | None = None) -> None:
        self.settings = settings
        self.base_part_size = settings.chunk_size  # gcs_chunk_size: GCS's part
        self.location = GCSLocation(SCHEME, bucket, "")
        self.gcs = client if client is not None else make_client(settings)
        self.bucket = self.gcs.bucket(bucket)
        self._retry = retry(settings)

    def uri(self, name: str) -> str:
        return f"gs://{self.location.bucket}/{name}"

    def new_blob(self, name: str, metadata: dict[str, str]) -> Any:
        blob = self.bucket.blob(
            name, chunk_size=self.settings.chunk_size, kms_key_name=self.settings.kms_key_name
        )
        blob.metadata = dict(metadata)
        if self.settings.storage_class:
            blob.storage_class = self.settings.storage_class
        return blob

    def _no_bucket(self, err: Exception) -> StoreNotFound:
        return StoreNotFound(
            f"bucket {self.location.bucket!r} of {self.location.uri} does not exist (check the name and "
            f"the project of connection {self.settings.gcp_conn_id!r})"
        )

    def head(self, name: str) -> ObjectInfo | None:
        blob = self.bucket.get_blob(name, retry=self._retry)
        return None if blob is None else _info(blob)

    def list(self, prefix: str, *, limit: int | None = None) -> list[ObjectInfo]:
        from google.api_core import exceptions

        try:
            listing = self.gcs.list_blobs(
                self.location.bucket, prefix=prefix, max_results=limit, retry=self._retry
            )
            return [_info(blob) for blob in listing]
        except exceptions.NotFound as err:  # the bucket: waiting or retrying will not create it
            raise self._no_bucket(err) from err

    def start_upload(
        self, name: str, *, metadata: dict[str, str], content_type: str, create_only: bool
    ) -> GCSPartUpload:
        return GCSPartUpload(self, name, metadata, content_type, create_only)

    def put(
        self, name: str, data: bytes, *, metadata: dict[str, str], content_type: str, create_only: bool
    ) -> None:
        from google.api_core import exceptions

        try:
            self.new_blob(name, metadata).upload_from_string(
                data, content_type=content_type, if_generation_match=0 if create_only else None,
                checksum="crc32c", retry=self._retry,
            )  # fmt: skip
        except exceptions.PreconditionFailed as err:
            raise ObjectConflictError(
                f"{self.uri(name)} was created by someone else; not overwritten"
            ) from err
        except exceptions.NotFound as err:
            raise self._no_bucket(err) from err

    def _pinned(self, name: str, etag: str) -> Any:
        """The object at generation ``etag``, its crc32c loaded; the errors say gone or changed."""
        blob = self.bucket.get_blob(name, generation=int(etag), retry=self._retry)
        if blob is not None:
            return blob
        if self.bucket.get_blob(name, retry=self._retry) is None:
            raise FileNotFoundError(f"{self.uri(name)} does not exist")
        raise ArtifactMismatchError(
            f"{self.uri(name)} changed after it was first read (generation {etag} is gone)"
        )

    def stream(self, name: str, etag: str, chunk_size: int) -> Iterator[bytes]:
        """Generation ``etag``'s bytes in ranged reads, crc32c-checked against the object's when whole."""
        import google_crc32c
        from google.api_core import exceptions

        blob = self._pinned(name, etag)
        checksum = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        try:
            with blob.open("rb", chunk_size=chunk_size, retry=self._retry) as reader:
                while chunk := reader.read(chunk_size):
                    checksum.update(chunk)  # type: ignore[no-untyped-call]
                    yield chunk
        except exceptions.NotFound as err:
            raise ArtifactMismatchError(f"{self.uri(name)} changed while it was read") from err
        crc = base64.b64encode(checksum.digest()).decode("ascii")  # type: ignore[no-untyped-call]
        if blob.crc32c and crc != blob.crc32c:
            raise ArtifactMismatchError(
                f"{self.uri(name)}: the downloaded bytes do not match the object's crc32c"
            )

    def delete(self, name: str, etag: str) -> None:
        """Delete generation ``etag`` only (``if_generation_match``); a missing object is fine."""
        from google.api_core import exceptions

        try:
            self.bucket.blob(name).delete(if_generation_match=int(etag), retry=self._retry)
        except exceptions.NotFound:
            return
        except exceptions.PreconditionFailed as err:
            raise EntryChanged(f"{self.uri(name)} changed since it was listed; not deleted") from err

    def copy(
        self, source: ObjectInfo, source_container: str, destination: str, *, metadata: dict[str, str]
    ) -> None:
        """Server-side rewrite of exactly generation ``source.etag``, create-only, crc32c compared."""
        from google.api_core import exceptions

        origin = GCSObjectClient(source_container, self.settings, self.gcs)._pinned(source.name, source.etag)
        target = self.new_blob(destination, metadata)
        token: str | None = None
        try:
            while True:
                token, _done, _total = target.rewrite(
                    origin, token=token, if_generation_match=0,
                    if_source_generation_match=int(source.etag), retry=self._retry,
                )  # fmt: skip
                if token is None:
                    break
        except exceptions.PreconditionFailed as err:
            raise ObjectConflictError(
                f"{self.uri(destination)} was created by someone else; not overwritten"
            ) from err
        copy = self.bucket.get_blob(destination, retry=self._retry)
        if copy is None or copy.crc32c != origin.crc32c or copy.size != origin.size:
            raise ArtifactMismatchError(
                f"the copy {self.uri(destination)} does not match {source.name}'s crc32c and size"
            )

    def set_metadata(self, name: str, etag: str, metadata: dict[str, str]) -> bool:
        """Add ``metadata`` to generation ``etag`` (generation and metageneration preconditions)."""
        blob = self.bucket.get_blob(name, retry=self._retry)
        if blob is None or str(blob.generation) != etag:
            raise StorageError(f"{self.uri(name)} changed after it was uploaded")
        blob.metadata = {**(blob.metadata or {}), **metadata}
        blob.patch(
            if_generation_match=int(etag), if_metageneration_match=blob.metageneration, retry=self._retry
        )
        return True
