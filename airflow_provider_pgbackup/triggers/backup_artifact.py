"""PgBackupArtifactTrigger: wait, in the triggerer, until a backup's artifact and manifest both exist.

The trigger only looks for the two paths (a cheap ``stat``); it never reads the artifact or runs
pg_restore. The full verification runs back on a worker, in the sensor's ``execute_complete``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_pgbackup.manifest import manifest_path_for


class PgBackupArtifactTrigger(BaseTrigger):
    """Fire once both ``path`` and ``path.manifest.json`` exist (local or mounted filesystem).

    :param path: the artifact (file or folder).
    :param poll_interval: seconds between two looks.
    """

    def __init__(self, path: str, poll_interval: float = 60.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path = path
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"path": self.path, "poll_interval": self.poll_interval},
        )

    def _present(self) -> bool:
        return os.path.exists(self.path) and manifest_path_for(self.path).exists()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            if await asyncio.to_thread(self._present):
                self.log.info("Backup %s and its manifest are there", self.path)
                yield TriggerEvent({"status": "present", "path": self.path})  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poll_interval)
