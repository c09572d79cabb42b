"""``gs://bucket/name``: parsing and validation, console links, and the GCS backend's settings checks."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import Location, StorageSettings

SCHEME = "gs"
CONSOLE_URL = "https://console.cloud.google.com/storage/browser"
STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass(frozen=True)
class GCSLocation(Location):
    """A bucket and an object name (or a prefix; may be empty = the bucket root)."""

    @property
    def bucket(self) -> str:
        return self.container

    @property
    def console_url(self) -> str:
        """The object's page in the Google Cloud Console."""
        return f"{CONSOLE_URL}/_details/{self.bucket}/{urllib.parse.quote(self.name)}"

    @property
    def console_folder_url(self) -> str:
        """The folder's listing (a directory-format artifact, or a prefix)."""
        suffix = f"/{urllib.parse.quote(self.name)}/" if self.name else ""
        return f"{CONSOLE_URL}/{self.bucket}{suffix}"


def build(bucket: str, name: str, *, what: str, folder: bool, shown: str | None = None) -> GCSLocation:
    """Validate a bucket and an object name (``folder``: a prefix, may be empty); raise naming ``what``."""
    shown = shown if shown is not None else f"gs://{bucket}/{name}"
    if not isinstance(bucket, str) or not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise InvalidOptionError(
            f"{what} {shown!r} has no valid bucket name (lowercase letters, digits, '-', '_', '.'; "
            "3 to 222 characters)"
        )
    if not isinstance(name, str) or any(c in name for c in "\n\r\x00"):
        raise InvalidOptionError(f"{what} {shown!r} contains a newline, carriage return or NUL byte")
    if folder:
        name = name.strip("/")
    elif not name or name.endswith("/"):
        raise InvalidOptionError(
            f"{what} {shown!r} must name an object (gs://bucket/path/name), not a folder"
        )
    parts = name.split("/") if name else []
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidOptionError(f"{what} {shown!r} must not contain empty, '.' or '..' path segments")
    if not folder and name.endswith(MANIFEST_SUFFIX):
        raise InvalidOptionError(f"{what} {shown!r} must not be a manifest file name (*{MANIFEST_SUFFIX})")
    return GCSLocation(SCHEME, bucket, name)


def parse(text: str, *, what: str, folder: bool) -> GCSLocation:
    """``gs://bucket/name``: an artifact (a trailing ``/`` names a directory-format folder) or a prefix."""
    bucket, _, name = text[len(SCHEME) + 3 :].partition("/")
    return build(bucket, name, what=what, folder=folder, shown=text)


def check_settings(settings: StorageSettings) -> None:
    if settings.storage_class is not None and settings.storage_class not in STORAGE_CLASSES:
        raise InvalidOptionError(
            f"storage_class {settings.storage_class!r} is not supported on GCS; use one of: "
            f"{', '.join(STORAGE_CLASSES)}"
        )
