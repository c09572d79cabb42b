"""What differs between the Airflow 3 minors the provider supports, in one place.

Airflow 3.2 moved the task-facing exceptions, ``BaseHook``, ``conf`` and ``mask_secret`` into the Task SDK
(``airflow.sdk``); 3.0 and 3.1 have them (all, or some) only at their older homes, which 3.2+ still serve
with a deprecation warning. Every other module imports them from here, so nothing else looks at versions.

Features that exist only from some minor on are gated here too, each by one name:

- :data:`AIRFLOW_VERSION`: the running Airflow as ``(major, minor, micro)``.
- :func:`supports_deadline_alerts` and :data:`DeadlineAlert` / :data:`DeadlineReference` /
  :data:`AsyncCallback` (``None`` on 3.0): Deadline Alerts, from Airflow 3.1 (``airflow.sdk`` exports them
  from 3.2 on; 3.1 has them in ``airflow.sdk.definitions``).
- :func:`supports_ui_plugins`: FastAPI apps and React views in a plugin (the UI of Airflow 3.1+).

:data:`Stats` is Airflow's metrics front (``incr``, ``gauge``, ``timing``), configured by ``[metrics]``
(StatsD, its Datadog and InfluxDB-tag flavours, OpenTelemetry): ``airflow.sdk.observability.stats`` from
3.2 on, ``airflow.stats.Stats`` on 3.0 and 3.1 (the only place :mod:`~airflow_provider_pgbackup.metrics`
gets it from).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow import __version__ as _airflow_version


def _parse_version(text: str) -> tuple[int, int, int]:
    major, minor, micro = ([int(part) for part in re.findall(r"\d+", text)[:3]] + [0, 0, 0])[:3]
    return major, minor, micro


#: The running Airflow's version, e.g. ``(3, 0, 0)``; pre-release tags are ignored.
AIRFLOW_VERSION: tuple[int, int, int] = _parse_version(_airflow_version)

if TYPE_CHECKING:  # type-check against the newest homes
    from airflow.sdk import BaseHook
    from airflow.sdk.configuration import conf
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
    )
    from airflow.sdk.log import mask_secret
    from airflow.sdk.observability import stats as Stats
else:
    try:  # Airflow 3.2+
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowNotFoundException,
            AirflowSensorTimeout,
        )
    except ImportError:  # Airflow 3.0, 3.1 (3.1's SDK has AirflowException only: take the four from one home)
        from airflow.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowNotFoundException,
            AirflowSensorTimeout,
        )

    try:  # Airflow 3.1+
        from airflow.sdk import BaseHook
    except ImportError:  # Airflow 3.0
        from airflow.hooks.base import BaseHook

    try:  # Airflow 3.2+
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.configuration import conf

    try:  # Airflow 3.1+
        from airflow.sdk.log import mask_secret
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import mask_secret

    try:  # Airflow 3.2+ (3.3's airflow.stats is a deprecated shim)
        from airflow.sdk.observability import stats as Stats
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.stats import Stats

    try:  # Airflow 3.2+
        from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference
    except ImportError:
        try:  # Airflow 3.1
            from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference
        except ImportError:  # Airflow 3.0: no Deadline Alerts
            AsyncCallback = DeadlineAlert = DeadlineReference = None


def supports_deadline_alerts() -> bool:
    """Whether this Airflow has Deadline Alerts (3.1+): a DAG's ``deadline=`` argument."""
    return DeadlineAlert is not None


def deadline_argument(alert: Any) -> dict[str, Any]:
    """``DAG(**deadline_argument(alert))``: ``{"deadline": alert}``, or nothing for no alert (and always on
    Airflow 3.0, whose ``DAG`` has no ``deadline`` argument at all)."""
    return {"deadline": alert} if alert is not None and supports_deadline_alerts() else {}


def airflow_version_at_least(minimum: tuple[int, ...], version: str | None = None) -> bool:
    """Whether the running Airflow (or ``version``: ``"3.1.2"``, ``"3.2.0rc1"``...) is at least
    ``minimum``, e.g. ``(3, 1)``."""
    parsed = AIRFLOW_VERSION if version is None else _parse_version(version)
    return parsed >= (*minimum, 0, 0, 0)[:3]


#: The lowest Airflow whose UI shows a provider's page (plugins' ``external_views`` beside ``fastapi_apps``).
UI_PLUGIN_MIN_AIRFLOW = (3, 1)


def supports_ui_plugins() -> bool:
    """Whether this Airflow serves a plugin's FastAPI apps and views in its UI (3.1+); the "Backups"
    page (:mod:`airflow_provider_pgbackup.ui`) registers nothing on 3.0, so the rest of the provider works."""
    return airflow_version_at_least(UI_PLUGIN_MIN_AIRFLOW)


__all__ = [
    "AIRFLOW_VERSION",
    "UI_PLUGIN_MIN_AIRFLOW",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AsyncCallback",
    "BaseHook",
    "DeadlineAlert",
    "DeadlineReference",
    "Stats",
    "airflow_version_at_least",
    "conf",
    "deadline_argument",
    "mask_secret",
    "supports_deadline_alerts",
    "supports_ui_plugins",
]
