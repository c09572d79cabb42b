"""Local (or mounted) folders: staged targets renamed into place, sources read in place, a backup store.

A local backup is named by its absolute path, or by ``file://<host>/<path>`` (the dump's XCom
``artifact_uri``), which also says which machine wrote it. On a distributed executor (Celery, Kubernetes)
the next task may run elsewhere: a source whose host is not this machine, and whose artifact and manifest
are both absent here, raises :class:`ArtifactNotOnThisWorker` at once instead of "not there yet". A
shared (mounted) folder still works: the check runs only when nothing is found.

A target is written under a temporary name beside its final path (``.<name>.partial-<random>``), hashed
while it is written, fsynced, and renamed into place by :meth:`LocalArtifactTarget.commit`. Until then
nothing with the final name exists; :meth:`LocalArtifactTarget.abort` removes everything written. A
``.<name>.lock`` file, locked with ``flock`` for the whole run, keeps a second writer out.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import secrets
import shutil
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from airflow_provider_pgbackup.manifest import (
    DEFAULT_FILE_MODE,
    MANIFEST_SUFFIX,
    Manifest,
    folder_mode,
    fsync_directory,
    write_manifest,
)
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import (
    ArtifactDigest,
    ArtifactInUse,
    ArtifactMismatchError,
    ArtifactNotOnThisWorker,
    ArtifactRefused,
    ArtifactSource,
    Location,
    Sha256Counter,
    StorageSettings,
    StoredEntry,
    TransferResult,
    UploadCancelled,
)
from airflow_provider_pgbackup.storage.files import (
    digest_directory,
    local_chunks,
    make_folders,
    restrict_tree,
    sha256_file,
    tree_size,
    walk_files,
)

SCHEME = ""
log = logging.getLogger(__name__)
#: ``file://<host>/<absolute path>``: a local path and the machine that wrote it (RFC 8089, quoted).
FILE_PREFIX = "file://"
STAGING_HINT = (
    "use a gs:// staging location (README: 'Running on Celery or Kubernetes'), or a folder every "
    "worker mounts"
)


def this_host() -> str:
    """This machine's name as Airflow records it on task instances (``[core] hostname_callable``)."""
    try:
        from airflow.sdk.api.client import get_hostname
    except ImportError:  # pragma: no cover - outside an Airflow 3 installation
        return socket.getfqdn()
    return str(get_hostname())  # type: ignore[no-untyped-call]


def host_uri(location: Location, host: str | None = None) -> str:
    """``file://<host>/<path>`` of a local location (default host: this machine)."""
    host = host if host is not None else (location.container or this_host())
    return Location(SCHEME, host, location.name).uri


def _parse_file_uri(text: str, what: str) -> tuple[str, str]:
    host, sep, rest = text[len(FILE_PREFIX) :].partition("/")
    host = urllib.parse.unquote(host)
    if not sep or any(c in host for c in "/\\ \t\n\r\x00"):
        raise InvalidOptionError(
            f"{what} {text!r} must be file://<host>/<absolute path> (or file:///<absolute path>)"
        )
    return host, "/" + urllib.parse.unquote(rest)


def parse(text: str, *, what: str, folder: bool) -> Location:
    """An absolute, normalised local path with no ``..``; an artifact path is no manifest name.

    ``file://<host>/<path>`` is the same path, recorded with the host that wrote it (empty host: unknown).
    """
    host = ""
    if text.startswith(FILE_PREFIX):
        host, text = _parse_file_uri(text, what)
    if not text or "\x00" in text or "\n" in text or "\r" in text:
        raise InvalidOptionError(f"{what} {text!r} is empty or contains a NUL byte or newline")
    if not text.startswith("/"):
        raise InvalidOptionError(
            f"{what} {text!r} must be an absolute path, or an object-store URI such as gs://bucket/name"
        )
    if ".." in PurePosixPath(text).parts:
        raise InvalidOptionError(f"{what} {text!r} must not contain '..'")
    name = text.rstrip("/") or "/"
    if not folder and name.endswith(MANIFEST_SUFFIX):
        raise InvalidOptionError(f"{what} {text!r} must not be a manifest file name (*{MANIFEST_SUFFIX})")
    return Location(SCHEME, host, os.path.normpath(name))


