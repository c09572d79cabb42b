"""The checks, as a list of small objects run cheapest first (``CHECKS``).

Each check has a ``name`` (what a failure names), an optional ``switch`` (the keyword of
:func:`verify_backup`, the sensor and the drill that turns it off) and ``requires`` (a check whose
result it reads). Adding a check is one class here plus one entry in ``CHECKS``; the switches the
sensor and the drill offer derive from that list (``SWITCHES``).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airflow_provider_pgbackup.binaries import PgBinaryNotFound, restore_binary
from airflow_provider_pgbackup.content import ContentRecord, ContentRecordError
from airflow_provider_pgbackup.encryption import (
    AGE_SUFFIX,
    CiphertextCorrupt,
    check_header,
    encryption_mismatch,
    read_header,
)
from airflow_provider_pgbackup.manifest import Manifest, ManifestError
from airflow_provider_pgbackup.options import FORMAT_FLAGS, Compression, InvalidOptionError
from airflow_provider_pgbackup.pipeline import DecompressorUnavailable, StreamCorrupt, decompressed_chunks
from airflow_provider_pgbackup.process import PgCommandError, PgProcessRunner
from airflow_provider_pgbackup.sqlscript import ScriptScanner
from airflow_provider_pgbackup.storage import ArtifactMismatchError, ArtifactRefused, ArtifactSource
from airflow_provider_pgbackup.storage.base import combine_file_digests
from airflow_provider_pgbackup.verify.archive import SQL_TRAILERS, TocSummary, check_sql_stream, list_archive
from airflow_provider_pgbackup.verify.decrypt import decrypted_copy, decrypted_stream, plaintext_digest
from airflow_provider_pgbackup.verify.report import (
    ArtifactCorrupt,
    ArtifactMissing,
    BackupMismatch,
    CheckResult,
    VerificationReport,
    VerificationUnavailable,
)


class Fail(Exception):
    """A check saw bad bytes: the backup is corrupt (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Mismatch(Fail):
    """The backup is not what its name or the caller says (refused, but no evidence about the bytes)."""


class Skip(Exception):
    """A check does not apply to this backup (its reason is recorded)."""


class Unavailable(Exception):
    """A check cannot run here (a missing tool): no verdict on the bytes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Run:
    """One verification run: the source, what the caller asked, the report, and what checks found."""

    source: ArtifactSource
    pg_bin_dir: str | None
    runner: PgProcessRunner | None
    min_size_bytes: int
    max_age: datetime.timedelta | None
    now: datetime.datetime | None
    report: VerificationReport
    raw_manifest: bytes = b""
    sizes: dict[str, int] | int = 0
    toc: TocSummary | None = None
    passed: set[str] = field(default_factory=set)
    #: pyrage identities from ``decryption_conn_id`` (never logged); None: no key, ciphertext checks only
    identities: list[Any] | None = None
    #: plain SQL: also scan what the script would do beyond its database (``report.sql_script``)
    scan_script: bool = False
    _manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        assert self._manifest is not None, "the manifest check runs first"
        return self._manifest


class Check:
    """One check. ``run`` appends what it saw to ``detail``, or raises :class:`Fail` / :class:`Skip`."""

    name: ClassVar[str]
    switch: ClassVar[str | None] = None
    requires: ClassVar[str | None] = None

    def applies(self, run: Run) -> bool:
        """False when the check is not asked for at all (not even recorded as skipped)."""
        return True

    def run(self, run: Run, detail: list[str]) -> None:
        raise NotImplementedError


class Exists(Check):
    """The artifact and its manifest are there; missing raises :class:`ArtifactMissing` ("not yet")."""

    name = "exists"

    def run(self, run: Run, detail: list[str]) -> None:
        missing = []
        try:
            try:
                run.sizes = run.source.artifact_sizes()
            except FileNotFoundError:
                missing.append(f"artifact {run.source.location.uri}")
            try:
                run.raw_manifest = run.source.manifest_bytes()
            except FileNotFoundError:
                missing.append(f"manifest {run.source.location.manifest_uri}")
        except ArtifactRefused as err:
            raise Fail(str(err)) from err
        if missing:
            hint = ""
            if len(missing) == 2 and run.source.location.is_local:
                hint = (
                    " (if the dump ran on another worker without shared storage it will never be here: "
                    "use a gs:// staging location, or pass the dump's 'artifact_uri' so this fails at once)"
                )
            raise ArtifactMissing(f"backup not there yet: no {' and no '.join(missing)}{hint}", run.report)
        detail.append("artifact and manifest are there")


class ManifestCheck(Check):
    """The manifest parses and describes this artifact."""

    name = "manifest"

    def run(self, run: Run, detail: list[str]) -> None:
        location, report = run.source.location, run.report
        try:
            manifest = Manifest.from_json(run.raw_manifest)
        except ManifestError as err:
            raise Fail(f"manifest {location.manifest_uri} is unreadable: {err}") from err
        report.kind, report.format = manifest.kind, manifest.format
        report.compression = manifest.compression
        problems = []
        if manifest.kind not in SQL_TRAILERS:
            problems.append(f"kind {manifest.kind!r} is not pg_dump or pg_dumpall")
        if manifest.format not in FORMAT_FLAGS:
            problems.append(f"format {manifest.format!r} is not one of {', '.join(FORMAT_FLAGS)}")
        if location.basename != manifest.artifact:
            problems.append(f"it describes artifact {manifest.artifact!r}, not {location.uri}")
        directory = manifest.format == "directory"
        is_dir = isinstance(run.sizes, dict)
        if directory != is_dir:
            problems.append(
                f"it describes a {'directory' if directory else 'file'} artifact but {location.uri} "
                f"is a {'directory' if is_dir else 'file'}"
            )
        if directory and manifest.files is None:
            problems.append("a directory artifact's manifest must list its files")
        try:
            Compression.parse(manifest.compression)
        except InvalidOptionError as err:
            problems.append(str(err))
        if manifest.content is not None:
            try:
                ContentRecord.from_dict(manifest.content)
            except ContentRecordError as err:
                problems.append(f"its content record is malformed: {err}")
        if problems:
            raise Fail(f"manifest {location.manifest_uri}: " + "; ".join(problems))
        run._manifest = manifest
        detail.append(
            f"{manifest.kind} {manifest.format} archive of {manifest.database or 'the cluster'} by "
            f"{manifest.client_tool} {manifest.client_version}"
        )


class Age(Check):
    """(only with ``max_age``) the manifest's ``finished_at`` is recent enough."""

    name = "age"

    def applies(self, run: Run) -> bool:
        return run.max_age is not None

    def run(self, run: Run, detail: list[str]) -> None:
        manifest, limit = run.manifest, run.max_age
        assert limit is not None
        try:
            finished = datetime.datetime.fromisoformat(manifest.finished_at)
        except (TypeError, ValueError) as err:
            raise Fail(f"manifest finished_at {manifest.finished_at!r} is not an ISO-8601 time") from err
        if finished.tzinfo is None:
            finished = finished.replace(tzinfo=datetime.timezone.utc)
        age = (run.now or datetime.datetime.now(datetime.timezone.utc)) - finished
        if age > limit:
            raise Fail(f"backup finished at {manifest.finished_at}, {age} ago: older than max_age {limit}")
        detail.append(f"finished {age} ago (max_age {limit})")


class Size(Check):
    """size > 0, >= ``min_size_bytes`` and equal to the manifest's; a directory holds exactly the files
    its manifest lists, with their sizes."""

    name = "size"

    def run(self, run: Run, detail: list[str]) -> None:
        manifest, sizes = run.manifest, run.sizes
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
                raise Fail("; ".join(problems))
            total = sum(sizes.values())
        else:
            total = sizes
        run.report.size_bytes = total
        if total == 0:
            raise Fail("the artifact is empty (0 bytes)")
        if total < run.min_size_bytes:
            raise Fail(f"the artifact has {total} bytes, fewer than min_size_bytes {run.min_size_bytes}")
        if total != manifest.size_bytes:
            raise Fail(f"the artifact has {total} bytes but the manifest says {manifest.size_bytes}")
        detail.append(f"{total} bytes" + (f" in {len(sizes)} files" if isinstance(sizes, dict) else ""))


class Checksum(Check):
    """sha256 equal to the manifest's (directory: every file's digest and the combined digest)."""

    name = "checksum"
    switch = "verify_checksum"

    def run(self, run: Run, detail: list[str]) -> None:
        manifest = run.manifest
        try:
            digest = run.source.digest()
        except ArtifactMismatchError as err:  # a remote source's crc32c check of the download
            raise Fail(str(err)) from err
        run.report.sha256 = digest.sha256
        if manifest.format == "directory":
            actual = {f.path: f for f in digest.files or ()}
            expected = {f.path: f for f in manifest.files or ()}
            if actual.keys() != expected.keys():
                missing = sorted(expected.keys() - actual.keys())
                extra = sorted(actual.keys() - expected.keys())
                raise Fail(f"directory files changed while reading: missing {missing}, extra {extra}")
            bad = sorted(p for p in expected if expected[p].sha256 != actual[p].sha256)
            if bad:
                raise Fail(f"sha256 differs from the manifest for: {', '.join(bad)}")
            listed = combine_file_digests(tuple(expected.values()))
            if listed != manifest.sha256:
                raise Fail(
                    f"the manifest's combined sha256 {manifest.sha256} does not match its own file "
                    f"digests ({listed}): the manifest was edited"
                )
        if digest.sha256 != manifest.sha256:
            raise Fail(f"sha256 is {digest.sha256} but the manifest says {manifest.sha256}")
        if digest.size_bytes != manifest.size_bytes:
            raise Fail(f"read {digest.size_bytes} bytes but the manifest says {manifest.size_bytes}")
        detail.append(f"sha256 {digest.sha256}")


class EncryptionHeader(Check):
    """(encrypted backups, and any the caller expects encrypted) the name, the manifest and the caller
    agree that the backup is encrypted, and every file starts with a well-formed age v1 header whose
    stanzas match the recipients the manifest records (no key needed). An X25519 stanza does not name its
    recipient: their number is compared; an ssh stanza carries its key's tag: each recorded ssh key is
    found. A ``.age`` name or a decryption key for a backup whose manifest records no encryption is a
    :class:`Mismatch` (refused, a downgrade: never passed as plaintext); bytes that are not age are
    corrupt."""

    name = "encryption"

    def applies(self, run: Run) -> bool:
        named = run.source.location.basename.endswith(AGE_SUFFIX)
        return run.manifest.encryption is not None or named or run.identities is not None

    def run(self, run: Run, detail: list[str]) -> None:
        manifest, source = run.manifest, run.source
        mismatch = encryption_mismatch(
            source.location.uri, manifest.encryption is not None, key_given=run.identities is not None
        )
        if mismatch is not None:
            raise Mismatch(mismatch)
        assert manifest.encryption is not None
        recipients = manifest.encryption["recipients"]
        try:
            if manifest.format != "directory":
                seen = check_header(read_header(source.chunks()), recipients)
            else:
                not_age = [f.path for f in manifest.files or () if not f.path.endswith(AGE_SUFFIX)]
                if not_age:
                    raise Fail(f"files not encrypted (no {AGE_SUFFIX!r} suffix): {', '.join(not_age)}")
                with source.local_copy() as folder:
                    for entry in manifest.files or ():
                        with (folder / entry.path).open("rb") as handle:
                            try:
                                seen = check_header(
                                    read_header(iter(lambda: handle.read(65536), b"")), recipients
                                )
                            except CiphertextCorrupt as err:
                                raise CiphertextCorrupt(f"{entry.path}: {err}") from err
        except CiphertextCorrupt as err:
            raise Fail(f"not a well-formed age file for the recorded recipients: {err}") from err
        detail.append(f"age v1 header with {seen} stanza(s) for {len(recipients)} recorded recipient(s)")


class Decryption(Check):
    """(encrypted backups, with a key) decrypt every byte: age authenticates it; the plaintext's size and
    sha256 equal the manifest's. A key that is not a recipient raises ``NoMatchingIdentity`` (not corrupt)."""

    name = "decryption"
    switch = "verify_checksum"
    requires = "encryption"

    def applies(self, run: Run) -> bool:
        return run.manifest.encryption is not None

    def run(self, run: Run, detail: list[str]) -> None:
        manifest = run.manifest
        assert manifest.encryption is not None
        if run.identities is None:
            raise Skip("skipped: no decryption_conn_id: the plaintext is not checked")
        try:
            size, sha256 = plaintext_digest(run.source, manifest, run.identities)
        except CiphertextCorrupt as err:
            raise Fail(str(err)) from err
        expected = manifest.encryption
        if sha256 != expected["plaintext_sha256"] or size != expected["plaintext_size_bytes"]:
            raise Fail(
                f"the decrypted plaintext ({size} bytes, sha256 {sha256}) differs from the manifest's "
                f"({expected['plaintext_size_bytes']} bytes, sha256 {expected['plaintext_sha256']})"
            )
        detail.append(f"decrypted and authenticated: {size} bytes of plaintext, sha256 {sha256}")


class Contents(Check):
    """custom / tar / directory: ``pg_restore --list`` succeeds, run by a pg_restore whose major version
    can read the archive. Plain SQL: the stream decompresses cleanly and ends with the tool's trailer."""

    name = "contents"
    switch = "verify_contents"

    def run(self, run: Run, detail: list[str]) -> None:
        manifest, report, source = run.manifest, run.report, run.source
        encrypted = manifest.encryption is not None
        if encrypted and run.identities is None:
            raise Skip("skipped: the backup is encrypted and no decryption_conn_id was given")
        identities = run.identities or []
        if manifest.format == "plain":
            method = Compression.parse(manifest.compression).method
            stream = decrypted_stream(source, manifest, identities) if encrypted else source.chunks()
            scanner = ScriptScanner() if run.scan_script else None
            try:
                report.sql_bytes = check_sql_stream(
                    decompressed_chunks(stream, method), manifest.kind, scanner
                )
            except DecompressorUnavailable as err:
                raise Skip(f"skipped: {err}") from err
            except StreamCorrupt as err:
                raise Fail(str(err)) from err
            finally:
                if encrypted:
                    stream.close()  # type: ignore[attr-defined]
            if scanner is not None:
                report.sql_script = scanner.finish()
            trailer = SQL_TRAILERS[manifest.kind].decode()
            detail.append(f"{report.sql_bytes} bytes of SQL ({method}) end with {trailer!r}")
            return
        try:
            binary = restore_binary(
                "pg_restore", manifest.client_tool, manifest.client_version, run.pg_bin_dir
            )
        except PgBinaryNotFound as err:
            raise Unavailable(str(err)) from err
        report.pg_restore = str(binary)
        try:
            if manifest.format == "directory":
                copy = decrypted_copy(source, manifest, identities) if encrypted else source.local_copy()
                with copy as folder:
                    toc = list_archive(binary, manifest.format, directory=folder, runner=run.runner)
            elif encrypted:
                stream = decrypted_stream(source, manifest, identities)
                try:
                    toc = list_archive(binary, manifest.format, chunks=stream, runner=run.runner)
                finally:
                    stream.close()
            else:
                toc = list_archive(binary, manifest.format, chunks=source.chunks(), runner=run.runner)
        except CiphertextCorrupt as err:
            raise Fail(str(err)) from err
        except PgCommandError as err:
            if err.killed:
                raise  # the task is being stopped: that says nothing about the archive
            tail = "; ".join(err.stderr_tail) or f"exit code {err.returncode}"
            if err.returncode < 0:
                raise Unavailable(f"{binary} was ended by signal {-err.returncode}: {tail}") from err
            raise Fail(f"{binary} cannot read the {manifest.format} archive: {tail}") from err
        except ArtifactMismatchError as err:  # a remote directory's download failed its crc32c check
            raise Fail(str(err)) from err
        # pg_restore read the whole table of contents (exit 0): an empty one is an empty database's
        # dump, not damage; only a manifest that counted tables makes it one.
        if toc.entries == 0 and manifest.row_counts:
            raise Fail(
                f"{binary} lists no entries in the {manifest.format} archive, but the manifest counted "
                f"{len(manifest.row_counts)} tables"
            )
        report.toc_entries = toc.entries
        report.toc_entry_counts = toc.counts
        run.toc = toc
        if toc.entries == 0:
            detail.append(f"{binary} reads the table of contents: no entries (an empty database)")
        else:
            detail.append(f"{binary} lists {toc.entries} TOC entries")


class Tables(Check):
    """archives only: the table of contents has a ``TABLE DATA`` entry for every table whose rows the
    manifest counted."""

    name = "tables"
    switch = "verify_tables"
    requires = "contents"

    def run(self, run: Run, detail: list[str]) -> None:
        manifest, report, toc = run.manifest, run.report, run.toc
        if toc is None:
            raise Skip("skipped: plain SQL has no table of contents")
        if manifest.row_counts is None:
            raise Skip("skipped: the manifest has no row counts")
        missing = []
        for count in manifest.row_counts:
            prefix = f"{count.schema} {count.table}"
            if any(entry == prefix or entry.startswith(prefix + " ") for entry in toc.table_data):
                report.tables_in_toc.append(f"{count.schema}.{count.table}")
            else:
                missing.append(f"{count.schema}.{count.table}")
        if missing:
            raise Fail(f"the archive has no TABLE DATA entry for: {', '.join(missing)}")
        detail.append(f"all {len(manifest.row_counts)} counted tables have data in the archive")


#: The checks, cheapest first.
CHECKS: tuple[Check, ...] = (
    Exists(),
    ManifestCheck(),
    Age(),
    Size(),
    Checksum(),
    EncryptionHeader(),
    Decryption(),
    Contents(),
    Tables(),
)
#: The keywords that switch checks off, in order (sensor, drill and :func:`verify_backup` take them).
SWITCHES: tuple[str, ...] = tuple(dict.fromkeys(c.switch for c in CHECKS if c.switch))


def check_switches(switches: Mapping[str, Any]) -> dict[str, bool]:
    """Every switch with its value (default True); an unknown name or a non-boolean is an error."""
    unknown = sorted(set(switches) - set(SWITCHES))
    if unknown:
        raise InvalidOptionError(
            f"unknown verification switches {unknown}; the checks offer: {', '.join(SWITCHES)}"
        )
    values = {name: switches.get(name, True) for name in SWITCHES}
    for name, value in values.items():
        if not isinstance(value, bool):
            raise InvalidOptionError(f"{name} {value!r} must be True or False")
    return values


def run_checks(run: Run, switches: Mapping[str, bool]) -> None:
    """Run every check that applies, in order; the first failure raises naming its check."""
    for check in CHECKS:
        if check.switch and not switches[check.switch]:
            continue
        if check.requires and check.requires not in run.passed:
            continue
        if not check.applies(run):
            continue
        detail: list[str] = []
        started = time.monotonic()

        def record(status: str, text: str, started: float = started, name: str = check.name) -> None:
            elapsed = round((time.monotonic() - started) * 1000, 2)
            run.report.checks.append(CheckResult(name, status, elapsed, text))

        try:
            check.run(run, detail)
        except Skip as skip:
            record("skipped", str(skip))
            continue
        except ArtifactMissing as missing:
            record("missing", str(missing))
            raise
        except Unavailable as unavailable:
            record("unavailable", unavailable.reason)
            raise VerificationUnavailable(check.name, unavailable.reason, run.report) from unavailable
        except Fail as fail:
            record("failed", fail.reason)
            run.report.failed_check = check.name
            run.report.failure_reason = fail.reason
            outcome = BackupMismatch if isinstance(fail, Mismatch) else ArtifactCorrupt
            raise outcome(check.name, fail.reason, run.report) from fail
        record("ok", "; ".join(detail))
        run.passed.add(check.name)
