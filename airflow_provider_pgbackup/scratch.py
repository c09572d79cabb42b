"""Private scratch folders in TMPDIR, and the sweep that removes the ones a killed task left behind.

A task killed with SIGKILL (the OOM killer, a node drained in a hurry) runs no cleanup: whatever it held on
disk stays. So every private folder the provider makes for one task's use is made here, by
:func:`private_folder`: ``$TMPDIR/pgbackup-<kind>-<random>``, mode 0700, with an owner record written
before anything else goes in (the owner's pid, the start time of that process, the boot, the pid
namespace and the host). The kinds: ``credentials`` (the passfile and inline PEM files where in-memory
files are unavailable), ``decrypted`` (a decrypted copy for pg_restore), ``download`` (a remote artifact
copied for pg_restore), ``plaintext`` (what pg_dump writes before an encrypted directory dump is
encrypted).

:func:`sweep` runs at the start of every provider task (``failures.failure_policy``) and removes a folder
only when all of these hold: its name is ``pgbackup-<kind>-...`` with one of those kinds, it is a real
directory (not a symlink) owned by this user, its owner record parses and names this host, and the owner
is provably gone: the machine has rebooted since, or no process has that pid, or the process with that
pid started at another time (the pid was reused), or it is a zombie. A live owner, an owner in another
pid namespace (a container sharing TMPDIR), another host, or no readable record: left alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "pgbackup-"
#: What a private folder may be for; only folders of these kinds are ever swept.
KINDS = ("credentials", "decrypted", "download", "plaintext")
#: The owner record inside each folder (a name no artifact of the provider has).
OWNER_RECORD = ".pgbackup-owner.json"
_NAME = re.compile(rf"{PREFIX}({'|'.join(KINDS)})-[A-Za-z0-9_]+\Z")
_MAX_RECORD_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class Owner:
    """Who made a folder: enough to tell, later, that exactly that process is gone.

    ``start`` is the process's start time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot), so a
    reused pid is not taken for the owner; ``boot`` is the kernel's boot id; both are None without /proc.
    """

    pid: int
    start: str | None
    boot: str | None
    pid_namespace: str | None
    host: str


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _process_status(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of process ``pid`` from /proc, or None when there is no such process.

    Raises OSError when /proc cannot answer (not Linux, not mounted)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():
            raise
        return None
    fields = data.rsplit(b")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
    return fields[0].decode(), fields[19].decode()  # fields 3 (state) and 22 (starttime)


def this_process() -> Owner:
    """The :class:`Owner` record of the calling process."""
    try:
        status = _process_status(os.getpid())
    except OSError:
        status = None
    try:
        namespace: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return Owner(
        pid=os.getpid(),
        start=status[1] if status else None,
        boot=_read_text("/proc/sys/kernel/random/boot_id"),
        pid_namespace=namespace,
        host=socket.gethostname(),
    )


def make_private_folder(kind: str) -> Path:
    """A new ``$TMPDIR/pgbackup-<kind>-<random>`` folder (0700) holding its owner record; the caller
    removes it (:func:`private_folder` does)."""
    if kind not in KINDS:
        raise ValueError(f"unknown private folder kind {kind!r}; one of {', '.join(KINDS)}")
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    try:
        os.chmod(folder, 0o700)
        fd = os.open(folder / OWNER_RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as record:
            json.dump(dataclasses.asdict(this_process()), record)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


@contextlib.contextmanager
def private_folder(kind: str) -> Iterator[Path]:
    """A private folder (:func:`make_private_folder`) for the ``with`` block, removed when it ends, also on
    failure or kill; one stranded by a SIGKILL is removed by the next task's :func:`sweep`."""
    folder = make_private_folder(kind)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_owner(folder: Path) -> Owner | None:
    """The folder's owner record, or None when it is missing, not a small regular file of ours, or
    malformed (a folder being made, or not the provider's)."""
    try:
        fd = os.open(folder / OWNER_RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_size > _MAX_RECORD_BYTES:
            return None
        try:
            data = json.loads(handle.read(_MAX_RECORD_BYTES))
            owner = Owner(**data)
        except (ValueError, TypeError):
            return None
    optional = (owner.start, owner.boot, owner.pid_namespace)
    if not isinstance(owner.pid, int) or isinstance(owner.pid, bool) or owner.pid <= 0:
        return None
    if not isinstance(owner.host, str) or not all(v is None or isinstance(v, str) for v in optional):
        return None
    return owner


def why_gone(owner: Owner, me: Owner | None = None) -> str | None:
    """Why ``owner`` is provably no longer running (a reason for the log), or None when it may be."""
    me = me or this_process()
    if owner.host != me.host:
        return None  # another machine sharing this TMPDIR: its processes cannot be seen from here
    if owner.boot and me.boot and owner.boot != me.boot:
        return "the machine has restarted since"
    if owner.pid_namespace != me.pid_namespace:
        return None  # another container sharing this TMPDIR
    try:
        status = _process_status(owner.pid)
    except OSError:  # no /proc: only "no such pid" is proof
        try:
            os.kill(owner.pid, 0)
        except ProcessLookupError:
            return "it is no longer running"
        except OSError:
            return None
        return None
    if status is None:
        return "it is no longer running"
    state, start = status
    if owner.start is None:
        return None  # recorded where /proc could not say when it started: no proof
    if start != owner.start:
        return f"pid {owner.pid} now belongs to another process"
    if state in ("Z", "X"):
        return "it has ended (a zombie)"
    return None


def sweep(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the private folders in ``root`` (default: TMPDIR) whose owner is provably gone (module
    docstring); returns what was removed. Never raises for a folder it cannot read: it leaves it."""
    folder_root = Path(root if root is not None else tempfile.gettempdir())
    try:
        entries = list(os.scandir(folder_root))
    except OSError:
        return []
    me = this_process()
    removed = []
    for entry in entries:
        if not _NAME.match(entry.name):
            continue
        path = Path(entry.path)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue
        owner = _read_owner(path)
        reason = why_gone(owner, me) if owner is not None else None
        if owner is None or reason is None:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            removed.append(path)
            log.warning(
                "Removed %s, a private folder left by process %s, which a kill stopped before it could "
                "clean up (%s)",
                path,
                owner.pid,
                reason,
            )
    return removed
