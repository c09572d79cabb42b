"""What differs between the Airflow 3 minors the provider supports, in one place.

Airflow 3.2 moved the task-facing exceptions, ``BaseHook``, ``conf`` and ``mask_secret`` into the Task SDK
(``airflow.sdk``); 3.0 and 3.1 have them (all, or some) only at their older homes, which 3.2+ still serve
with a deprecation warning. Every other module imports them from here, so nothing else looks at versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "BaseHook",
    "conf",
    "mask_secret",
]
