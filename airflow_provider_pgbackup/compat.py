"""What differs between the Airflow 3 minors the provider supports, in one place.

Airflow 3.2 moved the task-facing exceptions, ``BaseHook``, ``conf`` and ``mask_secret`` into the Task SDK
(``airflow.sdk``); 3.0 and 3.1 have them (all, or some) only at their older homes, which 3.2+ still serve
with a deprecation warning. Every other module imports them from here, so nothing else looks at versions.

The "Backups" page (:mod:`airflow_provider_pgbackup.ui`) needs the UI plugin interface of Airflow 3.1
(``external_views`` beside ``fastapi_apps``): :data:`UI_PLUGIN_SUPPORTED` is the one check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow import __version__ as AIRFLOW_VERSION

#: The lowest Airflow (major, minor) whose UI shows a provider's page (plugins' ``external_views``).
UI_PLUGIN_MIN_AIRFLOW = (3, 1)


def airflow_version_at_least(minimum: tuple[int, int], version: str = AIRFLOW_VERSION) -> bool:
    """Whether ``version`` (``"3.1.2"``, ``"3.2.0rc1"``...) is at least ``minimum`` (major, minor)."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts) >= minimum


#: True on Airflow 3.1+: the provider registers its "Backups" page; on 3.0 the plugin is empty.
UI_PLUGIN_SUPPORTED = airflow_version_at_least(UI_PLUGIN_MIN_AIRFLOW)

if TYPE_CHECKING:  # type-check against the newest homes
    from airflow.sdk import BaseHook
    from airflow.sdk.configuration import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
    )
    from airflow.sdk.log import mask_secret
else:
    try:  # Airflow 3.2+
        from airflow_provider_pgbackup.compat import (
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
        from airflow_provider_pgbackup.compat import BaseHook
    except ImportError:  # Airflow 3.0
        from airflow.hooks.base import BaseHook

    try:  # Airflow 3.2+
        from airflow_provider_pgbackup.compat import conf
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.configuration import conf

    try:  # Airflow 3.1+
        from airflow_provider_pgbackup.compat import mask_secret
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import mask_secret

__all__ = [
    "UI_PLUGIN_MIN_AIRFLOW",
    "UI_PLUGIN_SUPPORTED",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "BaseHook",
    "airflow_version_at_least",
    "conf",
    "mask_secret",
]
