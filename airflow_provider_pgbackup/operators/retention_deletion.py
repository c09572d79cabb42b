"""The deletion step of retention, apart from the operator that decides it: :class:`RetentionDeleter`
deletes the backups the GFS policy drops (manifest first, then artifact; a locked one reported, not
touched) and the provider's own leftovers older than the grace, or only logs them in a dry run."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_pgbackup.operators.retention_policy import lock_plan
from airflow_provider_pgbackup.storage import (
    BackupStore,
    DeletionPlan,
    EntryChanged,
    ObjectLockedError,
    StoredEntry,
    delete_locked,
    object_locks,
    plan_deletion,
)
from airflow_provider_pgbackup.storage.folder import StoredBackup, backup_uri, provider_leftover, uri_of


@dataclass
class DeletionResult:
    """What a retention run deleted (or would delete, in a dry run) and what it could not yet."""

    deleted: list[str] = field(default_factory=list)
    gone: list[StoredBackup] = field(default_factory=list)  # backups whose manifest was deleted
    incomplete_deleted: list[str] = field(default_factory=list)
    locked: list[dict[str, Any]] = field(default_factory=list)
    locked_backups: int = 0


@dataclass
class RetentionDeleter:
    """Deletes what retention drops from one store, at one moment, and records it in :attr:`result`.

    :param store: the store listed.
    :param now: the moment locks and the grace are judged at.
    :param log: where every deletion is logged (the operator's task log).
    :param dry_run: log what would be deleted and delete nothing.
    :param bypass_governance: lift a governance / unlocked lock of a dropped backup.
    """

    store: BackupStore
    now: datetime.datetime
    log: Any
    dry_run: bool = False
    bypass_governance: bool = False
    result: DeletionResult = field(default_factory=DeletionResult)

    @property
    def verb(self) -> str:
        return "Would delete" if self.dry_run else "Deleting"

    def delete(self, entry: StoredEntry, plan: DeletionPlan | None = None) -> bool:
        """Delete one listed entry (nothing in a dry run); False when it changed since it was listed.

        Another run may have deleted it already (no error: the store logs it) or replaced it (a dump
        writing the same name): then it is left alone.
        """
        if self.dry_run:
            return True
        try:
            if plan is not None and plan.locked:  # its exact versions: no delete marker left in front
                delete_locked(self.store, entry, bypass=plan.bypass)
            else:
                self.store.delete(entry)
        except EntryChanged as err:
            self.log.warning("Leaving %s alone: %s", uri_of(self.store, entry), err)
            return False
        return True

    def delete_dropped(
        self, backups: Sequence[StoredBackup], kept_reasons: Mapping[int, list[str]], newest: StoredBackup
    ) -> None:
        """Delete every backup the policy does not keep, oldest first, unless its lock holds it."""
        store = self.store
        for index, backup in sorted(enumerate(backups), key=lambda item: item[1].finished_at):
            if index in kept_reasons:
                continue
            assert backup is not newest
            plan = lock_plan(store, backup, self.now, bypass_governance=self.bypass_governance)
            name = backup_uri(store, backup)
            if not plan.deletable:
                self.result.locked.append(plan.held(name))
                self.result.locked_backups += 1
                self.log.info(
                    "Cannot delete backup %s yet (finished %s): locked (%s) %s",
                    name,
                    backup.manifest.finished_at,
                    "legal hold" if plan.legal_hold else plan.mode,
                    "until the hold is released"
                    if plan.deletable_after is None
                    else f"until {plan.deletable_after.isoformat()}; a run after that deletes it",
                )
                continue
            self.log.info(
                "%s backup %s (finished %s, %d bytes)%s",
                self.verb,
                name,
                backup.manifest.finished_at,
                backup.manifest.size_bytes,
                f", lifting its {plan.mode} lock (bypass_governance)" if plan.bypass else "",
            )
            self._delete_backup(backup, name, plan)

    def _delete_backup(self, backup: StoredBackup, name: str, plan: DeletionPlan) -> None:
        for entry in (backup.manifest_entry, backup.artifact_entry):  # the manifest goes first
            if entry is None:
                continue
            try:
                if not self.delete(entry, plan):
                    break  # its manifest was replaced since the listing: a new backup, left whole
            except ObjectLockedError as err:  # locked since the plan was made: left as it is
                self.log.warning("Leaving %s: %s", name, err)
                self.result.locked.append({**plan.held(name), "reason": str(err)})
                self.result.locked_backups += 1
                break
            self.result.deleted.append(uri_of(self.store, entry))
            if entry is backup.manifest_entry and not self.dry_run:
                self.result.gone.append(backup)  # without its manifest it is no backup any more

    def delete_incomplete(
        self,
        incomplete: Sequence[StoredEntry],
        protected: set[str] | frozenset[str],
        entries: Sequence[StoredEntry],
        grace: datetime.timedelta,
    ) -> None:
        """Delete the provider's leftovers older than ``grace`` (not protected, not locked)."""
        store = self.store
        for entry in incomplete:
            if entry.name in protected:
                continue
            if self.now - entry.updated < grace:
                self.log.info("Keeping incomplete %s: younger than %s", uri_of(store, entry), grace)
                continue
            leftover_plan = plan_deletion(
                object_locks(store, entry), self.now, bypass_governance=self.bypass_governance
            )
            if not leftover_plan.deletable:  # a locked object whose manifest never came: its date first
                self.log.info("Keeping incomplete %s: locked", uri_of(store, entry))
                self.result.locked.append(leftover_plan.held(uri_of(store, entry)))
                continue
            self.log.info(
                "%s incomplete %s, %s (last modified %s)",
                self.verb,
                uri_of(store, entry),
                provider_leftover(entry, {e.name for e in entries}),
                entry.updated.isoformat(),
            )
            if self.delete(entry, leftover_plan):
                self.result.incomplete_deleted.append(uri_of(store, entry))
