"""PgBackupArtifactTrigger: wait, in the triggerer, until a backup's artifact and manifest both exist.

The trigger only looks for the two names; it never reads the artifact or runs pg_restore. The full
verification runs back on a worker, in the sensor's ``execute_complete``.

Local (or mounted) paths are looked at with ``stat``; ``gs://`` URIs with two small metadata
requests through ``google-cloud-storage`` (a listing of at most one object for a directory-format
folder). Both are blocking calls, so every look runs in a worker thread (``asyncio.to_thread``) and
the triggerer's event loop is never blocked. A GCS error that outlasts the client's own retries ends
the trigger with an ``error`` event, which the sensor turns into a retryable failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_WASB_CONN_ID,
    ArtifactSource,
    StorageSettings,
    open_source,
)


class PgBackupArtifactTrigger(BaseTrigger):
    """Fire once both ``path`` and ``path.manifest.json`` exist (local path, ``gs://``, ``s3://`` or ``az://``).

    :param path: the artifact (file or folder), local or ``gs://bucket/path/name``.
    :param poll_interval: seconds between two looks.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for a ``gs://`` path.
    :param aws_conn_id: Airflow ``aws`` connection for an ``s3://`` path.
    :param wasb_conn_id: Airflow ``wasb`` connection for an ``az://`` path.
    :param impersonation_chain: service account(s) to impersonate for a ``gs://`` path.
    """

    def __init__(
        self,
        path: str,
        poll_interval: float = 60.0,
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        impersonation_chain: list[str] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path = path
        self.poll_interval = poll_interval
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        self.impersonation_chain = impersonation_chain
        self._source: ArtifactSource | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "path": self.path,
                "poll_interval": self.poll_interval,
                "gcp_conn_id": self.gcp_conn_id,
                "aws_conn_id": self.aws_conn_id,
                "wasb_conn_id": self.wasb_conn_id,
                "impersonation_chain": self.impersonation_chain,
            },
        )

    def _present(self) -> bool:
        """One blocking look (run in a thread)."""
        if self._source is None:
            settings = StorageSettings(
                gcp_conn_id=self.gcp_conn_id or None,
                aws_conn_id=self.aws_conn_id or None,
                wasb_conn_id=self.wasb_conn_id or None,
                impersonation_chain=self.impersonation_chain or None,
            )
            self._source = open_source(self.path, settings=settings)
        return self._source.present()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                present = await asyncio.to_thread(self._present)
            except Exception as err:
                self.log.exception("Could not look for backup %s", self.path)
                message = f"{type(err).__name__}: {err}"
                yield TriggerEvent({"status": "error", "path": self.path, "message": message})  # type: ignore[no-untyped-call]
                return
            if present:
                self.log.info("Backup %s and its manifest are there", self.path)
                yield TriggerEvent({"status": "present", "path": self.path})  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poll_interval)
