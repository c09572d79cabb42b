"""The writer lock beside a local target, and the record in it: the provider's proof of what it wrote.

``.<name>.lock`` is ``flock``ed for the whole run, so a second writer fails at once, and holds a small
JSON record: that this provider wrote it, for which artifact, under which staging name and manifest
temporary name, and which versions of the artifact (device, inode, size) the run left, or may leave,
at the final path without a manifest. A run that dies (SIGKILL, the OOM killer) leaves the record
behind, and it is the only evidence by which the next run and retention take anything at that path for
the provider's: a name alone (``.x.lock``, ``x`` beside it, ``.x.partial-<hex>``) proves nothing.

The lock file goes when the run ends, unless the path then holds an artifact of the record without its
manifest: the record stays as that artifact's proof, for the retry that replaces it or for retention.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import ArtifactInUse
from airflow_provider_pgbackup.storage.files import remove_path

WRITTEN_BY = "airflow-provider-pgbackup"
#: A record is a few hundred bytes; a bigger file is no lock of ours (and is never read whole).
RECORD_LIMIT = 4096
#: How long a writer waits for a lock another process holds for a moment (retention looking at it).
CONTENTION_SECONDS = 0.2
#: ``(device, inode, size)`` (size 0 for a folder): one version of a file or folder. A rename keeps all
#: three, and so does a change of its times (``touch``); a file written where a deleted one was may get
#: its inode back, which the size then tells apart.
FileId = tuple[int, int, int]


def stat_id(found: os.stat_result) -> FileId:
    return found.st_dev, found.st_ino, 0 if stat.S_ISDIR(found.st_mode) else found.st_size


def file_id(path: Path) -> FileId | None:
    """The :data:`FileId` of what is at ``path`` (not following a link); None when nothing is."""
    try:
        return stat_id(path.lstat())
    except FileNotFoundError:
        return None


def lock_name(artifact: str) -> str:
    return f".{artifact}.lock"


def is_lock_name(name: str) -> bool:
    """Whether a name is worth reading as a lock (only its record can say whose it is)."""
    return name.startswith(".") and name.endswith(".lock") and len(name) >= len(lock_name("x"))


@dataclass(frozen=True)
class LockRecord:
    """What a writer of ``artifact`` writes, or may leave behind, in its folder."""

    artifact: str
    staging: str
    manifest_temp: str
    artifact_ids: tuple[FileId, ...] = ()

    @classmethod
    def new(cls, artifact: str) -> LockRecord:
        return cls(
            artifact,
            f".{artifact}.partial-{secrets.token_hex(6)}",
            f".{artifact}{MANIFEST_SUFFIX}.{secrets.token_hex(4)}.partial",
        )

    def to_bytes(self) -> bytes:
        fields = {"written_by": WRITTEN_BY, **dataclasses.asdict(self), "pid": os.getpid()}
        return json.dumps(fields, sort_keys=True).encode("utf-8")

    @classmethod
    def parse(cls, file_name: str, data: bytes) -> LockRecord | None:
        """The record in the lock file ``file_name``, or None: not a lock of this provider for that name."""
        try:
            fields = json.loads(data)
            artifact = fields["artifact"]
            record = cls(
                artifact,
                fields["staging"],
                fields["manifest_temp"],
                tuple((int(dev), int(ino), int(size)) for dev, ino, size in fields["artifact_ids"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        if fields.get("written_by") != WRITTEN_BY or not isinstance(artifact, str) or "/" in artifact:
            return None
        name = re.escape(artifact)
        ours = (
            file_name == lock_name(artifact)
            and re.fullmatch(rf"\.{name}\.partial-[0-9a-f]{{12}}", str(record.staging)) is not None
            and re.fullmatch(rf"\.{name}\.manifest\.json\.[0-9a-f]{{8}}\.partial", str(record.manifest_temp))
            is not None
        )
        return record if ours else None

    @property
    def guarded(self) -> tuple[str, str]:
        """The names of the run's temporary files, beside the artifact."""
        return self.staging, self.manifest_temp


def read_record(path: Path) -> tuple[LockRecord | None, bool]:
    """The record in the lock file ``path`` (None: no lock of this provider), and whether a running writer
    holds it. Nothing is followed, blocked on or read beyond :data:`RECORD_LIMIT`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # gone, a link, unreadable: no evidence
        return None, False
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode) or found.st_size > RECORD_LIMIT:
            return None, False
        record = LockRecord.parse(path.name, os.pread(fd, RECORD_LIMIT, 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return record, True
        return record, False
    finally:
        os.close(fd)  # releases the shared lock, if taken


def remove_if_free(path: Path, listed: LockRecord) -> bool:
    """Delete a stale lock file that still holds ``listed``; False when a writer holds it now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if LockRecord.parse(path.name, os.pread(fd, RECORD_LIMIT, 0)) != listed:
            return False  # a new run wrote its own record since: it is no longer the stale one
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    finally:
        os.close(fd)


