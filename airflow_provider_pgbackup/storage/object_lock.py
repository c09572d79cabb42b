"""Object locks (write once, read many): what an operator asks for (:class:`LockRequest`), what a store
reports of one object (:class:`ObjectLock`), and how retention plans around them (:func:`plan_deletion`).

A published backup is locked in the store's own mechanism until its finish time (the manifest's
``finished_at``) plus ``lock_for``: S3 Object Lock (``governance``: a principal with
``s3:BypassGovernanceRetention`` may lift it; ``compliance``: nobody can, not even the account's root,
until the date), Azure version-level immutability (``unlocked``: a principal with the right to delete
the policy may; ``locked``: nobody can), GCS object retention (``unlocked``: a principal with
``storage.objects.overrideUnlockedRetention`` may; ``locked``: nobody can). The date is computed from the
manifest, so a retried upload or promotion asks for the same date and writes the same manifest. Local
folders cannot be locked.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_pgbackup.options import InvalidOptionError

#: The lock modes of each store, the reversible one first (the default).
MODES: dict[str, tuple[str, ...]] = {
    "s3": ("governance", "compliance"),
    "az": ("unlocked", "locked"),
    "gs": ("unlocked", "locked"),
}
#: Modes a privileged principal can lift before the date (retention's ``bypass_governance``).
BYPASSABLE = frozenset({"governance", "unlocked"})
MIN_LOCK = datetime.timedelta(seconds=1)
MAX_LOCK = datetime.timedelta(days=36500)  # S3's limit is 100 years; so is ours
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class LockNotSupported(InvalidOptionError):
    """The destination cannot hold a locked backup (a local folder, a bucket or container set up without
    object lock / version-level immutability / object retention): fails now, saying what to enable."""


class ObjectLockedError(InvalidOptionError):
    """The store refused to delete an object because of its lock (a plan that was wrong, or a lock set
    since the listing): nothing more of that backup is deleted."""


def parse_lock_for(value: Any) -> datetime.timedelta | None:
    """``lock_for`` as a timedelta: a timedelta, seconds, or text such as ``"30d"``, ``"12h"``, ``"90m"``,
    ``"45s"``, ``"2w"`` (a bare number is seconds); None or ``""`` means no lock."""
    if value is None or value == "":
        return None
    duration = value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise InvalidOptionError(
                f"lock_for {value!r} must be a duration: a timedelta, seconds, or a number with one of the "
                "units s, m, h, d, w (e.g. '30d')"
            )
        duration = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        try:
            duration = datetime.timedelta(seconds=duration)
        except (OverflowError, ValueError) as err:
            raise InvalidOptionError(f"lock_for {value!r} must be a finite duration") from err
    if not isinstance(duration, datetime.timedelta):
        raise InvalidOptionError(f"lock_for {value!r} must be a timedelta, seconds or a text such as '30d'")
    if not MIN_LOCK <= duration <= MAX_LOCK:
        raise InvalidOptionError(f"lock_for {value!r} must be between 1 second and 100 years")
    return duration


@dataclass(frozen=True)
class LockRequest:
    """Publish locked until the backup's finish time + ``duration``, in ``mode`` (None: the store's
    reversible mode, ``governance`` on S3, ``unlocked`` on Azure and GCS), with a legal hold if asked."""

    duration: datetime.timedelta
    mode: str | None = None
    legal_hold: bool = False

    def mode_for(self, scheme: str) -> str:
        return self.mode or MODES[scheme][0]

    def until(self, finished_at: str) -> datetime.datetime:
        """Whole seconds (what every store keeps), UTC."""
        finished = datetime.datetime.fromisoformat(finished_at.replace("Z", "+00:00"))
        if finished.tzinfo is None:
            finished = finished.replace(tzinfo=datetime.timezone.utc)
        until = finished.astimezone(datetime.timezone.utc) + self.duration
        return until.replace(microsecond=0)

    def lock_for(self, scheme: str, finished_at: str) -> ObjectLock:
        return ObjectLock(self.mode_for(scheme), self.until(finished_at), self.legal_hold)


def lock_request(lock_for: Any, lock_mode: Any = None, legal_hold: Any = False) -> LockRequest | None:
    """The validated request, or None without ``lock_for``; raises naming a bad value and the allowed ones."""
    duration = parse_lock_for(lock_for)
    every = sorted({m for modes in MODES.values() for m in modes})
    if lock_mode is not None and lock_mode not in every:
        raise InvalidOptionError(f"lock_mode {lock_mode!r} is not one of {', '.join(map(repr, every))}")
    if not isinstance(legal_hold, bool):
        raise InvalidOptionError(f"lock_legal_hold {legal_hold!r} must be True or False")
    if duration is None:
        if lock_mode is not None or legal_hold:
            raise InvalidOptionError(f"lock_mode {lock_mode!r} / lock_legal_hold need lock_for (a duration)")
        return None
    return LockRequest(duration, lock_mode, legal_hold)


def check_lock_destination(request: LockRequest | None, scheme: str, where: str) -> None:
    """Refuse a lock where the destination cannot take it, naming the modes each store has (no I/O; bad
    input, an :class:`InvalidOptionError`). What the bucket itself allows is the client's check."""
    if request is None:
        return
    if scheme in ("", "file"):
        raise InvalidOptionError(
            f"lock_for cannot lock a local destination ({where}): a file can be deleted by whoever runs the "
            "task; publish to s3:// (S3 Object Lock), az:// (version-level immutability) or gs:// (object "
            "retention) instead"
        )
    if scheme not in MODES:
        raise InvalidOptionError(
            f"lock_for is not supported on {scheme}:// ({where}); locks are available on "
            f"{', '.join(f'{s}://' for s in MODES)}"
        )
    if request.mode is not None and request.mode not in MODES[scheme]:
        raise InvalidOptionError(
            f"lock_mode {request.mode!r} does not exist on {scheme}://; use one of "
            f"{', '.join(map(repr, MODES[scheme]))}"
        )


