"""What the lock tests of every store share: a history of uploaded backups, locked or not, and the
ISO form (second precision, ``Z``) in which stores report a retain-until date."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

from airflow_provider_pgbackup.storage import StorageSettings, lock_request, upload_backup
from tests.gcs_emulator import synthetic_backup

LOG = logging.getLogger(__name__)
UTC = datetime.timezone.utc


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def upload_history(tmp_path: Path, folder: str, days: list[int], **lock: object) -> list[str]:
    """Backups that finished ``days`` ago, uploaded (locked as ``lock`` says) into ``folder``
    (``s3://bucket/pg``, ``gs://bucket/pg``...); their artifact names, in the order of ``days``."""
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    names = []
    for day in days:
        finished = now - datetime.timedelta(days=day, minutes=5)
        name = finished.strftime("%Y%m%dT%H%M%S.dump")
        artifact, _ = synthetic_backup(tmp_path / "local", name, size=64, finished_at=finished)
        settings = StorageSettings(retry_timeout=2.0, lock=lock_request(**lock) if lock else None)
        upload_backup(artifact, folder, settings=settings, log=LOG)
        names.append(name)
    return names
