"""The checks of what the bytes hold: an encrypted backup's age header (and, with a key, its plaintext),
an archive's table of contents (``pg_restore --list``) or plain SQL's completion trailer, and that every
table the manifest counted has its data in the archive."""

from __future__ import annotations

from airflow_provider_pgbackup.binaries import PgBinaryNotFound, restore_binary
from airflow_provider_pgbackup.encryption import (
    AGE_SUFFIX,
    CiphertextCorrupt,
    check_header,
    encryption_mismatch,
    read_header,
)
from airflow_provider_pgbackup.pipeline import DecompressorUnavailable, StreamCorrupt, decompressed_chunks
from airflow_provider_pgbackup.process import PgCommandError
from airflow_provider_pgbackup.sqlscript import ScriptScanner
from airflow_provider_pgbackup.storage import ArtifactMismatchError
from airflow_provider_pgbackup.verify.archive import SQL_TRAILERS, check_sql_stream, list_archive
from airflow_provider_pgbackup.verify.check import Check, Fail, Mismatch, Run, Skip, Unavailable
from airflow_provider_pgbackup.verify.decrypt import decrypted_copy, decrypted_stream, plaintext_digest


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
            method = manifest.compression_spec.method
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