@dataclass(frozen=True)
class ObjectLock:
    """An object's lock as the store reports it: ``mode`` and ``until`` (None when there is only a legal
    hold), the legal hold, and ``version``, the store's id of the locked bytes (S3 version id, Azure
    version id, GCS generation), which a deletion after the date names."""

    mode: str | None
    until: datetime.datetime | None
    legal_hold: bool = False
    version: str | None = None

    def active(self, now: datetime.datetime) -> bool:
        return self.legal_hold or (self.until is not None and self.until > now)

    def to_dict(self) -> dict[str, Any]:
        """What the manifest, the XCom and the log say (no version id)."""
        until = self.until.isoformat().replace("+00:00", "Z") if self.until is not None else None
        return {"mode": self.mode, "until": until, "legal_hold": self.legal_hold}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectLock:
        until = data.get("until")
        return cls(
            data.get("mode"),
            datetime.datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None,
            bool(data.get("legal_hold")),
        )


def weakest(locks: Sequence[ObjectLock | None], now: datetime.datetime) -> ObjectLock | None:
    """The lock of a backup as a whole: as strong as its least protected object (None when any object
    of it is not locked now)."""
    if not locks or any(lock is None or not lock.active(now) for lock in locks):
        return None
    active = [lock for lock in locks if lock is not None]
    held = all(lock.legal_hold for lock in active)
    dated = [lock for lock in active if lock.until is not None and lock.until > now]
    if not dated:
        return dataclasses.replace(active[0], mode=None, until=None, legal_hold=held, version=None)
    first = min(dated, key=lambda lock: (lock.mode not in BYPASSABLE, lock.until))
    return dataclasses.replace(first, legal_hold=held, version=None)


@dataclass(frozen=True)
class DeletionPlan:
    """What retention may do with one backup it would delete: ``deletable`` now (with ``bypass`` when it
    lifts a governance/unlocked lock), else held until ``deletable_after`` (None: a legal hold, until it is
    released). ``locked``: some object has (or had) a lock, so its exact version is deleted."""

    deletable: bool
    locked: bool
    bypass: bool = False
    mode: str | None = None
    deletable_after: datetime.datetime | None = None
    legal_hold: bool = False

    def held(self, name: str) -> dict[str, Any]:
        """The report line (XCom) of a backup retention could not delete yet."""
        after = self.deletable_after
        return {
            "name": name,
            "mode": self.mode,
            "deletable_after": after.isoformat().replace("+00:00", "Z") if after is not None else None,
            "legal_hold": self.legal_hold,
        }


def plan_deletion(
    locks: Iterable[ObjectLock | None], now: datetime.datetime, *, bypass_governance: bool = False
) -> DeletionPlan:
    """Whether a backup whose objects have ``locks`` can be deleted now: never before the last object's
    date (a legal hold: never), unless every lock still in force is bypassable and ``bypass_governance``."""
    found = [lock for lock in locks if lock is not None]
    active = [lock for lock in found if lock.active(now)]
    if not active:
        return DeletionPlan(deletable=True, locked=bool(found))
    hold = any(lock.legal_hold for lock in active)
    dated = [lock for lock in active if lock.until is not None and lock.until > now]
    last = max(dated, key=lambda lock: lock.until or now) if dated else None
    mode = last.mode if last is not None else None
    if bypass_governance and not hold and all(lock.mode in BYPASSABLE for lock in dated):
        return DeletionPlan(deletable=True, locked=True, bypass=True, mode=mode)
    return DeletionPlan(
        deletable=False,
        locked=True,
        mode=mode,
        deletable_after=None if hold or last is None else last.until,
        legal_hold=hold,
    )


def same_but_lock(first: bytes, second: bytes) -> bool:
    """Two manifests of the same backup, one of them recording the lock of its published copy (the staged
    one does not): equal once their ``lock`` fields are left out."""
    if first == second:
        return True
    try:
        one, two = json.loads(first), json.loads(second)
    except ValueError:
        return False
    if not isinstance(one, dict) or not isinstance(two, dict):
        return False
    one.pop("lock", None)
    two.pop("lock", None)
    return bool(one == two)


__all__ = [
    "BYPASSABLE",
    "MODES",
    "DeletionPlan",
    "LockNotSupported",
    "LockRequest",
    "ObjectLock",
    "ObjectLockedError",
    "check_lock_destination",
    "lock_request",
    "parse_lock_for",
    "plan_deletion",
    "same_but_lock",
    "weakest",
]
