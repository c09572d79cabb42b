"""Writing a local artifact: staged under a temporary name beside its final path, renamed into place.

A target is written under a temporary name beside its final path (``.<name>.partial-<random>``), hashed
while it is written, fsynced, and renamed into place by :meth:`LocalArtifactTarget.commit`. Until then
nothing with the final name exists; :meth:`LocalArtifactTarget.abort` removes everything written. The
writer lock (:mod:`.lock`) keeps a second writer out and records what the run writes, so that what a
crashed run leaves is known as the provider's by that record, never by its name.

What is at the path already is replaced only when it is the provider's: a finished backup of ours with
``overwrite=True`` (:mod:`~airflow_provider_pgbackup.storage.ownership`), or the unfinished artifact a
crashed run's record names. Anything else is refused before the dump starts, and something put at the
path while the dump runs is never overwritten (:class:`ObjectConflictError`).
"""

from __future__ import annotations

import logging
import os
import stat
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
    Location,
    ObjectConflictError,
    Sha256Counter,
)
from airflow_provider_pgbackup.storage.files import (
    digest_directory,
    make_folders,
    naming_a_full_disk,
    remove_path,
    remove_tree,
    restrict_tree,
    tree_size,
    walk_files,
)
from airflow_provider_pgbackup.storage.local.lock import FileId, LockRecord, WriterLock, file_id
from airflow_provider_pgbackup.storage.ownership import overwrite_problem, overwrite_refused

log = logging.getLogger(__name__)
#: How many names a refusal lists of a folder in the way.
SHOWN_NAMES = 5


def what_is_there(path: Path) -> tuple[str | None, int | None, dict[str, int] | None]:
    """What is at a local path, in words, with a file's size or a folder's ``{relative path: size}``."""
    try:
        found = path.lstat()
    except FileNotFoundError:
        return None, None, None
    if stat.S_ISLNK(found.st_mode):
        return f"a symbolic link (to {os.readlink(path)})", None, None
    if stat.S_ISDIR(found.st_mode):
        files = {f.relative_to(path).as_posix(): f.lstat().st_size for f in walk_files(path)}
        names = sorted(files)
        shown = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
        return f"a folder of {len(names)} files ({shown})", None, files
    if stat.S_ISREG(found.st_mode):
        return f"a file of {found.st_size} bytes", found.st_size, None
    return "a special file (not a regular file or folder)", None, None


def _manifest_bytes(path: Path) -> bytes | None:
    if path.is_symlink():
        return b"a symbolic link is no manifest of this provider"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return b"a folder is no manifest of this provider"


