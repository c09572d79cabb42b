"""The provider's metrics, seen on a real StatsD listener (UDP on 127.0.0.1, started here) through Airflow's
own StatsD backend (``[metrics] statsd_on``, InfluxDB-style tags so the tags travel too): every step of a
backup reports under the names of ``metrics.METRICS``, no metric carries a password or a path, and the
README's table is the table in the code. One run goes through ``dag.test()`` in a child process, as a
deployment's task would."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup import metrics
from airflow_provider_pgbackup.hooks.pg_dump import PgDumpHook
from airflow_provider_pgbackup.operators.freshness import PgBackupFreshnessOperator
from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.options import PgDumpOptions
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.gcs_emulator import GCSEmulator

REPO = Path(__file__).resolve().parents[1]
DB = "metrics shop ü"


class StatsdListener:
    """A StatsD server as far as the test needs one: every UDP datagram on 127.0.0.1, split in lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines.extend(data.decode("utf-8", "backslashreplace").splitlines())

    def drain(self) -> list[str]:
        """What arrived so far (UDP on loopback: a datagram sent before this returns is read by then, once
        the receiving thread had its turn; waits for it by a sentinel datagram, not by time)."""
        sentinel = f"sentinel-{len(self.lines)}:1|c"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.sendto(sentinel.encode(), ("127.0.0.1", self.port))
        while sentinel not in self.lines:
            self._stop.wait(0.01)
        return [line for line in self.lines if not line.startswith("sentinel-")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def parse(line: str) -> tuple[str, dict[str, str], str, str]:
    """``airflow.pgbackup.dump.bytes,database=x,format=custom:123|g`` -> name, tags, value, type."""
    head, _, rest = line.rpartition(":")
    value, _, kind = rest.partition("|")
    name, *pairs = head.split(",")
    return name, dict(pair.split("=", 1) for pair in pairs), value, kind


def statsd_env(port: int) -> dict[str, str]:
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }


def _initialize_stats() -> None:
    """Make Airflow's Stats read ``[metrics]`` again (a task process does this when it starts)."""
    try:  # Airflow 3.2+
        from airflow.sdk.observability import stats
        from airflow.sdk.observability.metrics import stats_utils

        stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.configuration import conf
        from airflow.stats import Stats

        Stats.initialize(
            is_statsd_datadog_enabled=False,
            is_statsd_on=conf.getboolean("metrics", "statsd_on"),
            is_otel_on=False,
        )


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    listener = StatsdListener()
    for name, value in statsd_env(listener.port).items():
        monkeypatch.setenv(name, value)
    _initialize_stats()
    try:
        yield listener
    finally:
        listener.close()
        monkeypatch.undo()
        _initialize_stats()  # back to no metrics for the tests after this one


@pytest.fixture
def shop(pg18: PgCluster, airflow_conn) -> str:
    pg18.drop_database(DB)
    pg18.create_database(DB)
    pg18.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 3000) g", DB)
    return airflow_conn(pg18, DB, conn_id="pg_metrics")


def _assert_clean(lines: list[str], *secrets: str) -> None:
    """Every pgbackup metric is in the table with the tags it lists; none carries a secret or a path."""
    for line in lines:
        for secret in secrets:
            assert secret not in line, line
        name, tags, _value, _kind = parse(line)
        if not name.startswith("airflow.pgbackup."):
            continue
        metric = metrics.BY_NAME.get(name.removeprefix("airflow.pgbackup."))
        assert metric is not None, f"{name} is not in metrics.METRICS"
        assert set(tags) <= set(metric.tags), line
        for value in tags.values():
            assert "/" not in value, line
            assert re.fullmatch(r"[A-Za-z0-9_.-]+", value), line


def _by_name(lines: list[str]) -> dict[str, list[tuple[dict[str, str], str, str]]]:
    found: dict[str, list[tuple[dict[str, str], str, str]]] = {}
    for line in lines:
        name, tags, value, kind = parse(line)
        found.setdefault(name.removeprefix("airflow."), []).append((tags, value, kind))
    return found


