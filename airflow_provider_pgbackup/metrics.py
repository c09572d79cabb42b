"""The provider's metrics: one table (:data:`METRICS`), emitted through Airflow's own ``Stats``.

Airflow's ``[metrics]`` section decides where they go (StatsD, StatsD with InfluxDB tags, Datadog,
OpenTelemetry) and under which prefix (``statsd_prefix``, default ``airflow``); the provider only names
and tags them. Every name starts with ``pgbackup.``; the tags are among :data:`TAGS` (database, connection
id, store scheme, format, check, kind, outcome). A tag value is a name the user chose for a database or a
connection, or a word of the provider's: never a secret, never a path or a URI (a path holds user data
and may name a customer). Plain StatsD drops tags (Airflow's ``statsd_influxdb_enabled``, Datadog and
OpenTelemetry keep them).

A metric never fails a task: an error in the metrics backend (or in an ``emit_...`` helper) is logged and
forgotten; only :func:`emit` itself refuses a tag the table does not list (a programming error, caught by
the tests). The README's metric table is :func:`markdown_table` (``tests/test_metrics.py`` checks they
agree).
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_provider_pgbackup.compat import Stats
from airflow_provider_pgbackup.manifest import Manifest

log = logging.getLogger(__name__)

PREFIX = "pgbackup"
#: Every tag a metric may carry, and what it holds.
TAGS: dict[str, str] = {
    "database": "the database name (pg_dump) or `all` (pg_dumpall)",
    "conn_id": "the Airflow connection id of the PostgreSQL server",
    "scheme": "where the backup is: `file`, `gs`, `s3`, `az`",
    "format": "custom, directory, tar or plain",
    "check": "a verification check: exists, manifest, age, size, checksum, contents, tables",
    "kind": "what was measured: upload / promote, a difference kind, an error class, a shrink reason",
    "outcome": "passed / failed, identical / different, fail_now / retry, held / published",
}


@dataclass(frozen=True)
class Metric:
    """One metric: its name (after ``pgbackup.``), its StatsD type, its tags and what it means."""

    name: str
    type: str  # counter | gauge | timer
    tags: tuple[str, ...]
    meaning: str

    @property
    def stat(self) -> str:
        return f"{PREFIX}.{self.name}"


_BACKUP = ("database", "conn_id", "scheme", "format")

#: Every metric the provider emits (the README's table is made from this).
METRICS: tuple[Metric, ...] = (
    Metric("dump.bytes", "gauge", _BACKUP, "size of the artifact a dump wrote (bytes)"),
    Metric("dump.rows", "gauge", _BACKUP, "rows the dump's manifest counts, all tables"),
    Metric("dump.duration", "timer", _BACKUP, "how long the dump took (ms)"),
    Metric("dump.throughput", "gauge", _BACKUP, "artifact bytes written per second of dump"),
    Metric(
        "dump.content_record_duration",
        "timer",
        _BACKUP,
        "how long the content record (checksums, schema inventory) took (ms)",
    ),
    Metric("dump.finished", "counter", _BACKUP, "dumps that finished (one per backup)"),
    Metric(
        "verify.check",
        "counter",
        ("scheme", "format", "check", "outcome"),
        "a verification check that ran: outcome passed or failed",
    ),
    Metric("verify.duration", "timer", ("scheme", "format", "outcome"), "how long a verification took (ms)"),
    Metric("drill.restore_duration", "timer", _BACKUP, "how long a restore (drill) took to replay (ms)"),
    Metric(
        "drill.verdict",
        "counter",
        (*_BACKUP, "outcome"),
        "a restore compared with its backup: outcome identical or different",
    ),
    Metric(
        "drill.differences",
        "gauge",
        (*_BACKUP, "kind"),
        "differences a restore found, per kind (table, sequence, large_objects, database, an inventory kind)",
    ),
    Metric(
        "transfer.bytes", "gauge", (*_BACKUP, "kind"), "bytes an upload or promotion copied (kind: which)"
    ),
    Metric("transfer.duration", "timer", (*_BACKUP, "kind"), "how long an upload or promotion took (ms)"),
    Metric("retention.kept", "gauge", ("scheme",), "complete backups a retention run kept"),
    Metric("retention.deleted", "gauge", ("scheme",), "backups a retention run deleted (0 in a dry run)"),
    Metric("retention.held", "gauge", ("scheme",), "held backups (shrank) a retention run found and kept"),
    Metric(
        "retention.refused",
        "counter",
        ("scheme", "kind"),
        "retention runs that deleted nothing: kind newest_too_old, newest_unverified, newest_held, empty",
    ),
    Metric(
        "freshness.age",
        "gauge",
        ("database", "conn_id", "scheme"),
        "age of the newest verified backup per database (seconds), at each watchdog run",
    ),
    Metric(
        "freshness.held",
        "gauge",
        ("database", "conn_id", "scheme"),
        "held backups (shrank, not acknowledged) per database, at each watchdog run",
    ),
    Metric(
        "shrink.checked",
        "counter",
        (*_BACKUP, "outcome"),
        "a backup compared with the newest verified one before publishing: outcome published, held "
        "or acknowledged",
    ),
    Metric(
        "shrink.reason",
        "counter",
        (*_BACKUP, "kind"),
        "why a backup was held: kind total_rows, table_rows, vanished_table, size",
    ),
    Metric(
        "task.failure",
        "counter",
        ("kind", "outcome"),
        "a provider task failed: kind the error class, outcome fail_now or retry (failures.py)",
    ),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

#: A tag value keeps letters, digits, ``_ . -``; anything else (spaces, ``,`` ``=`` ``:`` that break
#: StatsD's line formats, ``/`` of a path) becomes ``_``. Length is capped.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
TAG_VALUE_MAX = 100


def tag_value(value: Any) -> str:
    """A tag value as every StatsD flavour can carry it."""
    return _UNSAFE.sub("_", str(value))[:TAG_VALUE_MAX] or "_"


def _tags(metric: Metric, tags: Mapping[str, Any]) -> dict[str, str]:
    unknown = set(tags) - set(metric.tags)
    if unknown:  # a programming error: the table is the contract
        raise ValueError(f"metric {metric.stat} has no tags {sorted(unknown)} (it has {list(metric.tags)})")
    return {k: tag_value(v) for k, v in tags.items() if v is not None and v != ""}


def emit(name: str, value: float | datetime.timedelta = 1, **tags: Any) -> None:
    """Send one metric of :data:`METRICS` (by its short name) with its value and tags; never raises
    for the backend (a broken metrics pipe must not fail a backup)."""
    metric = BY_NAME[name]
    clean = _tags(metric, tags)
    try:
        if metric.type == "counter":
            Stats.incr(metric.stat, int(value), tags=clean)  # type: ignore[arg-type]
        elif metric.type == "gauge":
            number = value if isinstance(value, int) else float(value)  # type: ignore[arg-type]
            Stats.gauge(metric.stat, number, tags=clean)
        else:
            seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
            Stats.timing(metric.stat, datetime.timedelta(seconds=seconds), tags=clean)
    except Exception as err:
        log.debug("metric %s not sent: %s", metric.stat, err)


_F = TypeVar("_F", bound=Callable[..., None])


def _never_fails(function: _F) -> _F:
    """A step's metrics are reported on the way: whatever goes wrong there is logged, never raised."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception as err:
            log.warning("metrics of %s not sent: %s", function.__name__, err)

    return wrapper  # type: ignore[return-value]


