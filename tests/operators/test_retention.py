"""PgBackupRetentionOperator on a local folder and on a gs:// prefix in a real GCS emulator."""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.manifest import FileDigest, Manifest, manifest_path_for
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator, select_kept
from airflow_provider_pgbackup.storage import StorageSettings, upload_backup
from airflow_provider_pgbackup.storage.files import digest_directory
from tests.gcs_emulator import GCSEmulator, synthetic_backup
from tests.object_stores import Store
from tests.storage.crashed_writer import crash_writer

UTC = datetime.timezone.utc
POLICY = {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12}


def _history(days: int = 400, every: int = 1, extra_same_day: tuple[int, ...] = (0, 1, 10, 45)):
    """Backup end times: one every ``every`` days for ``days`` days, newest an hour ago, some days twice."""
    newest = datetime.datetime.now(UTC).replace(microsecond=0) - datetime.timedelta(hours=1)
    times = [newest - datetime.timedelta(days=d) for d in range(0, days, every)]
    times += [newest - datetime.timedelta(days=d, minutes=30) for d in extra_same_day if d % every == 0]
    return sorted(times, reverse=True)


def _expected_gfs(times: list[datetime.datetime], policy: dict[str, int]) -> set[datetime.datetime]:
    """The GFS set computed independently: group by calendar period, take each period's latest."""

    def latest_per(key, count: int) -> set[datetime.datetime]:
        groups: dict[tuple, datetime.datetime] = {}
        for t in times:
            k = key(t)
            groups[k] = max(groups.get(k, t), t)
        return {groups[k] for k in sorted(groups, reverse=True)[:count]}

    keep = set(sorted(times, reverse=True)[: max(1, policy["keep_last"])])
    keep |= latest_per(lambda t: t.date(), policy["keep_daily"])
    keep |= latest_per(lambda t: tuple(t.isocalendar())[:2], policy["keep_weekly"])
    keep |= latest_per(lambda t: (t.year, t.month), policy["keep_monthly"])
    return keep


def _name(t: datetime.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S") + ".dump"


def _make_local_history(folder: Path, times: list[datetime.datetime]) -> None:
    for t in times:
        synthetic_backup(folder, _name(t), size=16, finished_at=t)


def _manifests(folder: Path) -> set[str]:
    return {p.name.removesuffix(".manifest.json") for p in folder.glob("*.manifest.json")}


def _age(path: Path, days: float) -> None:
    stamp = (datetime.datetime.now(UTC) - datetime.timedelta(days=days)).timestamp()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (stamp, stamp))


def _retention(location: str, **kwargs) -> PgBackupRetentionOperator:
    return PgBackupRetentionOperator(task_id="retention", location=location, **{**POLICY, **kwargs})


def test_400_days_of_history_keep_exactly_the_gfs_set_and_incomplete_leftovers_go(tmp_path: Path) -> None:
    times = _history()
    _make_local_history(tmp_path, times)
    crash_writer(tmp_path / "orphan.dump", "after_commit")  # its writer died before the manifest
    crash_writer(tmp_path / "old.dump", "directory_staging")  # died while pg_dump wrote the folder
    (staging,) = tmp_path.glob(".old.dump.partial-*")
    leftovers = {p.name for p in tmp_path.iterdir() if "orphan" in p.name or "old.dump" in p.name}
    for name in leftovers:
        _age(tmp_path / name, 3)
    (tmp_path / "running.dump").write_bytes(b"no manifest yet: still being written")
    (tmp_path / "weird.dump").write_bytes(b"?")
    (tmp_path / "weird.dump.manifest.json").write_text('{"schema_version": 99}')
    expected = {_name(t) for t in _expected_gfs(times, POLICY)}
    assert len(times) == 404
    assert 20 <= len(expected) <= 26  # 3 last, 7 days, 4 weeks, 12 months, overlapping

    result = _retention(str(tmp_path)).execute(context={})

    assert _manifests(tmp_path) == expected | {"weird.dump"}
    kept_files = {p.name for p in tmp_path.iterdir()}
    assert kept_files == (
        {*expected, *(f"{n}.manifest.json" for n in expected)}
        | {"running.dump", "weird.dump", "weird.dump.manifest.json"}
    )
    assert {k["name"] for k in result["kept"]} == expected
    assert result["kept"][0]["rules"][0] == "newest"
    assert len(result["deleted"]) == 2 * (len(times) - len(expected))
    assert leftovers == {".orphan.dump.lock", "orphan.dump", ".old.dump.lock", staging.name}
    assert sorted(Path(u).name for u in result["incomplete_deleted"]) == sorted(leftovers)


