"""Render ``benchmarks/RESULTS.md`` and the chart from ``benchmarks/results.json``.

``python -m benchmarks.report`` re-renders from the last run's raw figures without running anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.chart import Bar, write_chart
from benchmarks.report_content import part5, part8
from benchmarks.stats import Raw, Summary, databases, mib, pair_ratios, series, verdict

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 1.05
TARGET_RSS_MIB = 150.0
#: streamed wall time / max(dump alone, upload alone): a pipelined stream takes about the slower side.
TARGET_STREAM_RATIO = 1.1
#: What the same benchmark measured before the upload ran in its own thread (commit 35c9b58).
PART4_BEFORE = (
    "23.0 s streamed vs 4.1 s dump alone + 17.7 s upload alone (pgbench_s70): 1.30 x the slower side"
)
FLAT_MIB = 10.0
#: Issue 15: age encryption may add at most 10 % to the wall time of a compressed dump.
TARGET_ENCRYPTION_RATIO = 1.10


def _machine(data: dict[str, Any]) -> list[str]:
    lines = ["## Machine and data", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in data.get("machine", {}).items()]
    seen: set[str] = set()
    parts = sorted(int(p) for p in data.get("databases_by_part", {})) or [0]
    for db in [db for part in parts for db in databases(data, part)]:
        if db["name"] in seen:
            continue
        seen.add(db["name"])
        if db.get("tables"):
            what = f"{db['tables']:,} tables of {db['rows_per_table']} rows"
        else:
            what = f"pgbench scale {db['scale']}, {db['scale'] * 100_000:,} rows in pgbench_accounts"
        lines.append(
            f"| Database `{db['name']}` | {what}: {mib(db['size_bytes']):.0f} MiB (`pg_database_size`) |"
        )
    loads = data.get("loads", ["?", "?"])
    run_parts = ", ".join(str(p) for p in data.get("args", {}).get("parts", []))
    runs = data.get("runs")
    if runs:
        lines += [
            "",
            "This report merges runs (`--merge`): a part was re-run alone when the machine had been too",
            "busy, or when the package changed under the benchmark. Same scale, same cluster setup.",
            "",
            "| Parts | Started (UTC) | Minutes | `--rounds` | Load average at start; at end | Package |",
            "|---|---|---|---|---|---|",
        ]
        for run in runs:
            loads = run.get("loads") or ["?", "?"]
            lines.append(
                f"| {', '.join(str(p) for p in run['parts'])} | {run.get('started_utc')} | "
                f"{run.get('minutes')} | {run.get('rounds')} | {loads[0]}; {loads[1]} | "
                f"{run.get('package')} |"
            )
    else:
        lines.append(f"| Load average (1, 5, 15 min) | at start {loads[0]}; at end {loads[1]} |")
    lines += ["", f"Parts in this report: {run_parts}.", ""]
    args = data.get("args", {})
    if args.get("scale_note"):
        lines += [args["scale_note"], ""]
    elif args.get("quick"):
        lines += ["**Quick mode** (smoke run): small scale, few rounds; the figures are not conclusive.", ""]
    lines += [
        "Method: every measured dump runs in a fresh Python process (`benchmarks/worker.py`) after its",
        "imports; the time is the wall time of the dump call only (bare: the `pg_dump` child; provider:",
        "`PgDumpOperator.execute`, which includes reading the connection, the passfile, the catalogue",
        "queries, the snapshot export, pg_dump, sha256, fsync, rename and the manifest). Sides run",
        "interleaved in rounds whose order rotates (A B C, B C A, C A B, ...) after one discarded",
        "warm-up run of each side, so the database (much smaller than RAM) is in the page cache for every",
        "measured run. All runs use the same pg_dump binary, cluster and output folder. Figures are",
        "`median (min-max, n)`; target verdicts use the median of the per-round ratios. The machine is",
        "shared (other engineers' test suites were running): the load averages show how busy it was, and",
        "interleaving spreads that noise over both sides. pgbench data is very compressible (its filler",
        "columns are blank), so gzip artifacts are tiny compared with the uncompressed ones.",
        "",
    ]
    return lines


def _client_cpu(raw: Raw, setting: str) -> list[float]:
    """CPU of the whole client side of one run: the Python process plus pg_dump."""
    return [r["self_cpu_seconds"] + r["children_cpu_seconds"] for r in raw.get(setting, [])]


def _part1(data: dict[str, Any]) -> list[str]:
    raw: Raw = data["raw"]
    compressions = data["args"].get("part1_compressions", [])
    if not any(s.startswith("p1 ") for s in raw):
        return ["## 1. Overhead over bare `pg_dump -Fc`", "", "Not run.", ""]
    big = databases(data, 1)[-1]["name"]
    lines = [
        f"## 1. Overhead over bare `pg_dump -Fc` ({big}; target ratio <= {TARGET_RATIO})",
        "",
        "`gzip:6` is what `pg_dump -Fc` does by default; `none` is the provider's default (no",
        "`compression` argument means `--compress=0`), i.e. the most bytes through the Python process.",
        "Progress logging is on (every 5 s) and the manifest carries the sha256 in every provider run.",
        "",
        "| Compression | Side | Wall time s | Ratio of medians | Per-round ratio | Python CPU s "
        "| pg_dump CPU s | Client CPU s | Target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for compression in compressions:
        bare = f"p1 bare pg_dump -Fc {compression}"
        bare_times = Summary.of(series(raw, bare))
        lines.append(
            f"| {compression} | bare `pg_dump -Fc` | {bare_times.fmt()} | 1 | 1 | "
            f"{Summary.of(series(raw, bare, 'self_cpu_seconds')).median:.2f} | "
            f"{Summary.of(series(raw, bare, 'children_cpu_seconds')).median:.2f} | "
            f"{Summary.of(_client_cpu(raw, bare)).median:.2f} | |"
        )
        for counts in ("off", "on"):
            side = f"p1 operator {compression} counts {counts}"
            times = Summary.of(series(raw, side))
            pairs = Summary.of(pair_ratios(raw, bare, side))
            lines.append(
                f"| {compression} | operator, row counts {counts} | {times.fmt()} | "
                f"{times.median / bare_times.median:.3f} | {pairs.fmt(3)} | "
                f"{Summary.of(series(raw, side, 'self_cpu_seconds')).median:.2f} | "
                f"{Summary.of(series(raw, side, 'children_cpu_seconds')).median:.2f} | "
                f"{Summary.of(_client_cpu(raw, side)).median:.2f} | "
                f"{verdict(pairs.median <= TARGET_RATIO)} |"
            )
    counts = data.get("count_seconds", {})
    if counts:
        lines += [
            "",
            "`count(*)` of each table alone, outside any dump (this is the server work `record_row_counts`",
            "adds, run concurrently with pg_dump): "
            + ", ".join(f"{t} {s:.2f} s" for t, s in sorted(counts.items(), key=lambda kv: -kv[1]))
            + ".",
        ]
    return [*lines, ""]


#: Part 2's settings: raw name (with the database's name) -> what it is
PART2_SETTINGS = {
    "p2 operator none counts on {}": "-Fc, compression none, row counts (before issue 21)",
    "p2 operator none record content {}": "-Fc, compression none, the content record (every row read)",
    "p2 operator default {}": "the defaults: -Fc gzip:6, the content record",
}


def _part2(data: dict[str, Any]) -> list[str]:
    raw: Raw = data["raw"]
    lines = [
        f"## 2. Peak RSS of the Python process driving the dump (target < {TARGET_RSS_MIB:.0f} MiB, flat)",
        "",
        "Measured as `VmHWM` of the worker process (`/proc/self/status`, read after the dump): the",
        "Python process alone (pg_dump is a separate process). `Before` is the worker's RSS after",
        "importing Airflow and the provider, before the dump.",
        "",
        "| Setting | Database | Artifact MiB | Before MiB | Peak MiB | Peak - before MiB | Target |",
        "|---|---|---|---|---|---|---|",
    ]
    flatness = []
    for template, label in PART2_SETTINGS.items():
        peaks = []
        for db in databases(data, 2):
            side = template.format(db["name"])
            if side not in raw:
                continue
            peak = Summary.of([v / 1024 for v in series(raw, side, "vm_hwm_kib")])
            before = Summary.of([v / 1024 for v in series(raw, side, "vm_rss_before_kib")])
            growth = Summary.of([(r["vm_hwm_kib"] - r["vm_rss_before_kib"]) / 1024 for r in raw[side]])
            size = Summary.of([mib(v) for v in series(raw, side, "size_bytes")])
            peaks.append(peak.median)
            lines.append(
                f"| {label} | {db['name']} ({mib(db['size_bytes']):.0f} MiB) | {size.median:.0f} | "
                f"{before.fmt(1)} | {peak.fmt(1)} | {growth.fmt(1)} | {verdict(peak.high < TARGET_RSS_MIB)} |"
            )
        if len(peaks) >= 2:
            flat = abs(peaks[-1] - peaks[0]) < FLAT_MIB
            flatness.append(
                f"{label}: median peak {peaks[-1] - peaks[0]:+.1f} MiB from the smallest to the largest "
                f"database ({verdict(flat)}: flat means within {FLAT_MIB:.0f} MiB)."
            )
    if len(lines) == 8:
        return [*lines[:1], "", "Not run.", ""]
    every = [r["vm_hwm_kib"] / 1024 for s, rs in raw.items() if " bare " not in s for r in rs]
    every = [
        v for v in every if v > 50
    ]  # provider runs only (bare runs drive pg_dump from a bare interpreter)
    lines += ["", *(f"- {line}" for line in flatness)]
    if every:
        lines.append(
            f"- Highest peak RSS over every provider run of the benchmark (all parts): {max(every):.1f} MiB."
        )
    return [*lines, ""]


def _part3(data: dict[str, Any]) -> list[str]:
    raw: Raw = data["raw"]
    settings = [s for s in raw if s.startswith("p3 operator ")]
    big = databases(data, 3)[-1]["name"]
    lines = [f"## 3. Formats, parallel jobs and compression ({big}, row counts off)", ""]
    if not settings:
        return [*lines, "Not run.", ""]
    lines += [
        "| Setting | Operator wall s | Bare pg_dump wall s | Operator / bare (per round) | Artifact MiB |",
        "|---|---|---|---|---|",
    ]
    for setting in settings:
        label = setting.removeprefix("p3 operator ")
        op = Summary.of(series(raw, setting))
        bare_name = f"p3 bare {label}"
        bare = Summary.of(series(raw, bare_name))
        ratio = Summary.of(pair_ratios(raw, bare_name, setting)).fmt(3) if bare.n else ""
        size = Summary.of([mib(v) for v in series(raw, setting, "size_bytes")])
        lines.append(
            f"| {label} | {op.fmt()} | {bare.fmt() if bare.n else 'not run'} | {ratio} | {size.median:.1f} |"
        )
    methods = data.get("methods", {})
    missing = [m for m, state in methods.items() if state != "supported"]
    if missing:
        lines += [
            "",
            f"{' and '.join(missing)}: not measured, the benchmarked pg_dump "
            f"({data['machine'].get('pg_dump', '')}) was built without them (the provider's "
            "`supports_compression` probe says so; the system pg_dump 15 predates lz4/zstd for pg_dump).",
        ]
    return [*lines, ""]


def _part4(data: dict[str, Any]) -> list[str]:
    raw: Raw = data["raw"]
    lines = [
        "## 4. Dump-then-upload vs streamed dump to GCS "
        f"(target streamed <= {TARGET_STREAM_RATIO} x the slower half)",
        "",
    ]
    if data.get("gcs") != "ran":
        return [*lines, f"Not measured: {data.get('gcs', 'not run')}.", ""]
    lines += [
        "fake-gcs-server (memory backend) on 127.0.0.1; `-Fc`, compression none (so that there are bytes",
        "to upload: gzip shrinks pgbench data ~40x), row counts off. The streamed dump is judged against",
        "the slower of its two halves as measured in the same round (dump alone to a local file, upload",
        "alone of that file): a pipelined stream can at best take that long.",
        "",
        "| Database | Side | Wall time s | Dump alone s | Upload alone s | Machine CPU busy s "
        "| Peak RSS MiB | Streamed / max(dump, upload) | Streamed / CPU floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for db in databases(data, 4):
        a, b = f"p4 dump then upload {db['name']}", f"p4 streamed to gs:// {db['name']}"
        if a not in raw:  # results from before part 4 ran at every size
            a, b = "p4 dump then upload", "p4 streamed to gs://"
            if a not in raw or db["name"] != databases(data, 4)[-1]["name"]:
                continue
        lines += _stream_rows(raw, a, b, db["name"], "gs://")[0]
    return [
        *lines,
        "",
        "Machine CPU busy: CPU seconds of the whole machine (every core, every process: pg_dump, the",
        "server, fake-gcs-server, the worker) during the measured call, from `/proc/stat`. The CPU",
        "floor is that figure over the number of cores: when it exceeds both halves' wall times the run",
        "is CPU-bound, and overlapping the two halves cannot make it faster than the floor.",
        "",
        f"Before the upload had its own thread: {PART4_BEFORE}.",
        "",
    ]


def _stream_ratios(raw: Raw, then_upload: str, streamed: str) -> tuple[Summary, Summary]:
    """Per round: streamed / max(dump alone, upload alone), and streamed / the CPU floor.

    The CPU floor is the machine-wide CPU the streamed run itself needed, spread over every core (or the
    slower half when that is longer): no pipeline can finish before the machine has done that work."""
    slower = {
        r["round"]: max(r["dump_seconds"], r["upload_seconds"])
        for r in raw.get(then_upload, [])
        if "dump_seconds" in r
    }
    ratios = Summary.of(
        [r["seconds"] / slower[r["round"]] for r in raw.get(streamed, []) if r["round"] in slower]
    )
    floors = Summary.of(
        [
            r["seconds"] / max(slower[r["round"]], r["machine_busy_seconds"] / r["cpu_count"])
            for r in raw.get(streamed, [])
            if "machine_busy_seconds" in r and r["round"] in slower
        ]
    )
    return ratios, floors


def _stream_rows(
    raw: Raw, a: str, b: str, db_name: str, scheme: str, *, growth: bool = False
) -> tuple[list[str], Summary]:
    """The two table rows of a dump-then-upload (``a``) vs streamed (``b``) pair (parts 4 and 7), and the
    per-round streamed / slower-half ratios. ``growth`` adds a "peak - before" column."""
    ratios, floors = _stream_ratios(raw, a, b)
    busy_a, busy_b = series(raw, a, "machine_busy_seconds"), series(raw, b, "machine_busy_seconds")
    extra_a = f" {_growth(raw, a)} |" if growth else ""
    extra_b = f" {_growth(raw, b)} |" if growth else ""
    rows = [
        f"| {db_name} | dump then upload | {Summary.of(series(raw, a)).fmt()} | "
        f"{Summary.of(series(raw, a, 'dump_seconds')).fmt()} | "
        f"{Summary.of(series(raw, a, 'upload_seconds')).fmt()} | "
        f"{Summary.of(busy_a).fmt() if busy_a else ''} | {_peak(raw, a)} |{extra_a} | |",
        f"| {db_name} | streamed to {scheme} | {Summary.of(series(raw, b)).fmt()} | | | "
        f"{Summary.of(busy_b).fmt() if busy_b else ''} | {_peak(raw, b)} |{extra_b} "
        f"{ratios.fmt(3)} ({verdict(ratios.median <= TARGET_STREAM_RATIO)}) | "
        f"{floors.fmt(3) if busy_b else ''} |",
    ]
    return rows, ratios


def _growth(raw: Raw, setting: str) -> str:
    """Median peak RSS minus the RSS before the call (after imports), MiB."""
    values = [(r["vm_hwm_kib"] - r["vm_rss_before_kib"]) / 1024 for r in raw.get(setting, [])]
    return Summary.of(values).fmt(1)


def _status(data: dict[str, Any], key: str) -> str:
    info = data.get(key, "not run")
    return str(info.get("status", "not run")) if isinstance(info, dict) else str(info)


def _part6(data: dict[str, Any]) -> list[str]:
    raw: Raw = data["raw"]
    limit = (TARGET_ENCRYPTION_RATIO - 1) * 100
    lines = [
        f"## 6. age encryption on vs off (issue #15; target: overhead <= {limit:.0f} % of wall time)",
        "",
    ]
    if not any(s.startswith("p6 ") for s in raw):
        return [*lines, f"Not measured: {_status(data, 'encryption')}.", ""]
    info = data.get("encryption", {})
    lines += [
        "The same dump without and with `encryption_recipients` (one age X25519 recipient, generated for",
        f"the run by pyrage {info.get('pyrage', '?') if isinstance(info, dict) else '?'}), compression on at "
        "pg_dump's default level (gzip:6), row counts and",
        "checksums off, so the encryption is compared with the leanest dump. With `-Fc` the age stage",
        "encrypts pg_dump's output in the stream (a thread of the worker process, so its CPU is in Python",
        "CPU); with `-Fd` pg_dump writes the folder first and its files are encrypted afterwards, one by",
        "one. The overhead is the median of the per-round ratios (age / plain, the two run back to back).",
        "",
        "| Database | Setting | Side | Wall time s | Age / plain (per round) | Python CPU s | pg_dump CPU s "
        "| Client CPU s | Peak RSS MiB | Artifact MiB | Target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for db in databases(data, 6):
        for label in ("-Fc gzip:6", "-Fd -j 2 gzip:6"):
            plain, age = f"p6 {label} plain {db['name']}", f"p6 {label} age {db['name']}"
            if plain not in raw:
                continue
            ratios = Summary.of(pair_ratios(raw, plain, age))
            ok = ratios.median <= TARGET_ENCRYPTION_RATIO
            verdicts.append(f"{label} on {db['name']} {(ratios.median - 1) * 100:+.1f} % ({verdict(ok)})")
            for side, name in (("plain", plain), ("age", age)):
                size = Summary.of([mib(v) for v in series(raw, name, "size_bytes")])
                lines.append(
                    f"| {db['name']} | {label} | {side} | {Summary.of(series(raw, name)).fmt()} | "
                    + (f"{ratios.fmt(3)} | " if side == "age" else "1 | ")
                    + f"{Summary.of(series(raw, name, 'self_cpu_seconds')).median:.2f} | "
                    f"{Summary.of(series(raw, name, 'children_cpu_seconds')).median:.2f} | "
                    f"{Summary.of(_client_cpu(raw, name)).median:.2f} | {_peak(raw, name)} | "
                    f"{size.median:.2f} | " + (f"{verdict(ok)} |" if side == "age" else " |")
                )
    return [
        *lines,
        "",
        f"**Verdict** (age overhead, target <= {limit:.0f} %): " + "; ".join(verdicts) + ".",
        "",
        "On this 2-core machine the encryption thread, pg_dump's gzip and the server share two cores (and",
        "the machine is shared with other work): the wall-time overhead is likely smaller where cores are",
        "idle; the CPU columns show the work age adds whatever the core count.",
        "",
    ]


def _streamed_memory(raw: Raw, scheme: str, db_name: str) -> str | None:
    """The setting holding the streamed runs of ``scheme`` on ``db_name``: timed rounds or a memory run."""
    for name in (
        f"p7 streamed to {scheme}:// {db_name}",
        f"p7 streamed to {scheme}:// {db_name}, memory run",
    ):
        if name in raw:
            return name
    return None


def _part7(data: dict[str, Any]) -> list[str]:
    raw: Raw = data["raw"]
    lines = [
        "## 7. Dump-then-upload vs streamed dump to S3 and Azure "
        f"(issue #16; target streamed <= {TARGET_STREAM_RATIO} x the slower half, memory bounded)",
        "",
    ]
    info = data.get("object_stores")
    if not any(s.startswith("p7 ") for s in raw) or not isinstance(info, dict):
        return [*lines, f"Not measured: {_status(data, 'object_stores')}.", ""]
    chunk = info.get("part_size", 8 * 1024 * 1024 if "parts_in_flight" in info else info.get("chunk_size", 0))
    queued = info.get("parts_in_flight", info.get("queue_chunks", 1) + 1)  # earlier runs: a chunk queue
    bound = (queued + 1) * mib(chunk)
    timed = ", ".join(info.get("timed", []))
    lines += [
        "Part 4 for the two other stores, against the tests' emulators (`devtools/object_stores.py`) on",
        "127.0.0.1: `moto` in server mode (a child process) for `s3://`, Azurite (data on disk) for",
        "`az://`, reached through real Airflow connections (`aws_default` with an `endpoint_url`,",
        "`wasb_default` with a connection string). Dump-then-upload is `PgDumpOperator` to a local file",
        "then `PgBackupUploadOperator`; streamed is `PgDumpOperator` with an `s3://` / `az://`",
        "output_path. `-Fc`, compression none, row counts off; the bucket/container is emptied after",
        "every run. Both sides import the store's SDK (boto3 / azure-storage-blob and the Airflow",
        "provider's hook) before the clock, as they import Airflow; else the upload operator's",
        "construction (outside the clock) imports it for dump-then-upload only. Part 4 does not do this.",
        f"Timed in interleaved rounds on {timed}"
        + (
            f"; the streamed side then ran once per store on {', '.join(info['memory'])} for its peak RSS "
            "(the timed rounds at that size would not fit the time budget on this machine: "
            "`--part7-all-sizes` runs them)."
            if info.get("memory")
            else "."
        ),
        "",
        "| Database | Side | Wall time s | Dump alone s | Upload alone s | Machine CPU busy s "
        "| Peak RSS MiB | Peak - before MiB | Streamed / max(dump, upload) | Streamed / CPU floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    memory = [
        "",
        "Memory of the streamed side (peak RSS of the worker; peak - before: minus its RSS after imports;",
        "the store's client and its service description are made inside the call, so they are in it):",
        "",
        "| Store | Database | Artifact MiB | Wall time s | Peak RSS MiB | Peak - before MiB |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for scheme, name in (("s3", "S3 (moto server)"), ("az", "Azure (Azurite)")):
        state = info.get("stores", {}).get(scheme, "not run")
        if state != "ran":
            verdicts.append(f"{scheme}:// not measured ({state})")
            continue
        lines.append(f"| **{name}** | | | | | | | | | |")
        text = []
        for db in databases(data, 7):
            a, b = f"p7 dump then upload {scheme}:// {db['name']}", f"p7 streamed to {scheme}:// {db['name']}"
            if a in raw:
                rows, ratios = _stream_rows(raw, a, b, db["name"], f"{scheme}://", growth=True)
                lines += rows
                ok = ratios.median <= TARGET_STREAM_RATIO
                text.append(f"streamed / slower half {ratios.median:.2f} on {db['name']} ({verdict(ok)})")
        peaks = []
        for db in databases(data, 7):
            setting = _streamed_memory(raw, scheme, db["name"])
            if setting is None:
                continue
            sizes = [mib(v) for v in series(raw, setting, "manifest_size_bytes")]
            peak = Summary.of([v / 1024 for v in series(raw, setting, "vm_hwm_kib")])
            peaks.append((peak.median, max(sizes, default=0.0)))
            memory.append(
                f"| {scheme}:// | {db['name']} | {max(sizes, default=0.0):.0f} | "
                f"{Summary.of(series(raw, setting)).fmt()} | {peak.fmt(1)} | {_growth(raw, setting)} |"
            )
        if len(peaks) >= 2:
            (low, low_size), (high, high_size) = peaks[0], peaks[-1]
            ok = high - low <= bound
            text.append(
                f"streamed peak RSS {high - low:+.1f} MiB for {high_size - low_size:+.0f} MiB more data "
                f"({'bounded' if ok else '**not bounded**'}: within {bound:.0f} MiB of buffers)"
            )
        verdicts.append(f"{scheme}:// " + ", ".join(text))
    return [
        *lines,
        *memory,
        "",
        "**Verdict**: " + "; ".join(verdicts) + ".",
        "",
        f"Bounded memory: the streamed upload holds at most about (parts_in_flight + 1) x part size <= "
        f"({queued} + 1) x {mib(chunk):.0f} MiB",
        f"= {bound:.0f} MiB of buffers, whatever the artifact's size; the verdict asks that the streamed",
        "side's peak RSS grows by no more than that from the smallest to the largest database (conclusive",
        "only when the largest artifact is several times that size). On this 2-core machine the emulator",
        "(moto is Python, Azurite is Node.js) runs on the same two cores as pg_dump, the server and the",
        "worker, and its CPU is in the machine CPU busy figure: the CPU floor column says when a streamed",
        "run was CPU-bound, i.e. when overlapping the two halves cannot help here. Dump-then-upload's",
        "halves each had the machine to themselves.",
        "",
    ]


def _peak(raw: Raw, setting: str) -> str:
    return Summary.of([v / 1024 for v in series(raw, setting, "vm_hwm_kib")]).fmt(1)


def _profiles(data: dict[str, Any]) -> list[str]:
    profiles: dict[str, dict[str, Any]] = data.get("profiles", {})
    if not profiles:
        return []
    lines = [
        "## Profile of one provider run per setting",
        "",
        "One extra operator run on the large database with the provider's methods timed (wrappers",
        "installed by the worker) and a 5 ms wall-clock sampler over every thread plus each thread's CPU",
        "time from `/proc/self/task/*/stat`. Not part of the tables above.",
        "",
    ]
    for name, prof in profiles.items():
        lines += [f"### {name}: {prof['seconds']:.2f} s", "", "| Method | Calls | Seconds |", "|---|---|---|"]
        for method, (calls, seconds) in sorted(prof.get("phases", {}).items(), key=lambda kv: -kv[1][1]):
            if calls:
                lines.append(f"| `{method}` | {int(calls)} | {seconds:.3f} |")
        writes = prof.get("phases", {}).get("LocalArtifactTarget.write", [0, 0])
        if writes[0] and prof.get("size_bytes"):
            lines += [
                "",
                f"Average chunk handed to `LocalArtifactTarget.write`: "
                f"{prof['size_bytes'] / writes[0] / 1024:.1f} KiB over {int(writes[0])} calls.",
            ]
        cpu = prof.get("thread_cpu_seconds", {})
        if cpu:
            lines += [
                "",
                "CPU seconds per thread: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()) + ".",
            ]
        lines += ["", "Top samples (thread: innermost frame, share of samples):", "", "```"]
        lines += [f"{share * 100:5.1f}%  {where}" for where, _count, share in prof.get("samples", [])[:12]]
        lines += ["```", ""]
    return lines


def _closing(data: dict[str, Any]) -> list[str]:
    text = HERE / "ANALYSIS.md"
    lines = ["## Closing note", ""]
    if text.exists():
        lines.append(text.read_text(encoding="utf-8").strip())
    else:
        lines.append("(no analysis written for this run)")
    return [*lines, ""]


def chart_bars(raw: Raw) -> list[Bar]:
    bars = []
    for setting, results in sorted(raw.items(), key=lambda item: item[0][:2]):  # by part, stable
        if setting.startswith("p2 "):
            continue
        times = Summary.of([float(r["seconds"]) for r in results])
        sizes = [mib(float(r.get("size_bytes") or r.get("manifest_size_bytes") or 0)) for r in results]
        sizes = [v for v in sizes if v > 0]
        size = Summary.of(sizes).median if sizes else 0.0
        bars.append(Bar(f"{setting[1]}: {setting[3:]}", times.median, times.low, times.high, size))
    return bars


def render(data: dict[str, Any]) -> None:
    """Write RESULTS.md, results.png and results.svg next to this file."""
    quick = " BENCH_ARGS=--quick" if data.get("args", {}).get("quick") else ""
    lines = [
        "# Benchmark results (issues #7, #15, #16, #21)",
        "",
        (
            f"Generated by `make bench{quick}` ({len(data['runs'])} runs merged, see the table of runs)."
            if data.get("runs")
            else f"Generated by `make bench{quick}` on {data.get('started_utc', '?')} UTC in "
            f"{data.get('minutes', '?')} min."
        )
        + " Raw figures: [`results.json`](results.json). Re-render with",
        "`.venv/bin/python -m benchmarks.report`.",
        "",
        "![time and size per setting](results.png)",
        "",
        "Targets: provider/bare wall time <= 1.05; peak RSS of the driving Python process < 150 MiB and",
        "flat as data grows; streamed dump to gs:// (part 4), s3:// and az:// (part 7) <= 1.1 x max(dump",
        "alone, upload alone), memory flat; age encryption adds <= 10 % wall time with compression on;",
        "the default dump (content record) <= 1.10 x bare pg_dump's wall time and <= 1.3 x its machine",
        "CPU, the drill's content comparison <= 1.2 x the drill with row counts, 5,000 small tables <= 1.2 x",
        "(parts 5 and 8, issue 21).",
        "",
        *_machine(data),
        *_part1(data),
        *_part2(data),
        *_part3(data),
        *_part4(data),
        *part5(data),
        *_part6(data),
        *_part7(data),
        *part8(data),
        *_profiles(data),
        *_closing(data),
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    write_chart(chart_bars(data["raw"]), HERE / "results.png", HERE / "results.svg")


def main() -> int:
    render(json.loads((HERE / "results.json").read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
