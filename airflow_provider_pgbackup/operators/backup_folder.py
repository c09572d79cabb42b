"""Moved to :mod:`airflow_provider_pgbackup.storage.folder` (the shrink guard of the transfers reads a folder
too, and transfers may not import operators); this name stays for the operators that import it."""

from airflow_provider_pgbackup.storage.folder import (
    StoredBackup,
    artifact_problem,
    find_backups,
    foreign_entries,
    provider_leftover,
    uri_of,
)

__all__ = [
    "StoredBackup",
    "artifact_problem",
    "find_backups",
    "foreign_entries",
    "provider_leftover",
    "uri_of",
]
