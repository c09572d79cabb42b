"""``overwrite=True`` replaces only a finished backup of this provider, on every store (issue 20, item 2).

A finished backup of ours: an artifact its manifest (this provider's format, naming it) describes. Anything
else at the path (a folder of someone's files, a file without a manifest, a file its manifest does not
describe, a symbolic link, an object another tool wrote) is refused before any connection is made, and
something put at the path while the dump runs is never overwritten either.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.manifest import MANIFEST_SUFFIX, FileDigest, Manifest, manifest_path_for
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage import ObjectConflictError, open_target
from airflow_provider_pgbackup.storage.files import digest_directory
from tests.gcs_emulator import synthetic_backup
from tests.object_stores import Store


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path below ``root`` with its bytes (None for a folder)."""
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in root.rglob("*")}


def _someones_folder(root: Path) -> tuple[Path, str]:
    shop = root / "shop"
    (shop / "2025").mkdir(parents=True)
    (shop / "2025" / "jan.dump").write_bytes(b"january")
    (shop / "2025" / "feb.dump").write_bytes(b"february")
    (shop / "README.txt").write_text("the shop's own archive")
    return shop, "directory"


def _file_without_manifest(root: Path) -> tuple[Path, str]:
    (root / "shop").write_bytes(b"someone's file")
    return root / "shop", "custom"


def _file_its_manifest_does_not_describe(root: Path) -> tuple[Path, str]:
    artifact, _ = synthetic_backup(root, "shop", size=16)
    artifact.write_bytes(b"replaced by someone: 33 bytes long")
    return artifact, "custom"


def _a_manifest_that_is_not_ours(root: Path) -> tuple[Path, str]:
    (root / f"shop{MANIFEST_SUFFIX}").write_text("not a manifest of this provider")
    return root / "shop", "custom"


def _symbolic_link(root: Path) -> tuple[Path, str]:
    synthetic_backup(root, "real.dump", size=16)
    (root / "shop").symlink_to(root / "real.dump")
    return root / "shop", "custom"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_someones_folder, "a folder of 3 files (2025/feb.dump, 2025/jan.dump, README.txt)"),
        (_file_without_manifest, "a file of 14 bytes and no manifest"),
        (_file_its_manifest_does_not_describe, "a file of 34 bytes that its manifest does not describe"),
        (_a_manifest_that_is_not_ours, "a manifest that is not one of this provider's"),
        (_symbolic_link, "a symbolic link"),
    ],
)
def test_overwrite_refuses_what_is_not_a_finished_backup_of_ours_before_connecting(
    tmp_path: Path, make, says: str
) -> None:
    path, dump_format = make(tmp_path)
    before = tree(tmp_path)
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="no_such_connection",  # reached only if the refusal came too late
        output_path=str(path),
        format=dump_format,
        overwrite=True,
    )

    with pytest.raises(AirflowFailException) as raised:
        dump.execute(context={})

    assert isinstance(raised.value.__cause__, InvalidOptionError)
    message = str(raised.value)
    assert f"output_path {str(path)!r} holds {says}" in message
    assert "overwrite=True replaces only a finished backup of this provider" in message
    assert tree(tmp_path) == before


def _directory_backup(root: Path, name: str, files: dict[str, bytes]) -> Path:
    artifact, manifest = synthetic_backup(root, name, size=1)
    artifact.unlink()
    artifact.mkdir()
    for relative, data in files.items():
        (artifact / relative).write_bytes(data)
    digest = digest_directory(artifact)
    assert digest.files is not None
    assert isinstance(digest.files[0], FileDigest)
    described = Manifest.from_dict(
        {
            **manifest.to_dict(),
            "format": "directory",
            "size_bytes": digest.size_bytes,
            "sha256": digest.sha256,
            "files": [f.__dict__ for f in digest.files],
        }
    )
    manifest_path_for(artifact).write_text(described.to_json())
    return artifact


@pytest.mark.parametrize("directory", [False, True], ids=["file", "directory"])
def test_overwrite_replaces_a_finished_backup_of_ours(tmp_path: Path, directory: bool) -> None:
    if directory:
        path = _directory_backup(tmp_path, "shop", {"toc.dat": b"old toc", "3001.dat": b"old rows"})
    else:
        path, _ = synthetic_backup(tmp_path, "shop", size=16)
    target = open_target(str(path), directory=directory, overwrite=True)
    if directory:
        assert target.staging_directory is not None
        target.staging_directory.mkdir()
        (target.staging_directory / "toc.dat").write_bytes(b"new toc")
    else:
        target.write(b"new bytes")
    digest = target.commit()

    assert not manifest_path_for(path).exists()  # the old manifest never describes the new bytes
    assert (tree(path) == {"toc.dat": b"new toc"}) if directory else (path.read_bytes() == b"new bytes")
    assert digest.size_bytes == (7 if directory else 9)
    target.abort()


@pytest.mark.parametrize("overwrite", [False, True])
def test_something_put_at_the_path_during_the_dump_is_never_overwritten(
    tmp_path: Path, overwrite: bool
) -> None:
    path = tmp_path / "shop.dump"
    if overwrite:
        synthetic_backup(tmp_path, "shop.dump", size=16)
    target = open_target(str(path), overwrite=overwrite)
    target.write(b"dumped bytes")
    path.unlink(missing_ok=True)
    path.write_bytes(b"written by someone else while the dump ran")

    with pytest.raises(ObjectConflictError, match=f"{path} was changed by someone else during the dump"):
        target.commit()
    target.abort()

    assert path.read_bytes() == b"written by someone else while the dump ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["shop.dump", *(["shop.dump.manifest.json"] if overwrite else [])]
    )


def test_object_store_overwrite_replaces_only_a_finished_backup_of_ours(tmp_path: Path, store: Store) -> None:
    container = store.new_container()
    settings = store.settings()
    store.put(container, "pg/someones.csv", b"another tool's object")
    store.put(container, "pg/described.dump", b"an object of someone else")
    store.put(container, f"pg/described.dump{MANIFEST_SUFFIX}", b"{}")
    for name in ("changed.dump", "ours.dump"):  # two finished backups of ours
        artifact, _ = synthetic_backup(tmp_path, name, size=16)
        store.put(container, f"pg/{name}", artifact.read_bytes())
        store.put(container, f"pg/{name}{MANIFEST_SUFFIX}", manifest_path_for(artifact).read_bytes())
    store.put(container, "pg/changed.dump", b"replaced by someone: not 16 bytes")
    before = store.objects(container)

    for name, says in [
        ("someones.csv", "an object of 21 bytes and no manifest"),
        ("described.dump", "a manifest that is not one of this provider's"),
        ("changed.dump", "an object of 33 bytes that its manifest does not describe"),
    ]:
        uri = store.uri(container, f"pg/{name}")
        with pytest.raises(InvalidOptionError, match=f"output_path '{uri}' holds {says}"):
            open_target(uri, overwrite=True, settings=settings)
    assert store.objects(container) == before

    target = open_target(store.uri(container, "pg/ours.dump"), overwrite=True, settings=settings)
    target.write(b"new bytes")
    target.commit()
    assert store.objects(container)["pg/ours.dump"] == b"new bytes"
    assert f"pg/ours.dump{MANIFEST_SUFFIX}" not in store.objects(container)
