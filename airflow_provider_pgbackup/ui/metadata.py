"""Where the Backups page's data comes from: Airflow's metadata database only (no storage, no secret).

The asset events of the :data:`~airflow_provider_pgbackup.lineage.CATALOGUE_GROUP` assets the caller
may read, from the DAGs they may read; the restore verdicts (XCom
:data:`~airflow_provider_pgbackup.lineage.RESTORE_XCOM_KEY`); the runs of the restore DAG. Put together
by :func:`~airflow_provider_pgbackup.ui.catalogue.build_catalogue`. The ``[pgbackup]`` settings the page
reads are here too.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import AssetDetails

from airflow_provider_pgbackup.compat import conf
from airflow_provider_pgbackup.lineage import CATALOGUE_GROUP, RESTORE_XCOM_KEY
from airflow_provider_pgbackup.ui.catalogue import Event, Origin, RestoreRun, Verdict, build_catalogue

#: Asset events read at most (the newest first).
MAX_EVENTS = 20_000


def setting(name: str, fallback: str) -> str:
    return str(conf.get("pgbackup", name, fallback=fallback))


def restore_dag_id() -> str:
    return setting("restore_dag_id", "pg_restore_backup")


# ------------------------------------------------------------------------------------------------ auth
# The caller is whoever Airflow's own API takes them to be (``get_user``: the UI's session cookie or a
# bearer token; 401 when there is neither or it is invalid); what they may do, the auth manager says.


def _as_utc(moment: datetime.datetime | None) -> datetime.datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _events(session: Any, user: BaseUser, dags: set[str], since: datetime.datetime) -> list[Event]:
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    rows = session.execute(
        select(AssetEvent, AssetModel.name, AssetModel.id)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.group == CATALOGUE_GROUP, AssetEvent.timestamp >= since)
        .order_by(AssetEvent.timestamp.desc())
        .limit(MAX_EVENTS)
    ).all()
    manager = get_auth_manager()
    readable_assets = {
        asset_id
        for asset_id in {row[2] for row in rows}
        if manager.is_authorized_asset(method="GET", details=AssetDetails(id=str(asset_id)), user=user)
    }
    return [
        Event(
            timestamp=_as_utc(event.timestamp) or datetime.datetime.now(datetime.timezone.utc),
            extra=event.extra if isinstance(event.extra, Mapping) else {},
            origin=Origin(
                event.source_dag_id, event.source_run_id, event.source_task_id, event.source_map_index
            ),
            asset=name,
        )
        for event, name, asset_id in rows
        if asset_id in readable_assets and event.source_dag_id in dags
    ]


def _verdicts(session: Any, dags: set[str], since: datetime.datetime) -> list[Verdict]:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    rows = session.scalars(
        select(XComModel).where(XComModel.key == RESTORE_XCOM_KEY, XComModel.timestamp >= since)
    ).all()
    verdicts = []
    for row in rows:
        if row.dag_id not in dags:
            continue
        value = XComModel.deserialize_value(row)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, Mapping):
            verdicts.append(
                Verdict(
                    timestamp=_as_utc(row.timestamp) or datetime.datetime.now(datetime.timezone.utc),
                    value=value,
                    origin=Origin(row.dag_id, row.run_id, row.task_id, row.map_index),
                )
            )
    return verdicts


def _restore_runs(session: Any, dags: set[str]) -> list[RestoreRun]:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    dag_id = restore_dag_id()
    if dag_id not in dags:
        return []
    runs = session.scalars(
        select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(50)
    ).all()
    return [
        RestoreRun(
            run_id=run.run_id,
            state=str(getattr(run.state, "value", run.state)),
            artifact_uri=(run.conf or {}).get("artifact_uri"),
            target_database=(run.conf or {}).get("target_database"),
            queued_at=_as_utc(run.queued_at),
            origin=Origin(dag_id, run.run_id, "restore"),
        )
        for run in runs
    ]


def catalogue_for(user: BaseUser, dags: set[str]) -> list[dict[str, Any]]:
    """Every backup ``user`` may see (reported by ``dags``, the DAGs they may read, into assets they may
    read), per connection and database."""
    from airflow.utils.session import create_session

    now = datetime.datetime.now(datetime.timezone.utc)
    since = now - datetime.timedelta(days=float(setting("history_days", "400")))
    target = datetime.timedelta(hours=float(setting("freshness_target_hours", "26")))
    with create_session() as session:
        events = _events(session, user, dags, since)
        verdicts = _verdicts(session, dags, since)
        restores = _restore_runs(session, dags)
    return build_catalogue(events, verdicts, restores, now=now, freshness_target=target)
