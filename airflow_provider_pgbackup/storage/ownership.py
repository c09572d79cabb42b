"""What ``overwrite=True`` may replace, on every store: only a finished backup of this provider.

A finished backup of ours is an artifact whose manifest (this provider's format, naming it) describes it.
The provider's own *unfinished* artifact is recognised by each backend from evidence it wrote itself (a
local writer's lock record, an object store's upload id), never by a name; anything else at an output
path is refused before the dump starts, naming the path and what is there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from airflow_provider_pgbackup.manifest import Manifest, ManifestError
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import Location


def overwrite_problem(
    manifest: bytes | None,
    artifact: str,
    found: str | None,
    *,
    size: int | None = None,
    files: dict[str, int] | None = None,
    sha256: str | None = None,
) -> str | None:
    """Why what is at an output path may not be replaced by ``overwrite=True``, in words; None when it may.

    It may when it is a finished backup of this provider: a manifest of this provider's format, naming
    ``artifact`` and describing what is there (a file's or object's size and, where the store records it,
    sha256; a folder's files and sizes), or such a manifest alone (its artifact is gone).

    :param manifest: the bytes of the manifest beside the artifact; None when there is none.
    :param artifact: the artifact's name (the last part of the output path).
    :param found: what is at the path, in words (``"a file of 12 bytes"``); None when nothing is.
    :param size: a file's or object's size.
    :param files: a folder's ``{relative path: size}`` (None for a file or object).
    :param sha256: the sha256 the store records for the object, if any.
    """
    if manifest is None:
        return None if found is None else f"{found} and no manifest"
    try:
        parsed: Manifest | None = Manifest.from_json(manifest)
    except (ManifestError, ValueError):
        parsed = None
    if parsed is None or parsed.artifact != artifact:
        return "a manifest that is not one of this provider's" + (f", beside {found}" if found else "")
    if found is None:
        return None
    if files is not None:
        described = parsed.files is not None and {f.path: f.size_bytes for f in parsed.files} == files
    else:
        described = parsed.files is None and parsed.size_bytes == size and sha256 in (None, parsed.sha256)
    return None if described else f"{found} that its manifest does not describe"


def overwrite_refused(uri: str, problem: str) -> InvalidOptionError:
    """The error for an output path whose content ``overwrite=True`` may not replace (see above)."""
    return InvalidOptionError(
        f"output_path {uri!r} holds {problem}: overwrite=True replaces only a finished backup of this "
        "provider (an artifact its manifest describes) or an unfinished artifact the provider wrote itself, "
        "never anything else; move it away or choose another output_path"
    )


class StoredObject(Protocol):
    """What a store says about an object (an ``ObjectInfo``, a GCS blob): its size and metadata."""

    @property
    def size(self) -> int | None: ...

    @property
    def metadata(self) -> dict[str, str] | None: ...


def check_object_replaceable(
    location: Location,
    *,
    overwrite: bool,
    existing: StoredObject | None,
    manifest: Callable[[], bytes] | None,
) -> None:
    """Raise unless ``overwrite`` and what is at an object-store name is a finished backup of ours.

    :param location: the output path.
    :param existing: the artifact object (None: there is only a manifest).
    :param manifest: reads the manifest object's bytes (None: there is none).
    """
    size = existing.size if existing is not None else None
    sha256 = (existing.metadata or {}).get("sha256") if existing is not None else None
    if not overwrite:
        found = location if existing is not None else location.manifest
        raise InvalidOptionError(
            f"output_path {location.uri!r} already holds a backup ({found.uri} exists); "
            "choose a new path (e.g. with {{ ts_nodash }}) or pass overwrite=True"
        )
    what = f"an object of {size} bytes" if size is not None else None
    problem = overwrite_problem(
        manifest() if manifest is not None else None, location.basename, what, size=size, sha256=sha256
    )
    if problem is not None:
        raise overwrite_refused(location.uri, problem)
