"""PgBackupRetentionOperator: grandfather-father-son retention over a local folder or a ``gs://`` prefix.

Backups are found by their manifests (a manifest is the mark of a complete backup); the manifest's
``finished_at`` decides a backup's age. The policy keeps the union of:

- ``keep_last``: the N most recent backups;
- ``keep_daily`` / ``keep_weekly`` / ``keep_monthly``: the most recent backup of each of the N most
  recent days / ISO weeks / months that have a backup (periods without one do not count),

plus always the newest complete backup. The provider's own leftovers (failed or interrupted runs,
staging files), known by the evidence the store finds (:mod:`.backup_folder`), never by a name, are
removed once older than ``incomplete_grace``; anything else no manifest describes is left alone.

A backup the store holds locked (:mod:`~airflow_provider_pgbackup.storage.object_lock`: S3 Object Lock,
Azure immutability) is never touched before its date: the run reports it (XCom ``locked``, with when it
becomes deletable) and a run after that date deletes its exact versions; ``bypass_governance`` lifts a
governance / unlocked lock where the user allows it. The GFS keep-set does not depend on locks.

Nothing is deleted when the newest complete backup is older than ``max_newest_age`` or fails its check
(artifact present with the sizes its manifest records): the task fails instead, because backups have
stopped working and old ones are then all there is.

The shrink guard (:mod:`airflow_provider_pgbackup.shrink`, ``shrink_guard``) holds a backup that shrank
against the newest verified backup of its database before it: a held backup is never deleted and never
counted by the policy, so it cannot push out a verified one; when the newest backup of a database is
held, nothing is deleted and the task fails with the table of what shrank, until it is acknowledged (a
marker object ``<artifact>.shrink-acknowledged`` beside it).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import pendulum
from airflow.sdk import BaseOperator

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.compat import AirflowFailException
from airflow_provider_pgbackup.failures import failure_policy
from airflow_provider_pgbackup.lineage import publish_asset_events, retention_event_metadata
from airflow_provider_pgbackup.operators.retention_deletion import RetentionDeleter
from airflow_provider_pgbackup.operators.retention_policy import (
    artifact_location,
    check_count,
    check_duration,
    check_held,
    check_newest,
    lock_plan,
    newest_complete_backup,
    select_kept,
)
from airflow_provider_pgbackup.options import InvalidOptionError, is_templated, parse_flag
from airflow_provider_pgbackup.shrink import ShrinkGuard
from airflow_provider_pgbackup.storage import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_GCP_CONN_ID,
    DEFAULT_RETRY_TIMEOUT,
    DEFAULT_WASB_CONN_ID,
    BackupStore,
    StorageSettings,
    StoredEntry,
    open_store,
    parse_location,
    portable_location,
)
from airflow_provider_pgbackup.storage.folder import (
    StoredBackup,
    artifact_problem,
    find_backups,
    foreign_entries,
    provider_leftover,
)


class PgBackupRetentionOperator(BaseOperator):
    """Delete old backups from a folder or object-store prefix by a grandfather-father-son policy.

    Deletes a backup's manifest first, then its artifact, so a half-deleted backup is never taken for
    a complete one. Every deletion is logged; ``dry_run=True`` only logs what would be deleted. Returns
    (XCom) the kept backups with the rules that keep them, and the deleted URIs. The asset events of
    its ``outlets`` carry the artifacts kept and the backups deleted
    (:func:`~airflow_provider_pgbackup.lineage.retention_event_metadata`): the "Backups" page drops
    what a retention run no longer found.

    :param location: local folder (absolute), ``gs://bucket/prefix``, ``s3://bucket/prefix`` or
        ``az://container/prefix`` holding the backups. Templated.
    :param keep_last: keep the N most recent backups.
    :param keep_daily: keep the newest backup of each of the N most recent days having one.
    :param keep_weekly: the same for ISO weeks.
    :param keep_monthly: the same for calendar months.
    :param dry_run: log what would be deleted and delete nothing.
    :param incomplete_grace: the provider's own leftovers (partial artifacts, manifests being written,
        stale lock files, an artifact whose manifest never came) are removed once older than this
        (longer than your longest dump); ``timedelta`` or seconds. Anything else in the folder (a
        README, another tool's files, a sub-folder of other backups) is never deleted, only listed.
    :param max_newest_age: delete nothing (and fail) when the newest complete backup finished longer ago
        than this; None disables the check.
    :param verify_newest: delete nothing (and fail) unless the newest backup's artifact is present with
        the size(s) its manifest records (and, on GCS, the same sha256 in its metadata).
    :param timezone: time zone in which days, weeks and months are counted.
    :param bypass_governance: delete a backup the policy drops even while it is locked in a mode that a
        privileged principal can lift (S3 ``governance``, Azure ``unlocked``), lifting the lock (needs
        ``s3:BypassGovernanceRetention`` / the right to delete the policy). Off: a locked backup is never
        touched before its date; it is reported (XCom ``locked``, with ``deletable_after``) and deleted
        by the first run after that date. Compliance / locked modes and legal holds are never bypassed.
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for ``gs://`` locations.
    :param aws_conn_id: Airflow ``aws`` connection for ``s3://`` locations.
    :param wasb_conn_id: Airflow ``wasb`` connection for ``az://`` locations.
    :param retry_timeout: seconds each object-store request is retried on transient errors.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (one e-mail, or a chain
        whose last account is impersonated; needs the ``google`` extra). Templated.
    :param shrink_guard: the thresholds of the shrink guard (a ``ShrinkGuard``, a mapping of its settings,
        True for the defaults, False for off).
    """

    template_fields: Sequence[str] = (
        "location",
        "gcp_conn_id",
        "aws_conn_id",
        "wasb_conn_id",
        "impersonation_chain",
    )
    ui_color = "#f4d6cc"

    def __init__(
        self,
        *,
        location: str,
        keep_last: int = 1,
        keep_daily: int = 7,
        keep_weekly: int = 4,
        keep_monthly: int = 12,
        dry_run: bool = False,
        incomplete_grace: datetime.timedelta | float = datetime.timedelta(days=1),
        max_newest_age: datetime.timedelta | float | None = datetime.timedelta(days=2),
        verify_newest: bool = True,
        timezone: str = "UTC",
        gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        wasb_conn_id: str | None = DEFAULT_WASB_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
        bypass_governance: bool = False,
        shrink_guard: ShrinkGuard | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shrink_guard = ShrinkGuard.of(shrink_guard)
        self.location = location
        self.bypass_governance = parse_flag("bypass_governance", bypass_governance)
        self.keep_last = check_count("keep_last", keep_last)
        self.keep_daily = check_count("keep_daily", keep_daily)
        self.keep_weekly = check_count("keep_weekly", keep_weekly)
        self.keep_monthly = check_count("keep_monthly", keep_monthly)
        # BaseOperator has a dry_run() method: the flag gets its own attribute name.
        self.is_dry_run = parse_flag("dry_run", dry_run)
        grace = check_duration("incomplete_grace", incomplete_grace, allow_none=False)
        assert grace is not None
        self.incomplete_grace = grace
        self.max_newest_age = check_duration("max_newest_age", max_newest_age, allow_none=True)
        self.verify_newest = parse_flag("verify_newest", verify_newest)
        try:
            pendulum.timezone(timezone)
        except Exception as err:
            raise InvalidOptionError(f"timezone {timezone!r} is not a known time zone") from err
        self.timezone = timezone
        self.gcp_conn_id = gcp_conn_id
        self.aws_conn_id = aws_conn_id
        self.wasb_conn_id = wasb_conn_id
        self.retry_timeout = retry_timeout
        self.impersonation_chain = impersonation_chain
        self._settings()
        if not is_templated(location):
            parse_location(location, what="location", folder=True)

    def validate(self) -> None:
        """Check every argument without touching storage; raise :class:`InvalidOptionError` naming it."""
        self._settings()
        parse_location(self.location, what="location", folder=True)

    def _settings(self) -> StorageSettings:
        return StorageSettings(
            gcp_conn_id=self.gcp_conn_id,
            aws_conn_id=self.aws_conn_id or None,
            wasb_conn_id=self.wasb_conn_id or None,
            retry_timeout=self.retry_timeout,
            impersonation_chain=None
            if is_templated(self.impersonation_chain)
            else (self.impersonation_chain or None),
        )

    def _store(self) -> BackupStore:
        self.validate()
        return open_store(self.location, settings=self._settings())

    def execute(self, context: Any) -> dict[str, Any]:
        with failure_policy():
            return self._execute(context)

    def _execute(self, context: Any) -> dict[str, Any]:
        store = self._store()
        entries = store.entries()
        now = datetime.datetime.now(datetime.timezone.utc)
        backups, incomplete, protected = find_backups(store, entries, self.log)
        foreign = foreign_entries(entries, backups, protected)
        self._log_listing(store, backups, incomplete, foreign)
        if not backups:
            return self._nothing_to_keep(context, store, entries, foreign)
        held = check_held(store, entries, backups, self.shrink_guard, self.log)
        backups = [b for b in backups if b.name not in held]  # no keeper, never deleted
        if not backups:
            raise AirflowFailException(f"{store.location.uri} holds only held backups; deleting nothing")
        newest = check_newest(
            store, backups, now, max_newest_age=self.max_newest_age, verify_newest=self.verify_newest
        )
        kept_reasons = select_kept(
            [b.finished_at for b in backups],
            keep_last=self.keep_last,
            keep_daily=self.keep_daily,
            keep_weekly=self.keep_weekly,
            keep_monthly=self.keep_monthly,
            timezone=self.timezone,
        )
        deleter = RetentionDeleter(
            store, now, self.log, dry_run=self.is_dry_run, bypass_governance=self.bypass_governance
        )
        deleter.delete_dropped(backups, kept_reasons, newest)
        deleter.delete_incomplete(incomplete, protected, entries, self.incomplete_grace)
        done = deleter.result
        kept = [
            {"name": backups[i].name, "finished_at": backups[i].manifest.finished_at, "rules": reasons}
            for i, reasons in sorted(
                kept_reasons.items(), key=lambda item: backups[item[0]].finished_at, reverse=True
            )
        ]
        self.log.info(
            "Retention of %s: kept %d backups, %s %d backups and %d incomplete entries%s",
            store.location.uri,
            len(kept),
            "would delete" if self.is_dry_run else "deleted",
            len(backups) - len(kept) - done.locked_backups,
            len(done.incomplete_deleted),
            f"; {len(done.locked)} locked backups or leftovers cannot be deleted yet" if done.locked else "",
        )
        metrics.emit_retention(store.location.scheme, kept=len(kept), deleted=len(done.gone), held=len(held))
        self._publish(
            context,
            store,
            kept=[b for b in backups if b not in done.gone],
            deleted=done.gone,
            held=[h.backup for h in held.values()],
        )
        return {
            "kept": kept,
            "deleted": done.deleted,
            "incomplete_deleted": done.incomplete_deleted,
            "left_alone": foreign,
            "locked": done.locked,
            "dry_run": self.is_dry_run,
            "held": [{"name": name, **backup.shrink.to_dict()} for name, backup in sorted(held.items())],
        }

    def _log_listing(
        self,
        store: BackupStore,
        backups: list[StoredBackup],
        incomplete: list[StoredEntry],
        foreign: list[str],
    ) -> None:
        self.log.info(
            "%s holds %d complete backups and %d incomplete entries",
            store.location.uri,
            len(backups),
            len(incomplete),
        )
        if foreign:
            self.log.info(
                "Leaving alone %d entries this provider did not write (never deleted): %s",
                len(foreign),
                ", ".join(foreign),
            )

    def _nothing_to_keep(
        self, context: Any, store: BackupStore, entries: list[StoredEntry], foreign: list[str]
    ) -> dict[str, Any]:
        """No complete backup: fail when the folder is not empty and backups are expected, else a no-op."""
        if entries and self.max_newest_age is not None:
            metrics.emit_retention_refused(store.location.scheme, "empty")
            raise AirflowFailException(f"{store.location.uri} holds no complete backup; deleting nothing")
        self.log.info("No complete backup in %s; nothing to do", store.location.uri)
        self._publish(context, store, kept=[], deleted=[])
        return {
            "kept": [],
            "deleted": [],
            "incomplete_deleted": [],
            "left_alone": foreign,
            "locked": [],
            "dry_run": self.is_dry_run,
            "held": [],
        }

    def _publish(
        self,
        context: Any,
        store: BackupStore,
        *,
        kept: list[StoredBackup],
        deleted: list[StoredBackup],
        held: Sequence[StoredBackup] = (),
    ) -> None:
        """The outlets' asset events: the folder's backups after this run, and those it deleted."""
        publish_asset_events(
            context,
            self.outlets,
            retention_event_metadata(
                portable_location(store.location),
                kept=[artifact_location(store, b) for b in [*kept, *held]],
                deleted=[(b.manifest, artifact_location(store, b)) for b in deleted],
                held=[artifact_location(store, b) for b in held],
            ),
        )


__all__ = [
    "PgBackupRetentionOperator",
    "StoredBackup",
    "artifact_problem",
    "find_backups",
    "foreign_entries",
    "lock_plan",
    "newest_complete_backup",
    "provider_leftover",
    "select_kept",
]
