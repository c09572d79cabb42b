"""Writing: the streamed :class:`PartedObjectWriter`, small create-only objects, and the dump target."""

import contextlib
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import (
    ArtifactDigest,
    ArtifactMismatchError,
    Location,
    ObjectConflictError,
    Sha256Counter,
    StorageError,
    backup_metadata,
)
from airflow_provider_pgbackup.storage.objects.client import (
    UPLOAD_ID_KEY,
    ObjectClient,
    ObjectInfo,
    check_part_size,
    part_size,
)
from airflow_provider_pgbackup.storage.objects.locking import (
    check_locking,
    lock_objects,
    lock_to_record,
    locked_manifest,
    refuse_replacing_locked,
)
from airflow_provider_pgbackup.storage.objects.parts import PartSender
from airflow_provider_pgbackup.storage.ownership import check_object_replaceable
from airflow_provider_pgbackup.units import format_bytes

log = logging.getLogger(__name__)


class PartedObjectWriter:
    """One object written in parts beside its producer; it exists only after :meth:`commit`.

    :meth:`write` hashes the bytes (sha256) and gathers them into parts of the store's size (GCS:
    multiples of 256 KiB); each full part goes to :class:`PartSender`, which sends up to
    ``settings.parts_in_flight`` at once where the store allows it (S3 part numbers, Azure block ids)
    and one after the other into the resumable session on GCS. The producer waits only when that many
    parts are already in flight, so pg_dump and the upload overlap. A stream smaller than one part is
    sent as a single create-only PUT at commit. Memory: ``parts_in_flight`` parts plus the one being
    gathered. A failed part fails the next :meth:`write` (or :meth:`commit`) and nothing appears.

    :param client: the bucket/container.
    :param location: object to write.
    :param metadata: object metadata (set at creation; the upload id is added).
    :param create_only: the name must be free when the object is completed (``If-None-Match: *``).
    :param expected_sha256: refuse to complete unless the bytes written have this sha256.
    :param expected_size: the same for the size (also sizes the parts, and the progress total).
    :param log: logger for progress lines every ``settings.progress_interval`` seconds (None: silent).
    """

    def __init__(
        self,
        client: ObjectClient,
        location: Location,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
        create_only: bool = True,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        log: Any | None = None,
    ) -> None:
        check_part_size(client)
        self.client = client
        self.location = location
        self.settings = client.settings
        self.upload_id = secrets.token_hex(8)
        self.metadata = {**(metadata or {}), UPLOAD_ID_KEY: self.upload_id}
        self.content_type = content_type
        self.create_only = create_only
        self.expected_sha256 = expected_sha256
        self.expected_size = expected_size
        self.log = log
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._sender: PartSender | None = None
        self._lock = threading.RLock()
        self._hash = Sha256Counter()
        self._finished = False
        self._started = time.monotonic()
        self._last_progress = self._started
        self.etag: str | None = None

    @property
    def bytes_written(self) -> int:
        return self._hash.size

    @property
    def parts_sent(self) -> int:
        return 0 if self._sender is None else self._sender.parts_sent

    def _part_size(self) -> int:
        return part_size(
            self._hash.size - self._buffered,
            self.client.base_part_size,
            minimum=self.client.min_part_size,
            maximum=self.client.max_part_size,
            expected=self.expected_size,
            max_parts=self.client.max_parts,
            multiple=self.client.part_multiple,
        )

    def _take(self, size: int | None = None) -> bytes:
        """The first ``size`` bytes gathered (all of them when None); the rest stays.

        One copy per part: the whole chunks that fit are joined, only the chunk that straddles the
        part's end is cut (slicing the joined part would copy it a second time).
        """
        if size is None or size >= self._buffered:
            data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
            self._buffer, self._buffered = [], 0
            return data
        taken, count = 0, 0
        while taken + len(self._buffer[count]) <= size:
            taken += len(self._buffer[count])
            count += 1
        pieces, straddling = self._buffer[:count], self._buffer[count]
        cut = size - taken
        if cut:
            pieces.append(straddling[:cut])
        self._buffer = [straddling[cut:] if cut else straddling, *self._buffer[count + 1 :]]
        self._buffered -= size
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _send(self, take: Callable[[], bytes]) -> None:
        if self._sender is None:
            upload = self.client.start_upload(
                self.location.name,
                metadata=self.metadata,
                content_type=self.content_type,
                create_only=self.create_only,
            )
            self._sender = PartSender(self.client, upload, self.location)
        self._sender.submit(take)

    def write(self, chunk: bytes) -> None:
        if self._finished:
            raise RuntimeError(f"upload to {self.location.uri} was already committed or aborted")
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)  # a bytearray or view its producer may reuse: parts hold their own bytes
        self._hash.update(chunk)
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        while self._buffered >= (size := self._part_size()):
            self._send(functools.partial(self._take, size))  # waits while parts_in_flight are in flight
        now = time.monotonic()
        if self.log is not None and now - self._last_progress >= self.settings.progress_interval:
            self._last_progress = now
            self.log.info("%s", self.progress_line(now - self._started))

    def progress_line(self, elapsed: float) -> str:
        written = self._hash.size
        rate = written / elapsed if elapsed > 0 else 0.0
        total = f" of {format_bytes(self.expected_size)}" if self.expected_size is not None else ""
        return (
            f"Uploading {self.location.uri}: {format_bytes(written)}{total} in {elapsed:.0f} s "
            f"({format_bytes(rate)}/s, {self.parts_sent} parts)"
        )

    def commit(self) -> ArtifactDigest:
        """Check sha256/size, send the last part and complete the upload (the object appears now)."""
        with self._lock:
            if self._finished:
                raise RuntimeError(f"upload to {self.location.uri} was already committed or aborted")
            sha, written = self._hash.sha256, self._hash.size
            if self.expected_sha256 is not None and sha != self.expected_sha256:
                self.abort()
                raise ArtifactMismatchError(
                    f"bytes read for {self.location.uri} have sha256 {sha}, not {self.expected_sha256} as "
                    "the manifest says; the local artifact is corrupt or was changed, nothing was uploaded"
                )
            if self.expected_size is not None and written != self.expected_size:
                self.abort()
                raise ArtifactMismatchError(
                    f"{written} bytes read for {self.location.uri}, not {self.expected_size} as the "
                    "manifest says; nothing was uploaded"
                )
            try:
                if self._sender is None:
                    last = self._take()
                    self._finished = True
                    self.client.put(
                        self.location.name, last, metadata=self.metadata,
                        content_type=self.content_type, create_only=self.create_only,
                    )  # fmt: skip
                else:
                    if self._buffered:
                        self._send(self._take)
                    self._sender.finish()  # every part on the server, in order
                    self._finished = True
                    self._sender.upload.complete()
            except BaseException:
                self._finished = False
                self.abort()
                raise
            try:
                info = self.client.head(self.location.name)
                if info is None or (info.metadata or {}).get(UPLOAD_ID_KEY) != self.upload_id:
                    raise StorageError(f"{self.location.uri} is not the object just uploaded")
                if info.size != written:
                    raise ArtifactMismatchError(
                        f"{self.location.uri} holds {info.size} bytes after upload, not {written}"
                    )
                self.etag = info.etag
            except BaseException:
                self.delete_if_ours()
                raise
            if self.log is not None:
                elapsed = max(time.monotonic() - self._started, 1e-9)
                self.log.info("Uploaded %s", self.progress_line(elapsed).split(" ", 1)[1])
            return ArtifactDigest(written, sha)

    def abort(self) -> None:
        """Stop the upload thread and drop the parts: no object appears. Safe to call more than once."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._buffer, self._buffered = [], 0
            if self._sender is not None:
                self._sender.abort()

    def delete_if_ours(self) -> None:
        """Delete the object if it is the one this writer uploaded (used to undo a commit)."""
        with contextlib.suppress(Exception):
            info = self.client.head(self.location.name)
            if info is not None and (info.metadata or {}).get(UPLOAD_ID_KEY) == self.upload_id:
                self.client.delete(info.name, info.etag)


def put_small_object(
    client: ObjectClient,
    location: Location,
    data: bytes,
    *,
    content_type: str = "application/json",
    metadata: dict[str, str] | None = None,
) -> bool:
    """Create a small object (a manifest) unless an identical one exists; True when it was written.

    :raises ObjectConflictError: a different object already has the name.
    """
    counter = Sha256Counter()
    counter.update(data)
    sha = counter.sha256

    def identical(info: ObjectInfo | None) -> bool:
        return info is not None and (info.metadata or {}).get("sha256") == sha and info.size == len(data)

    existing = client.head(location.name)
    if existing is not None:
        if identical(existing):
            return False
        raise ObjectConflictError(
            f"{location.uri} already exists with different content; the provider never overwrites an object"
        )
    try:
        client.put(
            location.name, data, metadata={**(metadata or {}), "sha256": sha},
            content_type=content_type, create_only=True,
        )  # fmt: skip
    except ObjectConflictError:
        if identical(client.head(location.name)):
            return False
        raise
    return True


# ------------------------------------------------------------------------------------------- target
class ObjectArtifactTarget:
    """A single-file artifact streamed into an object store (S3, Azure): the dump's ``ArtifactTarget``.

    Nothing appears under the name before :meth:`commit`; :meth:`write_manifest` then records the
    backup's metadata on the object (where the store can change metadata in place) and creates
    ``<name>.manifest.json``, the mark of a complete backup.
    """

    staging_directory: Path | None = None

    def __init__(self, client: ObjectClient, location: Location, *, overwrite: bool = False) -> None:
        self.client = client
        self._location = location
        self.manifest_location = location.manifest
        existing = client.head(location.name)
        self._old_manifest = client.head(self.manifest_location.name)
        ours = existing is not None and UPLOAD_ID_KEY in (existing.metadata or {})
        if ours and self._old_manifest is None:
            # An object this provider wrote whose manifest never came (a run stopped between the
            # two): not a finished backup, so a retry replaces it, as on GCS.
            log.warning(
                "Replacing %s: an object this provider wrote without its manifest (a run stopped "
                "between the two)",
                location.uri,
            )
        elif existing is not None or self._old_manifest is not None:
            old = self._old_manifest
            check_object_replaceable(
                location,
                overwrite=overwrite,
                existing=existing,
                manifest=(lambda: b"".join(client.stream(old.name, old.etag, max(old.size, 1))))
                if old is not None
                else None,
            )
        self._writer = PartedObjectWriter(client, location, create_only=existing is None)

    @property
    def location(self) -> Location:
        return self._location

    @property
    def bytes_written(self) -> int:
        return self._writer.bytes_written

    def write(self, chunk: bytes) -> None:
        self._writer.write(chunk)

    def commit(self) -> ArtifactDigest:
        if self._old_manifest is not None:
            # An old manifest must never describe new bytes: it goes before the new object appears.
            with contextlib.suppress(Exception):
                self.client.delete(self._old_manifest.name, self._old_manifest.etag)
        return self._writer.commit()

    def abort(self) -> None:
        self._writer.abort()

    def write_manifest(self, manifest: Manifest) -> str:
        assert self._writer.etag is not None
        lock = lock_to_record(self.client, manifest)  # None unless lock_for: the manifest records it
        manifest = locked_manifest(manifest, lock)
        self.client.set_metadata(
            self._location.name, self._writer.etag, {**self._writer.metadata, **backup_metadata(manifest)}
        )
        lock_objects(self.client, [self._location.name], lock, log)
        put_small_object(
            self.client,
            self.manifest_location,
            manifest.to_json().encode("utf-8"),
            metadata={"backup-sha256": manifest.sha256},
        )
        lock_objects(self.client, [self.manifest_location.name], lock, None)
        return self.manifest_location.uri

    def remove_committed(self) -> None:
        self._writer.delete_if_ours()


def open_object_target(
    client: ObjectClient, location: Location, *, directory: bool, overwrite: bool
) -> ObjectArtifactTarget:
    if directory:
        raise InvalidOptionError(
            f"output_path {location.uri!r} is an object-store URI, which cannot take format 'directory' "
            "(pg_dump writes a directory itself); dump to a local folder and upload it with "
            "PgBackupUploadOperator, or use format 'custom', 'tar' or 'plain'"
        )
    check_locking(client)  # before pg_dump starts: a bucket that cannot lock says what to enable
    if overwrite:
        refuse_replacing_locked(client, [location.name, location.manifest.name], location.uri)
    return ObjectArtifactTarget(client, location, overwrite=overwrite)
