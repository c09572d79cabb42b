"""A full disk while writing an artifact names the artifact and the filesystem (issue 20, "also found")."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from airflow_provider_pgbackup.storage import open_target
from tests.hooks.test_pg_dump import tiny_disk  # a real 256 KiB tmpfs (root only; skipped elsewhere)

__all__ = ["tiny_disk"]


def test_a_full_disk_names_the_artifact_and_the_filesystem(tiny_disk: Path) -> None:
    path = tiny_disk / "backups" / "shop.dump"
    target = open_target(str(path))
    with pytest.raises(OSError) as raised:  # noqa: PT011 - the message is what is checked
        target.write(b"x" * 4 * 1024 * 1024)  # 16 x the filesystem
    target.abort()

    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC
    assert "No space left on device" in message
    assert f"writing the artifact {path}" in message
    assert f"the tmpfs filesystem mounted at {tiny_disk}" in message
    assert list((tiny_disk / "backups").iterdir()) == []  # nothing left that looks finished
