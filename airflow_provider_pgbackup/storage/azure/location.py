"""``az://container/path``: parsing and validation, and the Azure backend's settings checks.

The storage account is the one of the ``wasb`` connection (or of the environment), not part of the
URI. ``abfs://container/path`` and ``abfss://container/path`` (the schemes Airflow's Azure filesystem,
adlfs, registers) name the same blob and are read as ``az://container/path``; the
``container@account.dfs.core.windows.net`` form is refused, since the account is the connection's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage.base import Location, StorageSettings

SCHEME = "az"
#: adlfs's schemes for the same blobs (Data Lake Storage Gen2 accounts serve them on the blob endpoint).
ALIASES = ("abfs", "abfss")
ACCESS_TIERS = ("Hot", "Cool", "Cold", "Archive")
# Container names: 3-63 lowercase letters, digits and single hyphens, starting with a letter or digit.
_CONTAINER_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
MAX_NAME_CHARS = 1024


@dataclass(frozen=True)
class AzureLocation(Location):
    """A container and a blob name (or a prefix; may be empty = the container root)."""

    @property
    def console_url(self) -> str | None:
        """None: the Azure portal's blob pages need the subscription and resource group, unknown here."""
        return None


def parse(text: str, *, what: str, folder: bool) -> AzureLocation:
    """``az://container/name`` (or ``abfs[s]://``): an artifact or (``folder``) a prefix; raises naming
    ``what`` and the value."""
    scheme, _, rest = text.partition("://")
    container, _, name = rest.partition("/")
    if scheme in ALIASES and "@" in container:
        raise InvalidOptionError(
            f"{what} {text!r} names a storage account ({container!r}); the account comes from the wasb "
            f"connection: write {scheme}://container/path or az://container/path"
        )
    if not _CONTAINER_NAME.match(container):
        raise InvalidOptionError(
            f"{what} {text!r} has no valid container name (3 to 63 lowercase letters, digits and single "
            "hyphens; the account comes from the wasb connection)"
        )
    if any(c in name for c in "\n\r\x00\\"):
        raise InvalidOptionError(
            f"{what} {text!r} contains a newline, carriage return, backslash or NUL byte"
        )
    if folder:
        name = name.strip("/")
    elif not name or name.endswith("/"):
        raise InvalidOptionError(f"{what} {text!r} must name a blob (az://container/path/name), not a folder")
    if any(part in ("", ".", "..") for part in (name.split("/") if name else [])):
        raise InvalidOptionError(f"{what} {text!r} must not contain empty, '.' or '..' path segments")
    if len(name) > MAX_NAME_CHARS - 100:  # room for "/<file>" and ".manifest.json"
        raise InvalidOptionError(
            f"{what} {text!r} has a blob name longer than {MAX_NAME_CHARS - 100} characters"
        )
    if not folder and name.endswith(MANIFEST_SUFFIX):
        raise InvalidOptionError(f"{what} {text!r} must not be a manifest file name (*{MANIFEST_SUFFIX})")
    return AzureLocation(SCHEME, container, name)


def check_settings(settings: StorageSettings) -> None:
    if settings.storage_class is not None and settings.storage_class not in ACCESS_TIERS:
        raise InvalidOptionError(
            f"storage_class {settings.storage_class!r} is not an Azure access tier; use one of: "
            f"{', '.join(ACCESS_TIERS)}"
        )
    if settings.kms_key_name is not None:
        raise InvalidOptionError(
            f"kms_key_name {settings.kms_key_name!r} is not used on Azure; use encryption_scope"
        )
