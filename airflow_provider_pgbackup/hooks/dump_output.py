"""Where a dump's output goes (:class:`DumpOutput`): the storage target, through the age stage for a
single-file format; a folder pg_dump writes itself for the directory format (a private plaintext folder
when it is encrypted afterwards, file by file); and the reader of pg_dump's COPY data when the dump's rows
are measured from it; and how a finished dump is committed, its manifest last (:func:`finish_backup`).
Used by :meth:`~airflow_provider_pgbackup.hooks.pg_dump.PgDumpHook.dump` and ``dumpall``."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pendulum

from airflow_provider_pgbackup import __version__
from airflow_provider_pgbackup.binaries import PgBinary
from airflow_provider_pgbackup.catalog import ServerInfo
from airflow_provider_pgbackup.content import CopyDigest, StreamResult, digest_directory
from airflow_provider_pgbackup.encryption import AGE_FORMAT, AGE_SUFFIX, AgeEncryptStage, encrypt_file
from airflow_provider_pgbackup.manifest import ENCRYPTED_SCHEMA_VERSION, FileDigest, Manifest
from airflow_provider_pgbackup.options import Compression, PgDumpOptions
from airflow_provider_pgbackup.pipeline import BackgroundWriter, Pipeline, Stage, TeeStage
from airflow_provider_pgbackup.scratch import private_folder
from airflow_provider_pgbackup.storage import ArtifactTarget
from airflow_provider_pgbackup.storage.base import combine_file_digests
from airflow_provider_pgbackup.units import format_bytes

#: Where pg_dump writes a directory-format dump that is encrypted afterwards: in a private (0700)
#: ``plaintext`` scratch folder in TMPDIR (``scratch.private_folder``), never in the destination. The
#: folder goes when the dump ends, however it ends; one a SIGKILL stranded goes at the next task's sweep.
PLAINTEXT_FOLDER = ".plaintext"
#: Bytes of pg_dump's output that may wait for the reader of its COPY data (it keeps pace, or pg_dump waits).
DIGEST_QUEUE_BYTES = 2 * 1024 * 1024


def encryption_record(recipients: tuple[str, ...], size: int, sha256: str) -> dict[str, Any]:
    return {
        "format": AGE_FORMAT,
        "recipients": list(recipients),
        "plaintext_size_bytes": size,
        "plaintext_sha256": sha256,
    }


class DumpOutput:
    """Where pg_dump's output goes: the target (through age for single-file formats with recipients),
    or, for the directory format, a folder pg_dump writes itself (its plaintext subfolder when encrypted);
    and, when the dump's rows are measured from it, a reader of its COPY data (:class:`CopyDigest`, in a
    thread of its own fed through a bounded queue; a directory's files are read once pg_dump is done)."""

    def __init__(
        self, target: ArtifactTarget, recipients: tuple[str, ...], options: PgDumpOptions, from_stream: bool
    ) -> None:
        self.target = target
        self.recipients = recipients
        self.options = options
        self.stage: AgeEncryptStage | None = None
        self.directory_file = target.staging_directory
        self.staging = target.staging_directory
        self._plaintext = contextlib.ExitStack()  # an encrypted directory dump's plaintext folder
        self.stream: StreamResult | None = None
        self._from_stream = from_stream
        self._digest: CopyDigest | None = None
        self._reader: BackgroundWriter | None = None
        stages: list[Stage] = []
        if self.directory_file is None and from_stream:
            self._digest = CopyDigest(
                options.format,
                gzip=options.format == "plain" and options.compression.method == "gzip",
                checksums=options.record_checksums,
            )
            self._reader = BackgroundWriter(
                self._digest.feed, max_queued_bytes=DIGEST_QUEUE_BYTES, name="copy-digest"
            )
            stages.append(TeeStage(self._reader.write))
        if self.directory_file is not None and recipients:
            self.directory_file.mkdir(mode=0o700, exist_ok=True)
            # pg_dump's plaintext goes to a private scratch folder the sweep finds after a SIGKILL,
            # never into the destination; each file is encrypted into the staging folder.
            scratch = self._plaintext.enter_context(private_folder("plaintext"))
            self.directory_file = scratch / PLAINTEXT_FOLDER
            self.directory_file.mkdir(mode=0o700)
        elif recipients:
            self.stage = AgeEncryptStage(recipients)
            stages.append(self.stage)
        self._pipeline = Pipeline(target.write, stages) if stages else None

    @property
    def write(self) -> Callable[[bytes], None] | None:
        """pg_dump's stdout consumer (None: pg_dump writes a directory itself)."""
        if self.directory_file is not None:
            return None
        return self._pipeline.write if self._pipeline is not None else self.target.write

    def close(self) -> None:
        """pg_dump finished: flush the stages, and read what it dumped (:attr:`stream`)."""
        if self._pipeline is not None:
            self._pipeline.close()
        if self._reader is not None and self._digest is not None:
            self._reader.close()
            self.stream = self._digest.close()
        elif self._from_stream and self.directory_file is not None:
            self.stream = digest_directory(
                self.directory_file, self.options.jobs or 1, checksums=self.options.record_checksums
            )

    def abort(self) -> None:
        if self._reader is not None:
            self._reader.abort()
        if self.stage is not None:
            self.stage.abort()

    def close_plaintext(self) -> None:
        """Remove the plaintext scratch folder (whatever happened)."""
        self._plaintext.close()

    def encryption_record(self, log: Any) -> dict[str, Any] | None:
        """The manifest's ``encryption`` field; a directory archive is encrypted file by file here."""
        if self.stage is not None:
            return encryption_record(self.recipients, self.stage.plaintext_size, self.stage.plaintext_sha256)
        if self.recipients and self.directory_file is not None and self.staging is not None:
            return _encrypt_directory(self.directory_file, self.recipients, self.staging, log)
        return None


