"""Reading: a backup as an ``ArtifactSource`` (ETags pinned), and a prefix of backups as a ``BackupStore``."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX, FileDigest
from airflow_provider_pgbackup.scratch import private_folder
from airflow_provider_pgbackup.storage.base import (
    ArtifactDigest,
    Location,
    Sha256Counter,
    StorageError,
    StoredEntry,
    directory_digest,
)
from airflow_provider_pgbackup.storage.files import safe_relative
from airflow_provider_pgbackup.storage.object_lock import ObjectLock
from airflow_provider_pgbackup.storage.objects.client import UPLOAD_ID_KEY, ObjectClient, ObjectInfo
from airflow_provider_pgbackup.storage.objects.locking import backup_lock, locking, locks_of


# ------------------------------------------------------------------------------------------- source
class ObjectArtifactSource:
    """A backup in an object store, read for verification, restore or promotion (an ``ArtifactSource``).

    The first look at the artifact (:meth:`artifact_sizes`) pins every object's ETag; later reads send it
    as a precondition, so what is restored after verification is what was verified (a changed object
    fails the read with :class:`ArtifactMismatchError`).
    """

    local_path: Path | None = None

    def __init__(self, client: ObjectClient, location: Location) -> None:
        self.client = client
        self._location = location
        self.manifest_location = location.manifest
        self._pinned: dict[str, ObjectInfo] | None = None
        self._is_folder = False

    @property
    def location(self) -> Location:
        return self._location

    def present(self) -> bool:
        if self.client.head(self.manifest_location.name) is None:
            return False
        if self.client.head(self._location.name) is not None:
            return True
        return bool(self.client.list(self._location.name + "/", limit=1))

    def manifest_bytes(self) -> bytes:
        info = self.client.head(self.manifest_location.name)
        if info is None:
            raise FileNotFoundError(f"{self.manifest_location.uri} does not exist")
        return b"".join(self.client.stream(info.name, info.etag, max(info.size, 1)))

    def artifact_sizes(self) -> dict[str, int] | int:
        info = self.client.head(self._location.name)
        if info is not None:
            self._pinned, self._is_folder = {info.name: info}, False
            return info.size
        found = sorted(self.client.list(self._location.name + "/"), key=lambda o: o.name)
        if not found:
            raise FileNotFoundError(f"{self._location.uri} does not exist")
        self._pinned, self._is_folder = {o.name: o for o in found}, True
        return {self._relative(o.name): o.size for o in found}

    def _relative(self, name: str) -> str:
        return name[len(self._location.name) + 1 :]

    def _pin(self) -> dict[str, ObjectInfo]:
        if self._pinned is None:
            self.artifact_sizes()
        assert self._pinned is not None
        return self._pinned

    @property
    def pinned_objects(self) -> dict[str, ObjectInfo]:
        return dict(self._pin())

    @property
    def is_folder(self) -> bool:
        self._pin()
        return self._is_folder

    def _chunks(self, name: str) -> Iterator[bytes]:
        info = self._pin()[name]
        return self.client.stream(name, info.etag, self.client.settings.chunk_size)

    def _digest_object(self, name: str) -> tuple[int, str]:
        counter = Sha256Counter()
        for chunk in self._chunks(name):
            counter.update(chunk)
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

    def lock_in_force(self) -> ObjectLock | None:
        """The lock in force now over the pinned artifact objects and the manifest (the weakest of
        them); None when any of them is not locked, or the store cannot lock."""
        return backup_lock(self.client, [*sorted(self._pin()), self.manifest_location.name])

    def chunks(self) -> Iterator[bytes]:
        self._pin()
        if self._is_folder:
            raise StorageError(
                f"{self._location.uri} is a directory-format folder; it cannot be read as a stream"
            )
        return self._chunks(self._location.name)

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        """Download the artifact into a private folder (0700, files 0600), removed when the block ends."""
        pinned = self._pin()
        with private_folder("download") as root:
            artifact = root / self._location.basename
            names = {self._location.name: artifact}
            if self._is_folder:
                artifact.mkdir(mode=0o700)
                names = {}
                for name in sorted(pinned):
                    names[name] = artifact.joinpath(*safe_relative(name, self._relative(name)).parts)
            for name, destination in names.items():
                destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # owner-only, whatever the umask: a copy of a backup
                with os.fdopen(
                    os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb"
                ) as handle:
                    for chunk in self._chunks(name):
                        handle.write(chunk)
            yield artifact


# -------------------------------------------------------------------------------------------- store
class ObjectBackupStore:
    """Backups under a bucket/container prefix: objects directly under it, and ``name/...`` folders."""

    def __init__(self, client: ObjectClient, location: Location) -> None:
        self.client = client
        self._location = location

    @property
    def location(self) -> Location:
        return self._location

    def entries(self) -> list[StoredEntry]:
        prefix = f"{self._location.name}/" if self._location.name else ""
        groups: dict[str, list[ObjectInfo]] = {}
        for info in self.client.list(prefix):
            relative = info.name[len(prefix) :]
            if relative:
                groups.setdefault(relative.split("/", 1)[0], []).append(info)
        found = []
        for top, infos in sorted(groups.items()):
            if self._orphan_candidate(top, groups) and any(o.metadata is None for o in infos):
                # S3 listings carry no metadata: look at the objects no manifest names (rare), so
                # retention can tell the provider's own leftovers by their upload id.
                infos = [o if o.metadata is not None else (self.client.head(o.name) or o) for o in infos]
            single = next((o for o in infos if o.name == prefix + top), None)
            found.append(
                StoredEntry(
                    name=top,
                    is_folder=any("/" in o.name[len(prefix) :] for o in infos),
                    size_bytes=sum(o.size for o in infos),
                    updated=max(o.updated for o in infos),
                    files=tuple(
                        (o.name[len(prefix) + len(top) + 1 :], o.size) for o in infos if o is not single
                    ),
                    objects=tuple((o.name, o.etag) for o in infos),
                    metadata=tuple(sorted((single.metadata or {}).items())) if single is not None else (),
                    provider_written=all(UPLOAD_ID_KEY in (o.metadata or {}) for o in infos),
                )
            )
        return found

    @staticmethod
    def _orphan_candidate(top: str, groups: dict[str, list[ObjectInfo]]) -> bool:
        """Neither a manifest nor an artifact a manifest names."""
        return not top.endswith(MANIFEST_SUFFIX) and top + MANIFEST_SUFFIX not in groups

    def read(self, entry: StoredEntry) -> bytes:
        name, etag = entry.objects[0]
        return b"".join(self.client.stream(name, str(etag), self.client.settings.chunk_size))

    def delete(self, entry: StoredEntry) -> None:
        for name, etag in entry.objects:
            self.client.delete(name, str(etag))

    def object_locks(self, entry: StoredEntry) -> list[ObjectLock | None]:
        """The lock of each object of ``entry`` (one HEAD each; empty where the store cannot lock)."""
        return locks_of(self.client, [name for name, _etag in entry.objects])

    def delete_locked(self, entry: StoredEntry, *, bypass: bool) -> None:
        """Delete the exact versions of a backup that is (or was) locked, once its date has passed or,
        with ``bypass``, lifting a governance/unlocked lock."""
        for name, etag in entry.objects:
            locking(self.client).delete_locked(name, str(etag), bypass=bypass)

    def location_of(self, entry: StoredEntry) -> Location:
        return self._location.child(entry.name)
