"""Each example DAG runs green with dag.test() against the real PostgreSQL and the GCS emulator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.gcs_emulator import GCSEmulator

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLE_DAGS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def objects(gcs: GCSEmulator, bucket: str) -> list[str]:
    return sorted(blob.name for blob in gcs.client().list_blobs(bucket))


def run(dag_file: str, conf: dict) -> Any:
    dag = load(dag_file).dag
    dag_run = dag.test(run_conf=conf)
    failed = [ti.task_id for ti in dag_run.get_task_instances() if ti.state == "failed"]
    assert dag_run.state == "success", f"{dag.dag_id} failed; failed tasks: {failed}"
    return dag_run


def asset_events(run_id: str) -> dict[str, dict[str, Any]]:
    """The asset events a run emitted: asset name -> the event's extra."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            event.asset.name: dict(event.extra or {})
            for event in session.query(AssetEvent).filter(AssetEvent.source_run_id == run_id)
        }


def xcom(run_id: str, task_id: str) -> Any:
    """The return value of one task of a run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run_id, task_ids=task_id, key="return_value")).first()
        assert row is not None, f"{task_id} of {run_id} returned nothing"
        value = XComModel.deserialize_value(row)
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture
def shop(pg18: PgCluster) -> str:
    name = "shop ü"
    pg18.drop_database(name)
    pg18.create_database(name)
    pg18.execute(
        "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 3000) g", name
    )
    pg18.execute("CREATE TABLE customers AS SELECT g AS id FROM generate_series(1, 40) g", name)
    return name


@pytest.mark.parametrize(
    "options",
    [{}, {"database": None}, {"staging": "local"}],
    ids=["bucket-staging", "database-left-empty", "local-staging"],
)
def test_pg_backup_to_gcs_runs_green_and_leaves_a_verified_backup_in_gcs(
    pg18: PgCluster,
    shop: str,
    airflow_conn,
    airflow_db,
    gcs: GCSEmulator,
    gcs_bucket: str,
    tmp_path: Path,
    options: dict,
) -> None:
    conf = {
        # Database left empty: the connection's own database is dumped, and names the folder.
        "postgres_conn_id": airflow_conn(pg18, shop),
        "database": shop,
        "bucket": gcs_bucket,
        "prefix": "nightly",
        "staging_dir": str(tmp_path),
        **options,
    }
    dag_run = run("pg_backup_to_gcs", conf)
    assert not list(tmp_path.rglob("*.manifest.json"))  # a local staged copy is discarded once published
    names = objects(gcs, gcs_bucket)  # and so is the staged copy in the bucket
    assert len(names) == 2, names
    artifact, manifest_name = names
    assert artifact.startswith("nightly/shop ü/")
    assert artifact.endswith(".dump")
    assert manifest_name == artifact + ".manifest.json"
    manifest = json.loads(gcs.client().bucket(gcs_bucket).blob(manifest_name).download_as_bytes())
    assert {(r["table"], r["rows"]) for r in manifest["row_counts"]} == {("orders", 3000), ("customers", 40)}
    assert PASSWORD not in json.dumps(manifest)
    events = asset_events(dag_run.run_id)
    published = events["pgbackup_published_backups"]
    assert published["verified"] is True
    assert published["database"] == shop
    assert published["sha256"] == manifest["sha256"]
    assert published["artifact_uri"] == f"gs://{gcs_bucket}/{artifact}"
    # Retention says what the folder holds now: the Backups page drops whatever it no longer lists.
    assert events["pgbackup_retention"]["location"] == f"gs://{gcs_bucket}/nightly/{shop}"
    assert events["pgbackup_retention"]["kept"] == [published["artifact_uri"]]


def test_pg_restore_drill_restores_the_newest_backup_from_gcs(
    pg18: PgCluster, shop: str, airflow_conn, airflow_db, gcs: GCSEmulator, gcs_bucket: str, tmp_path: Path
) -> None:
    """Both on their defaults for the folder (Database left empty): the drill looks where the backup DAG
    wrote, the folder named after the connection's database."""
    conn_id, shop_conn = airflow_conn(pg18, "postgres"), airflow_conn(pg18, shop)
    common = {"bucket": gcs_bucket, "prefix": "p"}
    run("pg_backup_to_gcs", {**common, "postgres_conn_id": shop_conn})
    assert {name.split("/")[1] for name in objects(gcs, gcs_bucket)} == {shop}
    before = set(pg18.connect().execute("SELECT datname FROM pg_database").fetchall())
    run("pg_restore_drill", {**common, "restore_conn_id": conn_id, "postgres_conn_id": shop_conn})
    after = set(pg18.connect().execute("SELECT datname FROM pg_database").fetchall())
    assert after == before  # the scratch database is gone