def _encrypt_directory(
    plaintext: Path, recipients: tuple[str, ...], staging: Path, log: Any
) -> dict[str, Any]:
    """Encrypt every file pg_dump wrote into ``plaintext`` (a private scratch folder) to
    ``<name>.age`` in the target's ``staging`` folder, removing each plaintext file at once."""
    files = []
    for path in sorted(p for p in plaintext.rglob("*") if p.is_file()):
        relative = path.relative_to(plaintext)
        out = staging / (relative.as_posix() + AGE_SUFFIX)
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        size, sha256 = encrypt_file(path, out, recipients)
        path.unlink()
        files.append(FileDigest(relative.as_posix(), size, sha256))
    shutil.rmtree(plaintext)
    log.info("Encrypted the %d files of the directory archive with age", len(files))
    return encryption_record(recipients, sum(f.size_bytes for f in files), combine_file_digests(tuple(files)))


def finish_backup(
    target: ArtifactTarget,
    binary: PgBinary,
    server: ServerInfo,
    started: pendulum.DateTime,
    log: Any,
    *,
    compression: Compression,
    **fields: Any,
) -> Manifest:
    """Commit the artifact, then write its manifest, last; ``fields`` are what differs per tool
    (``compression``: the parsed :class:`~airflow_provider_pgbackup.options.Compression` the dump used,
    recorded as its spec, ``"gzip:6"``...)."""
    if fields.get("encryption") is not None:
        fields["schema_version"] = ENCRYPTED_SCHEMA_VERSION
    digest = target.commit()
    finished = pendulum.now("UTC")
    manifest = Manifest(
        kind=binary.tool,
        artifact=target.location.basename,
        server_version=server.version,
        server_version_num=server.version_num,
        client_tool=binary.tool,
        client_version=binary.version,
        started_at=started.isoformat(),
        finished_at=finished.isoformat(),
        duration_seconds=round((finished - started).total_seconds(), 3),
        size_bytes=digest.size_bytes,
        sha256=digest.sha256,
        tool_version=__version__,
        files=digest.files,
        compression=str(compression),  # the manifest's JSON holds the spec ("gzip:6"...)
        **fields,
    )
    write_manifest_or_undo(target, manifest)
    log.info(
        "Backup finished: %s (%s, sha256 %s), manifest %s",
        target.location.uri,
        format_bytes(manifest.size_bytes),
        manifest.sha256,
        target.location.manifest_uri,
    )
    return manifest


def write_manifest_or_undo(target: ArtifactTarget, manifest: Manifest) -> None:
    """Write the manifest through the target (last); if that fails the artifact must not look finished."""
    try:
        target.write_manifest(manifest)
    except BaseException:
        target.remove_committed()
        raise
