"""The Backups page's FastAPI app, mounted by Airflow's api-server under ``/pgbackup``.

Airflow does not protect a plugin's routes: every route here asks Airflow's auth manager first.

- ``GET /pgbackup/`` (the page), ``GET /pgbackup/static/...`` and ``GET /pgbackup/api/backups``: a signed-in
  caller allowed to read assets; the backups listed are those reported by DAGs the caller may read.
  Anonymous: 401; no asset access: 403. Neither response names a backup or a path.
- ``POST /pgbackup/api/restore``: also allowed to trigger the restore DAG (``POST`` on its runs), for a
  backup the caller can see; triggers the restore DAG with the form's values, checked first.
- ``POST /pgbackup/api/backup``: allowed to trigger the DAG that made the database's newest backup;
  runs it again with that run's conf (and the database's connection and name).

Both ``POST`` routes take JSON only (a form another site posts cannot be JSON) and refuse another
``Origin``; the session cookie is ``SameSite=Lax``. The data comes from Airflow's metadata database only
(:mod:`~airflow_provider_pgbackup.ui.catalogue`): no storage, no connection's secret is read.

Settings (``[pgbackup]`` in airflow.cfg, or ``AIRFLOW__PGBACKUP__...``): ``restore_dag_id`` (default
``pg_restore_backup``), ``freshness_target_hours`` (26), ``history_days`` (400: how far back events count).
"""

from __future__ import annotations

import datetime
import inspect
import urllib.parse
from collections.abc import Mapping
from importlib import resources
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import (
    DagAccessEntity,
    DagDetails,
)
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from airflow_provider_pgbackup.options import InvalidOptionError, check_conn_id
from airflow_provider_pgbackup.selection import MAX_IDENTIFIER_BYTES, RestoreSubset
from airflow_provider_pgbackup.ui.catalogue import (
    Origin,
    find_backup,
)
from airflow_provider_pgbackup.ui.metadata import catalogue_for, restore_dag_id

URL_PREFIX = "/pgbackup"
STATIC_FILES = {"backups.js": "text/javascript", "backups.css": "text/css"}
#: Headers of every answer: nothing cached, the page framed by Airflow's own UI only, no inline script.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'",
    "Referrer-Policy": "same-origin",
}


def reader(user: Annotated[BaseUser, Depends(get_user)]) -> BaseUser:
    """A caller allowed to read assets (the page lists asset events); 403 otherwise."""
    if not get_auth_manager().is_authorized_asset(method="GET", user=user):
        raise HTTPException(403, "reading assets is not allowed for this user")
    return user


#: A route's caller, once :func:`reader` let them in.
Reader = Annotated[BaseUser, Depends(reader)]


def _may_trigger(user: BaseUser, dag_id: str) -> bool:
    return bool(
        get_auth_manager().is_authorized_dag(
            method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
        )
    )


def _may_edit(user: BaseUser, dag_id: str) -> bool:
    return bool(get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=dag_id), user=user))


def _readable_dags(user: BaseUser) -> set[str]:
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def json_only(request: Request) -> None:
    """A state-changing request must be JSON from this origin: no other site's form can send it."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send application/json")
    origin = request.headers.get("origin")
    if origin and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-origin requests are refused")


# -------------------------------------------------------------------------------------- triggering
class RestoreRequest(BaseModel):
    artifact_uri: str = Field(min_length=1, max_length=2000)
    target_conn_id: str = Field(min_length=1, max_length=250)
    target_database: str = Field(min_length=1, max_length=200)
    tables: list[str] = Field(default_factory=list, max_length=200)
    schemas: list[str] = Field(default_factory=list, max_length=200)


class BackupRequest(BaseModel):
    connection: str = Field(min_length=1, max_length=250)
    database: str = Field(min_length=1, max_length=300)


def _check_restore(body: RestoreRequest, backup: Mapping[str, Any]) -> RestoreSubset | None:
    """The form's values, checked before anything is triggered (400 naming the value)."""
    try:
        check_conn_id("target_conn_id", body.target_conn_id)
        if len(body.target_database.encode("utf-8")) > MAX_IDENTIFIER_BYTES or any(
            c in body.target_database for c in "\n\r\x00"
        ):
            raise InvalidOptionError(
                f"new database {body.target_database!r} must be a PostgreSQL name: at most "
                f"{MAX_IDENTIFIER_BYTES} bytes, no newline or NUL"
            )
        subset = RestoreSubset.build(body.tables, body.schemas)
    except InvalidOptionError as err:
        raise HTTPException(400, str(err)) from err
    if subset is not None and not backup.get("restorable_in_part"):
        raise HTTPException(
            400,
            f"a {backup.get('format')} backup cannot be restored in part; tables and schemas need the "
            "custom, directory or tar format",
        )
    if body.target_database == backup.get("database") and body.target_conn_id == backup.get(
        "postgres_conn_id"
    ):
        raise HTTPException(
            400,
            f"{body.target_database!r} on {body.target_conn_id!r} is the database this backup was taken "
            "from; restore into a new database",
        )
    return subset


