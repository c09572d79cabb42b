"""Where artifact bytes go: a staged target that becomes visible only when it is complete.

Local: a target is written under a temporary name beside its final path (``.<name>.partial-<random>``),
hashed while it is written, fsynced, and renamed into place by :meth:`ArtifactTarget.commit`. Until then
nothing with the final name exists; :meth:`ArtifactTarget.abort` removes everything written.

Google Cloud Storage (``gs://bucket/name``): bytes stream into a resumable upload in chunks (only one
chunk is buffered, in memory). GCS makes an object visible only when its upload is finalized, which
:meth:`GCSArtifactTarget.commit` alone does; :meth:`~GCSArtifactTarget.abort` cancels the session, so
nothing with the final name appears. The manifest object is written after the artifact, and its
presence marks the backup as complete, in both places. :func:`open_target` picks the right target.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from airflow_provider_pgbackup.manifest import (
    MANIFEST_SUFFIX,
    FileDigest,
    Manifest,
    fsync_directory,
    manifest_path_for,
    read_manifest,
    write_manifest,
)
from airflow_provider_pgbackup.options import InvalidOptionError

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import storage

HASH_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ArtifactDigest:
    """Size and sha256 of a committed artifact; ``files`` is set for directory artifacts."""

    size_bytes: int
    sha256: str
    files: tuple[FileDigest, ...] | None = None


class ArtifactTarget(Protocol):
    """What the hook writes a dump into: :class:`LocalArtifactTarget` or :class:`GCSArtifactTarget`.

    The hook streams bytes with :meth:`write` (or, for a directory artifact, lets pg_dump write into
    :attr:`staging_directory`), calls :meth:`commit`, then :meth:`write_manifest`; when that fails it
    calls :meth:`remove_committed`, and :meth:`abort` on any earlier failure or kill.
    """

    @property
    def uri(self) -> str: ...

    @property
    def manifest_uri(self) -> str: ...

    @property
    def artifact_name(self) -> str: ...

    @property
    def staging_directory(self) -> Path | None: ...

    @property
    def bytes_written(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> ArtifactDigest: ...

    def abort(self) -> None: ...

    def write_manifest(self, manifest: Manifest) -> str: ...

    def remove_committed(self) -> None: ...


class ArtifactInUse(RuntimeError):
    """Another run is writing a backup to the same output path right now (retryable)."""


def check_local_output_path(output_path: str | os.PathLike[str]) -> Path:
    """An absolute, normalised path with no ``..`` and no manifest name; raises naming the value."""
    text = os.fspath(output_path)
    if not text or "\x00" in text or "\n" in text:
        raise InvalidOptionError(f"output_path {text!r} is empty or contains a NUL byte or newline")
    path = Path(text)
    if not path.is_absolute():
        raise InvalidOptionError(f"output_path {text!r} must be an absolute path (or a gs:// URI)")
    if ".." in PurePosixPath(text).parts:
        raise InvalidOptionError(f"output_path {text!r} must not contain '..'")
    if path.name.endswith(".manifest.json"):
        raise InvalidOptionError(f"output_path {text!r} must not be a manifest file name (*.manifest.json)")
    return path


class LocalArtifactTarget:
    """A file or directory artifact on a local (or mounted) filesystem, staged under a temporary name.

    :param path: final artifact path (absolute).
    :param directory: the artifact is a folder (pg_dump ``--format=directory`` writes it itself).
    :param overwrite: replace a finished backup at ``path``; otherwise its presence is an error.
    """

    def __init__(self, path: str | os.PathLike[str], *, directory: bool = False, overwrite: bool = False):
        self.path = check_local_output_path(path)
        self.directory = directory
        self.manifest_path = manifest_path_for(self.path)
        self.staging_path = self.path.with_name(f".{self.path.name}.partial-{secrets.token_hex(6)}")
        self._lock = threading.RLock()  # on_kill runs in a signal handler on the same thread
        self._handle: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._written = 0
        self._finished = False
        for parent in self.path.parents:
            if parent.name and manifest_path_for(parent).exists():
                raise InvalidOptionError(
                    f"output_path {str(self.path)!r} is inside the backup {str(parent)!r} (it has a "
                    "manifest); choose a folder that is not part of another backup"
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer_lock = self._take_writer_lock()
        try:
            for existing in (self.path, self.manifest_path):
                if (existing.exists() or existing.is_symlink()) and not overwrite:
                    raise InvalidOptionError(
                        f"output_path {str(self.path)!r} already holds a backup ({existing} exists); "
                        "choose a new path (e.g. with {{ ts_nodash }}) or pass overwrite=True"
                    )
            if not directory:  # pg_dump creates a directory artifact itself (and refuses a non-empty one)
                fd = os.open(self.staging_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                self._handle = os.fdopen(fd, "wb", buffering=0)
        except BaseException:
            self._release_writer_lock()
            raise

    def _take_writer_lock(self) -> int:
        """flock ``.<name>.lock`` beside the target for the whole run: a second writer fails at once.

        The lock is released (and its file removed) when the manifest is written or the run is
        aborted; a crashed worker's lock dies with its process.
        """
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        for _attempt in range(3):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ArtifactInUse(
                    f"another run is writing a backup to output_path {str(self.path)!r} right now "
                    f"(it holds {lock_path}); this run stops without touching it"
                ) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:  # not a file the previous holder unlinked while we waited for it
                self._lock_path = lock_path
                return fd
            os.close(fd)
        raise ArtifactInUse(f"could not lock output_path {str(self.path)!r}: its lock file keeps changing")

    def _release_writer_lock(self) -> None:
        fd, self._writer_lock = getattr(self, "_writer_lock", -1), -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                self._lock_path.unlink(missing_ok=True)
            os.close(fd)

    @property
    def uri(self) -> str:
        return str(self.path)

    @property
    def manifest_uri(self) -> str:
        return str(self.manifest_path)

    @property
    def artifact_name(self) -> str:
        return self.path.name

    @property
    def staging_directory(self) -> Path | None:
        """The folder pg_dump writes a directory-format artifact into (None for file artifacts)."""
        return self.staging_path if self.directory else None

    @property
    def bytes_written(self) -> int:
        if self.directory:
            return _tree_size(self.staging_path)
        return self._written

    def write(self, chunk: bytes) -> None:
        """Append bytes (file artifacts), hashing them on the way."""
        if self._handle is None:
            raise RuntimeError(f"artifact {self.path} is not open for streaming writes")
        view = memoryview(chunk)
        while view:
            written = self._handle.write(view)
            if not written:
                raise OSError(f"short write to {self.staging_path}")
            view = view[written:]
        self._hash.update(chunk)
        self._written += len(chunk)

    def commit(self) -> ArtifactDigest:
        """fsync, move into place and return the digest. Any previous backup at the path is replaced."""
        with self._lock:
            if self._finished:
                raise RuntimeError(f"artifact {self.path} was already committed or aborted")
            if self.directory:
                digest = digest_directory(self.staging_path, sync=True)
            else:
                assert self._handle is not None
                os.fsync(self._handle.fileno())
                self._handle.close()
                os.chmod(self.staging_path, 0o644)
                digest = ArtifactDigest(self._written, self._hash.hexdigest())
            # The old manifest goes first so an old manifest never describes new bytes.
            self.manifest_path.unlink(missing_ok=True)
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            os.replace(self.staging_path, self.path)
            fsync_directory(self.path.parent)
            self._finished = True
            return digest

    def abort(self) -> None:
        """Remove everything written; safe to call more than once and from another thread."""
        with self._lock:
            try:
                if self._finished:
                    return
                self._finished = True
                if self._handle is not None and not self._handle.closed:
                    self._handle.close()
                if self.staging_path.is_dir() and not self.staging_path.is_symlink():
                    shutil.rmtree(self.staging_path, ignore_errors=True)
                else:
                    self.staging_path.unlink(missing_ok=True)
            finally:
                self._release_writer_lock()

    def write_manifest(self, manifest: Manifest) -> str:
        """Write the manifest beside the committed artifact (atomically); returns its path."""
        write_manifest(manifest, self.manifest_path)
        self._release_writer_lock()  # on failure the lock stays until remove_committed undoes the commit
        return self.manifest_uri

    def remove_committed(self) -> None:
        """Undo a commit (used when writing the manifest fails): the artifact must not look finished."""
        try:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)
        finally:
            self._release_writer_lock()


def walk_files(root: Path) -> Iterator[Path]:
    """Every file below ``root``, in a stable (sorted) order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _tree_size(root: Path) -> int:
    total = 0
    for file in walk_files(root):
        try:
            total += file.stat().st_size
        except FileNotFoundError:
            continue
    return total


def sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def combine_file_digests(files: tuple[FileDigest, ...]) -> str:
    """One digest over a directory: sha256 of ``"<sha256>  <path>\\n"`` lines sorted by path."""
    lines = "".join(f"{f.sha256}  {f.path}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def digest_directory(root: Path, *, sync: bool = False) -> ArtifactDigest:
    """Per-file digests (relative '/' paths) and the combined digest of a directory artifact."""
    files = []
    for file in walk_files(root):
        if sync:
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        size, sha = sha256_file(file)
        files.append(FileDigest(file.relative_to(root).as_posix(), size, sha))
    result = tuple(files)
    if sync:
        fsync_directory(root)
    return ArtifactDigest(sum(f.size_bytes for f in result), combine_file_digests(result), result)


# ------------------------------------------------------------------------------------ Google Cloud Storage
GCS_SCHEME = "gs://"
#: Resumable uploads send chunks that are a multiple of 256 KiB.
GCS_CHUNK_MULTIPLE = 256 * 1024
DEFAULT_GCS_CHUNK_SIZE = 32 * 1024 * 1024
DEFAULT_GCS_RETRY_TIMEOUT = 300.0
#: Object metadata key holding a random id per upload, so a failed commit only ever deletes its own object.
UPLOAD_ID_KEY = "pgbackup-upload-id"
CONSOLE_URL = "https://console.cloud.google.com/storage/browser"

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class GCSStorageError(Exception):
    """Base class of the GCS errors raised by this module."""


class ArtifactMismatchError(GCSStorageError):
    """Bytes read do not match the manifest (sha256 or size): the artifact is corrupt or was changed."""


class ObjectConflictError(GCSStorageError):
    """A different object already exists at the name; the provider never overwrites it."""


class BucketNotFound(GCSStorageError):
    """The bucket of a ``gs://`` URI does not exist: a configuration error, not "not there yet"."""


class UploadCancelled(GCSStorageError):
    """The upload was stopped (task killed); the object being written was not finalized."""


def is_gcs_uri(value: object) -> bool:
    return isinstance(value, str) and value.startswith(GCS_SCHEME)


@dataclass(frozen=True)
class GCSLocation:
    """A bucket and an object name (or a prefix, without trailing '/'; may be empty = the bucket root)."""

    bucket: str
    name: str

    @classmethod
    def parse(cls, uri: str, *, what: str = "output_path", prefix: bool = False) -> GCSLocation:
        """Parse ``gs://bucket/name``; raises :class:`InvalidOptionError` naming ``what`` and the value."""
        if not is_gcs_uri(uri):
            raise InvalidOptionError(f"{what} {uri!r} is not a gs:// URI")
        bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
        return cls.build(bucket, name, what=what, uri=uri, prefix=prefix)

    @classmethod
    def build(
        cls,
        bucket: str,
        name: str,
        *,
        what: str = "output_path",
        uri: str | None = None,
        prefix: bool = False,
    ) -> GCSLocation:
        shown = uri if uri is not None else f"{GCS_SCHEME}{bucket}/{name}"
        if not isinstance(bucket, str) or not _BUCKET_NAME.match(bucket) or ".." in bucket:
            raise InvalidOptionError(
                f"{what} {shown!r} has no valid bucket name (lowercase letters, digits, '-', '_', '.'; "
                "3 to 222 characters)"
            )
        if not isinstance(name, str) or any(c in name for c in "\n\r\x00"):
            raise InvalidOptionError(f"{what} {shown!r} contains a newline, carriage return or NUL byte")
        if prefix:
            name = name.strip("/")
        elif not name or name.endswith("/"):
            raise InvalidOptionError(
                f"{what} {shown!r} must name an object (gs://bucket/path/name), not a folder"
            )
        parts = name.split("/") if name else []
        if any(part in ("", ".", "..") for part in parts):
            raise InvalidOptionError(f"{what} {shown!r} must not contain empty, '.' or '..' path segments")
        if not prefix and name.endswith(MANIFEST_SUFFIX):
            raise InvalidOptionError(
                f"{what} {shown!r} must not be a manifest file name (*{MANIFEST_SUFFIX})"
            )
        return cls(bucket, name)

    @property
    def uri(self) -> str:
        return f"{GCS_SCHEME}{self.bucket}/{self.name}"

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def child(self, relative: str) -> GCSLocation:
        return GCSLocation(self.bucket, f"{self.name}/{relative}" if self.name else relative)

    def sibling(self, name: str) -> GCSLocation:
        parent = self.name.rsplit("/", 1)[0] if "/" in self.name else ""
        return GCSLocation(self.bucket, f"{parent}/{name}" if parent else name)

    @property
    def console_url(self) -> str:
        """The object's page (or the folder's listing, for a prefix) in the Google Cloud Console."""
        return f"{CONSOLE_URL}/_details/{self.bucket}/{urllib.parse.quote(self.name)}"

    @property
    def console_folder_url(self) -> str:
        suffix = f"/{urllib.parse.quote(self.name)}/" if self.name else ""
        return f"{CONSOLE_URL}/{self.bucket}{suffix}"


def check_output_path(output_path: str | os.PathLike[str], *, directory: bool = False) -> None:
    """Validate a dump's ``output_path``: an absolute local path, or ``gs://`` for single-file formats."""
    if is_gcs_uri(output_path):
        if directory:
            raise InvalidOptionError(
                f"output_path {os.fspath(output_path)!r} is a gs:// URI, which cannot take format "
                "'directory' (pg_dump writes a directory itself); dump to a local folder and upload it with "
                "PgBackupToGCSOperator, or use format 'custom', 'tar' or 'plain'"
            )
        GCSLocation.parse(os.fspath(output_path))
        return
    check_local_output_path(output_path)


@dataclass(frozen=True)
class GCSSettings:
    """How the provider talks to GCS.

    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection (else ADC, or the emulator named by
        ``STORAGE_EMULATOR_HOST``).
    :param chunk_size: bytes per resumable-upload request (a multiple of 256 KiB); one chunk is buffered.
    :param retry_timeout: seconds a request (or chunk) is retried on transient errors, with backoff.
    :param storage_class: storage class of new objects (``STANDARD``, ``NEARLINE``, ``COLDLINE``,
        ``ARCHIVE``); None keeps the bucket's default.
    :param kms_key_name: Cloud KMS key for new objects; None keeps the bucket's default encryption.
    :param progress_interval: seconds between progress log lines of an upload.
    """

    gcp_conn_id: str | None = "google_cloud_default"
    chunk_size: int = DEFAULT_GCS_CHUNK_SIZE
    retry_timeout: float = DEFAULT_GCS_RETRY_TIMEOUT
    storage_class: str | None = None
    kms_key_name: str | None = None
    progress_interval: float = 5.0

    def __post_init__(self) -> None:
        size = self.chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % GCS_CHUNK_MULTIPLE:
            raise InvalidOptionError(
                f"chunk_size {size!r} must be a positive multiple of 256 KiB ({GCS_CHUNK_MULTIPLE} bytes)"
            )
        if not self.retry_timeout or self.retry_timeout <= 0:
            raise InvalidOptionError(
                f"retry_timeout {self.retry_timeout!r} must be a positive number of seconds"
            )
        allowed = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
        if self.storage_class is not None and self.storage_class not in allowed:
            raise InvalidOptionError(
                f"storage_class {self.storage_class!r} is not supported; use one of: {', '.join(allowed)}"
            )

    def retry(self) -> Retry:
        """Retry transient errors (429, 5xx, connection errors) with exponential backoff."""
        from google.cloud.storage.retry import DEFAULT_RETRY

        retry: Retry = DEFAULT_RETRY.with_delay(initial=0.5, multiplier=2.0, maximum=30.0)
        return retry.with_timeout(self.retry_timeout)

    def client(self) -> storage.Client:
        from airflow_provider_pgbackup.gcs import get_storage_client

        return get_storage_client(self.gcp_conn_id)


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


def _crc32c_base64(data_or_path: bytes | Path) -> str:
    import google_crc32c

    checksum = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
    if isinstance(data_or_path, bytes):
        checksum.update(data_or_path)  # type: ignore[no-untyped-call]
    else:
        with open(data_or_path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                checksum.update(chunk)  # type: ignore[no-untyped-call]
    return base64.b64encode(checksum.digest()).decode("ascii")  # type: ignore[no-untyped-call]


class GCSObjectWriter:
    """One object written through a resumable upload; it exists on GCS only after :meth:`commit`.

    Bytes are hashed (sha256) as they are written; crc32c is computed by the client and compared with
    the server's at finalize. ``if_generation_match`` is 0 (create only) unless replacing a known object.

    :param client: storage client.
    :param location: object to write.
    :param settings: chunk size, retries, storage class, KMS key.
    :param metadata: custom object metadata (strings).
    :param content_type: the object's content type.
    :param if_generation_match: generation precondition of the finalize (0: the name must be free).
    :param expected_sha256: refuse to finalize unless the bytes written have this sha256.
    :param expected_size: the same for the size (and the total shown in progress lines).
    :param log: logger for progress lines every ``settings.progress_interval`` seconds (None: silent).
    """

    def __init__(
        self,
        client: storage.Client,
        location: GCSLocation,
        *,
        settings: GCSSettings,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
        if_generation_match: int = 0,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        log: Any | None = None,
    ) -> None:
        from google.cloud.storage.fileio import BlobWriter

        self.client = client
        self.location = location
        self.settings = settings
        self.expected_sha256 = expected_sha256
        self.expected_size = expected_size
        self.log = log
        self.upload_id = secrets.token_hex(8)
        self.bucket = client.bucket(location.bucket)
        blob = self.bucket.blob(
            location.name, chunk_size=settings.chunk_size, kms_key_name=settings.kms_key_name
        )
        blob.metadata = {**(metadata or {}), UPLOAD_ID_KEY: self.upload_id}
        if settings.storage_class:
            blob.storage_class = settings.storage_class
        self.blob = blob
        self._writer = BlobWriter(
            blob,
            chunk_size=settings.chunk_size,
            retry=settings.retry(),
            content_type=content_type,
            if_generation_match=if_generation_match,
            checksum="crc32c",
        )
        self._lock = threading.RLock()
        self._hash = hashlib.sha256()
        self._written = 0
        self._finished = False
        self._started = time.monotonic()
        self._last_progress = self._started
        self.generation: int | None = None
        self.crc32c: str | None = None

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, chunk: bytes) -> None:
        if self._finished:
            raise RuntimeError(f"upload to {self.location.uri} was already committed or aborted")
        self._writer.write(chunk)
        self._hash.update(chunk)
        self._written += len(chunk)
        now = time.monotonic()
        if self.log is not None and now - self._last_progress >= self.settings.progress_interval:
            self._last_progress = now
            self.log.info("%s", self.progress_line(now - self._started))

    def progress_line(self, elapsed: float) -> str:
        from airflow_provider_pgbackup.hooks.pg_dump import format_bytes

        rate = self._written / elapsed if elapsed > 0 else 0.0
        total = f" of {format_bytes(self.expected_size)}" if self.expected_size is not None else ""
        return (
            f"Uploading {self.location.uri}: {format_bytes(self._written)}{total} in {elapsed:.0f} s "
            f"({format_bytes(rate)}/s)"
        )

    def commit(self) -> ArtifactDigest:
        """Check sha256/size, finalize the upload (the object appears), and check the server's size."""
        from google.api_core import exceptions

        with self._lock:
            if self._finished:
                raise RuntimeError(f"upload to {self.location.uri} was already committed or aborted")
            sha = self.sha256
            if self.expected_sha256 is not None and sha != self.expected_sha256:
                self.abort()
                raise ArtifactMismatchError(
                    f"bytes read for {self.location.uri} have sha256 {sha}, not {self.expected_sha256} as "
                    "the manifest says; the local artifact is corrupt or was changed, nothing was uploaded"
                )
            if self.expected_size is not None and self._written != self.expected_size:
                self.abort()
                raise ArtifactMismatchError(
                    f"{self._written} bytes read for {self.location.uri}, not {self.expected_size} as the "
                    "manifest says; nothing was uploaded"
                )
            self._finished = True
            try:
                self._writer.close()  # sends the last chunk: the object appears now, not earlier
            except exceptions.PreconditionFailed as err:
                raise ObjectConflictError(
                    f"{self.location.uri} was created by someone else during the upload; not overwritten"
                ) from err
            except BaseException:
                self.delete_if_ours()
                raise
            try:
                blob = self.bucket.get_blob(self.location.name, retry=self.settings.retry())
                if blob is None or (blob.metadata or {}).get(UPLOAD_ID_KEY) != self.upload_id:
                    raise GCSStorageError(f"{self.location.uri} is not the object just uploaded")
                if blob.size != self._written:
                    raise ArtifactMismatchError(
                        f"{self.location.uri} holds {blob.size} bytes after upload, not {self._written}"
                    )
                self.generation = blob.generation
                self.crc32c = blob.crc32c
            except BaseException:
                self.delete_if_ours()
                raise
            elapsed = max(time.monotonic() - self._started, 1e-9)
            if self.log is not None:
                self.log.info("Uploaded %s", self.progress_line(elapsed).split(" ", 1)[1])
            return ArtifactDigest(self._written, sha)

    def abort(self) -> None:
        """Cancel the resumable session: no object appears. Safe to call more than once."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            with contextlib.suppress(Exception):
                self._writer.terminate()

    def delete_if_ours(self) -> None:
        """Delete the object if it is the one this writer uploaded (used to undo a commit)."""
        with contextlib.suppress(Exception):
            blob = self.bucket.get_blob(self.location.name, retry=self.settings.retry())
            if blob is not None and (blob.metadata or {}).get(UPLOAD_ID_KEY) == self.upload_id:
                blob.delete(if_generation_match=blob.generation, retry=self.settings.retry())

    def set_metadata(self, metadata: dict[str, str]) -> None:
        """Add metadata to the committed object (only if it is still the generation written)."""
        if self.generation is None:
            raise RuntimeError(f"upload to {self.location.uri} is not committed")
        blob = self.bucket.get_blob(self.location.name, retry=self.settings.retry())
        if blob is None or blob.generation != self.generation:
            raise GCSStorageError(f"{self.location.uri} changed after it was uploaded")
        blob.metadata = {**(blob.metadata or {}), **metadata}
        blob.patch(
            if_generation_match=self.generation,
            if_metageneration_match=blob.metageneration,
            retry=self.settings.retry(),
        )


def put_small_object(
    client: storage.Client,
    location: GCSLocation,
    data: bytes,
    *,
    settings: GCSSettings,
    content_type: str = "application/json",
    metadata: dict[str, str] | None = None,
) -> bool:
    """Create a small object (a manifest) unless an identical one exists; True when it was written.

    :raises ObjectConflictError: a different object already has the name.
    """
    from google.api_core import exceptions

    sha = hashlib.sha256(data).hexdigest()
    bucket = client.bucket(location.bucket)
    existing = bucket.get_blob(location.name, retry=settings.retry())
    if existing is not None:
        if (existing.metadata or {}).get("sha256") == sha and existing.size == len(data):
            return False
        raise ObjectConflictError(
            f"{location.uri} already exists with different content (generation {existing.generation}); "
            "the provider never overwrites an object"
        )
    blob = bucket.blob(location.name, kms_key_name=settings.kms_key_name)
    blob.metadata = {**(metadata or {}), "sha256": sha}
    if settings.storage_class:
        blob.storage_class = settings.storage_class
    try:
        blob.upload_from_string(
            data, content_type=content_type, if_generation_match=0, checksum="crc32c", retry=settings.retry()
        )
    except exceptions.PreconditionFailed as err:
        again = bucket.get_blob(location.name, retry=settings.retry())
        if again is not None and (again.metadata or {}).get("sha256") == sha:
            return False
        raise ObjectConflictError(f"{location.uri} was created by someone else; not overwritten") from err
    return True


class GCSArtifactTarget:
    """A single-file artifact streamed into ``gs://bucket/name`` (the :class:`ArtifactTarget` for GCS).

    Nothing appears under the name before :meth:`commit`; :meth:`write_manifest` then adds the backup's
    metadata to the object and creates ``<name>.manifest.json``, the mark of a complete backup.

    :param output_path: ``gs://bucket/path/name``.
    :param overwrite: replace a finished backup at that name (its manifest is deleted first); otherwise
        an existing object or manifest is an error, checked before anything runs.
    :param settings: connection, chunk size, retries, storage class, KMS key.
    :param client: storage client (default: built from ``settings.gcp_conn_id``).
    """

    staging_directory: Path | None = None

    def __init__(
        self,
        output_path: str,
        *,
        overwrite: bool = False,
        settings: GCSSettings | None = None,
        client: storage.Client | None = None,
    ) -> None:
        self.location = GCSLocation.parse(output_path)
        self.manifest_location = self.location.sibling(self.location.basename + MANIFEST_SUFFIX)
        self.settings = settings or GCSSettings()
        self.client = client or self.settings.client()
        bucket = self.client.bucket(self.location.bucket)
        retry = self.settings.retry()
        existing = bucket.get_blob(self.location.name, retry=retry)
        self._old_manifest = bucket.get_blob(self.manifest_location.name, retry=retry)
        for found in (existing, self._old_manifest):
            if found is not None and not overwrite:
                raise InvalidOptionError(
                    f"output_path {self.location.uri!r} already holds a backup "
                    f"({GCS_SCHEME}{self.location.bucket}/{found.name} exists); "
                    "choose a new path (e.g. with {{ ts_nodash }}) or pass overwrite=True"
                )
        self._writer = GCSObjectWriter(
            self.client,
            self.location,
            settings=self.settings,
            if_generation_match=existing.generation if existing is not None else 0,
        )
        self._manifest_written = False

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def manifest_uri(self) -> str:
        return self.manifest_location.uri

    @property
    def artifact_name(self) -> str:
        return self.location.basename

    @property
    def bytes_written(self) -> int:
        return self._writer.bytes_written

    def write(self, chunk: bytes) -> None:
        self._writer.write(chunk)

    def commit(self) -> ArtifactDigest:
        if self._old_manifest is not None:
            # An old manifest must never describe new bytes: it goes before the new object appears.
            with contextlib.suppress(Exception):
                self._old_manifest.delete(
                    if_generation_match=self._old_manifest.generation, retry=self.settings.retry()
                )
        return self._writer.commit()

    def abort(self) -> None:
        self._writer.abort()

    def write_manifest(self, manifest: Manifest) -> str:
        """Record the backup's metadata on the object, then create the manifest object (last)."""
        self._writer.set_metadata(backup_metadata(manifest))
        put_small_object(
            self.client,
            self.manifest_location,
            manifest.to_json().encode("utf-8"),
            settings=self.settings,
            metadata={"backup-sha256": manifest.sha256},
        )
        self._manifest_written = True
        return self.manifest_uri

    def remove_committed(self) -> None:
        self._writer.delete_if_ours()


def default_gcs_settings() -> GCSSettings:
    """Settings for dumps streamed straight to ``gs://`` (connection ``google_cloud_default``)."""
    return GCSSettings()


def open_target(
    output_path: str,
    *,
    directory: bool = False,
    overwrite: bool = False,
    gcs_settings: GCSSettings | None = None,
) -> LocalArtifactTarget | GCSArtifactTarget:
    """The target for ``output_path``: :class:`GCSArtifactTarget` for ``gs://``, else local.

    :param output_path: absolute local path, or ``gs://bucket/name`` (single-file formats only).
    :param directory: the artifact is a folder (pg_dump ``--format=directory``); refused for ``gs://``.
    :param overwrite: replace a finished backup at the path.
    :param gcs_settings: GCS connection, chunk size, retries (default: :func:`default_gcs_settings`).
    """
    if is_gcs_uri(output_path):
        check_output_path(output_path, directory=directory)
        return GCSArtifactTarget(
            output_path, overwrite=overwrite, settings=gcs_settings or default_gcs_settings()
        )
    return LocalArtifactTarget(output_path, directory=directory, overwrite=overwrite)


@dataclass(frozen=True)
class UploadedBackup:
    """What :func:`upload_backup` did: where the backup is, and how much it sent."""

    artifact_uri: str
    manifest_uri: str
    object_uris: tuple[str, ...]
    uploaded_bytes: int
    skipped_objects: int
    duration_seconds: float
    console_url: str

    @property
    def rate_bytes_per_second(self) -> float:
        return self.uploaded_bytes / self.duration_seconds if self.duration_seconds > 0 else 0.0


def _upload_file(
    client: storage.Client,
    source: Path,
    location: GCSLocation,
    *,
    sha256: str,
    size: int,
    metadata: dict[str, str],
    settings: GCSSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> bool:
    """Upload one local file unless the identical object exists; True when bytes were sent."""
    bucket = client.bucket(location.bucket)
    existing = bucket.get_blob(location.name, retry=settings.retry())
    if existing is not None:
        remote_sha = (existing.metadata or {}).get("sha256")
        if remote_sha == sha256 and existing.size == size and existing.crc32c == _crc32c_base64(source):
            log.info("%s already holds these bytes (sha256 %s); not uploaded again", location.uri, sha256)
            return False
        raise ObjectConflictError(
            f"{location.uri} already exists with different content (sha256 {remote_sha or 'unknown'}, "
            f"{existing.size} bytes, generation {existing.generation}); the provider never overwrites an "
            "object: choose another prefix or delete it"
        )
    writer = GCSObjectWriter(
        client,
        location,
        settings=settings,
        metadata=metadata,
        expected_sha256=sha256,
        expected_size=size,
        log=log,
    )
    try:
        with open(source, "rb") as handle:
            while chunk := handle.read(settings.chunk_size):
                if cancel is not None and cancel.is_set():
                    raise UploadCancelled(
                        f"upload to {location.uri} was stopped; the object was not finalized"
                    )
                writer.write(chunk)
        if cancel is not None and cancel.is_set():
            raise UploadCancelled(f"upload to {location.uri} was stopped; the object was not finalized")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return True


def upload_backup(
    artifact_path: str | os.PathLike[str],
    destination: GCSLocation,
    *,
    settings: GCSSettings,
    client: storage.Client | None = None,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[UploadedBackup, Manifest]:
    """Upload a local backup (artifact file or folder, then its manifest, last) under a ``gs://`` prefix.

    Every byte read is checked against the manifest's sha256 before the object is finalized, and the
    client checks crc32c with the server. Objects that already exist with the same sha256 are skipped,
    so a retried upload is a no-op; a different object at a name is never overwritten.

    :param artifact_path: the local artifact; its manifest must be beside it.
    :param destination: bucket and prefix (the artifact keeps its name under the prefix).
    :param settings: connection, chunk size, retries, storage class, KMS key.
    :param client: storage client (default: from ``settings``).
    :param log: logger for progress lines.
    :param cancel: when set (by ``on_kill``), the upload stops before the next chunk; no object or
        manifest is finalized.
    :raises ArtifactMismatchError: the local bytes do not match the manifest.
    :raises ObjectConflictError: a different object is already at one of the names.
    """
    path = check_local_output_path(artifact_path)
    manifest_file = manifest_path_for(path)
    if not manifest_file.is_file():
        raise ArtifactMismatchError(
            f"{path} has no manifest ({manifest_file.name} is missing): it is not a finished backup"
        )
    manifest = read_manifest(manifest_file)
    if manifest.artifact != path.name:
        raise ArtifactMismatchError(
            f"manifest {manifest_file} describes artifact {manifest.artifact!r}, not {path.name!r}"
        )
    client = client or settings.client()
    started = time.monotonic()
    artifact = destination.child(path.name)
    metadata = backup_metadata(manifest)
    uploads: list[tuple[Path, GCSLocation, str, int, dict[str, str]]] = []
    if path.is_dir():
        if manifest.files is None:
            raise ArtifactMismatchError(f"{path} is a folder but its manifest lists no files")
        local = {f.relative_to(path).as_posix(): f for f in walk_files(path)}
        listed = {f.path: f for f in manifest.files}
        if set(local) != set(listed):
            extra = sorted(set(local) - set(listed))
            missing = sorted(set(listed) - set(local))
            raise ArtifactMismatchError(
                f"{path} does not hold the files its manifest lists (missing: {missing[:5]}, "
                f"not listed: {extra[:5]})"
            )
        for rel in sorted(listed):
            entry = listed[rel]
            uploads.append(
                (
                    local[rel],
                    artifact.child(rel),
                    entry.sha256,
                    entry.size_bytes,
                    {**metadata, "sha256": entry.sha256, "backup-sha256": manifest.sha256},
                )
            )
    else:
        if not path.is_file():
            raise ArtifactMismatchError(f"artifact {path} is missing")
        uploads.append((path, artifact, manifest.sha256, manifest.size_bytes, metadata))
    sent = 0
    skipped = 0
    for source, location, sha, size, object_metadata in uploads:
        if _upload_file(
            client,
            source,
            location,
            sha256=sha,
            size=size,
            metadata=object_metadata,
            settings=settings,
            log=log,
            cancel=cancel,
        ):
            sent += size
        else:
            skipped += 1
    manifest_location = destination.child(path.name + MANIFEST_SUFFIX)
    if cancel is not None and cancel.is_set():
        raise UploadCancelled(f"upload of {path.name} was stopped before its manifest was written")
    if not put_small_object(
        client,
        manifest_location,
        manifest_file.read_bytes(),
        settings=settings,
        metadata={"backup-sha256": manifest.sha256},
    ):
        skipped += 1
        log.info("%s already exists with the same content", manifest_location.uri)
    duration = time.monotonic() - started
    result = UploadedBackup(
        artifact_uri=artifact.uri,
        manifest_uri=manifest_location.uri,
        object_uris=(*(loc.uri for _, loc, _, _, _ in uploads), manifest_location.uri),
        uploaded_bytes=sent,
        skipped_objects=skipped,
        duration_seconds=duration,
        console_url=artifact.console_url if not path.is_dir() else artifact.console_folder_url,
    )
    return result, manifest


def remove_local_backup(artifact_path: str | os.PathLike[str]) -> None:
    """Delete a local backup: the manifest first (so a half-deleted backup never looks finished)."""
    path = check_local_output_path(artifact_path)
    manifest_path_for(path).unlink(missing_ok=True)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ backup folders (retention)
@dataclass(frozen=True)
class StoredEntry:
    """One top-level name in a backup folder: a manifest, a file artifact, or a folder (artifact or partial).

    :param name: the name directly under the folder.
    :param is_folder: a directory (local) or a ``name/`` prefix (GCS).
    :param size_bytes: total size of its files.
    :param updated: newest modification time of anything in it (UTC).
    :param objects: GCS only: ``(object name, generation)`` of every object, deleted with that precondition.
    """

    name: str
    is_folder: bool
    size_bytes: int
    updated: datetime.datetime
    files: tuple[tuple[str, int], ...] = ()
    objects: tuple[tuple[str, int], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()


class BackupStore(Protocol):
    """A folder of backups that retention can list, read and delete from."""

    @property
    def uri(self) -> str: ...

    def entries(self) -> list[StoredEntry]: ...

    def read(self, entry: StoredEntry) -> bytes: ...

    def delete(self, entry: StoredEntry) -> None: ...

    def uri_of(self, entry: StoredEntry) -> str: ...


class LocalBackupStore:
    """Backups in a local (or mounted) folder.

    :param root: the folder (absolute).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = check_local_output_path(root)

    @property
    def uri(self) -> str:
        return str(self.root)

    def entries(self) -> list[StoredEntry]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"backup folder {self.root} does not exist")
        found = []
        for path in sorted(self.root.iterdir()):
            stat = path.lstat()
            newest = stat.st_mtime
            size = 0
            files: list[tuple[str, int]] = []
            if path.is_dir() and not path.is_symlink():
                for file in walk_files(path):
                    with contextlib.suppress(FileNotFoundError):
                        file_stat = file.lstat()
                        newest = max(newest, file_stat.st_mtime)
                        size += file_stat.st_size
                        files.append((file.relative_to(path).as_posix(), file_stat.st_size))
            else:
                size = stat.st_size
            found.append(
                StoredEntry(
                    name=path.name,
                    is_folder=path.is_dir() and not path.is_symlink(),
                    size_bytes=size,
                    updated=datetime.datetime.fromtimestamp(newest, tz=datetime.timezone.utc),
                    files=tuple(files),
                )
            )
        return found

    def read(self, entry: StoredEntry) -> bytes:
        return (self.root / entry.name).read_bytes()

    def delete(self, entry: StoredEntry) -> None:
        path = self.root / entry.name
        if entry.is_folder:
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def uri_of(self, entry: StoredEntry) -> str:
        return str(self.root / entry.name)


class GCSBackupStore:
    """Backups under a ``gs://bucket/prefix``: objects directly under it, and ``name/...`` folders.

    :param location: bucket and prefix.
    :param settings: connection and retries.
    :param client: storage client (default: from ``settings``).
    """

    def __init__(
        self, location: GCSLocation, *, settings: GCSSettings, client: storage.Client | None = None
    ) -> None:
        self.location = location
        self.settings = settings
        self.client = client or settings.client()
        self.bucket = self.client.bucket(location.bucket)

    @property
    def uri(self) -> str:
        return self.location.uri

    def entries(self) -> list[StoredEntry]:
        prefix = f"{self.location.name}/" if self.location.name else ""
        groups: dict[str, list[Any]] = {}
        for blob in self.client.list_blobs(self.location.bucket, prefix=prefix, retry=self.settings.retry()):
            relative = blob.name[len(prefix) :]
            if not relative:
                continue
            top = relative.split("/", 1)[0]
            groups.setdefault(top, []).append(blob)
        found = []
        for top, blobs in sorted(groups.items()):
            is_folder = any("/" in b.name[len(prefix) :] for b in blobs)
            updated = max(b.updated for b in blobs)
            files = tuple(
                (b.name[len(prefix) + len(top) + 1 :], int(b.size)) for b in blobs if b.name != prefix + top
            )
            single = next((b for b in blobs if b.name == prefix + top), None)
            found.append(
                StoredEntry(
                    name=top,
                    is_folder=is_folder,
                    size_bytes=sum(int(b.size or 0) for b in blobs),
                    updated=updated,
                    files=files,
                    objects=tuple((b.name, int(b.generation)) for b in blobs),
                    metadata=tuple(sorted((single.metadata or {}).items())) if single is not None else (),
                )
            )
        return found

    def read(self, entry: StoredEntry) -> bytes:
        name, generation = entry.objects[0]
        data: bytes = self.bucket.blob(name, generation=generation).download_as_bytes(
            retry=self.settings.retry()
        )
        return data

    def delete(self, entry: StoredEntry) -> None:
        from google.api_core import exceptions

        for name, generation in entry.objects:
            with contextlib.suppress(exceptions.NotFound):
                self.bucket.blob(name).delete(if_generation_match=generation, retry=self.settings.retry())

    def uri_of(self, entry: StoredEntry) -> str:
        return self.location.child(entry.name).uri + ("/" if entry.is_folder else "")


def open_store(uri: str, *, settings: GCSSettings | None = None) -> LocalBackupStore | GCSBackupStore:
    """The backup folder at ``uri``: a local absolute path or ``gs://bucket/prefix``."""
    if is_gcs_uri(uri):
        return GCSBackupStore(
            GCSLocation.parse(uri, what="location", prefix=True), settings=settings or GCSSettings()
        )
    return LocalBackupStore(uri)


# ------------------------------------------------------------------------------- reading a backup on GCS
class _HashingSink:
    """A write-only file object that hashes what it receives (downloads without a local copy)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return len(data)


class GCSArtifactSource:
    """A backup on GCS, read for verification or restore (``verify.ArtifactSource``).

    ``gs://bucket/path/name`` is the artifact (one object, or a ``name/`` folder of objects for the
    directory format); ``gs://bucket/path/name.manifest.json`` is its manifest. Downloads are
    crc32c-checked by the client (a mismatch raises :class:`ArtifactMismatchError`); bytes stream
    through sha256 in memory. A file artifact is never copied locally except by :meth:`local_copy`
    (a directory-format artifact for pg_restore, or a custom archive restored with several jobs).

    The first look at the artifact (:meth:`artifact_sizes`) pins the generation of every object; later
    reads (:meth:`digest`, :meth:`chunks`, :meth:`local_copy`) read exactly those generations, so a
    restore after verification reads the bytes that were verified, even if the name is overwritten.

    :param uri: the artifact's ``gs://`` URI.
    :param settings: connection, chunk size (download request size), retries.
    :param client: storage client (default: from ``settings``).
    """

    #: Not a local path: the artifact must be streamed or downloaded.
    local_path: Path | None = None

    def __init__(
        self, uri: str, *, settings: GCSSettings | None = None, client: storage.Client | None = None
    ) -> None:
        self.location = GCSLocation.parse(uri, what="path")
        self.manifest_location = self.location.sibling(self.location.basename + MANIFEST_SUFFIX)
        self.settings = settings or GCSSettings()
        self.client = client or self.settings.client()
        self.bucket = self.client.bucket(self.location.bucket)
        # object name -> generation, set by the first look (artifact_sizes); None: not looked yet.
        self._pinned: dict[str, int] | None = None
        self._is_folder = False

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def manifest_uri(self) -> str:
        return self.manifest_location.uri

    def present(self) -> bool:
        """A cheap look, no download: True once the manifest and the artifact (object or folder) exist."""
        retry = self.settings.retry()
        if self.bucket.get_blob(self.manifest_location.name, retry=retry) is None:
            return False
        if self.bucket.get_blob(self.location.name, retry=retry) is not None:
            return True
        prefix = self.location.name + "/"
        return any(
            True
            for _ in self.client.list_blobs(self.location.bucket, prefix=prefix, max_results=1, retry=retry)
        )

    def manifest_bytes(self) -> bytes:
        from google.api_core import exceptions

        try:
            data: bytes = self.bucket.blob(self.manifest_location.name).download_as_bytes(
                checksum="crc32c", retry=self.settings.retry()
            )
        except exceptions.NotFound as err:
            raise FileNotFoundError(f"{self.manifest_uri} does not exist") from err
        return data

    def _folder_blobs(self) -> list[Any]:
        from google.api_core import exceptions

        prefix = self.location.name + "/"
        try:
            blobs = list(
                self.client.list_blobs(self.location.bucket, prefix=prefix, retry=self.settings.retry())
            )
        except exceptions.NotFound as err:
            raise BucketNotFound(
                f"bucket {self.location.bucket!r} of {self.uri} does not exist (check the name and the "
                f"project of connection {self.settings.gcp_conn_id!r})"
            ) from err
        return sorted(blobs, key=lambda b: b.name)

    def _pin(self) -> dict[str, int]:
        """The pinned ``{object name: generation}``; the first call looks the artifact up."""
        if self._pinned is None:
            self.artifact_sizes()
        assert self._pinned is not None
        return self._pinned

    def _relative(self, name: str) -> str:
        return name[len(self.location.name) + 1 :]

    def artifact_sizes(self) -> dict[str, int] | int:
        blob = self.bucket.get_blob(self.location.name, retry=self.settings.retry())
        if blob is not None:
            self._pinned, self._is_folder = {blob.name: int(blob.generation)}, False
            return int(blob.size)
        blobs = self._folder_blobs()
        if not blobs:
            raise FileNotFoundError(f"{self.uri} does not exist")
        self._pinned = {b.name: int(b.generation) for b in blobs}
        self._is_folder = True
        return {self._relative(b.name): int(b.size) for b in blobs}

    def _blob(self, name: str) -> Any:
        return self.bucket.blob(name, generation=self._pin()[name])

    def _download(self, name: str, sink: Any) -> None:
        """Download one pinned object into a file object, crc32c-checked against the object's."""
        from google.cloud.storage.exceptions import DataCorruption

        try:
            self._blob(name).download_to_file(sink, checksum="crc32c", retry=self.settings.retry())
        except DataCorruption as err:
            raise ArtifactMismatchError(
                f"{GCS_SCHEME}{self.location.bucket}/{name}: the downloaded bytes do not match the "
                "object's crc32c"
            ) from err

    def _digest_object(self, name: str) -> tuple[int, str]:
        sink = _HashingSink()
        self._download(name, sink)
        return sink.size, sink.hash.hexdigest()

    def digest(self) -> ArtifactDigest:
        pinned = self._pin()
        if not self._is_folder:
            return ArtifactDigest(*self._digest_object(self.location.name))
        files = []
        for name in sorted(pinned):
            size, sha = self._digest_object(name)
            files.append(FileDigest(self._relative(name), size, sha))
        result = tuple(files)
        return ArtifactDigest(sum(f.size_bytes for f in result), combine_file_digests(result), result)

    def chunks(self) -> Iterator[bytes]:
        """The object's bytes, ``settings.chunk_size`` at a time (the pinned generation, ranged reads)."""
        self._pin()
        if self._is_folder:
            raise GCSStorageError(f"{self.uri} is a directory-format folder; it cannot be read as a stream")
        blob = self._blob(self.location.name)
        with blob.open("rb", chunk_size=self.settings.chunk_size, retry=self.settings.retry()) as reader:
            while chunk := reader.read(self.settings.chunk_size):
                yield chunk

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        """Download the artifact (file or folder) into a private temporary folder (mode 0700) for the
        duration of the block; everything downloaded is removed when the block ends, also on failure."""
        import tempfile

        pinned = self._pin()
        root = Path(tempfile.mkdtemp(prefix="pgbackup-download-"))
        try:
            artifact = root / self.location.basename
            if self._is_folder:
                artifact.mkdir(mode=0o700)
                for name in sorted(pinned):
                    relative = PurePosixPath(self._relative(name))
                    if ".." in relative.parts or relative.is_absolute() or not relative.parts:
                        raise GCSStorageError(f"object {name!r} has an unsafe relative name")
                    destination = artifact.joinpath(*relative.parts)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with open(destination, "xb") as handle:
                        self._download(name, handle)
            else:
                with open(artifact, "xb") as handle:
                    self._download(self.location.name, handle)
            yield artifact
        finally:
            shutil.rmtree(root, ignore_errors=True)
