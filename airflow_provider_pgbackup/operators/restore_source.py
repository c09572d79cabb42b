"""The first step of a restore: the backup is verified, and its manifest read, before anything is created.

Every check of :func:`~airflow_provider_pgbackup.verify.verify_backup` runs on the very bytes the restore
will read (a store's source pins their version), the sha256 always. A backup that is not there is a
retryable failure (it may be on its way); a corrupt one, or an encrypted one without a key, fails at
once; a manifest that changed since it was verified (the backup is being replaced) is not restored.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_pgbackup.compat import AirflowException, AirflowFailException
from airflow_provider_pgbackup.manifest import Manifest, ManifestError
from airflow_provider_pgbackup.storage import ArtifactSource, StoreNotFound
from airflow_provider_pgbackup.verify import (
    ArtifactCorrupt,
    ArtifactMissing,
    VerificationReport,
    verify_backup,
)


def verified_backup(
    source: ArtifactSource,
    *,
    runner: Any,
    verify_contents: bool,
    pg_bin_dir: str | None,
    identities: list[Any] | None,
    log: logging.Logger | Any,
) -> tuple[VerificationReport, Manifest]:
    """Verify ``source`` (checksum always, contents when ``verify_contents``; a plain script is also
    read for what it would do, :class:`~airflow_provider_pgbackup.sqlscript.ScriptScanner`) and return
    the report and the manifest it vouches for."""
    path = source.location.uri
    try:
        report = verify_backup(
            source,
            verify_checksum=True,
            verify_contents=verify_contents,
            pg_bin_dir=pg_bin_dir,
            runner=runner,
            identities=identities,
            scan_script=True,
        )
    except ArtifactMissing as err:
        raise AirflowException(f"nothing to restore: {err}") from err
    except ArtifactCorrupt as err:
        raise AirflowFailException(
            f"refusing to restore {path}: check {err.check!r} failed: {err.reason}"
        ) from err
    except StoreNotFound as err:
        raise AirflowFailException(f"nothing to restore: {err}") from err
    log.info("Backup %s verified: %s", path, ", ".join(f"{c.name} {c.status}" for c in report.checks))
    try:
        manifest = Manifest.from_json(source.manifest_bytes())
    except (OSError, ManifestError) as err:
        raise AirflowException(f"could not read the manifest of {path} after verifying it: {err}") from err
    if manifest.sha256 != report.sha256:
        raise AirflowException(
            f"the manifest of {path} changed after verification (sha256 {manifest.sha256}, verified "
            f"{report.sha256}): the backup is being replaced; not restoring it"
        )
    if manifest.encryption is not None and identities is None:
        raise AirflowFailException(
            f"{path} is encrypted (age): give decryption_conn_id, a connection whose password holds "
            "an AGE-SECRET-KEY-1... identity of one of its recipients"
        )
    return report, manifest