def backup_tags(manifest: Manifest, scheme: str | None = None) -> dict[str, Any]:
    """database, conn_id, format (and scheme when given) of a backup, from its manifest."""
    source = manifest.source or {}
    return {
        "database": manifest.database or "all",
        "conn_id": source.get("postgres_conn_id"),
        "format": manifest.format,
        "scheme": scheme_tag(scheme) if scheme is not None else None,
    }


def scheme_tag(scheme: str) -> str:
    """A location's scheme as a tag: ``file`` for a local path."""
    return scheme or "file"


def total_rows(manifest: Manifest) -> int | None:
    return sum(r.rows for r in manifest.row_counts) if manifest.row_counts is not None else None


@_never_fails
def emit_dump(manifest: Manifest, scheme: str) -> None:
    """A finished dump: bytes, rows, duration, throughput, the content record's time."""
    tags = backup_tags(manifest, scheme)
    emit("dump.finished", 1, **tags)
    emit("dump.bytes", manifest.size_bytes, **tags)
    rows = total_rows(manifest)
    if rows is not None:
        emit("dump.rows", rows, **tags)
    emit("dump.duration", manifest.duration_seconds, **tags)
    if manifest.duration_seconds > 0:
        emit("dump.throughput", manifest.size_bytes / manifest.duration_seconds, **tags)
    content_seconds = (manifest.content or {}).get("duration_seconds")
    if isinstance(content_seconds, (int, float)):
        emit("dump.content_record_duration", content_seconds, **tags)


