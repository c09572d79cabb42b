"""A folder (or object-store prefix) of backups as retention, the freshness watchdog and the shrink guard read
it: the complete backups (by their manifests), the provider's own leftovers (by the store's evidence), and
the rest. A backup's shrink acknowledgement (``<artifact>.shrink-acknowledged``, :data:`ACKNOWLEDGED_SUFFIX`)
belongs to it while it is there.

Another run may delete entries between the listing and the reading: a manifest that vanished drops its
backup (keeping fewer candidates never makes a policy delete one it would have kept).
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX, Manifest, ManifestError
from airflow_provider_pgbackup.storage.base import BackupStore, StoredEntry

#: The marker beside an artifact that lets a backup the shrink guard holds through (its content is not read).
ACKNOWLEDGED_SUFFIX = ".shrink-acknowledged"


@dataclass(frozen=True)
class StoredBackup:
    """A complete backup found in a folder: its manifest entry, its artifact entry and the manifest."""

    name: str
    manifest: Manifest
    finished_at: datetime.datetime
    manifest_entry: StoredEntry
    artifact_entry: StoredEntry | None


def uri_of(store: BackupStore, entry: StoredEntry) -> str:
    return store.location_of(entry).uri


def backup_uri(store: BackupStore, backup: StoredBackup) -> str:
    """The URI of a backup's artifact, named from its manifest (the artifact entry may be missing)."""
    return uri_of(store, backup.manifest_entry)[: -len(MANIFEST_SUFFIX)]


#: Words for the kinds of leftover, once the store's evidence says an entry is the provider's. The names
#: describe; they never decide (a name alone proves nothing: anyone can write ``.x.lock``).
_DESCRIPTIONS = (
    (re.compile(r"^\..+\.partial-[0-9a-f]{12}$"), "a partial artifact of a run that did not finish"),
    (re.compile(r"^\..+\.manifest\.json\.[0-9a-f]{8}\.partial$"), "a manifest that was being written"),
    (re.compile(r"^\..+\.lock$"), "the lock file of a run that did not finish"),
)


def provider_leftover(entry: StoredEntry, names: set[str]) -> str | None:
    """Why ``entry`` is a leftover of this provider (to delete after the grace), or None: not ours.

    Only the store's evidence makes an entry the provider's (``StoredEntry.provider_written``): on a
    local folder, the record in the lock file of one of its writers naming the entry (a staging file or
    folder, a manifest being written, that lock file, an artifact whose manifest never came); on an
    object store, the provider's upload id on every object (an artifact whose manifest never came).
    Anything else was written by someone else and is never deleted; what a running writer holds
    (``in_use``) is not a leftover yet.
    """
    if not entry.provider_written or entry.in_use:
        return None
    if entry.name.endswith(MANIFEST_SUFFIX) or entry.name + MANIFEST_SUFFIX in names:
        return None
    for pattern, description in _DESCRIPTIONS:
        if pattern.match(entry.name):
            return description
    return "an artifact whose manifest never came"


def find_backups(
    store: BackupStore, entries: list[StoredEntry], log: logging.Logger | Any = None
) -> tuple[list[StoredBackup], list[StoredEntry], set[str]]:
    """Complete backups (readable manifest), the provider's own leftovers, and names left alone
    (an unreadable manifest and its artifact, a backup whose manifest another run deleted since the
    listing, what a running dump is writing). Entries the provider did not write are in none of them.

    A manifest that vanished since the listing drops its backup from the policy: keeping fewer candidates
    never makes the policy delete one it would have kept.

    :param store: the folder or gs:// prefix.
    :param entries: ``store.entries()``.
    :param log: where to say which manifests are left alone (default: this module's logger).
    """
    log = log or logging.getLogger(__name__)
    by_name = {e.name: e for e in entries}
    backups: list[StoredBackup] = []
    protected: set[str] = set()
    for entry in entries:
        if entry.in_use:
            log.info("Leaving %s alone: a running dump is writing it", store.location_of(entry).uri)
            protected.add(entry.name)
        if entry.is_folder or not entry.name.endswith(MANIFEST_SUFFIX):
            continue
        artifact_name = entry.name[: -len(MANIFEST_SUFFIX)]
        try:
            data = store.read(entry)
        except FileNotFoundError:
            log.info(
                "%s vanished since the folder was listed (another run deleted it); its backup is skipped",
                store.location_of(entry).uri,
            )
            protected.update({entry.name, artifact_name})
            continue
        try:
            manifest = Manifest.from_json(data)
            if manifest.artifact != artifact_name:
                raise ManifestError(f"it describes {manifest.artifact!r}, not {artifact_name!r}")
            finished = datetime.datetime.fromisoformat(manifest.finished_at)
            if finished.tzinfo is None:
                finished = finished.replace(tzinfo=datetime.timezone.utc)
        except (ManifestError, ValueError) as err:
            log.warning(
                "Leaving %s alone: its manifest cannot be read (%s)", store.location_of(entry).uri, err
            )
            protected.update({entry.name, artifact_name})
            continue
        backups.append(StoredBackup(artifact_name, manifest, finished, entry, by_name.get(artifact_name)))
    referenced = _referenced(backups, protected)
    names = set(by_name)
    incomplete = [e for e in entries if e.name not in referenced and provider_leftover(e, names)]
    return backups, incomplete, protected


def _referenced(backups: list[StoredBackup], protected: set[str]) -> set[str]:
    """Names that are part of a backup: its artifact, its manifest, its shrink acknowledgement."""
    return (
        {b.name for b in backups}
        | {b.manifest_entry.name for b in backups}
        | {b.name + ACKNOWLEDGED_SUFFIX for b in backups}
        | protected
    )


def acknowledged_names(entries: list[StoredEntry]) -> set[str]:
    """Artifact names whose shrink acknowledgement marker is in the folder."""
    return {e.name[: -len(ACKNOWLEDGED_SUFFIX)] for e in entries if e.name.endswith(ACKNOWLEDGED_SUFFIX)}


def foreign_entries(
    entries: list[StoredEntry], backups: list[StoredBackup], protected: set[str]
) -> list[str]:
    """Names in the folder that no backup names and that are no leftover of this provider."""
    names = {e.name for e in entries}
    referenced = _referenced(backups, protected)
    return sorted(e.name for e in entries if e.name not in referenced and provider_leftover(e, names) is None)


def artifact_problem(backup: StoredBackup) -> str | None:
    """None when the artifact is present as the manifest records it (names, sizes, sha256 metadata)."""
    entry, manifest = backup.artifact_entry, backup.manifest
    if entry is None:
        return f"its artifact {backup.name!r} is missing"
    if manifest.files is not None:
        expected = {f.path: f.size_bytes for f in manifest.files}
        if not entry.is_folder or dict(entry.files) != expected:
            return "its artifact folder does not hold the files and sizes its manifest lists"
        return None
    if entry.is_folder or entry.size_bytes != manifest.size_bytes:
        return f"its artifact holds {entry.size_bytes} bytes, not {manifest.size_bytes}"
    remote_sha = dict(entry.metadata).get("sha256")
    if remote_sha is not None and remote_sha != manifest.sha256:
        return f"its artifact's sha256 metadata is {remote_sha}, not {manifest.sha256}"
    return None