def not_on_this_worker(location: Location, *, waiting: bool) -> ArtifactNotOnThisWorker | None:
    """The error to raise when a local backup is missing *entirely* from this machine, else None.

    Missing entirely: neither the artifact nor its manifest exists here. When the location names the
    host that wrote it and that is another machine, the backup will never appear here. Without a host,
    a task that does not wait (an upload, a restore) gets the same answer, since nothing it could wait
    for exists; a sensor (``waiting``) keeps waiting then, as a dump may not have started yet.
    """
    path, manifest = Path(location.name), Path(location.manifest.name)
    if path.exists() or path.is_symlink() or manifest.exists() or manifest.is_symlink():
        return None
    here = this_host()
    writer = location.container
    if writer and writer != here:
        return ArtifactNotOnThisWorker(
            f"backup {location.name} is not on this worker ({here}): the dump ran on another worker "
            f"({writer}) without shared storage, so neither the artifact nor its manifest is here and "
            f"waiting will not bring them; {STAGING_HINT}"
        )
    if writer or waiting:
        return None
    return ArtifactNotOnThisWorker(
        f"backup {location.name} is not on this worker ({here}): neither the artifact nor its manifest "
        "is here. If the dump ran on another worker without shared storage, it never will be; "
        f"{STAGING_HINT}. (Pass the dump's XCom 'artifact_uri', file://<host>/<path>, to name the worker "
        "that wrote it.)"
    )


class LocalArtifactTarget:
    """A file or directory artifact on a local (or mounted) filesystem, staged under a temporary name.

    :param location: final artifact path.
    :param directory: the artifact is a folder (pg_dump ``--format=directory`` writes it itself).
    :param overwrite: replace a finished backup at the path; otherwise its presence is an error.
    :param file_mode: mode of the finished files (folders get the matching search bits).
    """

    def __init__(
        self,
        location: Location,
        *,
        directory: bool = False,
        overwrite: bool = False,
        file_mode: int = DEFAULT_FILE_MODE,
    ):
        self._location = location
        self.path = Path(location.name)
        self.directory = directory
        self.file_mode = file_mode
        self.dir_mode = folder_mode(file_mode)
        self.manifest_path = Path(location.manifest.name)
        self.staging_path = self.path.with_name(f".{self.path.name}.partial-{secrets.token_hex(6)}")
        self._lock = threading.RLock()  # on_kill runs in a signal handler on the same thread
        self._handle: BinaryIO | None = None
        self._hash = Sha256Counter()
        self._finished = False
        for parent in self.path.parents:
            if parent.name and parent.with_name(parent.name + MANIFEST_SUFFIX).exists():
                raise InvalidOptionError(
                    f"output_path {str(self.path)!r} is inside the backup {str(parent)!r} (it has a "
                    "manifest); choose a folder that is not part of another backup"
                )
        make_folders(self.path.parent, self.dir_mode)
        crashed_writer = self.path.with_name(f".{self.path.name}.lock").exists()
        self._writer_lock = self._take_writer_lock()
        try:
            unfinished = self.path.exists() and not self.manifest_path.exists() and not self.path.is_symlink()
            if unfinished and crashed_writer and not overwrite:
                # Our own artifact without its manifest (the lock file of the run that wrote it is still
                # there): by the provider's definition not a finished backup. A retry replaces it.
                log.warning(
                    "Replacing %s: an artifact without a manifest, left by a run that stopped before "
                    "writing it (its lock file was still there)",
                    self.path,
                )
                overwrite = True
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

    @property
    def location(self) -> Location:
        return self._location

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
    def staging_directory(self) -> Path | None:
        """The folder pg_dump writes a directory-format artifact into (None for file artifacts)."""
        return self.staging_path if self.directory else None

    @property
    def bytes_written(self) -> int:
        if self.directory:
            return tree_size(self.staging_path)
        return self._hash.size

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

    def commit(self) -> ArtifactDigest:
        """fsync, move into place and return the digest. Any previous backup at the path is replaced."""
        with self._lock:
            if self._finished:
                raise RuntimeError(f"artifact {self.path} was already committed or aborted")
            if self.directory:
                restrict_tree(self.staging_path, self.file_mode, self.dir_mode)
                digest = digest_directory(self.staging_path, sync=True)
            else:
                assert self._handle is not None
                os.fsync(self._handle.fileno())
                self._handle.close()
                os.chmod(self.staging_path, self.file_mode)
                digest = self._hash.digest()
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
        write_manifest(manifest, self.manifest_path, mode=self.file_mode)
        self._release_writer_lock()  # on failure the lock stays until remove_committed undoes the commit
        return str(self.manifest_path)

    def remove_committed(self) -> None:
        """Undo a commit (used when writing the manifest fails): the artifact must not look finished."""
        try:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)
        finally:
            self._release_writer_lock()


