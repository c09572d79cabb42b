"""Reading local backups: a backup as an ``ArtifactSource`` (read in place), a folder as a ``BackupStore``."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from airflow_provider_pgbackup.storage.base import (
    ArtifactDigest,
    ArtifactRefused,
    EntryChanged,
    Location,
    StoredEntry,
)
from airflow_provider_pgbackup.storage.files import (
    digest_directory,
    local_chunks,
    remove_path,
    sha256_file,
    walk_files,
)
from airflow_provider_pgbackup.storage.local.location import not_on_this_worker
from airflow_provider_pgbackup.storage.local.lock import (
    FileId,
    LockRecord,
    is_lock_name,
    read_record,
    remove_if_free,
    stat_id,
)

log = logging.getLogger(__name__)


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


def _version(info: os.stat_result) -> str:
    """What a listed entry must still be when it is deleted: its inode and modification time."""
    return f"{info.st_ino}:{info.st_mtime_ns}"


class LocalBackupStore:
    """Backups in a local (or mounted) folder.

    An entry is the provider's (``provider_written``) only by the record in the lock file of one of its
    writers (:mod:`.lock`): that lock file itself, the staging file or folder and the manifest temporary
    file it names, and the artifact versions (device, inode, size) it records. While a writer holds that
    lock, they are ``in_use``. Another run may remove entries at any time: what vanishes is skipped, logged.
    """

    def __init__(self, location: Location) -> None:
        self._location = location
        self.root = Path(location.name)
        self._records: dict[str, LockRecord] = {}

    @property
    def location(self) -> Location:
        return self._location

    def entries(self) -> list[StoredEntry]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"backup folder {self.root} does not exist")
        found: dict[str, tuple[StoredEntry, FileId]] = {}
        for name in sorted(os.listdir(self.root)):
            listed = self._entry(name)
            if listed is not None:
                found[name] = listed
        return self._with_evidence(found)

    def _entry(self, name: str) -> tuple[StoredEntry, FileId] | None:
        path = self.root / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            log.info("%s vanished while its folder was listed (another run removed it)", path)
            return None
        newest = info.st_mtime
        size = 0
        files: list[tuple[str, int]] = []
        is_folder = stat.S_ISDIR(info.st_mode)
        if is_folder:
            for file in walk_files(path):
                with contextlib.suppress(FileNotFoundError):
                    file_stat = file.lstat()
                    newest = max(newest, file_stat.st_mtime)
                    size += file_stat.st_size
                    files.append((file.relative_to(path).as_posix(), file_stat.st_size))
        else:
            size = info.st_size
        entry = StoredEntry(
            name=name,
            is_folder=is_folder,
            size_bytes=size,
            updated=datetime.datetime.fromtimestamp(newest, tz=datetime.timezone.utc),
            files=tuple(files),
            objects=((name, _version(info)),),
        )
        return entry, stat_id(info)

    def _with_evidence(self, found: dict[str, tuple[StoredEntry, FileId]]) -> list[StoredEntry]:
        """Mark what the lock records in the folder name as the provider's (and in use while held)."""
        self._records = {}
        marks: dict[str, bool] = {}
        for name, (entry, _id) in found.items():
            if entry.is_folder or not is_lock_name(name):
                continue  # only a lock's record is evidence; every other name is just a name
            record, held = read_record(self.root / name)
            if record is None:
                continue
            self._records[name] = record
            named = [name, *record.guarded]
            artifact = found.get(record.artifact)
            if artifact is not None and artifact[1] in record.artifact_ids:
                named.append(record.artifact)
            for owned in named:
                marks[owned] = marks.get(owned, False) or held
        return [
            dataclasses.replace(entry, provider_written=True, in_use=marks[name]) if name in marks else entry
            for name, (entry, _id) in found.items()
        ]

    def read(self, entry: StoredEntry) -> bytes:
        return (self.root / entry.name).read_bytes()

    def delete(self, entry: StoredEntry) -> None:
        """Delete an entry as it was listed: gone already is fine, a different one there is left alone
        (:class:`EntryChanged`), a lock file goes only while unheld and with the record it was listed with."""
        path = self.root / entry.name
        try:
            now = _version(path.lstat())
        except FileNotFoundError:
            log.info("%s is already gone (another run deleted it)", path)
            return
        if now != dict(entry.objects).get(entry.name, now):
            raise EntryChanged(f"{path} was replaced since it was listed; it is not deleted")
        record = self._records.get(entry.name)
        if record is not None:
            if not remove_if_free(path, record):
                raise EntryChanged(f"{path} is held (or rewritten) by a run that started since; not deleted")
        else:
            remove_path(path)

    def location_of(self, entry: StoredEntry) -> Location:
        return self._location.child(entry.name)
