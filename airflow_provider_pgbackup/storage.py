"""Where artifact bytes go: a staged target that becomes visible only when it is complete.

A target is written under a temporary name beside its final path (``.<name>.partial-<random>``),
hashed while it is written, fsynced, and renamed into place by :meth:`ArtifactTarget.commit`. Until then
nothing with the final name exists; :meth:`ArtifactTarget.abort` removes everything written.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from airflow_provider_pgbackup.manifest import FileDigest, fsync_directory, manifest_path_for
from airflow_provider_pgbackup.options import InvalidOptionError

HASH_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ArtifactDigest:
    """Size and sha256 of a committed artifact; ``files`` is set for directory artifacts."""

    size_bytes: int
    sha256: str
    files: tuple[FileDigest, ...] | None = None


class ArtifactTarget(Protocol):
    """What the hook writes a dump into. Implementations: :class:`LocalArtifactTarget`."""

    @property
    def uri(self) -> str: ...

    @property
    def bytes_written(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> ArtifactDigest: ...

    def abort(self) -> None: ...


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
        for existing in (self.path, self.manifest_path):
            if (existing.exists() or existing.is_symlink()) and not overwrite:
                raise InvalidOptionError(
                    f"output_path {str(self.path)!r} already holds a backup ({existing} exists); "
                    "choose a new path (e.g. with {{ ts_nodash }}) or pass overwrite=True"
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            # pg_dump creates the directory itself and refuses a non-empty one; we only reserve the name.
            pass
        else:
            fd = os.open(self.staging_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._handle = os.fdopen(fd, "wb", buffering=0)

    @property
    def uri(self) -> str:
        return str(self.path)

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
            if self._finished:
                return
            self._finished = True
            if self._handle is not None and not self._handle.closed:
                self._handle.close()
            if self.staging_path.is_dir() and not self.staging_path.is_symlink():
                shutil.rmtree(self.staging_path, ignore_errors=True)
            else:
                self.staging_path.unlink(missing_ok=True)

    def remove_committed(self) -> None:
        """Undo a commit (used when writing the manifest fails): the artifact must not look finished."""
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _tree_size(root: Path) -> int:
    total = 0
    for file in _walk_files(root):
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
    for file in _walk_files(root):
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
