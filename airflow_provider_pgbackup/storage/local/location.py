"""Local paths: ``/abs/path`` or ``file://<host>/<path>`` (the host that wrote it), and where a task runs.

A local backup is named by its absolute path, or by ``file://<host>/<path>`` (the dump's XCom
``artifact_uri``), which also says which machine wrote it. On a distributed executor (Celery, Kubernetes)
the next task may run elsewhere: a source whose host is not this machine, and whose artifact and manifest
are both absent here, raises :class:`ArtifactNotOnThisWorker` at once instead of "not there yet". A
shared (mounted) folder still works: the check runs only when nothing is found.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path, PurePosixPath

from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import ArtifactNotOnThisWorker, Location

SCHEME = ""
#: ``file://<host>/<absolute path>``: a local path and the machine that wrote it (RFC 8089, quoted).
FILE_PREFIX = "file://"
STAGING_HINT = (
    "use a gs:// staging location (README: 'Running on Celery or Kubernetes'), or a folder every "
    "worker mounts"
)


def this_host() -> str:
    """This machine's name as Airflow records it on task instances (``[core] hostname_callable``)."""
    try:
        from airflow.sdk.api.client import get_hostname
    except ImportError:  # pragma: no cover - outside an Airflow 3 installation
        return socket.getfqdn()
    return str(get_hostname())  # type: ignore[no-untyped-call]


def host_location(location: Location, host: str | None = None) -> Location:
    """A local location with the host that wrote it (default: the one recorded, else this machine)."""
    host = host if host is not None else (location.container or this_host())
    return Location(SCHEME, host, location.name)


def host_uri(location: Location, host: str | None = None) -> str:
    """``file://<host>/<path>`` of a local location (default host: this machine)."""
    return host_location(location, host).uri


def _parse_file_uri(text: str, what: str) -> tuple[str, str]:
    host, sep, rest = text[len(FILE_PREFIX) :].partition("/")
    host = urllib.parse.unquote(host)
    if not sep or any(c in host for c in "/\\ \t\n\r\x00"):
        raise InvalidOptionError(
            f"{what} {text!r} must be file://<host>/<absolute path> (or file:///<absolute path>)"
        )
    return host, "/" + urllib.parse.unquote(rest)


def parse(text: str, *, what: str, folder: bool) -> Location:
    """An absolute, normalised local path with no ``..``; an artifact path is no manifest name.

    ``file://<host>/<path>`` is the same path, recorded with the host that wrote it (empty host: unknown).
    """
    host = ""
    if text.startswith(FILE_PREFIX):
        host, text = _parse_file_uri(text, what)
    if not text or "\x00" in text or "\n" in text or "\r" in text:
        raise InvalidOptionError(f"{what} {text!r} is empty or contains a NUL byte or newline")
    if not text.startswith("/"):
        raise InvalidOptionError(
            f"{what} {text!r} must be an absolute path, or an object-store URI such as gs://bucket/name"
        )
    if ".." in PurePosixPath(text).parts:
        raise InvalidOptionError(f"{what} {text!r} must not contain '..'")
    name = text.rstrip("/") or "/"
    if not folder and name.endswith(MANIFEST_SUFFIX):
        raise InvalidOptionError(f"{what} {text!r} must not be a manifest file name (*{MANIFEST_SUFFIX})")
    return Location(SCHEME, host, os.path.normpath(name))


def not_on_this_worker(location: Location, *, waiting: bool) -> ArtifactNotOnThisWorker | None:
    """The error to raise when a local backup is missing *entirely* from this machine, else None.

    Missing entirely: neither the artifact nor its manifest exists here. When the location names the
    host that wrote it and that is another machine, the backup will never appear here. Without a host,
    a task that does not wait (an upload, a restore) gets the same answer, since nothing it could wait
    for exists; a sensor (``waiting``) keeps waiting then, as a dump may not have started yet.
    """
    path, manifest = Path(location.name), Path(location.manifest.name)
    if path.exists() or path.is_symlink() or manifest.exists() or manifest.is_symlink():
        return None
    here = this_host()
    writer = location.container
    if writer and writer != here:
        return ArtifactNotOnThisWorker(
            f"backup {location.name} is not on this worker ({here}): the dump ran on another worker "
            f"({writer}) without shared storage, so neither the artifact nor its manifest is here and "
            f"waiting will not bring them; {STAGING_HINT}"
        )
    if writer or waiting:
        return None
    return ArtifactNotOnThisWorker(
        f"backup {location.name} is not on this worker ({here}): neither the artifact nor its manifest "
        "is here. If the dump ran on another worker without shared storage, it never will be; "
        f"{STAGING_HINT}. (Pass the dump's XCom 'artifact_uri', file://<host>/<path>, to name the worker "
        "that wrote it.)"
    )