def test_dry_run_deletes_nothing_and_plans_what_the_real_run_deletes(tmp_path: Path) -> None:
    times = _history(days=120)
    _make_local_history(tmp_path, times)
    before = sorted(p.name for p in tmp_path.iterdir())
    plan = _retention(str(tmp_path), dry_run=True).execute(context={})
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert plan["dry_run"] is True
    assert plan["deleted"]
    done = _retention(str(tmp_path)).execute(context={})
    assert done["deleted"] == plan["deleted"]
    assert all(not Path(u).exists() for u in done["deleted"])


def test_newest_backup_is_kept_even_when_every_count_is_zero(tmp_path: Path) -> None:
    times = _history(days=10)
    _make_local_history(tmp_path, times)
    _retention(str(tmp_path), keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0).execute(context={})
    assert _manifests(tmp_path) == {_name(times[0])}


def test_stale_newest_backup_stops_every_deletion(tmp_path: Path) -> None:
    times = [t - datetime.timedelta(days=5) for t in _history(days=60)]
    _make_local_history(tmp_path, times)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(
        AirflowFailException, match=r"more than max_newest_age=2 days, 0:00:00; deleting nothing"
    ):
        _retention(str(tmp_path)).execute(context={})
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unverified_newest_backup_stops_every_deletion(tmp_path: Path) -> None:
    times = _history(days=60)
    _make_local_history(tmp_path, times)
    (tmp_path / _name(times[0])).write_bytes(b"truncated")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(AirflowFailException, match=r"is not verified: its artifact holds 9 bytes, not 16"):
        _retention(str(tmp_path)).execute(context={})
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_daily": -1}, "keep_daily -1 must be a whole number >= 0"),
        ({"keep_last": "3"}, "keep_last '3' must be a whole number >= 0"),
        ({"incomplete_grace": "1d"}, "incomplete_grace '1d' must be a timedelta"),
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not a known time zone"),
    ],
)
def test_bad_policy_fails_at_construction_naming_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PgBackupRetentionOperator(task_id="r", location="/backups", **kwargs)


def test_days_and_weeks_follow_the_given_timezone() -> None:
    # 23:30 UTC and 00:30 UTC the next day are the same day in New York.
    late = datetime.datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    early = datetime.datetime(2026, 3, 11, 0, 30, tzinfo=UTC)
    utc = select_kept([late, early], keep_last=0, keep_daily=2, keep_weekly=0, keep_monthly=0)
    new_york = select_kept(
        [late, early], keep_last=0, keep_daily=2, keep_weekly=0, keep_monthly=0, timezone="America/New_York"
    )
    assert set(utc) == {0, 1}
    assert set(new_york) == {1}