def test_every_step_of_a_backup_reports_its_metrics_to_statsd(
    statsd: StatsdListener, shop: str, pg18: PgCluster, tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    folder = tmp_path / "secret-customer-folder"
    folder.mkdir()
    artifact = folder / "nightly.dump"
    PgDumpOperator(task_id="dump", postgres_conn_id=shop, output_path=str(artifact)).execute(context={})
    PgBackupArtifactSensor(task_id="verify", path=str(artifact), timeout=60).execute(context={})
    PgRestoreOperator(task_id="drill", postgres_conn_id=shop, artifact_path=str(artifact)).execute(context={})
    destination = f"gs://{gcs_bucket}/shop"
    PgBackupUploadOperator(task_id="upload", source_path=str(artifact), destination=destination).execute(
        context={}
    )
    PgBackupRetentionOperator(task_id="retention", location=destination).execute(context={})
    PgBackupFreshnessOperator(task_id="fresh", location=destination, max_age=3600).execute(context={})
    with pytest.raises(AirflowFailException):
        PgDumpOperator(
            task_id="bad", postgres_conn_id=shop, database="no such db", output_path=str(folder / "x.dump")
        ).execute(context={})

    lines = statsd.drain()
    found = _by_name(lines)
    expected = {
        "dump.bytes": "g",
        "dump.rows": "g",
        "dump.duration": "ms",
        "dump.throughput": "g",
        "dump.content_record_duration": "ms",
        "dump.finished": "c",
        "verify.check": "c",
        "verify.duration": "ms",
        "drill.restore_duration": "ms",
        "drill.verdict": "c",
        "transfer.bytes": "g",
        "transfer.duration": "ms",
        "shrink.checked": "c",
        "retention.kept": "g",
        "retention.deleted": "g",
        "retention.held": "g",
        "freshness.age": "g",
        "freshness.held": "g",
        "task.failure": "c",
    }
    for name, kind in expected.items():
        assert f"pgbackup.{name}" in found, (name, sorted(found))
        assert {k for _t, _v, k in found[f"pgbackup.{name}"]} == {kind}, name
    tags, value, _ = found["pgbackup.dump.rows"][0]
    assert value == "3000"
    assert tags == {
        "database": "metrics_shop__",
        "conn_id": "pg_metrics",
        "format": "custom",
        "scheme": "file",
    }
    checks = {(t["check"], t["outcome"]) for t, _v, _k in found["pgbackup.verify.check"]}
    assert {("exists", "passed"), ("checksum", "passed"), ("contents", "passed")} <= checks
    assert [t["outcome"] for t, _v, _k in found["pgbackup.drill.verdict"]] == ["identical"]
    assert [t["kind"] for t, _v, _k in found["pgbackup.transfer.bytes"]] == ["upload"]
    assert found["pgbackup.freshness.age"][0][0]["scheme"] == "gs"
    failure = found["pgbackup.task.failure"][-1][0]
    assert failure["outcome"] == "fail_now"  # a database that does not exist: the same answer next time
    _assert_clean(lines, PASSWORD, str(tmp_path), "secret-customer-folder", gcs_bucket)


def test_a_corrupt_backup_and_a_different_restore_are_counted_by_check_and_by_kind(
    statsd: StatsdListener, shop: str, tmp_path: Path
) -> None:
    from tests.operators.test_restore_identical import rewrite

    corrupt = tmp_path / "corrupt.dump"
    PgDumpOperator(task_id="dump", postgres_conn_id=shop, output_path=str(corrupt)).execute(context={})
    with corrupt.open("r+b") as handle:  # one byte changed, the size kept: only the checksum can tell
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(AirflowFailException, match="checksum"):
        PgBackupArtifactSensor(task_id="verify", path=str(corrupt), timeout=60).execute(context={})
    edited = tmp_path / "edited.sql"
    PgDumpOperator(task_id="dump", postgres_conn_id=shop, output_path=str(edited), format="plain").execute(
        context={}
    )
    rewrite(edited, re.compile(rb"\n1234\n"), b"\n99999\n")  # a changed value the manifest does not know
    with pytest.raises(AirflowFailException, match="DIFFERENT"):
        PgRestoreOperator(task_id="drill", postgres_conn_id=shop, artifact_path=str(edited)).execute(
            context={}
        )

    found = _by_name(statsd.drain())
    checks = {(t["check"], t["outcome"]) for t, _v, _k in found["pgbackup.verify.check"]}
    assert ("checksum", "failed") in checks
    assert ("size", "passed") in checks
    assert [t["outcome"] for t, _v, _k in found["pgbackup.drill.verdict"]] == ["different"]
    kinds = {t["kind"]: v for t, v, _k in found["pgbackup.drill.differences"]}
    assert kinds == {"table": "1"}  # one table's checksum


def test_a_held_backup_is_counted_by_reason(
    statsd: StatsdListener, shop: str, pg18: PgCluster, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    for name in ("a.dump", "b.dump"):
        PgDumpHook(shop).dump(PgDumpOptions.build(format="custom"), str(folder / name))
        pg18.execute("TRUNCATE orders", DB)
    with pytest.raises(AirflowFailException, match="held"):
        PgBackupRetentionOperator(task_id="retention", location=str(folder)).execute(context={})

    found = _by_name(statsd.drain())
    refused = [t for t, _v, _k in found["pgbackup.retention.refused"]]
    assert refused == [{"scheme": "file", "kind": "newest_held"}]
    assert [v for _t, v, _k in found["pgbackup.retention.held"]] == ["1"]
    assert {t["kind"] for t, _v, _k in found["pgbackup.task.failure"]} == {"BackupShrank"}


def test_tag_values_never_carry_what_breaks_a_statsd_line() -> None:
    assert metrics.tag_value("shop, db=1:x|y /tmp/a") == "shop__db_1_x_y__tmp_a"
    with pytest.raises(ValueError, match="has no tags"):
        metrics.emit("dump.bytes", 1, path="/tmp/x")


def test_the_readme_table_is_the_table_in_the_code() -> None:
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- metrics-table:start -->", "<!-- metrics-table:end -->"
    assert start in readme, "README.md has no metrics table"
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == metrics.markdown_table(), (
        "regenerate it from airflow_provider_pgbackup.metrics.markdown_table()"
    )


RUN = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dump_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag_run = module.dag.test(run_conf=json.loads(sys.argv[2]))
print("STATE", dag_run.state)
"""


def test_a_dag_run_reports_its_dump_through_airflows_statsd(
    statsd: StatsdListener, shop: str, pg18: PgCluster, airflow_db: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **statsd_env(statsd.port),
        "AIRFLOW_CONN_PG_METRICS": pg18.airflow_conn_json(DB),
        "PYTHONPATH": str(REPO),
    }
    conf = {"conn_id": "pg_metrics", "output_dir": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(REPO / "tests/dags/pgbackup_test_dump.py"), json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "STATE success" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-6000:]
    lines = statsd.drain()
    found = _by_name(lines)
    databases = {t.get("database") for t, _v, _k in found.get("pgbackup.dump.finished", [])}
    assert databases == {"metrics_shop__", "all"}  # the pg_dump task and the pg_dumpall of the globals
    _assert_clean(lines, PASSWORD, str(tmp_path))


@pytest.fixture
def otel_reader() -> Iterator[object]:
    """Airflow's own OpenTelemetry metrics logger, read by the SDK's in-memory reader (the OTLP exporter of
    a deployment would need a collector; the instruments, names and attributes are the same)."""
    pytest.importorskip("opentelemetry.sdk.metrics")
    try:
        from airflow.sdk._shared.observability.metrics.otel_logger import SafeOtelLogger
        from airflow.sdk.observability import stats
    except ImportError:
        pytest.skip("Airflow < 3.2 keeps its OpenTelemetry logger elsewhere; the StatsD tests cover 3.0/3.1")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    stats.initialize(factory=lambda: SafeOtelLogger(provider, "airflow"), export_legacy_names=False)
    try:
        yield reader
    finally:
        _initialize_stats()
        provider.shutdown()


def test_the_metrics_reach_opentelemetry_with_their_tags_as_attributes(
    otel_reader, shop: str, tmp_path: Path
) -> None:
    artifact = tmp_path / "nightly.dump"
    PgDumpOperator(task_id="dump", postgres_conn_id=shop, output_path=str(artifact)).execute(context={})

    data = otel_reader.get_metrics_data()  # type: ignore[attr-defined]
    points: dict[str, list[dict[str, object]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(dict(p.attributes) for p in metric.data.data_points)
    assert "airflow.pgbackup.dump.bytes" in points, sorted(points)
    assert "airflow.pgbackup.dump.duration" in points
    assert points["airflow.pgbackup.dump.rows"] == [
        {"database": "metrics_shop__", "conn_id": "pg_metrics", "format": "custom", "scheme": "file"}
    ]
    for name, attributes in points.items():
        assert PASSWORD not in name
        for found in attributes:
            assert not any(str(tmp_path) in str(v) or "/" in str(v) for v in found.values()), (name, found)