class LocalArtifactTarget:
    """A file or directory artifact on a local (or mounted) filesystem, staged under a temporary name.

    :param location: final artifact path.
    :param directory: the artifact is a folder (pg_dump ``--format=directory`` writes it itself).
    :param overwrite: replace a finished backup of this provider at the path (an artifact its manifest
        describes); anything else there is refused, and without it any presence is an error.
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
        record = LockRecord.new(self.path.name)
        self.staging_path = self.path.with_name(record.staging)
        self._lock = threading.RLock()  # on_kill runs in a signal handler on the same thread
        self._handle: BinaryIO | None = None
        self._hash = Sha256Counter()
        self._finished = False
        self._committed: FileId | None = None
        for parent in self.path.parents:
            if parent.name and parent.with_name(parent.name + MANIFEST_SUFFIX).exists():
                raise InvalidOptionError(
                    f"output_path {str(self.path)!r} is inside the backup {str(parent)!r} (it has a "
                    "manifest); choose a folder that is not part of another backup"
                )
        make_folders(self.path.parent, self.dir_mode)
        self._writer_lock = WriterLock(self.path, record)
        try:
            self._replacing = self._replaceable(overwrite)
            self._manifest_found = file_id(self.manifest_path)
            if not directory:  # pg_dump creates a directory artifact itself (and refuses a non-empty one)
                fd = os.open(self.staging_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                self._handle = os.fdopen(fd, "wb", buffering=0)
        except BaseException:
            self._writer_lock.release()
            raise

    def _replaceable(self, overwrite: bool) -> FileId | None:
        """What is at the path that this run may replace (None: nothing is there); raises for the rest."""
        found = file_id(self.path)
        manifest = _manifest_bytes(self.manifest_path)
        if found is None and manifest is None:
            return None
        if manifest is None and found in self._writer_lock.record.artifact_ids:
            # The artifact a run of this provider put there and died before its manifest (its lock record
            # names that very file): by the provider's definition not a finished backup. A retry replaces it.
            log.warning(
                "Replacing %s: an artifact without a manifest, left by a run of this provider that stopped "
                "before writing it (its lock file records it)",
                self.path,
            )
            return found
        if not overwrite:
            existing = self.path if found is not None else self.manifest_path
            raise InvalidOptionError(
                f"output_path {str(self.path)!r} already holds a backup ({existing} exists); "
                "choose a new path (e.g. with {{ ts_nodash }}) or pass overwrite=True"
            )
        words, size, files = what_is_there(self.path)
        if words is not None and size is None and files is None:  # a link or a special file
            problem: str | None = words
        else:
            problem = overwrite_problem(manifest, self.path.name, words, size=size, files=files)
        if problem is not None:
            raise overwrite_refused(str(self.path), problem)
        return found

    @property
    def location(self) -> Location:
        return self._location

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
        with naming_a_full_disk(self.path, "the artifact"):
            while view:
                written = self._handle.write(view)
                if not written:
                    raise OSError(f"short write to {self.staging_path}")
                view = view[written:]
        self._hash.update(chunk)

    def commit(self) -> ArtifactDigest:
        """fsync, move into place and return the digest; what :meth:`__init__` found replaceable at the
        path is replaced, anything put there since is not (:class:`ObjectConflictError`)."""
        with self._lock:
            if self._finished:
                raise RuntimeError(f"artifact {self.path} was already committed or aborted")
            with naming_a_full_disk(self.path, "the artifact"):
                digest = self._finish_staging()
            found, manifest = file_id(self.path), file_id(self.manifest_path)
            changed = found is not None and found != self._replacing
            if changed or manifest not in (None, self._manifest_found):
                raise ObjectConflictError(
                    f"{self.path} was changed by someone else during the dump (it or its manifest is not "
                    "what was there when the dump started); it is not overwritten, and this dump is discarded"
                )
            self._committed = file_id(self.staging_path)
            # Recorded before anything is replaced: a crash from here on leaves only artifacts of the record.
            self._writer_lock.claim(found, self._committed)
            # The old manifest goes first so an old manifest never describes new bytes.
            self.manifest_path.unlink(missing_ok=True)
            if self.path.is_dir() and not self.path.is_symlink():
                remove_tree(self.path)
            os.replace(self.staging_path, self.path)
            fsync_directory(self.path.parent)
            self._finished = True
            return digest

    def _finish_staging(self) -> ArtifactDigest:
        """fsync and restrict the staged artifact; its digest."""
        if self.directory:
            restrict_tree(self.staging_path, self.file_mode, self.dir_mode)
            return digest_directory(self.staging_path, sync=True)
        assert self._handle is not None
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.chmod(self.staging_path, self.file_mode)
        return self._hash.digest()

    def abort(self) -> None:
        """Remove everything written; safe to call more than once and from another thread."""
        with self._lock:
            try:
                if self._finished:
                    return
                self._finished = True
                if self._handle is not None and not self._handle.closed:
                    self._handle.close()
                remove_path(self.staging_path)
            finally:
                self._writer_lock.release()

    def write_manifest(self, manifest: Manifest) -> str:
        """Write the manifest beside the committed artifact (atomically, under the temporary name the lock
        record names); returns its path."""
        with naming_a_full_disk(self.manifest_path, "the manifest"):
            temp_name = self._writer_lock.record.manifest_temp
            write_manifest(manifest, self.manifest_path, mode=self.file_mode, temp_name=temp_name)
        self._writer_lock.release()  # on failure the lock stays until remove_committed undoes the commit
        return str(self.manifest_path)

    def remove_committed(self) -> None:
        """Undo a commit (used when writing the manifest fails): the artifact must not look finished."""
        try:
            if self._committed is not None and file_id(self.path) == self._committed:
                remove_path(self.path)
        finally:
            self._writer_lock.release()
