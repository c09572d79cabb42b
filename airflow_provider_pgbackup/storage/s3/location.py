"""``s3://bucket/key``: parsing and validation, console links, the S3 backend's settings checks."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import Location, StorageSettings

SCHEME = "s3"
CONSOLE_URL = "https://s3.console.aws.amazon.com/s3"
STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
)
# Bucket names: 3-63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class S3Location(Location):
    """A bucket and a key (or a prefix; may be empty = the bucket root)."""

    @property
    def bucket(self) -> str:
        return self.container

    @property
    def console_url(self) -> str:
        """The object's page in the AWS console."""
        return f"{CONSOLE_URL}/object/{self.bucket}?prefix={urllib.parse.quote(self.name)}"

    @property
    def console_folder_url(self) -> str:
        suffix = f"?prefix={urllib.parse.quote(self.name)}/" if self.name else ""
        return f"{CONSOLE_URL}/buckets/{self.bucket}{suffix}"


def parse(text: str, *, what: str, folder: bool) -> S3Location:
    """``s3://bucket/key``: an artifact or (``folder``) a prefix; raises naming ``what`` and the value."""
    bucket, _, name = text[len(SCHEME) + 3 :].partition("/")
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise InvalidOptionError(
            f"{what} {text!r} has no valid bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
        )
    if any(c in name for c in "\n\r\x00"):
        raise InvalidOptionError(f"{what} {text!r} contains a newline, carriage return or NUL byte")
    if folder:
        name = name.strip("/")
    elif not name or name.endswith("/"):
        raise InvalidOptionError(f"{what} {text!r} must name an object (s3://bucket/path/name), not a folder")
    if any(part in ("", ".", "..") for part in (name.split("/") if name else [])):
        raise InvalidOptionError(f"{what} {text!r} must not contain empty, '.' or '..' path segments")
    if len(name.encode("utf-8")) > MAX_KEY_BYTES - 100:  # room for "/<file>" and ".manifest.json"
        raise InvalidOptionError(f"{what} {text!r} has a key longer than {MAX_KEY_BYTES - 100} bytes")
    if not folder and name.endswith(MANIFEST_SUFFIX):
        raise InvalidOptionError(f"{what} {text!r} must not be a manifest file name (*{MANIFEST_SUFFIX})")
    return S3Location(SCHEME, bucket, name)


def check_settings(settings: StorageSettings) -> None:
    if settings.storage_class is not None and settings.storage_class not in STORAGE_CLASSES:
        raise InvalidOptionError(
            f"storage_class {settings.storage_class!r} is not supported on S3; use one of: "
            f"{', '.join(STORAGE_CLASSES)}"
        )
    if settings.encryption_scope is not None:
        raise InvalidOptionError(
            f"encryption_scope {settings.encryption_scope!r} is an Azure setting; on S3 use kms_key_name "
            "(SSE-KMS)"
        )