@_never_fails
def emit_verification(report: Any, scheme: str) -> None:
    """A verification's checks (those that passed or failed; a backup not there yet is no verdict)."""
    checks = [c for c in report.checks if c.status in ("ok", "failed")]
    if not checks:
        return
    for check in checks:
        outcome = "passed" if check.status == "ok" else "failed"
        emit(
            "verify.check",
            1,
            scheme=scheme_tag(scheme),
            format=report.format,
            check=check.name,
            outcome=outcome,
        )
    outcome = "failed" if report.failed_check else "passed"
    emit(
        "verify.duration",
        report.duration_ms / 1000,
        scheme=scheme_tag(scheme),
        format=report.format,
        outcome=outcome,
    )


@_never_fails
def emit_drill(
    manifest: Manifest, scheme: str, verdict: Mapping[str, Any], restore_seconds: float | None
) -> None:
    """A restore that was compared: its verdict, differences per kind, and the replay's time."""
    tags = backup_tags(manifest, scheme)
    if restore_seconds is not None:
        emit("drill.restore_duration", restore_seconds, **tags)
    identical = verdict.get("verdict") == "IDENTICAL"
    emit("drill.verdict", 1, **tags, outcome="identical" if identical else "different")
    counts: dict[str, int] = {}
    for difference in verdict.get("differences") or ():
        kind = str(difference.get("kind", "other"))
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in sorted(counts.items()):
        emit("drill.differences", count, **tags, kind=kind)


@_never_fails
def emit_transfer(manifest: Manifest, scheme: str, kind: str, transferred_bytes: int, seconds: float) -> None:
    """An upload or a promotion (``kind``) of a backup: bytes copied and time."""
    tags = backup_tags(manifest, scheme)
    emit("transfer.bytes", transferred_bytes, **tags, kind=kind)
    emit("transfer.duration", seconds, **tags, kind=kind)


@_never_fails
def emit_retention(scheme: str, *, kept: int, deleted: int, held: int) -> None:
    emit("retention.kept", kept, scheme=scheme_tag(scheme))
    emit("retention.deleted", deleted, scheme=scheme_tag(scheme))
    emit("retention.held", held, scheme=scheme_tag(scheme))


@_never_fails
def emit_retention_refused(scheme: str, kind: str) -> None:
    emit("retention.refused", 1, scheme=scheme_tag(scheme), kind=kind)


@_never_fails
def emit_freshness(scheme: str, newest: Iterable[tuple[Manifest, float, int]]) -> None:
    """Per database: the newest verified backup's age (seconds) and the held backups."""
    for manifest, age_seconds, held in newest:
        tags = backup_tags(manifest, scheme)
        tags.pop("format")
        emit("freshness.age", age_seconds, **tags)
        emit("freshness.held", held, **tags)


@_never_fails
def emit_shrink(manifest: Manifest, scheme: str, outcome: str, reasons: Iterable[str] = ()) -> None:
    tags = backup_tags(manifest, scheme)
    emit("shrink.checked", 1, **tags, outcome=outcome)
    for reason in sorted(set(reasons)):
        emit("shrink.reason", 1, **tags, kind=reason)


@_never_fails
def emit_failure(err: BaseException, *, fail_now: bool) -> None:
    """A provider task failed with ``err`` (its class is the kind; never its message)."""
    emit("task.failure", 1, kind=type(err).__name__, outcome="fail_now" if fail_now else "retry")


def markdown_table() -> str:
    """The README's table of metrics."""
    lines = ["| metric | type | tags | meaning |", "|---|---|---|---|"]
    for metric in METRICS:
        lines.append(f"| `{metric.stat}` | {metric.type} | {', '.join(metric.tags)} | {metric.meaning} |")
    return "\n".join(lines)


__all__ = [
    "BY_NAME",
    "METRICS",
    "PREFIX",
    "TAGS",
    "Metric",
    "emit",
    "emit_drill",
    "emit_dump",
    "emit_failure",
    "emit_freshness",
    "emit_retention",
    "emit_retention_refused",
    "emit_shrink",
    "emit_transfer",
    "emit_verification",
    "markdown_table",
    "tag_value",
]
