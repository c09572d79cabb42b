"""The manifest: the JSON file written beside an artifact, last, that marks a backup as finished.

Schema (``schema_version`` 1) is documented in the README. A reader refuses manifests from a newer
schema version instead of guessing what their fields mean.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.options import Compression

#: 2 added ``content`` (checksums, sequences, large objects, schema inventory); version 1 is still read.
#: 3 is written only for an encrypted backup (``encryption``): a reader of version 2, which ignores
#: unknown fields, must refuse it rather than take ciphertext for a plain archive. Unencrypted
#: backups are still written as version 2, so older readers keep reading them.
MANIFEST_SCHEMA_VERSION = 3
PLAIN_SCHEMA_VERSION = 2
ENCRYPTED_SCHEMA_VERSION = 3
#: The keys of the ``encryption`` object and what each holds (nothing secret: public keys, digests).
ENCRYPTION_FIELDS: dict[str, tuple[type | None, ...]] = {
    "format": (str,),
    "recipients": (list,),
    "plaintext_size_bytes": (int,),
    "plaintext_sha256": (str,),
}
MANIFEST_SUFFIX = ".manifest.json"
TOOL_NAME = "airflow-provider-pgbackup"


class ManifestError(ValueError):
    """A manifest is unreadable, from an unknown schema version, or missing required fields."""


@dataclass(frozen=True)
class FileDigest:
    """Size and sha256 of one file of a directory-format artifact (``path``: relative, '/'-separated)."""

    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class TableRowCount:
    """Exact row count of one table, counted in the snapshot pg_dump dumped."""

    schema: str
    table: str
    rows: int


@dataclass(frozen=True)
class Manifest:
    """What was dumped, how, and the digests that prove the bytes are the ones written."""

    kind: str  # "pg_dump" | "pg_dumpall"
    artifact: str  # file or directory name, relative to the manifest's folder
    format: str  # custom | directory | tar | plain
    compression: str  # "none" | "gzip:6" | ...
    database: str | None
    server_version: str
    server_version_num: int
    client_tool: str  # pg_dump | pg_dumpall
    client_version: str
    started_at: str  # UTC ISO-8601
    finished_at: str
    duration_seconds: float
    size_bytes: int
    sha256: str  # file: digest of the bytes; directory: digest over the sorted per-file digest lines
    tool: str = TOOL_NAME
    tool_version: str = ""
    mode: str | None = None  # pg_dumpall: full | globals | roles
    files: tuple[FileDigest, ...] | None = None  # directory format only
    row_counts: tuple[TableRowCount, ...] | None = None
    content: dict[str, Any] | None = None  # airflow_provider_pgbackup.content.ContentRecord.to_dict()
    options: dict[str, Any] = field(default_factory=dict)
    #: {"format": "age-v1", "recipients": [public keys], "plaintext_size_bytes", "plaintext_sha256"}
    #: (directory: the combined digest over the decrypted files); None for an unencrypted backup.
    encryption: dict[str, Any] | None = None
    #: Where the backup was dumped from: ``{"postgres_conn_id", "host", "port", "system_identifier"}``
    #: (nothing secret); what tells a restore that its target is the source database. None: not recorded.
    source: dict[str, Any] | None = None
    schema_version: int = PLAIN_SCHEMA_VERSION
    #: The lock its published copy was given: ``{"mode", "until" (UTC ISO-8601), "legal_hold"}``
    #: (:mod:`~airflow_provider_pgbackup.storage.object_lock`); None (and absent from the JSON): not locked.
    lock: dict[str, Any] | None = None

    @cached_property
    def compression_spec(self) -> Compression:
        """:attr:`compression` parsed, once per manifest: what every reader of the backup (verification,
        content checks, a plain restore) decompresses by. Raises
        :class:`~airflow_provider_pgbackup.options.InvalidOptionError` naming a malformed spec."""
        return Compression.parse(self.compression)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (also the XCom value of the dump operators).

        Built field by field: ``dataclasses.asdict`` deep-copies every nested value, which took seconds
        for the content record of a database with thousands of tables. The JSON values (``content``,
        ``options``, ``encryption``) are copied by a JSON round trip of their own, in C."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("content", "options", "encryption", "lock"):
            if data[name] is not None:
                data[name] = json.loads(json.dumps(data[name]))
        if data["lock"] is None:
            del data["lock"]  # an unlocked backup's manifest reads as before locks existed
        data["files"] = [asdict(f) for f in self.files] if self.files is not None else None
        data["row_counts"] = (
            [{"schema": r.schema, "table": r.table, "rows": r.rows} for r in self.row_counts]
            if self.row_counts is not None
            else None
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"manifest must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise ManifestError(f"manifest has no integer schema_version (got {version!r})")
        if version > MANIFEST_SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema_version {version} is newer than this provider understands "
                f"(<= {MANIFEST_SCHEMA_VERSION}); upgrade airflow-provider-pgbackup"
            )
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - data.keys())
        if missing:
            raise ManifestError(f"manifest is missing required fields: {', '.join(missing)}")
        values = {k: v for k, v in data.items() if k in known}
        for name, value in values.items():
            _check_field(name, value, FIELD_TYPES[name])
        encryption = values.get("encryption")
        if encryption is not None:
            _check_encryption(encryption)
            if version < ENCRYPTED_SCHEMA_VERSION:
                raise ManifestError(
                    f"manifest has an encryption record but schema_version {version}; encrypted "
                    f"backups are schema_version {ENCRYPTED_SCHEMA_VERSION}"
                )
        elif version >= ENCRYPTED_SCHEMA_VERSION:
            raise ManifestError(f"manifest schema_version {version} must have an encryption record")
        if values.get("files") is not None:
            values["files"] = tuple(_entry(FileDigest, "files", f, FILE_FIELDS) for f in values["files"])
        if values.get("row_counts") is not None:
            values["row_counts"] = tuple(
                _entry(TableRowCount, "row_counts", r, ROW_COUNT_FIELDS) for r in values["row_counts"]
            )
        return cls(**values)

    def to_json(self) -> str:
        """One top-level field per line, each value as compact JSON (json's C encoder: an indented dump
        goes through its pure-Python encoder, seconds for a content record of thousands of tables)."""
        data = self.to_dict()
        fields_json = (
            f"  {json.dumps(key)}: {json.dumps(data[key], sort_keys=True, ensure_ascii=False)}"
            for key in sorted(data)
        )
        return "{\n" + ",\n".join(fields_json) + "\n}\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ManifestError(f"manifest is not valid JSON: {err}") from err
        return cls.from_dict(data)

    @property
    def row_count_map(self) -> dict[tuple[str, str], int]:
        return {(r.schema, r.table): r.rows for r in self.row_counts or ()}


_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", list: "a list", dict: "an object"}
#: What each manifest field must hold (``None`` allowed where listed): a reader names any other value.
FIELD_TYPES: dict[str, tuple[type | None, ...]] = {
    "kind": (str,),
    "artifact": (str,),
    "format": (str,),
    "compression": (str,),
    "database": (str, None),
    "server_version": (str,),
    "server_version_num": (int,),
    "client_tool": (str,),
    "client_version": (str,),
    "started_at": (str,),
    "finished_at": (str,),
    "duration_seconds": (int, float),
    "size_bytes": (int,),
    "sha256": (str,),
    "tool": (str,),
    "tool_version": (str,),
    "mode": (str, None),
    "files": (list, None),
    "row_counts": (list, None),
    "content": (dict, None),
    "options": (dict,),
    "encryption": (dict, None),
    "source": (dict, None),
    "lock": (dict, None),
    "schema_version": (int,),
}
FILE_FIELDS: dict[str, tuple[type | None, ...]] = {"path": (str,), "size_bytes": (int,), "sha256": (str,)}
ROW_COUNT_FIELDS: dict[str, tuple[type | None, ...]] = {"schema": (str,), "table": (str,), "rows": (int,)}


def _check_field(name: str, value: Any, allowed: tuple[type | None, ...]) -> None:
    for kind in allowed:
        if kind is None and value is None:
            return
        if kind is not None and isinstance(value, kind) and not isinstance(value, bool):
            if kind in (int, float) and isinstance(value, float) and value != value:  # NaN
                break
            return
    shown = " or ".join("null" if k is None else _TYPE_NAMES.get(k, k.__name__) for k in allowed)
    raise ManifestError(f"manifest field {name!r} must be {shown}, not {value!r}"[:300])


def _check_encryption(value: dict[str, Any]) -> None:
    missing = sorted(set(ENCRYPTION_FIELDS) - value.keys())
    if missing:
        raise ManifestError(f"manifest encryption record lacks {', '.join(missing)}")
    for name, allowed in ENCRYPTION_FIELDS.items():
        _check_field(f"encryption.{name}", value[name], allowed)
    if value["format"] != "age-v1":
        raise ManifestError(f"manifest encryption format {value['format']!r} is not 'age-v1'"[:300])
    recipients = value["recipients"]
    if not recipients or not all(isinstance(r, str) for r in recipients):
        raise ManifestError("manifest encryption recipients must be a non-empty list of public keys")


def _entry(kind: Any, field_name: str, value: Any, fields_: dict[str, tuple[type | None, ...]]) -> Any:
    if not isinstance(value, dict):
        raise ManifestError(f"manifest {field_name} entries must be objects, not {value!r}"[:300])
    missing = sorted(set(fields_) - value.keys())
    if missing:
        raise ManifestError(f"a manifest {field_name} entry lacks {', '.join(missing)}: {value!r}"[:300])
    for name, allowed in fields_.items():
        _check_field(f"{field_name}[].{name}", value[name], allowed)
    return kind(**{name: value[name] for name in fields_})


def manifest_path_for(artifact_path: str | os.PathLike[str]) -> Path:
    """``/backups/db.dump`` -> ``/backups/db.dump.manifest.json`` (also for directory artifacts)."""
    path = Path(artifact_path)
    return path.with_name(path.name + MANIFEST_SUFFIX)


#: Finished backups are readable by their owner only (a pg_dumpall holds role password hashes).
DEFAULT_FILE_MODE = 0o600


def folder_mode(file_mode: int) -> int:
    """The mode of a backup's folders for a given file mode: search permission wherever read is given."""
    return file_mode | ((file_mode & 0o444) >> 2)


def write_manifest(
    manifest: Manifest,
    path: str | os.PathLike[str],
    *,
    mode: int = DEFAULT_FILE_MODE,
    temp_name: str | None = None,
) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, rename, fsync the folder.

    :param temp_name: the temporary file's name in that folder (created, never replaced); default: a
        random ``.<name>.<random>.partial``. A writer that records the name can later prove it wrote it.
    """
    target = Path(path)
    if temp_name is None:
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    else:
        temp_name = str(target.with_name(temp_name))
        fd = os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)
    return target


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    return Manifest.from_json(Path(path).read_bytes())


def fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
