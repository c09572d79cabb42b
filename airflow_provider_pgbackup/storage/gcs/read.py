"""Reading from GCS: a backup as an ``ArtifactSource``, and a prefix of backups as a ``BackupStore``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_provider_pgbackup.manifest import FileDigest
from airflow_provider_pgbackup.scratch import private_folder
from airflow_provider_pgbackup.storage.base import (
    ArtifactDigest,
    ArtifactMismatchError,
    EntryChanged,
    Sha256Counter,
    StorageError,
    StorageSettings,
    StoredEntry,
    StoreNotFound,
    directory_digest,
)
from airflow_provider_pgbackup.storage.files import safe_relative
from airflow_provider_pgbackup.storage.gcs.location import UPLOAD_ID_KEY, GCSLocation, make_client, retry

if TYPE_CHECKING:
    from google.cloud import storage


def _private_file(path: Path) -> BinaryIO:
    """A new file only its owner can read (a downloaded copy of a backup)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


class GCSArtifactSource:
    """A backup on GCS, read for verification or restore (an ``ArtifactSource``).

    ``gs://bucket/path/name`` is the artifact (one object, or a ``name/`` folder of objects for the
    directory format); ``gs://bucket/path/name.manifest.json`` is its manifest. Downloads are
    crc32c-checked by the client (a mismatch raises :class:`ArtifactMismatchError`); bytes stream
    through sha256 in memory. A file artifact is never copied locally except by :meth:`local_copy`
    (a directory-format artifact for pg_restore, or a custom archive restored with several jobs).

    The first look at the artifact (:meth:`artifact_sizes`) pins the generation of every object; later
    reads (:meth:`digest`, :meth:`chunks`, :meth:`local_copy`) read exactly those generations, so a
    restore after verification reads the bytes that were verified, even if the name is overwritten.

    :param location: the artifact.
    :param settings: connection, chunk size (download request size), retries.
    :param client: storage client (default: from ``settings``).
    """

    #: Not a local path: the artifact must be streamed or downloaded.
    local_path: Path | None = None

    def __init__(
        self,
        location: GCSLocation,
        *,
        settings: StorageSettings | None = None,
        client: storage.Client | None = None,
    ) -> None:
        self._location = location
        self.manifest_location = location.manifest
        self.settings = settings or StorageSettings()
        self.client = client or make_client(self.settings)
        self.bucket = self.client.bucket(location.bucket)
        # object name -> generation, set by the first look (artifact_sizes); None: not looked yet.
        self._pinned: dict[str, int] | None = None
        self._is_folder = False

    @property
    def location(self) -> GCSLocation:
        return self._location

    def _no_bucket(self, err: Exception) -> StoreNotFound:
        return StoreNotFound(
            f"bucket {self._location.bucket!r} of {self._location.uri} does not exist (check the name and "
            f"the project of connection {self.settings.gcp_conn_id!r})"
        )

    def present(self) -> bool:
        """A cheap look, no download: True once the manifest and the artifact (object or folder) exist."""
        from google.api_core import exceptions

        policy = retry(self.settings)
        try:
            if self.bucket.get_blob(self.manifest_location.name, retry=policy) is None:
                return False
            if self.bucket.get_blob(self._location.name, retry=policy) is not None:
                return True
            prefix = self._location.name + "/"
            listing = self.client.list_blobs(
                self._location.bucket, prefix=prefix, max_results=1, retry=policy
            )
            return any(True for _ in listing)
        except exceptions.NotFound as err:
            raise self._no_bucket(err) from err

    def manifest_bytes(self) -> bytes:
        from google.api_core import exceptions

        try:
            data: bytes = self.bucket.blob(self.manifest_location.name).download_as_bytes(
                checksum="crc32c", retry=retry(self.settings)
            )
        except exceptions.NotFound as err:
            raise FileNotFoundError(f"{self.manifest_location.uri} does not exist") from err
        return data

    def _folder_blobs(self) -> list[Any]:
        from google.api_core import exceptions

        prefix = self._location.name + "/"
        try:
            blobs = list(
                self.client.list_blobs(self._location.bucket, prefix=prefix, retry=retry(self.settings))
            )
        except exceptions.NotFound as err:
            raise self._no_bucket(err) from err
        return sorted(blobs, key=lambda b: b.name)

    def _pin(self) -> dict[str, int]:
        """The pinned ``{object name: generation}``; the first call looks the artifact up."""
        if self._pinned is None:
            self.artifact_sizes()
        assert self._pinned is not None
        return self._pinned

    @property
    def pinned_objects(self) -> dict[str, int]:
        """``{object name: generation}`` of the artifact as first seen (a promotion copies exactly these)."""
        return dict(self._pin())

    @property
    def is_folder(self) -> bool:
        self._pin()
        return self._is_folder

    def _relative(self, name: str) -> str:
        return name[len(self._location.name) + 1 :]

    def artifact_sizes(self) -> dict[str, int] | int:
        blob = self.bucket.get_blob(self._location.name, retry=retry(self.settings))
        if blob is not None:
            self._pinned, self._is_folder = {blob.name: int(blob.generation)}, False
            return int(blob.size)
        blobs = self._folder_blobs()
        if not blobs:
            raise FileNotFoundError(f"{self._location.uri} does not exist")
        self._pinned = {b.name: int(b.generation) for b in blobs}
        self._is_folder = True
        return {self._relative(b.name): int(b.size) for b in blobs}

    def _blob(self, name: str) -> Any:
        return self.bucket.blob(name, generation=self._pin()[name])

    def _download(self, name: str, sink: Any) -> None:
        """Download one pinned object into a file object, crc32c-checked against the object's."""
        from google.cloud.storage.exceptions import DataCorruption

        try:
            self._blob(name).download_to_file(sink, checksum="crc32c", retry=retry(self.settings))
        except DataCorruption as err:
            raise ArtifactMismatchError(
                f"gs://{self._location.bucket}/{name}: the downloaded bytes do not match the object's crc32c"
            ) from err

    def _digest_object(self, name: str) -> tuple[int, str]:
        counter = Sha256Counter()
        self._download(name, counter)
        return counter.size, counter.sha256

    def digest(self) -> ArtifactDigest:
        pinned = self._pin()
        if not self._is_folder:
            return ArtifactDigest(*self._digest_object(self._location.name))
        files = []
        for name in sorted(pinned):
            size, sha = self._digest_object(name)
            files.append(FileDigest(self._relative(name), size, sha))
        return directory_digest(tuple(files))

    def chunks(self) -> Iterator[bytes]:
        """The object's bytes, ``settings.chunk_size`` at a time (the pinned generation, ranged reads)."""
        self._pin()
        if self._is_folder:
            raise StorageError(
                f"{self._location.uri} is a directory-format folder; it cannot be read as a stream"
            )
        blob = self._blob(self._location.name)
        with blob.open("rb", chunk_size=self.settings.chunk_size, retry=retry(self.settings)) as reader:
            while chunk := reader.read(self.settings.chunk_size):
                yield chunk

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        """Download the artifact (file or folder) into a private temporary folder (mode 0700) for the
        duration of the block; everything downloaded is removed when the block ends, also on failure."""
        pinned = self._pin()
        with private_folder("download") as root:
            artifact = root / self._location.basename
            if self._is_folder:
                artifact.mkdir(mode=0o700)
                for name in sorted(pinned):
                    destination = artifact.joinpath(*safe_relative(name, self._relative(name)).parts)
                    destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    with _private_file(destination) as handle:
                        self._download(name, handle)
            else:
                with _private_file(artifact) as handle:
                    self._download(self._location.name, handle)
            yield artifact


