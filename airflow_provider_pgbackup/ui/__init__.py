"""The "Backups" page inside Airflow's UI (Airflow 3.1+), registered by the ``airflow.plugins`` entry point.

:class:`PgBackupPlugin` adds a FastAPI app under ``/pgbackup`` (the page, its script and its JSON API:
:mod:`~airflow_provider_pgbackup.ui.app`) and an entry "Backups" in the UI's navigation that shows the page
inside Airflow's own frame. Installing the package is enough: Airflow loads the plugins of every
installed distribution's ``airflow.plugins`` entry points.

On Airflow 3.0, whose UI has no external views, the plugin is empty
(:func:`~airflow_provider_pgbackup.compat.supports_ui_plugins`): the rest of the provider works unchanged.

Every Airflow process loads plugins (the scheduler and workers too), so the app, and the api-server
modules it uses, are only built when the api-server first serves a request under ``/pgbackup``.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_pgbackup.compat import supports_ui_plugins

URL_PREFIX = "/pgbackup"
#: Where the UI shows the page: ``<airflow>/plugin/pgbackup-backups``.
URL_ROUTE = "pgbackup-backups"


class LazyApp:
    """An ASGI app that builds :func:`~airflow_provider_pgbackup.ui.app.create_app` on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_pgbackup.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class PgBackupPlugin(AirflowPlugin):
    """The Backups page: list the backups tasks reported, restore one, back a database up now."""

    name = "pgbackup"
    if supports_ui_plugins():
        fastapi_apps = [{"name": "pgbackup", "app": LazyApp(), "url_prefix": URL_PREFIX}]
        external_views = [
            {
                "name": "Backups",
                "href": f"{URL_PREFIX}/",
                "url_route": URL_ROUTE,
                "destination": "nav",
                "category": "browse",
            }
        ]
