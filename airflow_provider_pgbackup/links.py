"""The provider's one operator extra link: the backup a task handled, on its store's web page.

Airflow 3 computes an extra link when the task finishes, on the worker, and keeps it as an XCom: the
UI only reads it back. So what a link shows is decided in ``execute``, where the task knows what it
wrote, read or published, and pushed under the link's :attr:`BackupConsoleLink.key`
(:func:`push_link`). Every operator names its link as users know it ("Backup in console" on a dump and
the sensor, "Published backup" on the uploads and promotions) with one class.

The page is the object's in the store's console, or in the emulator the task's connection names (the
demo's); a local artifact has none (:func:`~airflow_provider_pgbackup.lineage.operator_link`).

A dump into a staging location that a promotion later publishes and ``discard_staging`` then deletes
would link to nothing after a green run: :func:`published_link` lets the dump link to where the
promotion downstream of it puts the backup instead (the promotion says where, through
:class:`PublishesBackups`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import attrs
from airflow.sdk import BaseOperatorLink

from airflow_provider_pgbackup.lineage import operator_link
from airflow_provider_pgbackup.storage import Location

log = logging.getLogger(__name__)

#: The XCom a dump and the sensor push their link under (the uploads keep their own keys).
XCOM_LINK = "backup_console_url"


@attrs.define()
class BackupConsoleLink(BaseOperatorLink):
    """Operator extra link: the backup a task handled, in its store's web console (its emulator's in the
    demo); empty for a local artifact or a store without a page (Azure).

    :param name: the button's name in the task's view.
    :param key: the XCom the operator pushed the URL under (:func:`push_link`).
    """

    name: str = "Backup in console"
    key: str = XCOM_LINK

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=self.key)
        return str(url) if url else ""


@runtime_checkable
class PublishesBackups(Protocol):
    """A task that publishes a staged backup (the promotion): where its copy of ``staged``, the artifact
    the task ``staged_by`` wrote, will be; None when it publishes another backup."""

    def published_location(self, context: Any, staged: Location, *, staged_by: str) -> Location | None: ...


def push_link(context: Any, key: str, url: str | None) -> None:
    """Push ``url`` (or "") as the task's link XCom under ``key``; a context without a task instance
    (an operator executed by hand) is left alone."""
    getter = context.get if hasattr(context, "get") else None
    ti = getter("ti") if getter else None
    if ti is not None:
        ti.xcom_push(key=key, value=url or "")


def published_link(operator: Any, context: Any, artifact: Location) -> str:
    """The dump's link: the page of the copy a promotion downstream of ``operator`` publishes (the staged
    copy is deleted after a green run), else the page of ``artifact`` itself."""
    for task in _downstream(operator):
        if not isinstance(task, PublishesBackups):
            continue
        try:
            published = task.published_location(context, artifact, staged_by=operator.task_id)
        except Exception as err:  # a link is a convenience: it never fails the task
            log.warning("no link to the copy %s publishes: %s", getattr(task, "task_id", task), err)
            continue
        if published is not None:  # the same store: the dump's (rendered) connection opens its page
            return operator_link(published, operator)
    return operator_link(artifact, operator)


def _downstream(operator: Any) -> Iterator[Any]:
    """Every task after ``operator`` in its DAG, nearest first, each once (none outside a DAG)."""
    has_dag = getattr(operator, "has_dag", None)
    if not callable(has_dag) or not has_dag():
        return
    seen: set[str] = set()
    queue = list(getattr(operator, "downstream_list", ()))
    while queue:
        task = queue.pop(0)
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        yield task
        queue.extend(task.downstream_list)
