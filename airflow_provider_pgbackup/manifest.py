"""The manifest: the JSON file written beside an artifact, last, that marks a backup as finished.

Schema (``schema_version`` 1) is documented in the README. A reader refuses manifests from a newer
schema version instead of guessing what their fields mean.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: 2 added ``content`` (checksums, sequences, large objects, schema inventory); version 1 is still read.
MANIFEST_SCHEMA_VERSION = 2
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
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (also the XCom value of the dump operators)."""
        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files] if self.files is not None else None
        data["row_counts"] = [asdict(r) for r in self.row_counts] if self.row_counts is not None else None
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
        try:
            if values.get("files") is not None:
                values["files"] = tuple(FileDigest(**f) for f in values["files"])
            if values.get("row_counts") is not None:
                values["row_counts"] = tuple(TableRowCount(**r) for r in values["row_counts"])
        except TypeError as err:
            raise ManifestError(f"manifest has malformed files or row_counts entries: {err}") from err
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

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


def manifest_path_for(artifact_path: str | os.PathLike[str]) -> Path:
    """``/backups/db.dump`` -> ``/backups/db.dump.manifest.json`` (also for directory artifacts)."""
    path = Path(artifact_path)
    return path.with_name(path.name + MANIFEST_SUFFIX)


def write_manifest(manifest: Manifest, path: str | os.PathLike[str]) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, rename, fsync the folder."""
    target = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
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
