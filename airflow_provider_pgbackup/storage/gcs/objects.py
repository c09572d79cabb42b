""":class:`GCSObjectClient`, the object-store calls of :mod:`~airflow_provider_pgbackup.storage.objects` on
one GCS bucket: the generation is the version tag (``ObjectInfo.etag`` holds it as text), create-only
writes carry ``if_generation_match=0``, reads, deletes and metadata changes carry the generation they
were given, and a promotion is a server-side rewrite of the pinned generation.

An upload is one resumable session fed part after part (GCS has no parallel parts: the offsets are
sequential); the writer keeps the session busy beside its producer. Every download is crc32c-checked
against the object's own crc32c.
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


class GCSPartUpload:
    """One resumable upload session: each part is sent as it comes (crc32c of the whole checked at
    finalize); the object appears only at :meth:`complete`, create-only with ``if_generation_match=0``."""

    def __init__(self, owner: GCSObjectClient, name: str, metadata: dict[str, str], content_type: str,
                 create_only: bool) -> None:  # fmt: skip
        from google.cloud.storage.fileio import BlobWriter

        self.owner = owner
        self.name = name
        self.sent = 0
        self._writer = BlobWriter(
            owner.new_blob(name, metadata),
            chunk_size=owner.settings.chunk_size,
            retry=retry(owner.settings),
            content_type=content_type,
            if_generation_match=0 if create_only else None,
            checksum="crc32c",
        )

    def send(self, number: int, data: bytes) -> None:
        # Parts come in order (the writer sends them one after the other): the session's offsets.
        self._writer.write(data)
        self.sent += len(data)

    def complete(self) -> None:
        from google.api_core import exceptions

        try:
            self._writer.close()  # the last chunk: the object appears now, not earlier
        except exceptions.PreconditionFailed as err:
            raise ObjectConflictError(
                f"{self.owner.uri(self.name)} was created by someone else during the upload; not overwritten"
            ) from err

    def abort(self) -> None:
        self._writer.terminate()  # cancels the session: nothing appears


class GCSObjectClient:
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