class WriterLock:
    """The flocked ``.<name>.lock`` of one run of a local target.

    :param path: the artifact's final path.
    :param record: this run's record; it inherits the previous (crashed) run's claim on the artifact at
        ``path`` when the previous record names exactly what is there.
    :raises ArtifactInUse: another run holds the lock (retryable).
    :raises InvalidOptionError: a lock file the provider did not write is in the way; it is left alone.
    """

    def __init__(self, path: Path, record: LockRecord) -> None:
        self.path = path
        self.lock_path = path.with_name(lock_name(path.name))
        self.previous: LockRecord | None = None
        self._fd = self._take()
        try:
            claimed = file_id(path)
            if self.previous is not None and claimed in self.previous.artifact_ids:
                record = dataclasses.replace(record, artifact_ids=(claimed,) if claimed else ())
            self.record = record
            self.write(record)
            if self.previous is not None:
                self._remove_leftovers(self.previous)
        except BaseException:
            os.close(self._fd)
            raise

    def _take(self) -> int:
        for _attempt in range(3):
            created = True
            flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                fd = os.open(self.lock_path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                created = False
                try:
                    fd = os.open(self.lock_path, flags)
                except FileNotFoundError:
                    continue  # its holder just removed it
                except OSError as err:  # a link, a folder...
                    raise self._foreign(f"cannot be opened as a lock file ({err.strerror})") from None
            try:
                self._flock(fd)
                if os.fstat(fd).st_ino != os.stat(self.lock_path).st_ino:
                    raise FileNotFoundError(self.lock_path)  # one its holder removed while we waited
                if not created:
                    self.previous = self._previous_record(fd)
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return fd
        raise ArtifactInUse(f"could not lock output_path {str(self.path)!r}: its lock file keeps changing")

    def _flock(self, fd: int) -> None:
        deadline = time.monotonic() + CONTENTION_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ArtifactInUse(
                        f"another run is writing a backup to output_path {str(self.path)!r} right now "
                        f"(it holds {self.lock_path}); this run stops without touching it"
                    ) from None
                time.sleep(0.02)

    def _previous_record(self, fd: int) -> LockRecord:
        """The record left by a run that ended without removing its lock file (unlocked: that run is over)."""
        found = os.fstat(fd)
        data = os.pread(fd, RECORD_LIMIT + 1, 0) if stat.S_ISREG(found.st_mode) else b"?"
        record = LockRecord.parse(self.lock_path.name, data)
        if record is not None:
            return record
        if not data:
            raise ArtifactInUse(
                f"the lock file {self.lock_path} of output_path {str(self.path)!r} is empty: another run is "
                "starting to write there, or one died while creating it (then remove the empty file)"
            )
        raise self._foreign("was not written by this provider")

    def _foreign(self, why: str) -> InvalidOptionError:
        return InvalidOptionError(
            f"output_path {str(self.path)!r} cannot be written: {self.lock_path} {why}, and the provider "
            "never overwrites or removes a file it did not write; move it away or choose another output_path"
        )

    def _remove_leftovers(self, previous: LockRecord) -> None:
        """The staging file or folder and manifest temporary file of the run that left ``previous``."""
        for name in previous.guarded:
            remove_path(self.path.with_name(name))

    def write(self, record: LockRecord) -> None:
        """Replace the record (before each step that could leave something behind)."""
        data = record.to_bytes()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)
        self.record = record

    def claim(self, *ids: FileId | None) -> None:
        """Record the versions of the artifact this run may leave at the path without a manifest."""
        self.write(dataclasses.replace(self.record, artifact_ids=tuple(i for i in ids if i is not None)))

    def release(self) -> None:
        """Unlock; the lock file stays only as the proof of an unfinished artifact of its record."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        manifest = self.path.with_name(self.path.name + MANIFEST_SUFFIX)
        unfinished = file_id(self.path) in self.record.artifact_ids and file_id(manifest) is None
        try:
            if not unfinished:
                with contextlib.suppress(OSError):
                    self.lock_path.unlink()
        finally:
            os.close(fd)