@pytest.mark.parametrize("staging", ["gcs", "local"])
def test_pg_backup_all_databases_fans_out_over_every_database(
    airflow_conn, airflow_db, gcs: GCSEmulator, gcs_bucket: str, tmp_path: Path, staging: str
) -> None:
    from devtools.pgcluster import embedded_bin_dir, running_cluster

    bin_dir = embedded_bin_dir()
    assert bin_dir is not None
    with running_cluster(bin_dir, password=PASSWORD, name="fanout") as cluster:
        for name in ("alpha", "beta ü/2"):
            cluster.create_database(name)
            cluster.execute("CREATE TABLE t AS SELECT 1 AS x", name)
        conf = {
            "postgres_conn_id": airflow_conn(cluster, "postgres", conn_id="pg_fanout"),
            "bucket": gcs_bucket,
            "staging_dir": str(tmp_path),
            "staging": staging,
        }
        run("pg_backup_all_databases", conf)
    assert not list(tmp_path.rglob("*.manifest.json"))
    names = objects(gcs, gcs_bucket)
    folders = sorted({name.split("/")[1] for name in names})
    assert folders == ["alpha", "beta%20%C3%BC%2F2"]
    assert len(names) == 4  # an artifact and its manifest per database; no staged copy is left


def test_pg_dumpall_globals_streams_roles_to_gcs(
    pg18: PgCluster, airflow_conn, airflow_db, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    conf = {"postgres_conn_id": airflow_conn(pg18, "postgres"), "bucket": gcs_bucket, "prefix": "g"}
    run("pg_dumpall_globals", conf)
    names = objects(gcs, gcs_bucket)
    assert len(names) == 2
    assert names[0].startswith("g/_globals/")
    assert names[0].endswith(".sql.gz")


@pytest.mark.parametrize("database_left_empty", [False, True])
def test_pg_backup_local_runs_green(
    pg18: PgCluster, shop: str, airflow_conn, airflow_db, tmp_path: Path, database_left_empty: bool
) -> None:
    """The folder is named after the database dumped, the connection's own when Database is empty."""
    conf = {
        "postgres_conn_id": airflow_conn(pg18, shop if database_left_empty else "postgres"),
        "database": None if database_left_empty else shop,
        "output_dir": str(tmp_path),
    }
    run("pg_backup_local", conf)
    assert len(list((tmp_path / shop).glob("*.manifest.json"))) == 1
    assert len(list((tmp_path / "globals").glob("*.manifest.json"))) == 1


@pytest.mark.parametrize("store", ["gs", "s3", "az"], indirect=True)
def test_pg_backup_to_cloud_serves_every_store_from_the_destination_param(
    pg18: PgCluster, shop: str, airflow_conn, airflow_db, store, tmp_path: Path
) -> None:
    container = store.new_container()
    conf = {
        "postgres_conn_id": airflow_conn(pg18, "postgres"),
        "database": shop,
        "destination": store.uri(container, "nightly"),
        "staging_dir": str(tmp_path),
    }
    dag_run = run("pg_backup_to_cloud", conf)
    dumped = xcom(dag_run.run_id, "dump")["artifact_uri"]
    assert dumped.startswith(store.uri(container, "_staging/nightly/shop ü/"))  # staged in the store
    found = store.objects(container)
    assert len(found) == 2, sorted(found)  # the staged copy was discarded once the published one verified
    artifact, manifest_name = sorted(found)
    assert artifact.startswith("nightly/shop ü/")
    assert manifest_name == artifact + ".manifest.json"
    manifest = json.loads(found[manifest_name])
    assert {(r["table"], r["rows"]) for r in manifest["row_counts"]} == {("orders", 3000), ("customers", 40)}
    assert list(tmp_path.iterdir()) == []  # nothing went through the worker's disk


def test_pg_backup_freshness_passes_after_a_backup_and_fails_with_an_alert_on_a_stale_folder(
    pg18: PgCluster, shop: str, airflow_conn, airflow_db, gcs: GCSEmulator, gcs_bucket: str, tmp_path: Path
) -> None:
    import datetime

    from tests.gcs_emulator import synthetic_backup, upload_local_backup

    common = {"bucket": gcs_bucket, "prefix": "p"}
    conn_id = airflow_conn(pg18, "postgres")
    run("pg_backup_to_gcs", {**common, "postgres_conn_id": conn_id, "database": shop})
    run("pg_backup_freshness", {**common, "databases": [shop]})

    three_days_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)
    old, _ = synthetic_backup(tmp_path / "old", "old.dump", size=32, finished_at=three_days_ago)
    upload_local_backup(gcs, gcs_bucket, old, prefix="p/crm")
    module = load("pg_backup_freshness")
    watchdog = module.dag.get_task("newest_backups_are_fresh")
    assert watchdog.on_failure_callback == [module.log_alert]  # the alert is wired to the failure
    dag_run = module.dag.test(run_conf={**common, "databases": [shop, "crm"]})
    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"backup_folders": "success", "newest_backups_are_fresh": "failed"}


