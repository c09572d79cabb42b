"""Files on a local disk, whatever the backend: walking, hashing and sizing an artifact folder, creating
and removing folders, setting modes, the local name of an object, and what a full disk says. Every backend
that reads a local backup (the local store, uploads to GCS, S3 and Azure) uses these, so no backend needs
another backend for them."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from airflow_provider_pgbackup.manifest import FileDigest, fsync_directory
from airflow_provider_pgbackup.storage.base import (
    HASH_CHUNK_BYTES,
    ArtifactDigest,
    Sha256Counter,
    UnsafeObjectName,
    directory_digest,
)
from airflow_provider_pgbackup.units import format_bytes

#: The errors of a full filesystem (no space, or the user's quota used up).
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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


def remove_path(path: Path) -> None:
    """Remove a file, or a folder and everything in it (a link is removed, never followed); gone is fine."""
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    else:
        path.unlink(missing_ok=True)


def remove_tree(path: Path) -> None:
    """``rm -rf path`` where another process may be removing the same files: what vanishes is no error."""
    for _attempt in range(3):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            if not path.exists():
                return
    shutil.rmtree(path)


def safe_relative(name: str, relative: str) -> PurePosixPath:
    """``relative`` (the part of object ``name`` below its artifact) as a path that stays inside a folder."""
    path = PurePosixPath(relative)
    if ".." in path.parts or path.is_absolute() or not path.parts:
        raise UnsafeObjectName(
            f"object {name!r} cannot be copied into a local folder: the part of its name below the artifact "
            f"({relative!r}) must be a relative path with no '..' segment and not start with '/'"
        )
    return path


def _mount_point(path: Path) -> Path:
    """The mount point of the filesystem ``path`` (or its nearest existing parent) is on."""
    path = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    device = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def _filesystem_type(mount_point: Path) -> str:
    """``tmpfs``, ``ext4``... from ``/proc/self/mounts`` (Linux); ``""`` where it cannot be read."""
    found = ""
    with contextlib.suppress(OSError), open("/proc/self/mounts", errors="replace") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[1].encode().decode("unicode_escape") == str(mount_point):
                found = fields[2]  # the last mount on a mount point is the visible one
    return found


@contextlib.contextmanager
def naming_a_full_disk(path: Path, what: str) -> Iterator[None]:
    """Turn a full disk (``ENOSPC``, ``EDQUOT``) while writing ``what`` at ``path`` into an error naming both
    and the filesystem (its type, mount point and free space); other errors pass unchanged."""
    try:
        yield
    except OSError as err:
        if err.errno in DISK_FULL:
            raise disk_full(err, path, what) from err
        raise


def disk_full(err: OSError, path: Path, what: str) -> OSError:
    """``err`` (a full disk) as an error naming ``what`` was being written at ``path`` and the filesystem."""
    mount = _mount_point(path)
    kind = _filesystem_type(mount)
    usage = shutil.disk_usage(mount)
    return OSError(
        err.errno,
        f"{os.strerror(err.errno or errno.ENOSPC)} while writing {what} {path}: the "
        f"{kind + ' ' if kind else ''}filesystem mounted at {mount} has {format_bytes(usage.free)} free of "
        f"{format_bytes(usage.total)}; free space there or choose another output_path",
    )