class LocalArtifactSource:
    """A backup on a local or mounted filesystem: ``path`` and ``path + ".manifest.json"``."""

    def __init__(self, location: Location) -> None:
        self._location = location
        self.path = Path(location.name)
        self.manifest_path = Path(location.manifest.name)

    @property
    def location(self) -> Location:
        return self._location

    @property
    def local_path(self) -> Path:
        return self.path

    @staticmethod
    def _refuse_symlink(path: Path) -> None:
        # A link could make a backup "verify" by pointing at some other, good file.
        if path.is_symlink():
            raise ArtifactRefused(
                f"{path} is a symbolic link (to {os.readlink(path)}); a backup is verified only as the "
                "regular file or folder its manifest describes"
            )

    def _elsewhere(self) -> None:
        """Raise :class:`ArtifactNotOnThisWorker` when the backup was written on another machine."""
        error = not_on_this_worker(self._location, waiting=True)
        if error is not None:
            raise error

    def present(self) -> bool:
        if self.path.exists() and self.manifest_path.exists():
            return True
        self._elsewhere()
        return False

    def manifest_bytes(self) -> bytes:
        self._refuse_symlink(self.manifest_path)
        try:
            return self.manifest_path.read_bytes()
        except FileNotFoundError:
            self._elsewhere()
            raise

    def artifact_sizes(self) -> dict[str, int] | int:
        self._refuse_symlink(self.path)
        try:
            if self.path.is_dir():
                return {f.relative_to(self.path).as_posix(): f.stat().st_size for f in walk_files(self.path)}
            return self.path.stat().st_size
        except FileNotFoundError:
            self._elsewhere()
            raise

    def digest(self) -> ArtifactDigest:
        if self.path.is_dir():
            return digest_directory(self.path)
        size, sha = sha256_file(self.path)
        return ArtifactDigest(size, sha)

    def chunks(self) -> Iterator[bytes]:
        return local_chunks(self.path)

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        """The artifact's own path: nothing is copied, and nothing is removed afterwards."""
        yield self.path


class LocalBackupStore:
    """Backups in a local (or mounted) folder."""

    def __init__(self, location: Location) -> None:
        self._location = location
        self.root = Path(location.name)

    @property
    def location(self) -> Location:
        return self._location

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

    def location_of(self, entry: StoredEntry) -> Location:
        return self._location.child(entry.name)


def open_target(
    location: Location, *, directory: bool, overwrite: bool, settings: StorageSettings
) -> LocalArtifactTarget:
    return LocalArtifactTarget(
        location, directory=directory, overwrite=overwrite, file_mode=settings.file_mode
    )


def open_source(location: Location, *, settings: StorageSettings) -> LocalArtifactSource:
    return LocalArtifactSource(location)


def open_store(location: Location, *, settings: StorageSettings) -> LocalBackupStore:
    return LocalBackupStore(location)