def restore_verdicts(run_id: str) -> list[Any]:
    """The pgbackup_restore XComs of a run (what the Backups page shows beside the backup)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.run_id == run_id, XComModel.key == "pgbackup_restore"
        )
        return [XComModel.deserialize_value(row) for row in rows]


def test_pg_restore_backup_restores_a_chosen_backup_into_a_kept_database_and_refuses_what_exists(
    pg18: PgCluster, shop: str, airflow_conn, airflow_db, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    conn_id = airflow_conn(pg18, "postgres")
    run(
        "pg_backup_to_gcs",
        {"bucket": gcs_bucket, "prefix": "p", "postgres_conn_id": conn_id, "database": shop},
    )
    [artifact] = [n for n in objects(gcs, gcs_bucket) if not n.endswith(".manifest.json")]
    target = "restored copy ü"
    pg18.drop_database(target)
    conf = {
        "artifact_uri": f"gs://{gcs_bucket}/{artifact}",
        "target_conn_id": conn_id,
        "target_database": target,
    }
    dag_run = run("pg_restore_backup", conf)
    with pg18.connect(target) as conn:  # kept, with every row
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3000,)
    [verdict] = restore_verdicts(dag_run.run_id)
    assert (verdict["verdict"], verdict["restored_into"], verdict["dropped_after"]) == (
        "IDENTICAL",
        target,
        False,
    )
    assert asset_events(dag_run.run_id)["pgbackup_restores"]["restore_verdict"] == "IDENTICAL"

    # Again into the same database: it exists now, so the run fails and leaves it as it is.
    module = load("pg_restore_backup")
    again = module.dag.test(run_conf=conf)
    assert again.state == "failed"
    # Into it as an existing database: it holds tables, refused unless explicitly allowed.
    existing = module.dag.test(run_conf={**conf, "existing_database": True})
    assert existing.state == "failed"
    with pg18.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3000,)
    pg18.drop_database(target)


def test_every_example_dag_is_run_by_a_test() -> None:
    tested = {"pg_backup_to_gcs", "pg_restore_drill", "pg_backup_all_databases", "pg_dumpall_globals"}
    tested |= {"pg_restore_backup"}
    tested |= {"pg_backup_local", "pg_backup_to_cloud", "pg_backup_freshness"}
    assert {p.stem for p in EXAMPLE_DAGS.glob("*.py")} == tested
