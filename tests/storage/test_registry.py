"""The scheme registry: the one place a URI is parsed and a backend chosen, with one validator per kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_pgbackup import storage
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage import Location, parse_location


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("relative/x.dump", "must be an absolute path"),
        ("/backups/../etc/x.dump", "must not contain '..'"),
        ("gs://bucket/a/../x.dump", "must not contain empty, '.' or '..'"),
        ("/backups/x.dump.manifest.json", "must not be a manifest file name"),
        ("gs://bucket/x.dump.manifest.json", "must not be a manifest file name"),
        ("ftp://host/x.dump", "scheme ftp://, which is not supported"),
        ("/backups/x\n.dump", "NUL byte or newline"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_every_bad_location_is_refused_naming_the_value(value: object, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message) as err:
        parse_location(value, what="output_path")  # type: ignore[arg-type]
    assert "output_path" in str(err.value)


def test_local_and_gs_locations_name_their_manifest_and_parent() -> None:
    local = parse_location("/backups/db/2026.dump")
    assert (local.is_local, local.uri, local.manifest_uri) == (
        True,
        "/backups/db/2026.dump",
        "/backups/db/2026.dump.manifest.json",
    )
    assert local.parent.uri == "/backups/db"
    remote = parse_location("gs://bucket/pg/2026.dump")
    assert (remote.is_local, remote.manifest_uri, remote.parent.uri) == (
        False,
        "gs://bucket/pg/2026.dump.manifest.json",
        "gs://bucket/pg",
    )
    assert "bucket" in str(remote.console_url)
    folder = parse_location("gs://bucket/pg/", folder=True)
    assert folder.child("x.dump").uri == "gs://bucket/pg/x.dump"
    assert parse_location("gs://bucket", folder=True).child("x").uri == "gs://bucket/x"


def test_a_location_value_is_passed_through_and_paths_are_accepted(tmp_path: Path) -> None:
    location = Location("", "", str(tmp_path / "a.dump"))
    assert parse_location(location) is location
    assert parse_location(tmp_path / "a.dump").uri == str(tmp_path / "a.dump")


def test_directory_format_needs_a_backend_that_stages_folders() -> None:
    with pytest.raises(InvalidOptionError, match="cannot take format 'directory'"):
        storage.check_output_path("gs://bucket/x.dir", directory=True)
    assert storage.check_output_path("/backups/x.dir", directory=True).is_local


def test_every_backend_module_provides_the_registry_functions() -> None:
    import importlib

    for scheme, module_name in storage.BACKENDS.items():
        module = importlib.import_module(module_name)
        backend = getattr(module, "BACKEND", module)  # an object store's ObjectBackend, else the module
        names = ("parse", "open_target", "open_source", "open_store", "upload", "promote", "discard_promoted")
        for name in names:
            assert callable(getattr(backend, name, None)), f"{scheme or 'local'} backend lacks {name}"


def test_local_promote_copies_artifact_then_manifest_and_refuses_to_overwrite(tmp_path: Path) -> None:
    import logging

    from tests.gcs_emulator import synthetic_backup

    artifact, manifest = synthetic_backup(tmp_path / "staging", "db.dump", size=4096)
    result, promoted = storage.promote_backup(artifact, tmp_path / "final", log=logging.getLogger(__name__))
    assert promoted.sha256 == manifest.sha256
    assert Path(result.artifact_uri).read_bytes() == artifact.read_bytes()
    assert Path(result.manifest_uri).is_file()
    # A retried promotion of the same backup is a no-op (as on GCS); a different one is never written over.
    again, _ = storage.promote_backup(artifact, tmp_path / "final", log=logging.getLogger(__name__))
    assert again.transferred_bytes == 0
    other, _ = synthetic_backup(tmp_path / "other", "db.dump", size=4096)
    with pytest.raises(InvalidOptionError, match="already holds a backup"):
        storage.promote_backup(other, tmp_path / "final", log=logging.getLogger(__name__))
    assert Path(result.artifact_uri).read_bytes() == artifact.read_bytes()
    with pytest.raises(InvalidOptionError, match="within one kind of store"):
        storage.promote_backup(artifact, "gs://bucket/final", log=logging.getLogger(__name__))


def test_object_url_is_the_console_page_or_the_emulators_named_by_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The web page of a stored backup: the Cloud Console's, unless the GCS connection names an emulator
    (the demo): a link to the real console would show nothing there. No credential is read."""
    import json

    from airflow_provider_pgbackup.storage import StorageSettings, object_url

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    uri = "gs://my-bucket/postgres/shop ü/20260101T000000Z.dump"
    console = "https://console.cloud.google.com/storage/browser/_details/my-bucket/postgres/shop%20%C3%BC/"
    assert object_url(uri, StorageSettings(gcp_conn_id=None)).startswith(console)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GCS_DEMO",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"emulator_host": "127.0.0.1:4443"}}),
    )
    assert object_url(uri, StorageSettings(gcp_conn_id="gcs_demo")) == (
        "http://127.0.0.1:4443/storage/v1/b/my-bucket/o/postgres%2Fshop%20%C3%BC%2F20260101T000000Z.dump"
    )
    assert object_url("/backups/shop.dump") is None