def remove_backup(location: Location) -> None:
    """Delete a local backup: the manifest first (so a half-deleted backup never looks finished)."""
    path = Path(location.name)
    Path(location.manifest.name).unlink(missing_ok=True)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def promote(
    source: LocalArtifactSource,
    destination: Location,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """Copy a finished local backup into the folder ``destination``: the artifact first (staged, then
    renamed into place), the manifest last. The copy keeps the artifact's name and must match the
    manifest's sha256, or nothing is promoted."""
    started = time.monotonic()
    src = source.path
    raw_manifest = source.manifest_bytes()
    manifest = Manifest.from_json(raw_manifest)
    artifact = destination.child(src.name)
    promoted = LocalArtifactSource(artifact)
    if (
        promoted.manifest_path.is_file()
        and promoted.manifest_path.read_bytes() == raw_manifest
        and promoted.digest().sha256 == manifest.sha256  # a retried promotion: already done
    ):
        log.info("%s already holds this backup; not copied again", artifact.uri)
        return _result(artifact, 0, 2, started), manifest
    target = LocalArtifactTarget(
        artifact, directory=src.is_dir(), overwrite=False, file_mode=settings.file_mode
    )
    try:
        if src.is_dir():
            assert target.staging_directory is not None
            shutil.copytree(src, target.staging_directory)
        else:
            for chunk in local_chunks(src):
                if cancel is not None and cancel.is_set():
                    raise UploadCancelled(f"copy of {source.location.uri} was stopped")
                target.write(chunk)
        digest = target.commit()
    except BaseException:
        target.abort()
        raise
    try:
        if digest.sha256 != manifest.sha256:
            raise ArtifactMismatchError(
                f"the copy of {source.location.uri} has sha256 {digest.sha256}, not {manifest.sha256} as "
                "its manifest says; nothing was promoted"
            )
        target.write_manifest(manifest)
    except BaseException:
        target.remove_committed()
        raise
    log.info("Copied %s to %s (%d bytes)", source.location.uri, artifact.uri, digest.size_bytes)
    return _result(artifact, digest.size_bytes, 0, started), manifest


def _result(artifact: Location, copied: int, skipped: int, started: float) -> TransferResult:
    return TransferResult(
        artifact=artifact,
        manifest=artifact.manifest,
        object_uris=(artifact.uri, artifact.manifest_uri),
        transferred_bytes=copied,
        skipped_objects=skipped,
        duration_seconds=time.monotonic() - started,
        console_url=None,
    )


def upload(
    source: Location,
    destination: Location,
    *,
    settings: StorageSettings,
    log: Any,
    cancel: threading.Event | None = None,
) -> tuple[TransferResult, Manifest]:
    """A local backup into another local folder: a promotion by copy."""
    return promote(LocalArtifactSource(source), destination, settings=settings, log=log, cancel=cancel)


def discard_promoted(staged: LocalArtifactSource, promoted: ArtifactSource, *, log: Any) -> list[str]:
    """Delete a staged local backup whose promoted copy (local, or uploaded to any store) has the same
    manifest bytes, once the local bytes still match that manifest's sha256; the manifest first.
    Returns the paths deleted (none when it is already gone)."""
    promoted_manifest = promoted.manifest_bytes()  # FileNotFoundError: nothing was promoted
    expected = Manifest.from_json(promoted_manifest).sha256
    path, manifest_path = staged.path, staged.manifest_path
    if manifest_path.exists() and manifest_path.read_bytes() != promoted_manifest:
        raise ArtifactMismatchError(
            f"{manifest_path} differs from {promoted.location.manifest_uri}: the staged backup is not "
            "the one that was promoted; nothing was deleted"
        )
    deleted = [str(p) for p in (manifest_path, path) if p.exists() or p.is_symlink()]
    if path.exists() and not path.is_symlink() and staged.digest().sha256 != expected:
        raise ArtifactMismatchError(f"{path} differs from its promoted copy; nothing was deleted")
    remove_backup(staged.location)
    log.info("Discarded the staged backup %s", path)
    return deleted
