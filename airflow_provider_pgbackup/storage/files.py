"""Files on a local disk, whatever the backend: walking, hashing and sizing an artifact folder, creating
folders and setting modes. Every backend that reads a local backup (the local store, uploads to GCS,
S3 and Azure) uses these, so no backend needs another backend for them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from airflow_provider_pgbackup.manifest import FileDigest, fsync_directory
from airflow_provider_pgbackup.storage.base import (
    HASH_CHUNK_BYTES,
    ArtifactDigest,
    Sha256Counter,
    directory_digest,
)


def make_folders(folder: Path, mode: int) -> None:
    """Create ``folder`` and its missing parents with ``mode`` (``mkdir -p`` gives parents 0o777 - umask)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):
            candidate.mkdir(mode=mode)
            os.chmod(candidate, mode)  # mkdir's mode is masked by the umask


def restrict_tree(root: Path, file_mode: int, dir_mode: int) -> None:
    """chmod every folder of ``root`` (itself included) to ``dir_mode`` and every file to ``file_mode``."""
    os.chmod(root, dir_mode)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), dir_mode)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), file_mode)


def walk_files(root: Path) -> Iterator[Path]:
    """Every file below ``root``, in a stable (sorted) order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def tree_size(root: Path) -> int:
    total = 0
    for file in walk_files(root):
        with contextlib.suppress(FileNotFoundError):
            total += file.stat().st_size
    return total


def sha256_file(path: Path) -> tuple[int, str]:
    counter = Sha256Counter()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            counter.update(chunk)
    return counter.size, counter.sha256


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
    if sync:
        fsync_directory(root)
    return directory_digest(tuple(files))


def local_chunks(path: Path, chunk_bytes: int = HASH_CHUNK_BYTES) -> Iterator[bytes]:
    """Read a file as a stream of chunks (the file is closed when the iterator is exhausted or closed)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            yield chunk