class GCSBackupStore:
    """Backups under a ``gs://bucket/prefix``: objects directly under it, and ``name/...`` folders.

    :param location: bucket and prefix.
    :param settings: connection and retries.
    :param client: storage client (default: from ``settings``).
    """

    def __init__(
        self,
        location: GCSLocation,
        *,
        settings: StorageSettings,
        client: storage.Client | None = None,
    ) -> None:
        self._location = location
        self.settings = settings
        self.client = client or make_client(settings)
        self.bucket = self.client.bucket(location.bucket)

    @property
    def location(self) -> GCSLocation:
        return self._location

    def entries(self) -> list[StoredEntry]:
        prefix = f"{self._location.name}/" if self._location.name else ""
        groups: dict[str, list[Any]] = {}
        from google.api_core import exceptions

        try:
            listing = list(
                self.client.list_blobs(self._location.bucket, prefix=prefix, retry=retry(self.settings))
            )
        except exceptions.NotFound as err:  # the bucket: waiting or retrying will not create it
            raise StoreNotFound(
                f"bucket {self._location.bucket!r} of {self._location.uri} does not exist"
            ) from err
        for blob in listing:
            relative = blob.name[len(prefix) :]
            if not relative:
                continue
            top = relative.split("/", 1)[0]
            groups.setdefault(top, []).append(blob)
        found = []
        for top, blobs in sorted(groups.items()):
            is_folder = any("/" in b.name[len(prefix) :] for b in blobs)
            files = tuple(
                (b.name[len(prefix) + len(top) + 1 :], int(b.size)) for b in blobs if b.name != prefix + top
            )
            single = next((b for b in blobs if b.name == prefix + top), None)
            found.append(
                StoredEntry(
                    name=top,
                    is_folder=is_folder,
                    size_bytes=sum(int(b.size or 0) for b in blobs),
                    updated=max(b.updated for b in blobs),
                    files=files,
                    objects=tuple((b.name, int(b.generation)) for b in blobs),
                    metadata=tuple(sorted((single.metadata or {}).items())) if single is not None else (),
                    provider_written=all(UPLOAD_ID_KEY in (b.metadata or {}) for b in blobs),
                )
            )
        return found

    def read(self, entry: StoredEntry) -> bytes:
        from google.api_core import exceptions

        name, generation = entry.objects[0]
        try:
            data: bytes = self.bucket.blob(name, generation=generation).download_as_bytes(
                retry=retry(self.settings)
            )
        except exceptions.NotFound as err:  # deleted (or replaced) by another run since the listing
            raise FileNotFoundError(f"gs://{self._location.bucket}/{name} does not exist") from err
        return data

    def delete(self, entry: StoredEntry) -> None:
        from google.api_core import exceptions

        for name, generation in entry.objects:
            try:
                self.bucket.blob(name).delete(if_generation_match=generation, retry=retry(self.settings))
            except exceptions.NotFound:
                continue  # another run deleted it
            except exceptions.PreconditionFailed as err:
                raise EntryChanged(
                    f"gs://{self._location.bucket}/{name} changed since it was listed; not deleted"
                ) from err

    def location_of(self, entry: StoredEntry) -> GCSLocation:
        return self._location.child(entry.name)


def open_source(location: GCSLocation, *, settings: StorageSettings) -> GCSArtifactSource:
    return GCSArtifactSource(location, settings=settings)


def open_store(location: GCSLocation, *, settings: StorageSettings) -> GCSBackupStore:
    return GCSBackupStore(location, settings=settings)