def _trigger(user: BaseUser, dag_id: str, run_conf: dict[str, Any]) -> dict[str, Any]:
    """Trigger ``dag_id`` as the user (unpausing it first when they may edit it)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType

    with create_session() as session:
        dag = session.get(DagModel, dag_id)
        if dag is None:
            raise HTTPException(404, f"the DAG {dag_id!r} is not deployed")
        if dag.is_paused:
            if not _may_edit(user, dag_id):
                raise HTTPException(409, f"the DAG {dag_id!r} is paused; ask someone who may unpause it")
            dag.is_paused = False
    kwargs: dict[str, Any] = {"triggered_by": DagRunTriggeredByType.UI, "conf": run_conf}
    if "triggering_user_name" in inspect.signature(trigger_dag).parameters:
        kwargs["triggering_user_name"] = user.get_name()
    try:
        run = trigger_dag(dag_id, **kwargs)
    except Exception as err:  # a conf the DAG's params refuse, a duplicate run...
        raise HTTPException(400, f"could not trigger {dag_id}: {err}") from err
    if run is None:
        raise HTTPException(500, f"{dag_id} was not triggered")
    return {"dag_id": dag_id, "run_id": run.run_id, "links": Origin(dag_id, run.run_id, None).links()}


def _backup_conf(group: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The DAG that made the database's newest backup and the conf to run it again with."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    made_by = group.get("backup_dag") or {}
    dag_id, run_id = made_by.get("dag_id"), made_by.get("run_id")
    if not dag_id:
        raise HTTPException(409, "no DAG run is known to have made these backups")
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).first()
        previous = dict(run.conf or {}) if run is not None else {}
    run_conf = dict(previous)
    if group.get("connection") and group["connection"] != "(not recorded)":
        run_conf["postgres_conn_id"] = group["connection"]
    if group["backups"] and group["backups"][0].get("database"):
        run_conf["database"] = group["backups"][0]["database"]
    return str(dag_id), run_conf


# ---------------------------------------------------------------------------------------------- app
def _static(name: str) -> str:
    return resources.files("airflow_provider_pgbackup.ui").joinpath("static", name).read_text("utf-8")


def create_app() -> FastAPI:
    app = FastAPI(
        title="PostgreSQL backups",
        description="The Backups page of airflow-provider-pgbackup",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(HTTPException)
    async def plain_errors(request: Request, exc: HTTPException) -> Response:
        """Errors say what is refused, never what exists."""
        if request.method == "GET" and "/api/" not in request.url.path:
            text = {401: "Sign in to Airflow to see the backups.", 403: "You may not see the backups."}
            return HTMLResponse(
                f"<!doctype html><title>Backups</title><p>{text.get(exc.status_code, 'Refused.')}</p>",
                status_code=exc.status_code,
            )
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse)
    def page(user: Reader) -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}")
    def static(name: str, user: Reader) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return Response(_static(name), media_type=STATIC_FILES[name])

    @app.get("/api/backups")
    def backups(user: Reader) -> dict[str, Any]:
        catalogue = catalogue_for(user, _readable_dags(user))
        restore_dag = restore_dag_id()
        for group in catalogue:
            made_by = (group.get("backup_dag") or {}).get("dag_id")
            group["can_back_up"] = bool(made_by) and _may_trigger(user, str(made_by))
        return {
            "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "restore_dag": {"dag_id": restore_dag, "can_trigger": _may_trigger(user, restore_dag)},
            "databases": catalogue,
        }

    @app.post("/api/restore", dependencies=[Depends(json_only)])
    def restore(body: RestoreRequest, user: Reader) -> dict[str, Any]:
        dag_id = restore_dag_id()
        if not _may_trigger(user, dag_id):
            raise HTTPException(403, f"triggering {dag_id} is not allowed for this user")
        found = find_backup(catalogue_for(user, _readable_dags(user)), body.artifact_uri)
        if found is None:
            raise HTTPException(404, "no such backup")
        _group, backup = found
        subset = _check_restore(body, backup)
        run_conf = {
            "artifact_uri": body.artifact_uri,
            "target_conn_id": body.target_conn_id,
            "target_database": body.target_database,
            "tables": list(subset.tables) if subset else [],
            "schemas": list(subset.schemas) if subset else [],
        }
        return _trigger(user, dag_id, run_conf)

    @app.post("/api/backup", dependencies=[Depends(json_only)])
    def back_up_now(body: BackupRequest, user: Reader) -> dict[str, Any]:
        group = next(
            (
                g
                for g in catalogue_for(user, _readable_dags(user))
                if g["connection"] == body.connection and g["database"] == body.database
            ),
            None,
        )
        if group is None:
            raise HTTPException(404, "no such database")
        dag_id, run_conf = _backup_conf(group)
        if not _may_trigger(user, dag_id):
            raise HTTPException(403, f"triggering {dag_id} is not allowed for this user")
        return _trigger(user, dag_id, run_conf)

    return app
