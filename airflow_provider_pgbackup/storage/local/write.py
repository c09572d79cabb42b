"""Writing a local artifact: staged under a temporary name beside its final path, renamed into place.

A target is written under a temporary name beside its final path (``.<name>.partial-<random>``), hashed
while it is written, fsynced, and renamed into place by :meth:`LocalArtifactTarget.commit`. Until then
nothing with the final name exists; :meth:`LocalArtifactTarget.abort` removes everything written. A
``.<name>.lock`` file, locked with ``flock`` for the whole run, keeps a second writer out.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import BinaryIO

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
    Location,
    Sha256Counter,
)
from airflow_provider_pgbackup.storage.files import digest_directory, make_folders, restrict_tree, tree_size

log = logging.getLogger(__name__)


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
