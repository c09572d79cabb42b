"""Verification: prove that a backup (artifact + manifest) is complete and readable, cheapest check first.

One module, used by :class:`~airflow_provider_pgbackup.sensors.backup_artifact.PgBackupArtifactSensor`,
:class:`~airflow_provider_pgbackup.operators.pg_restore.PgRestoreOperator` and the GCS path. The checks,
in order (``CHECKS``):

``exists``
    the artifact and its manifest are there. Missing raises :class:`ArtifactMissing` ("not there
    yet"); every later failure raises :class:`ArtifactCorrupt` ("there and bad") naming the check.
``manifest``
    the manifest parses and describes this artifact.
``age``
    (only with ``max_age``) the manifest's ``finished_at`` is recent enough.
``size``
    size > 0, >= ``min_size_bytes`` and equal to the manifest's; for a directory artifact every file
    the manifest lists is there with its size, and no other file is.
``checksum``
    sha256 equal to the manifest's (directory: every file's digest and the combined digest).
``contents``
    custom / tar / directory: ``pg_restore --list`` succeeds, run by a pg_restore whose major version
    can read the archive (chosen as the hook chooses pg_dump). Plain SQL (pg_dump or pg_dumpall): the
    stream decompresses cleanly and ends with the tool's completion trailer.
``tables``
    archives only: the table of contents has a ``TABLE DATA`` entry for every table whose rows the
    manifest counted.

**Where the bytes come from** is an :class:`ArtifactSource`. :class:`LocalArtifactSource` reads a
local (or mounted) path; a GCS source only has to implement the same small protocol: file artifacts
are read as a stream of chunks (``pg_restore --list`` of a custom or tar archive reads them on its
stdin, plain SQL is decompressed on the fly, so no local copy is needed); only a directory-format
artifact needs a local folder (:meth:`ArtifactSource.local_copy`, a temporary download for a remote
source). :class:`~airflow_provider_pgbackup.storage.GCSArtifactSource` reads ``gs://`` backups;
:func:`open_source` picks the source for a path or URI. The stream-level helpers
(:func:`decompressed_chunks`, :func:`check_sql_stream`, :func:`list_archive`) take any iterable of
``bytes`` chunks.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import queue
import shutil
import threading
import time
import zlib
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from airflow_provider_pgbackup.binaries import (
    PgBinary,
    PgBinaryNotFound,
    choose_binary,
)
from airflow_provider_pgbackup.hooks.pg_dump import INHERITED_ENV, PgCommandError, PgProcessRunner
from airflow_provider_pgbackup.manifest import Manifest, ManifestError, manifest_path_for
from airflow_provider_pgbackup.options import FORMAT_FLAGS, Compression, InvalidOptionError, parse_format
from airflow_provider_pgbackup.storage import (
    HASH_CHUNK_BYTES,
    ArtifactDigest,
    ArtifactMismatchError,
    GCSArtifactSource,
    GCSLocation,
    GCSSettings,
    combine_file_digests,
    digest_directory,
    is_gcs_uri,
    sha256_file,
    walk_files,
)

log = logging.getLogger(__name__)

CHECKS = ("exists", "manifest", "age", "size", "checksum", "contents", "tables")

#: The last line pg_dump / pg_dumpall write to a complete plain SQL dump.
SQL_TRAILERS: dict[str, bytes] = {
    "pg_dump": b"-- PostgreSQL database dump complete",
    "pg_dumpall": b"-- PostgreSQL database cluster dump complete",
}
# Bytes of decompressed SQL kept to look for the trailer: never the whole stream.
SQL_TAIL_BYTES = 4096
# External decompressors for methods the Python standard library lacks.
EXTERNAL_DECOMPRESSORS: dict[str, tuple[str, ...]] = {"zstd": ("zstd", "-dc"), "lz4": ("lz4", "-dc")}
# pg_restore --list entry types made of several words, longest first (the rest are one word).
MULTI_WORD_TOC_TYPES = tuple(
    sorted(
        (
            "TABLE DATA",
            "TABLE ATTACH",
            "INDEX ATTACH",
            "SEQUENCE SET",
            "SEQUENCE OWNED BY",
            "FK CONSTRAINT",
            "CHECK CONSTRAINT",
            "MATERIALIZED VIEW",
            "MATERIALIZED VIEW DATA",
            "DEFAULT ACL",
            "BLOB METADATA",
            "LARGE OBJECT",
            "LARGE OBJECTS",
            "ROW SECURITY",
            "EVENT TRIGGER",
            "FOREIGN TABLE",
            "FOREIGN DATA WRAPPER",
            "FOREIGN SERVER",
            "USER MAPPING",
            "OPERATOR CLASS",
            "OPERATOR FAMILY",
            "ACCESS METHOD",
            "PUBLICATION TABLE",
            "PUBLICATION TABLES IN SCHEMA",
            "SHELL TYPE",
            "PROCEDURAL LANGUAGE",
            "TEXT SEARCH CONFIGURATION",
            "TEXT SEARCH DICTIONARY",
            "TEXT SEARCH PARSER",
            "TEXT SEARCH TEMPLATE",
            "DATABASE PROPERTIES",
            "STATISTICS DATA",
            "EXTENDED STATISTICS",
        ),
        key=len,
        reverse=True,
    )
)


class VerificationError(Exception):
    """Base of :class:`ArtifactMissing` and :class:`ArtifactCorrupt`; carries the report so far."""

    def __init__(self, message: str, report: VerificationReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class ArtifactMissing(VerificationError):
    """The artifact or its manifest is not there (yet): a sensor keeps waiting."""


class ArtifactCorrupt(VerificationError):
    """The backup is there but bad; ``check`` names the check that failed and ``reason`` says why."""

    def __init__(self, check: str, reason: str, report: VerificationReport | None = None) -> None:
        super().__init__(f"backup verification failed at check {check!r}: {reason}", report)
        self.check = check
        self.reason = reason


class ArtifactRefused(Exception):
    """A source refuses to read what is at a path (a symbolic link instead of the artifact itself)."""


class DecompressorUnavailable(RuntimeError):
    """No decompressor for this method on this machine (lz4/zstd without the command-line tool)."""


class StreamCorrupt(ValueError):
    """A compressed stream does not decompress cleanly."""


@dataclass
class CheckResult:
    """One check that ran: ``status`` is ``ok``, ``failed`` or ``skipped``; ``detail`` says what it saw."""

    name: str
    status: str
    duration_ms: float
    detail: str = ""


@dataclass
class VerificationReport:
    """What verification did and found; :meth:`to_dict` is JSON-serialisable (the sensor's XCom)."""

    artifact: str
    manifest: str
    kind: str | None = None
    format: str | None = None
    compression: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    failed_check: str | None = None
    failure_reason: str | None = None
    pg_restore: str | None = None
    toc_entries: int | None = None
    toc_entry_counts: dict[str, int] = field(default_factory=dict)
    tables_in_toc: list[str] = field(default_factory=list)
    sql_bytes: int | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed_check is None and any(c.name == "exists" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


# ------------------------------------------------------------------------------------------- sources
class ArtifactSource(Protocol):
    """Where a backup's bytes are read from. Implement this to verify a backup that is not a local path.

    ``FileNotFoundError`` from :meth:`manifest_bytes` or :meth:`artifact_sizes` means "not there yet".
    """

    @property
    def uri(self) -> str: ...

    @property
    def manifest_uri(self) -> str: ...

    def manifest_bytes(self) -> bytes:
        """The manifest's JSON; raises ``FileNotFoundError`` when there is none."""
        ...

    def artifact_sizes(self) -> dict[str, int] | int:
        """A file artifact's size, or a directory artifact's ``{relative '/' path: size}``."""
        ...

    def digest(self) -> ArtifactDigest:
        """Size and sha256 (and per-file digests for a directory), computed from the bytes."""
        ...

    @property
    def local_path(self) -> Path | None:
        """The artifact's own local path, or None when its bytes must be streamed or downloaded."""
        ...

    def chunks(self) -> Iterator[bytes]:
        """A fresh stream of a file artifact's bytes."""
        ...

    def local_copy(self) -> contextlib.AbstractContextManager[Path]:
        """The artifact (file or folder) as a local path for the duration of a ``with`` block.

        pg_restore cannot read a directory-format artifact, or a custom archive with several jobs,
        from a stream. A local source yields its own path; a remote one downloads into a private
        temporary folder that is removed when the block ends.
        """
        ...


class LocalArtifactSource:
    """A backup on a local or mounted filesystem: ``path`` and ``path + ".manifest.json"``.

    :param path: the artifact (file or folder).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.manifest_path = manifest_path_for(self.path)

    @property
    def uri(self) -> str:
        return str(self.path)

    @property
    def manifest_uri(self) -> str:
        return str(self.manifest_path)

    @staticmethod
    def _refuse_symlink(path: Path) -> None:
        # A link could make a backup "verify" by pointing at some other, good file.
        if path.is_symlink():
            raise ArtifactRefused(
                f"{path} is a symbolic link (to {os.readlink(path)}); a backup is verified only as the "
                "regular file or folder its manifest describes"
            )

    def manifest_bytes(self) -> bytes:
        self._refuse_symlink(self.manifest_path)
        return self.manifest_path.read_bytes()

    def artifact_sizes(self) -> dict[str, int] | int:
        self._refuse_symlink(self.path)
        if self.path.is_dir():
            return {f.relative_to(self.path).as_posix(): f.stat().st_size for f in walk_files(self.path)}
        return self.path.stat().st_size

    def digest(self) -> ArtifactDigest:
        if self.path.is_dir():
            return digest_directory(self.path)
        size, sha = sha256_file(self.path)
        return ArtifactDigest(size, sha)

    @property
    def local_path(self) -> Path:
        return self.path

    def chunks(self) -> Iterator[bytes]:
        return local_chunks(self.path)

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        """The artifact's own path: nothing is copied, and nothing is removed afterwards."""
        yield self.path


def open_source(
    path: str | os.PathLike[str],
    *,
    what: str = "path",
    gcs_settings: GCSSettings | None = None,
) -> LocalArtifactSource | GCSArtifactSource:
    """The source for a backup at ``path``: :class:`~airflow_provider_pgbackup.storage.GCSArtifactSource`
    for ``gs://bucket/object``, else :class:`LocalArtifactSource` for an absolute local path.

    :param path: the artifact: an absolute local path or a ``gs://`` URI.
    :param what: the argument's name, for error messages.
    :param gcs_settings: GCS connection, chunk size and retries (``gs://`` only; default: defaults).
    :raises InvalidOptionError: the path is neither, naming the value.
    """
    text = check_artifact_path(path, what=what)
    if is_gcs_uri(text):
        return GCSArtifactSource(text, settings=gcs_settings)
    return LocalArtifactSource(text)


def check_artifact_path(path: str | os.PathLike[str], *, what: str = "path") -> str:
    """Check (without touching storage) that ``path`` names an artifact: an absolute local path, or
    ``gs://bucket/object``. Returns it as a string; raises :class:`InvalidOptionError` naming the value.

    :param path: the artifact.
    :param what: the argument's name, for error messages.
    """
    text = os.fspath(path)
    if is_gcs_uri(text):
        GCSLocation.parse(text, what=what)
        return text
    if not text.startswith("/") or "\x00" in text or "\n" in text:
        raise InvalidOptionError(
            f"{what} {text!r} must be an absolute local path or a gs://bucket/object URI of a backup artifact"
        )
    return text


def local_chunks(path: Path, chunk_bytes: int = HASH_CHUNK_BYTES) -> Iterator[bytes]:
    """Read a file as a stream of chunks (the file is closed when the iterator is exhausted or closed)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            yield chunk


# ------------------------------------------------------------------------------------ stream helpers
def tool_env() -> dict[str, str]:
    """A minimal environment for pg_restore --list and decompressors: no connection, no secrets."""
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env["LC_MESSAGES"] = "C"
    return env


def decompressed_chunks(
    chunks: Iterable[bytes], method: str, *, runner_log: Any = None
) -> Generator[bytes, None, None]:
    """Decompress a stream as pg_dump (plain) or the provider (pg_dumpall) wrote it.

    ``gzip`` is decompressed in-process (several members allowed); ``zstd`` and ``lz4`` go through the
    ``zstd`` / ``lz4`` command when one is on PATH (the standard library has neither), else
    :class:`DecompressorUnavailable`. A stream that does not decompress cleanly, or ends before its end
    marker, raises :class:`StreamCorrupt`.

    :param chunks: the compressed bytes.
    :param method: ``none``, ``gzip``, ``zstd`` or ``lz4``.
    :param runner_log: logger for the external decompressor's runner (default: this module's).

    ``close()`` the generator when not reading it to the end: that stops an external decompressor.
    """
    if method == "none":
        yield from chunks
    elif method == "gzip":
        yield from _gunzip(chunks)
    elif method in EXTERNAL_DECOMPRESSORS:
        yield from _external_decompress(chunks, method, runner_log or log)
    else:
        raise StreamCorrupt(f"unknown compression method {method!r} in the manifest")


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    seen_input = False
    try:
        for chunk in chunks:
            seen_input = seen_input or bool(chunk)
            data = chunk
            while data:
                out = decompressor.decompress(data)
                if out:
                    yield out
                data = b""
                if decompressor.eof:  # another gzip member may follow
                    data = decompressor.unused_data
                    if data:
                        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        tail = decompressor.flush()
        if tail:
            yield tail
    except zlib.error as err:
        raise StreamCorrupt(f"gzip stream is corrupt: {err}") from err
    if not seen_input:
        raise StreamCorrupt("gzip stream is empty")
    if not decompressor.eof:
        raise StreamCorrupt("gzip stream ends before its end marker (truncated)")


def _external_decompress(chunks: Iterable[bytes], method: str, runner_log: Any) -> Iterator[bytes]:
    name, *args = EXTERNAL_DECOMPRESSORS[method]
    command = shutil.which(name)
    if command is None:
        raise DecompressorUnavailable(
            f"no {method} decompressor: Python has none built in and no {name!r} command is on PATH"
        )
    runner = PgProcessRunner(runner_log)
    out: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            runner.run([command, *args], tool_env(), stdin=chunks, stdout=out.put)
        except BaseException as err:
            errors.append(err)
        finally:
            out.put(None)

    thread = threading.Thread(target=work, daemon=True, name=f"{name}-decompress")
    thread.start()
    finished = False
    try:
        while (item := out.get()) is not None:
            yield item
        finished = True
    finally:
        if not finished:  # the consumer stopped early: stop the child and unblock the pump
            runner.kill()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.1)
        thread.join()
    if errors:
        err = errors[0]
        if isinstance(err, PgCommandError):
            detail = "; ".join(err.stderr_tail) or f"exit code {err.returncode}"
            raise StreamCorrupt(f"{method} stream is corrupt: {detail}") from err
        raise err


def check_sql_stream(chunks: Iterable[bytes], kind: str) -> int:
    """Read decompressed plain SQL to its end; raise :class:`StreamCorrupt` unless it ends with the
    completion trailer of ``kind`` (``pg_dump`` or ``pg_dumpall``). Returns the number of SQL bytes.

    Only a small tail is kept. After the trailer, pg_dump may write blank lines, ``--`` lines and the
    ``\\unrestrict`` meta-command (PostgreSQL 17.6 / 16.10 / 15.14 and later); nothing else may follow.
    """
    trailer = SQL_TRAILERS[kind]
    tail = b""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        tail = (tail + chunk)[-SQL_TAIL_BYTES:]
    if total == 0:
        raise StreamCorrupt("the SQL stream is empty")
    lines = tail.split(b"\n")
    while lines and (
        not lines[-1].strip() or lines[-1].strip() == b"--" or lines[-1].startswith(b"\\unrestrict ")
    ):
        lines.pop()
    last = lines[-1].strip() if lines else b""
    if last != trailer:
        shown = last[-80:].decode("utf-8", errors="backslashreplace")
        raise StreamCorrupt(
            f"the SQL does not end with {kind}'s completion trailer {trailer.decode()!r} "
            f"(its last line is {shown!r}): the dump is cut short"
        )
    return total


@dataclass(frozen=True)
class TocSummary:
    """What ``pg_restore --list`` showed: entry counts by type and the ``TABLE DATA`` entries."""

    entries: int
    counts: dict[str, int]
    table_data: tuple[str, ...]  # "schema name owner" as pg_restore prints it


def parse_toc(lines: Iterable[str]) -> TocSummary:
    """Parse ``pg_restore --list`` output (``id; catalog oid TYPE schema name owner``; ``;`` comments)."""
    counts: Counter[str] = Counter()
    table_data = []
    for line in lines:
        if not line.strip() or line.startswith(";"):
            continue
        _id, sep, rest = line.partition("; ")
        parts = rest.split(" ", 2)
        if not sep or len(parts) < 3:
            continue
        entry = parts[2]
        kind = next((t for t in MULTI_WORD_TOC_TYPES if entry.startswith(t + " ")), entry.split(" ", 1)[0])
        counts[kind] += 1
        if kind == "TABLE DATA":
            table_data.append(entry[len(kind) + 1 :])
    return TocSummary(sum(counts.values()), dict(sorted(counts.items())), tuple(table_data))


def pg_restore_for(manifest: Manifest, pg_bin_dir: str | os.PathLike[str] | None = None) -> PgBinary:
    """A pg_restore whose major version is >= that of the pg_dump that wrote the archive.

    Raises :class:`PgBinaryNotFound` naming the archive's version and every pg_restore found.
    """
    return restore_binary("pg_restore", manifest, pg_bin_dir)


def restore_binary(
    tool: str, manifest: Manifest, pg_bin_dir: str | os.PathLike[str] | None = None
) -> PgBinary:
    """``pg_restore`` or ``psql`` able to read what ``manifest``'s tool wrote (major >= its major)."""
    version = manifest.client_version
    try:
        major = int(version.split(".")[0])
    except ValueError as err:
        raise PgBinaryNotFound(f"manifest client_version {version!r} is not a PostgreSQL version") from err
    try:
        return choose_binary(tool, major, version, pg_bin_dir)
    except PgBinaryNotFound as err:
        found = "; ".join(str(b) for b in err.found) or "none"
        raise PgBinaryNotFound(
            f"the archive was written by {manifest.client_tool} {version}; reading it needs {tool} "
            f"major version >= {major}, found: {found}. Install the PostgreSQL {major} client tools "
            f"(e.g. postgresql-client-{major}) or point pg_bin_dir at them.",
            err.found,
        ) from err


def list_archive(
    binary: PgBinary,
    dump_format: str,
    *,
    chunks: Iterable[bytes] | None = None,
    directory: Path | None = None,
    runner: PgProcessRunner | None = None,
) -> TocSummary:
    """Run ``pg_restore --list`` on an archive streamed to its stdin (custom, tar) or on a local folder
    (directory). Raises :class:`PgCommandError` when pg_restore cannot read it.

    :param binary: the pg_restore to run (see :func:`pg_restore_for`).
    :param dump_format: ``custom``, ``tar`` or ``directory``.
    :param chunks: the archive's bytes (custom, tar).
    :param directory: the archive's folder (directory).
    :param runner: the process runner (default: a new one logging to this module's logger).
    """
    fmt = parse_format(dump_format)
    argv = [str(binary.path), "--list", f"--format={FORMAT_FLAGS[fmt]}"]
    if fmt == "directory":
        if directory is None:
            raise ValueError("a directory-format archive is listed from a local folder")
        argv.append(str(directory))
    elif chunks is None:
        raise ValueError(f"a {fmt} archive is listed from a stream of chunks")
    lines: list[str] = []
    pending = b""

    def collect(chunk: bytes) -> None:
        nonlocal pending
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines.extend(raw.decode("utf-8", errors="backslashreplace") for raw in complete)

    (runner or PgProcessRunner(log)).run(
        argv, tool_env(), stdout=collect, stdin=chunks if fmt != "directory" else None
    )
    if pending:
        lines.append(pending.decode("utf-8", errors="backslashreplace"))
    return parse_toc(lines)


# ---------------------------------------------------------------------------------------- the checks
class _Fail(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Skip(Exception):
    pass


def parse_max_age(max_age: datetime.timedelta | float | None) -> datetime.timedelta | None:
    if max_age is None:
        return None
    if isinstance(max_age, bool) or not isinstance(max_age, (datetime.timedelta, int, float)):
        raise InvalidOptionError(f"max_age {max_age!r} must be a timedelta or a number of seconds")
    age = max_age if isinstance(max_age, datetime.timedelta) else datetime.timedelta(seconds=max_age)
    if age.total_seconds() <= 0:
        raise InvalidOptionError(f"max_age {max_age!r} must be positive")
    return age


def verify_artifact(path: str | os.PathLike[str], **kwargs: Any) -> VerificationReport:
    """Verify the backup at a local ``path`` (artifact) and ``path.manifest.json``.

    :param path: the artifact (file or folder); the manifest is beside it.
    :param kwargs: as for :func:`verify_backup`.
    """
    return verify_backup(LocalArtifactSource(path), **kwargs)


def verify_backup(
    source: ArtifactSource,
    *,
    verify_checksum: bool = True,
    verify_contents: bool = True,
    verify_tables: bool = True,
    min_size_bytes: int = 1,
    max_age: datetime.timedelta | float | None = None,
    pg_bin_dir: str | None = None,
    runner: PgProcessRunner | None = None,
    now: datetime.datetime | None = None,
) -> VerificationReport:
    """Run the checks (module docstring) on a backup, cheapest first, and return the report.

    :param source: where the artifact and manifest are read from (:class:`LocalArtifactSource`...).
    :param verify_checksum: compare the sha256 with the manifest's (reads every byte).
    :param verify_contents: parse the content (``pg_restore --list``, or the SQL stream to its trailer).
    :param verify_tables: archives: the TOC must hold data for every table the manifest counted.
    :param min_size_bytes: smallest acceptable artifact size (at least 1: an empty dump is never good).
    :param max_age: the manifest's ``finished_at`` must be at most this old (timedelta or seconds).
    :param pg_bin_dir: folder searched first for pg_restore.
    :param runner: the process runner for pg_restore and decompressors (default: a new one).
    :param now: the current time (tests); default: now, UTC.
    :raises ArtifactMissing: the artifact or its manifest is not there yet.
    :raises ArtifactCorrupt: a check failed; ``check`` names it and ``report`` holds what ran.
    """
    if isinstance(min_size_bytes, bool) or not isinstance(min_size_bytes, int) or min_size_bytes < 1:
        raise InvalidOptionError(f"min_size_bytes {min_size_bytes!r} must be a whole number >= 1")
    age_limit = parse_max_age(max_age)
    run = _Verification(source, pg_bin_dir, runner)
    started = time.monotonic()
    try:
        run.exists()
        run.manifest_check()
        if age_limit is not None:
            run.age(age_limit, now)
        run.size(min_size_bytes)
        if verify_checksum:
            run.checksum()
        if verify_contents:
            toc = run.contents()
            if verify_tables:
                run.tables(toc)
    finally:
        run.report.duration_ms = round((time.monotonic() - started) * 1000, 2)
    return run.report


class _Verification:
    """One verification run: the source, the report being filled, and what earlier checks found."""

    def __init__(self, source: ArtifactSource, pg_bin_dir: str | None, runner: PgProcessRunner | None):
        self.source = source
        self.pg_bin_dir = pg_bin_dir
        self.runner = runner
        self.report = VerificationReport(artifact=source.uri, manifest=source.manifest_uri)
        self.raw_manifest = b""
        self.sizes: dict[str, int] | int = 0
        self._manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        assert self._manifest is not None, "the manifest check runs first"
        return self._manifest

    @contextlib.contextmanager
    def check(self, name: str) -> Iterator[list[str]]:
        """Time a check; the body appends its detail to the yielded list, or raises _Fail / _Skip."""
        detail: list[str] = []
        started = time.monotonic()

        def record(status: str, text: str) -> None:
            elapsed = round((time.monotonic() - started) * 1000, 2)
            self.report.checks.append(CheckResult(name, status, elapsed, text))

        try:
            yield detail
        except _Skip as skip:
            record("skipped", str(skip))
            return
        except _Fail as fail:
            record("failed", fail.reason)
            self.report.failed_check = name
            self.report.failure_reason = fail.reason
            raise ArtifactCorrupt(name, fail.reason, self.report) from fail
        record("ok", "; ".join(detail))

    def exists(self) -> None:
        missing = []
        started = time.monotonic()
        try:
            try:
                self.sizes = self.source.artifact_sizes()
            except FileNotFoundError:
                missing.append(f"artifact {self.source.uri}")
            try:
                self.raw_manifest = self.source.manifest_bytes()
            except FileNotFoundError:
                missing.append(f"manifest {self.source.manifest_uri}")
        except ArtifactRefused as err:
            elapsed = round((time.monotonic() - started) * 1000, 2)
            self.report.checks.append(CheckResult("exists", "failed", elapsed, str(err)))
            self.report.failed_check, self.report.failure_reason = "exists", str(err)
            raise ArtifactCorrupt("exists", str(err), self.report) from err
        elapsed = round((time.monotonic() - started) * 1000, 2)
        if missing:
            reason = f"backup not there yet: no {' and no '.join(missing)}"
            self.report.checks.append(CheckResult("exists", "missing", elapsed, reason))
            raise ArtifactMissing(reason, self.report)
        self.report.checks.append(CheckResult("exists", "ok", elapsed, "artifact and manifest are there"))

    def manifest_check(self) -> None:
        source, report = self.source, self.report
        with self.check("manifest") as detail:
            try:
                manifest = Manifest.from_json(self.raw_manifest)
            except ManifestError as err:
                raise _Fail(f"manifest {source.manifest_uri} is unreadable: {err}") from err
            report.kind, report.format = manifest.kind, manifest.format
            report.compression = manifest.compression
            problems = []
            if manifest.kind not in SQL_TRAILERS:
                problems.append(f"kind {manifest.kind!r} is not pg_dump or pg_dumpall")
            if manifest.format not in FORMAT_FLAGS:
                problems.append(f"format {manifest.format!r} is not one of {', '.join(FORMAT_FLAGS)}")
            if Path(source.uri.rstrip("/")).name != manifest.artifact:
                problems.append(f"it describes artifact {manifest.artifact!r}, not {source.uri}")
            directory = manifest.format == "directory"
            is_dir = isinstance(self.sizes, dict)
            if directory != is_dir:
                problems.append(
                    f"it describes a {'directory' if directory else 'file'} artifact but {source.uri} "
                    f"is a {'directory' if is_dir else 'file'}"
                )
            if directory and manifest.files is None:
                problems.append("a directory artifact's manifest must list its files")
            try:
                Compression.parse(manifest.compression)
            except InvalidOptionError as err:
                problems.append(str(err))
            if problems:
                raise _Fail(f"manifest {source.manifest_uri}: " + "; ".join(problems))
            self._manifest = manifest
            detail.append(
                f"{manifest.kind} {manifest.format} archive of {manifest.database or 'the cluster'} by "
                f"{manifest.client_tool} {manifest.client_version}"
            )

    def age(self, limit: datetime.timedelta, now: datetime.datetime | None) -> None:
        manifest = self.manifest
        with self.check("age") as detail:
            try:
                finished = datetime.datetime.fromisoformat(manifest.finished_at)
            except (TypeError, ValueError) as err:
                raise _Fail(f"manifest finished_at {manifest.finished_at!r} is not an ISO-8601 time") from err
            if finished.tzinfo is None:
                finished = finished.replace(tzinfo=datetime.timezone.utc)
            age = (now or datetime.datetime.now(datetime.timezone.utc)) - finished
            if age > limit:
                raise _Fail(
                    f"backup finished at {manifest.finished_at}, {age} ago: older than max_age {limit}"
                )
            detail.append(f"finished {age} ago (max_age {limit})")

    def size(self, min_size_bytes: int) -> None:
        manifest, sizes = self.manifest, self.sizes
        with self.check("size") as detail:
            if isinstance(sizes, dict):
                expected = {f.path: f.size_bytes for f in manifest.files or ()}
                missing = sorted(expected.keys() - sizes.keys())
                extra = sorted(sizes.keys() - expected.keys())
                changed = sorted(p for p in expected.keys() & sizes.keys() if expected[p] != sizes[p])
                problems = []
                if missing:
                    problems.append(f"files missing from the directory: {', '.join(missing)}")
                if extra:
                    problems.append(f"files the manifest does not list: {', '.join(extra)}")
                if changed:
                    problems.append(
                        "files whose size differs: "
                        + ", ".join(f"{p} ({sizes[p]} bytes, manifest {expected[p]})" for p in changed)
                    )
                if problems:
                    raise _Fail("; ".join(problems))
                total = sum(sizes.values())
            else:
                total = sizes
            self.report.size_bytes = total
            if total == 0:
                raise _Fail("the artifact is empty (0 bytes)")
            if total < min_size_bytes:
                raise _Fail(f"the artifact has {total} bytes, fewer than min_size_bytes {min_size_bytes}")
            if total != manifest.size_bytes:
                raise _Fail(f"the artifact has {total} bytes but the manifest says {manifest.size_bytes}")
            detail.append(f"{total} bytes" + (f" in {len(sizes)} files" if isinstance(sizes, dict) else ""))

    def checksum(self) -> None:
        manifest = self.manifest
        with self.check("checksum") as detail:
            try:
                digest = self.source.digest()
            except ArtifactMismatchError as err:  # a remote source's crc32c check of the download
                raise _Fail(str(err)) from err
            self.report.sha256 = digest.sha256
            if manifest.format == "directory":
                actual = {f.path: f for f in digest.files or ()}
                expected = {f.path: f for f in manifest.files or ()}
                if actual.keys() != expected.keys():
                    missing = sorted(expected.keys() - actual.keys())
                    extra = sorted(actual.keys() - expected.keys())
                    raise _Fail(f"directory files changed while reading: missing {missing}, extra {extra}")
                bad = sorted(p for p in expected if expected[p].sha256 != actual[p].sha256)
                if bad:
                    raise _Fail(f"sha256 differs from the manifest for: {', '.join(bad)}")
                listed = combine_file_digests(tuple(expected.values()))
                if listed != manifest.sha256:
                    raise _Fail(
                        f"the manifest's combined sha256 {manifest.sha256} does not match its own file "
                        f"digests ({listed}): the manifest was edited"
                    )
            if digest.sha256 != manifest.sha256:
                raise _Fail(f"sha256 is {digest.sha256} but the manifest says {manifest.sha256}")
            if digest.size_bytes != manifest.size_bytes:
                raise _Fail(f"read {digest.size_bytes} bytes but the manifest says {manifest.size_bytes}")
            detail.append(f"sha256 {digest.sha256}")

    def contents(self) -> TocSummary | None:
        manifest, report, source = self.manifest, self.report, self.source
        toc: TocSummary | None = None
        with self.check("contents") as detail:
            if manifest.format == "plain":
                method = Compression.parse(manifest.compression).method
                try:
                    report.sql_bytes = check_sql_stream(
                        decompressed_chunks(source.chunks(), method), manifest.kind
                    )
                except DecompressorUnavailable as err:
                    raise _Skip(f"skipped: {err}") from err
                except StreamCorrupt as err:
                    raise _Fail(str(err)) from err
                trailer = SQL_TRAILERS[manifest.kind].decode()
                detail.append(f"{report.sql_bytes} bytes of SQL ({method}) end with {trailer!r}")
                return None
            try:
                binary = pg_restore_for(manifest, self.pg_bin_dir)
            except PgBinaryNotFound as err:
                raise _Fail(str(err)) from err
            report.pg_restore = str(binary)
            try:
                if manifest.format == "directory":
                    with source.local_copy() as folder:
                        toc = list_archive(binary, manifest.format, directory=folder, runner=self.runner)
                else:
                    toc = list_archive(binary, manifest.format, chunks=source.chunks(), runner=self.runner)
            except PgCommandError as err:
                tail = "; ".join(err.stderr_tail) or f"exit code {err.returncode}"
                raise _Fail(f"{binary} cannot read the {manifest.format} archive: {tail}") from err
            except ArtifactMismatchError as err:  # a remote directory's download failed its crc32c check
                raise _Fail(str(err)) from err
            if toc.entries == 0:
                raise _Fail(f"{binary} lists no entries in the {manifest.format} archive")
            report.toc_entries = toc.entries
            report.toc_entry_counts = toc.counts
            detail.append(f"{binary} lists {toc.entries} TOC entries")
        return toc

    def tables(self, toc: TocSummary | None) -> None:
        manifest, report = self.manifest, self.report
        with self.check("tables") as detail:
            if toc is None:
                raise _Skip("skipped: plain SQL has no table of contents")
            if manifest.row_counts is None:
                raise _Skip("skipped: the manifest has no row counts")
            missing = []
            for count in manifest.row_counts:
                prefix = f"{count.schema} {count.table}"
                if any(entry == prefix or entry.startswith(prefix + " ") for entry in toc.table_data):
                    report.tables_in_toc.append(f"{count.schema}.{count.table}")
                else:
                    missing.append(f"{count.schema}.{count.table}")
            if missing:
                raise _Fail(f"the archive has no TABLE DATA entry for: {', '.join(missing)}")
            detail.append(f"all {len(manifest.row_counts)} counted tables have data in the archive")


__all__ = [
    "CHECKS",
    "ArtifactCorrupt",
    "ArtifactMissing",
    "ArtifactRefused",
    "ArtifactSource",
    "CheckResult",
    "LocalArtifactSource",
    "StreamCorrupt",
    "TocSummary",
    "VerificationError",
    "VerificationReport",
    "check_artifact_path",
    "check_sql_stream",
    "decompressed_chunks",
    "list_archive",
    "local_chunks",
    "open_source",
    "parse_max_age",
    "parse_toc",
    "pg_restore_for",
    "restore_binary",
    "verify_artifact",
    "verify_backup",
]
