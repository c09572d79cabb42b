"""Back up one PostgreSQL database to a local (or shared) folder: pg_dump -> artifact + manifest.

For a single machine or workers that share a filesystem. Triggered from the UI, the form asks for
the connection, database, format, compression and folder; a scheduled run uses the defaults.
Nothing here touches a connection or the network at parse time.

Unpausing the DAG schedules its first run for the next midnight (UTC): no run on the defaults starts at once,
ahead of one you trigger from the form.
"""

from __future__ import annotations

import datetime
import os

from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator

# Deployment-wide default for scheduled runs (no connection or network access at parse time).
BACKUP_DIR = os.environ.get("PGBACKUP_BACKUP_DIR", "/var/backups/postgres")
# Every run has run_after; runs triggered without a logical date have no ts_nodash.
STAMP = "{{ dag_run.run_after.strftime('%Y%m%dT%H%M%SZ') }}"
#: The database dumped: the form's, else the connection's own (its schema, else its login, as libpq does).
DATABASE = (
    "{{ params.database or conn.get(params.postgres_conn_id).schema or "
    "conn.get(params.postgres_conn_id).login }}"
)

with DAG(
    dag_id="pg_backup_local",
    description="pg_dump one database and pg_dumpall its server's globals into a local folder",
    # No start_date and no grace for the last cron time: unpausing waits for the next one.
    schedule=CronTriggerTimetable("@daily", timezone="UTC", run_immediately=datetime.timedelta(0)),
    catchup=False,
    max_active_runs=1,
    tags=["postgres", "backup"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(minutes=5)},
    params={
        "postgres_conn_id": Param(
            "postgres_default",
            type="string",
            title="Connection",
            description="Airflow postgres connection id",
        ),
        "database": Param(
            None,
            type=["null", "string"],
            title="Database",
            description="Database to dump; empty = the connection's schema",
        ),
        "format": Param(
            "custom",
            type="string",
            enum=["custom", "directory", "tar", "plain"],
            title="Format",
            description="pg_dump archive format",
        ),
        "compression": Param(
            "gzip:6",
            type="string",
            title="Compression",
            description="none, gzip[:1-9], lz4[:1-12] or zstd[:1-22] (lz4/zstd: pg_dump 16+ built with them)",
        ),
        "output_dir": Param(
            BACKUP_DIR,
            type="string",
            title="Backup folder",
            description="Absolute folder; each run writes <folder>/<database>/<run time>.<format>",
        ),
    },
) as dag:
    dump = PgDumpOperator(
        task_id="dump",
        postgres_conn_id="{{ params.postgres_conn_id }}",
        database="{{ params.database or '' }}",
        output_path=("{{ params.output_dir }}/" + DATABASE + "/" + STAMP + ".{{ params.format }}"),
        format="{{ params.format }}",
        compression="{{ 'none' if params.format == 'tar' else params.compression }}",
        execution_timeout=datetime.timedelta(hours=6),
    )
    dump_globals = PgDumpAllOperator(
        task_id="dump_globals",
        postgres_conn_id="{{ params.postgres_conn_id }}",
        output_path="{{ params.output_dir }}/globals/" + STAMP + ".sql.gz",
        mode="globals",
        compression="gzip",
        execution_timeout=datetime.timedelta(minutes=30),
    )
    dump >> dump_globals