def test_gcs_prefix_history_keeps_the_gfs_set_with_directory_backups_and_dry_run(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    times = _history(days=400, every=3, extra_same_day=(0,))
    local = tmp_path / "local"
    _make_local_history(local, times)
    # The oldest backup is a directory-format one: its files live under "<name>/".
    oldest = local / _name(times[-1])
    oldest.unlink()
    oldest.mkdir()
    (oldest / "toc.dat").write_bytes(b"0123456789abcdef")
    manifest = Manifest.from_json(manifest_path_for(oldest).read_text())
    digest = digest_directory(oldest)
    manifest = Manifest.from_dict(
        {
            **manifest.to_dict(),
            "format": "directory",
            "sha256": digest.sha256,
            "files": [f.__dict__ for f in digest.files],
        }
    )
    assert isinstance(manifest.files[0], FileDigest)
    manifest_path_for(oldest).write_text(manifest.to_json())
    destination = f"gs://{gcs_bucket}/pg/prod"
    settings = StorageSettings(chunk_size=256 * 1024, retry_timeout=2.0)
    client = gcs.client()
    quiet = logging.getLogger("retention-test-upload")
    quiet.setLevel(logging.WARNING)
    for t in times:
        upload_backup(local / _name(t), destination, settings=settings, log=quiet)
    failed = client.bucket(gcs_bucket).blob("pg/prod/failed.dump")
    failed.metadata = {"pgbackup-upload-id": "0123456789abcdef"}  # a run of ours stopped before its manifest
    failed.upload_from_string(b"orphan")
    client.bucket(gcs_bucket).blob("pg/other/keep-me.dump").upload_from_string(b"not under the prefix")
    expected = {_name(t) for t in _expected_gfs(times, POLICY)}
    assert _name(times[-1]) not in expected  # the directory backup is deleted: every object below it
    uri = f"gs://{gcs_bucket}/pg/prod"

    plan = _retention(uri, dry_run=True, incomplete_grace=0).execute(context={})
    names_before = sorted(b.name for b in client.list_blobs(gcs_bucket))
    assert plan["incomplete_deleted"] == [f"{uri}/failed.dump"]
    result = _retention(uri, incomplete_grace=0).execute(context={})
    assert result["deleted"] == plan["deleted"]
    names_after = {b.name for b in client.list_blobs(gcs_bucket)}
    assert len(names_before) > len(names_after)
    manifests = {
        n.removeprefix("pg/prod/").removesuffix(".manifest.json")
        for n in names_after
        if n.endswith(".manifest.json")
    }
    assert manifests == expected
    assert "pg/other/keep-me.dump" in names_after
    assert "pg/prod/failed.dump" not in names_after
    assert not [n for n in names_after if n.startswith(f"pg/prod/{_name(times[-1])}")]
    assert any(n.startswith(f"pg/prod/{_name(times[-1])}/") for n in names_before)


def test_newest_complete_backup_skips_newer_incomplete_ones(tmp_path: Path) -> None:
    from airflow_provider_pgbackup.operators.retention import newest_complete_backup

    assert newest_complete_backup(str(tmp_path)) is None
    utc = datetime.timezone.utc
    old, _ = synthetic_backup(tmp_path, "old.dump", finished_at=datetime.datetime(2026, 1, 1, tzinfo=utc))
    synthetic_backup(tmp_path, "new.dump", finished_at=datetime.datetime(2026, 2, 1, tzinfo=utc))
    (tmp_path / "new.dump").write_bytes(b"cut")  # no longer what its manifest describes
    assert newest_complete_backup(str(tmp_path)) == str(old)


def _foreign_things(root: Path) -> set[str]:
    """What another tool or a person left beside the backups: none of it may ever be deleted."""
    (root / "README.md").write_text("backups of the shop database; ask ops before touching")
    (root / "other-tool.tar.gz").write_bytes(b"another tool's backup")
    nested = root / "analytics"
    synthetic_backup(
        nested, "20200101T000000.dump", size=16, finished_at=datetime.datetime(2020, 1, 1, tzinfo=UTC)
    )
    (root / ".x.dump.partial-NOTHEX000000").write_bytes(b"looks like ours, is not")
    (root / "y.dump.manifest.json.bak").write_text("{}")
    (root / ".hidden").write_bytes(b"a dotfile")
    for path in root.iterdir():
        _age(path, 30)
    return {
        "README.md",
        "other-tool.tar.gz",
        "analytics",
        ".x.dump.partial-NOTHEX000000",
        "y.dump.manifest.json.bak",
        ".hidden",
    }


def test_retention_never_deletes_what_the_provider_did_not_write(tmp_path: Path) -> None:
    times = _history(days=60)
    _make_local_history(tmp_path, times)
    foreign = _foreign_things(tmp_path)
    before = {p.name for p in (tmp_path / "analytics").iterdir()}

    result = _retention(str(tmp_path), incomplete_grace=0).execute(context={})

    assert foreign <= {p.name for p in tmp_path.iterdir()}
    assert {p.name for p in (tmp_path / "analytics").iterdir()} == before  # a nested folder of backups
    assert sorted(result["left_alone"]) == sorted(foreign)
    assert result["incomplete_deleted"] == []
    assert len(result["deleted"]) > 0  # it did delete its own old backups


def test_gcs_retention_never_deletes_objects_the_provider_did_not_write(
    tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    times = _history(days=30, every=3, extra_same_day=())
    local = tmp_path / "local"
    _make_local_history(local, times)
    quiet = logging.getLogger("retention-test-upload")
    quiet.setLevel(logging.WARNING)
    uri = f"gs://{gcs_bucket}/pg/prod"
    for t in times:
        upload_backup(local / _name(t), uri, settings=StorageSettings(chunk_size=256 * 1024), log=quiet)
    bucket = gcs.client().bucket(gcs_bucket)
    foreign = ["README.md", "other-tool.tar.gz", "analytics/20200101T000000.dump", "x.dump.manifest.json.bak"]
    for name in foreign:
        bucket.blob(f"pg/prod/{name}").upload_from_string(b"not ours")

    result = _retention(uri, incomplete_grace=0).execute(context={})

    names = {b.name for b in gcs.client().list_blobs(gcs_bucket)}
    assert {f"pg/prod/{n}" for n in foreign} <= names
    assert sorted(result["left_alone"]) == sorted(
        ["README.md", "other-tool.tar.gz", "analytics", "x.dump.manifest.json.bak"]
    )
    assert result["incomplete_deleted"] == []
    assert len(result["deleted"]) > 0


def test_leftovers_are_recognised_by_the_lock_record_of_the_run_that_left_them(tmp_path: Path) -> None:
    """Every point a real writer can die at leaves what retention then removes, and nothing else."""
    times = _history(days=5)
    _make_local_history(tmp_path, times)
    for point in ("before_commit", "after_commit", "in_manifest", "directory_staging"):
        crash_writer(tmp_path / f"{point}.dump", point)
    backups = {p.name for p in tmp_path.iterdir() if p.name.startswith("20")}
    leftovers = {p.name for p in tmp_path.iterdir()} - backups
    assert len(leftovers) == 9  # 4 locks, 2 staging (a file, a folder), 2 artifacts, 1 manifest being written
    for name in leftovers:
        _age(tmp_path / name, 3)

    result = _retention(str(tmp_path), incomplete_grace=datetime.timedelta(days=1), keep_last=99).execute(
        context={}
    )

    assert sorted(Path(u).name for u in result["incomplete_deleted"]) == sorted(leftovers)
    assert result["left_alone"] == []
    assert {p.name for p in tmp_path.iterdir()} == backups


def _lookalikes(root: Path) -> list[str]:
    """Names the provider's leftovers have, written by someone else (another tool, a person)."""
    (root / ".customers.csv.lock").write_text("locked by the nightly export, pid 4242")
    (root / "customers.csv").write_text("id,name\n1,Ada\n")
    (root / ".rsync-job.lock").write_bytes(b"")
    (root / ".x.dump.partial-0123456789ab").write_bytes(b"an editor's swap file")
    (root / ".x.dump.manifest.json.abcdefgh.partial").write_text("{}")
    # A lock that reads like the provider's but names another artifact than its own name says.
    (root / ".y.dump.lock").write_text(
        '{"written_by": "airflow-provider-pgbackup", "artifact": "customers.csv", '
        '"staging": ".customers.csv.partial-0123456789ab", "manifest_temp": "", "artifact_ids": []}'
    )
    for path in root.iterdir():
        _age(path, 30)
    return [
        ".customers.csv.lock",
        ".rsync-job.lock",
        ".x.dump.manifest.json.abcdefgh.partial",
        ".x.dump.partial-0123456789ab",
        ".y.dump.lock",
        "customers.csv",
    ]


def test_lookalikes_of_leftovers_written_by_others_are_left_alone(tmp_path: Path) -> None:
    _make_local_history(tmp_path, _history(days=10))
    foreign = _lookalikes(tmp_path)

    result = _retention(str(tmp_path), incomplete_grace=0).execute(context={})

    assert result["incomplete_deleted"] == []
    assert result["left_alone"] == foreign
    assert set(foreign) <= {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "customers.csv").read_text() == "id,name\n1,Ada\n"


def test_a_running_dump_s_lock_and_staging_file_are_left_alone(tmp_path: Path) -> None:
    from airflow_provider_pgbackup.storage import open_target

    _make_local_history(tmp_path, _history(days=3))
    target = open_target(str(tmp_path / "running.dump"))
    try:
        target.write(b"a long dump, still running")
        running = {p.name for p in tmp_path.iterdir() if "running" in p.name}
        for name in running:
            _age(tmp_path / name, 3)  # older than the grace: only the held lock says it is in use

        result = _retention(str(tmp_path), incomplete_grace=0).execute(context={})

        assert result["incomplete_deleted"] == []
        assert result["left_alone"] == []
        assert running <= {p.name for p in tmp_path.iterdir()}
    finally:
        target.abort()


def _put_history(store: Store, container: str, folder: Path, times: list[datetime.datetime]) -> None:
    """Backups put straight into the store under ``pg/`` (artifact and manifest; one SDK client)."""
    for t in times:
        artifact, _ = synthetic_backup(folder, _name(t), size=16, finished_at=t)
        store.put(container, f"pg/{artifact.name}", artifact.read_bytes())
        store.put(container, f"pg/{artifact.name}.manifest.json", manifest_path_for(artifact).read_bytes())


def test_object_store_retention_has_no_lock_file_rule(tmp_path: Path, store: Store) -> None:
    container = store.new_container()
    uri = store.uri(container, "pg")
    _put_history(store, container, tmp_path, _history(days=3, extra_same_day=()))
    foreign = [".customers.csv.lock", ".x.dump.partial-0123456789ab", "customers.csv"]
    for name in foreign:
        store.put(container, f"pg/{name}", b"not the provider's")

    result = _retention(uri, incomplete_grace=0, **store.conn_kwargs).execute(context={})

    assert result["incomplete_deleted"] == []
    assert result["left_alone"] == foreign
    assert {f"pg/{n}" for n in foreign} <= set(store.objects(container))


def _race(monkeypatch: pytest.MonkeyPatch, location: str, *, pause: str, **kwargs) -> list[dict]:
    """Two retention runs over one folder, interleaved for real: the first lists the folder, then waits
    (inside its listing, or right after it) until the second has deleted what it deletes; then it goes
    on with what it listed. Returns both results (the second's first)."""
    import threading

    from airflow_provider_pgbackup.operators import retention

    listed, second_done = threading.Event(), threading.Event()

    def wait_for_the_second() -> None:
        listed.set()
        assert second_done.wait(60)

    if pause == "inside_listing":  # local: names taken, nothing looked at yet
        real_listdir = os.listdir

        def listdir(path="."):
            names = real_listdir(path)
            if threading.current_thread().name == "first" and os.fspath(path) == location:
                wait_for_the_second()
            return names

        monkeypatch.setattr(os, "listdir", listdir)
    else:
        real_open_store = retention.open_store

        def open_store(value, *, settings=None):
            store = real_open_store(value, settings=settings)
            if threading.current_thread().name == "first":
                entries = store.entries

                def paused():
                    found = entries()
                    wait_for_the_second()
                    return found

                store.entries = paused
            return store

        monkeypatch.setattr(retention, "open_store", open_store)
    results: list[object] = []
    first = threading.Thread(
        target=lambda: results.append(_try(lambda: _retention(location, **kwargs).execute(context={}))),
        name="first",
    )
    first.start()
    assert listed.wait(60)
    try:
        second = _retention(location, **kwargs).execute(context={})
    finally:
        second_done.set()
        first.join(60)
    (outcome,) = results
    if isinstance(outcome, BaseException):
        raise outcome
    return [second, outcome]


def _try(call):
    try:
        return call()
    except BaseException as err:  # handed to the main thread
        return err


@pytest.mark.parametrize("pause", ["inside_listing", "after_listing"])
def test_two_retention_runs_over_one_folder_both_succeed_and_keep_the_gfs_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pause: str, caplog: pytest.LogCaptureFixture
) -> None:
    times = _history(days=40)
    _make_local_history(tmp_path, times)
    crash_writer(tmp_path / "orphan.dump", "after_commit")
    expected = {_name(t) for t in _expected_gfs(times, POLICY)}

    second, first = _race(monkeypatch, str(tmp_path), pause=pause, incomplete_grace=0)

    assert _manifests(tmp_path) == expected
    assert {p.name for p in tmp_path.iterdir()} == expected | {f"{n}.manifest.json" for n in expected}
    assert {k["name"] for k in first["kept"]} == {k["name"] for k in second["kept"]} == expected
    assert "is already gone" in caplog.text or "vanished" in caplog.text


def test_two_retention_runs_over_one_object_store_prefix_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    container = store.new_container()
    uri = store.uri(container, "pg")
    times = _history(days=12, extra_same_day=())
    _put_history(store, container, tmp_path, times)
    policy = {"keep_last": 1, "keep_daily": 2, "keep_weekly": 1, "keep_monthly": 1}
    expected = {_name(t) for t in _expected_gfs(times, policy)}

    second, first = _race(monkeypatch, uri, pause="after_listing", **policy, **store.conn_kwargs)

    names = {n.removeprefix("pg/").removesuffix(".manifest.json") for n in store.objects(container)}
    assert names == expected
    assert {k["name"] for k in first["kept"]} == {k["name"] for k in second["kept"]} == expected
