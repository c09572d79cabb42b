"""Reading local backups: a backup as an ``ArtifactSource`` (read in place), a folder as a ``BackupStore``."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from airflow_provider_pgbackup.storage.base import (
    ArtifactDigest,
    ArtifactRefused,
    Location,
    StoredEntry,
)
from airflow_provider_pgbackup.storage.files import digest_directory, local_chunks, sha256_file, walk_files
from airflow_provider_pgbackup.storage.local.location import not_on_this_worker


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
