"""Dead-man switch: alert when a database's newest verified backup in GCS is older than it should be.

A backup DAG that stopped running (paused, broken scheduler, a deleted connection) raises no error:
nothing runs, so nothing fails. This DAG runs every hour, independently of the backup DAGs, and looks
at what is actually stored under ``gs://<bucket>/<prefix>/<database>`` (the layout ``pg_backup_to_gcs``
writes). It fails when, for any listed database, the newest *verified* backup (manifest readable,
artifact present as its manifest records) finished more than ``PGBACKUP_MAX_AGE_HOURS`` (default 26)
hours ago, or when a listed database folder holds no backup at all.

The failure is what you get told about: the watchdog task has an ``on_failure_callback``. Here it is
an ``SmtpNotifier`` when ``PGBACKUP_ALERT_EMAIL`` is set (using the ``smtp_default`` connection), and
otherwise a callback that writes the alert to the task log; any Airflow notifier fits the same slot
(Slack, PagerDuty, Opsgenie...). On Airflow 3.1+ the DAG also carries a Deadline Alert: if a watchdog
run itself has not finished 30 minutes after it was queued (GCS unreachable, no worker free), the same
alert goes out. Airflow 3.0 has no Deadline Alerts: there the DAG runs without one.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_pgbackup.compat import (
    AsyncCallback,
    DeadlineAlert,
    DeadlineReference,
    deadline_argument,
    supports_deadline_alerts,
)
from airflow_provider_pgbackup.operators.freshness import PgBackupFreshnessOperator

BUCKET = os.environ.get("PGBACKUP_GCS_BUCKET", "my-postgres-backups")
MAX_AGE = datetime.timedelta(hours=float(os.environ.get("PGBACKUP_MAX_AGE_HOURS", "26")))
ALERT_EMAIL = os.environ.get("PGBACKUP_ALERT_EMAIL")
SUBJECT = "[pgbackup] PostgreSQL backups are stale: {{ dag.dag_id }} {{ ti.task_id }}"


def log_alert(context: Any) -> None:
    """Fallback alert without an e-mail address configured: an ERROR line in the task log."""
    ti = context.get("ti")
    exception = context.get("exception")
    logging.getLogger("airflow.task").error(
        "ALERT: backups are stale (%s.%s): %s", ti.dag_id if ti else "?", ti.task_id if ti else "?", exception
    )


def alert_callbacks() -> list[Any]:
    if ALERT_EMAIL:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return [
            SmtpNotifier(
                to=ALERT_EMAIL,
                subject=SUBJECT,
                html_content="{{ exception }}<br>Log: {{ ti.log_url }}",
            )
        ]
    return [log_alert]


def deadline_alert() -> Any:
    """A Deadline Alert (Airflow 3.1+): the watchdog itself must finish within 30 minutes."""
    if not supports_deadline_alerts():  # Airflow 3.0
        return None
    if not ALERT_EMAIL:
        return None  # a deadline callback runs in the triggerer: it needs a real notifier
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=datetime.timedelta(minutes=30),
        callback=AsyncCallback(
            SmtpNotifier,
            kwargs={"to": ALERT_EMAIL, "subject": "[pgbackup] the backup watchdog did not finish in time"},
        ),
    )


with DAG(
    dag_id="pg_backup_freshness",
    description="Fail (and alert) when a database's newest verified backup is too old",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["postgres", "backup", "watchdog", "gcs"],
    doc_md=__doc__,
    **deadline_argument(deadline_alert()),
    params={
        "databases": Param(
            ["default"],
            type="array",
            items={"type": "string"},
            title="Databases",
            description="Folders under the prefix (one per database); each must hold a fresh backup",
        ),
        "gcp_conn_id": Param("google_cloud_default", type="string", title="GCP connection"),
        "bucket": Param(BUCKET, type="string", title="Bucket", minLength=3),
        "prefix": Param("postgres", type="string", title="Prefix"),
    },
) as dag:

    @task
    def backup_folders(params: dict | None = None) -> list[str]:
        """One folder per database: each must hold a fresh verified backup."""
        assert params is not None
        return [f"gs://{params['bucket']}/{params['prefix']}/{name}" for name in params["databases"]]

    PgBackupFreshnessOperator(
        task_id="newest_backups_are_fresh",
        location=backup_folders(),
        max_age=MAX_AGE,
        gcp_conn_id="{{ params.gcp_conn_id }}",
        retries=1,  # a GCS hiccup gets one more look; a stale backup fails without retry
        on_failure_callback=alert_callbacks(),
    )
