"""RESULTS.md sections of parts 5 and 8 (issue 21: what the content record costs)."""

from __future__ import annotations

from typing import Any

from benchmarks.stats import Raw, Summary, databases, mib, pair_ratios, series, verdict

#: Issue 21's goals
TARGET_DUMP_WALL = 1.10
TARGET_DUMP_CPU = 1.30
TARGET_DRILL = 1.20
TARGET_MANY_TABLES = 1.20
BARE5 = "p5 bare pg_dump -Fc gzip:6"
BARE8 = "p8 bare pg_dump -Fc gzip:6"


def _ratio(raw: Raw, base: str, side: str, key: str = "seconds") -> Summary:
    return Summary.of(pair_ratios(raw, base, side, key))


def _cpu(raw: Raw, side: str, key: str) -> str:
    return Summary.of(series(raw, side, key)).fmt()


def _rows(
    raw: Raw, base: str, sides: list[str], columns: tuple[str, ...], goal: tuple[str, float]
) -> list[str]:
    """One table row per side: wall time, its per-round ratio to ``base``, the ``columns``' medians, and
    the verdict of the side named in ``goal`` against its target ratio."""
    lines = []
    for side in sides:
        ratio = _ratio(raw, base, side)
        target = f"<= {goal[1]}: {verdict(ratio.median <= goal[1])}" if side == goal[0] else ""
        figures = " | ".join(_cpu(raw, side, column) for column in columns)
        shown = ratio.fmt(3) if side != base else "1"
        lines.append(
            f"| {side[3:]} | {Summary.of(series(raw, side)).fmt()} | {shown} | {figures} | {target} |"
        )
    return lines


def part5(data: dict[str, Any]) -> list[str]:
    raw: Raw = data["raw"]
    if BARE5 not in raw:
        return ["## 5. What the content record costs", "", "Not run.", ""]
    big = databases(data, 5)[-1]
    lines = [
        f"## 5. What the content record costs ({big['name']}, `-Fc` gzip:6; issue 21)",
        "",
        "Dump side: bare `pg_dump -Fc` and `PgDumpOperator` recording nothing, row counts only, the",
        "content record read from pg_dump's own COPY data (the default since issue 21) and the content",
        "record computed by the server in the dump's snapshot (md5 of every row: the previous default,",
        "forced in the worker on the same dump). Interleaved rounds; ratios are per round against bare",
        "pg_dump. Machine CPU busy is the whole machine's CPU (server, pg_dump, the worker; other",
        "engineers' processes too) during the measured call.",
        "",
        "| Side | Wall time s | Wall / bare (per round) | Machine CPU busy s | CPU / bare (per round) "
        "| Python CPU s | Peak RSS MiB | Target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side in [BARE5, *(s for s in raw if s.startswith("p5 dump "))]:
        wall, cpu = _ratio(raw, BARE5, side), _ratio(raw, BARE5, side, "machine_busy_seconds")
        target = ""
        if side == "p5 dump record content (stream)":
            ok = wall.median <= TARGET_DUMP_WALL and cpu.median <= TARGET_DUMP_CPU
            target = f"wall <= {TARGET_DUMP_WALL}, CPU <= {TARGET_DUMP_CPU}: {verdict(ok)}"
        peak = Summary.of([v / 1024 for v in series(raw, side, "vm_hwm_kib")])
        lines.append(
            f"| {side.removeprefix('p5 ')} | {Summary.of(series(raw, side)).fmt()} | "
            f"{wall.fmt(3) if side != BARE5 else '1'} | {_cpu(raw, side, 'machine_busy_seconds')} | "
            f"{cpu.fmt(3) if side != BARE5 else '1'} | {_cpu(raw, side, 'self_cpu_seconds')} | "
            f"{peak.fmt(1) if side != BARE5 else ''} | {target} |"
        )
    base = "p5 drill record row_counts"
    lines += [
        "",
        "Drill side: verify, restore into a scratch database, compare, drop; row counts only vs the",
        "full content comparison (the stream method reads the restored tables back with `pg_dump",
        "--data-only` and takes the row counts from that read; the server method counts, then",
        "checksums every row). `Compare s` is the content comparison alone.",
        "",
        "| Side | Wall time s | Wall / row counts only (per round) | Restore s | Compare s "
        "| Machine CPU busy s | Target |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += _rows(
        raw,
        base,
        [s for s in raw if s.startswith("p5 drill ")],
        ("restore_seconds", "compare_seconds", "machine_busy_seconds"),
        ("p5 drill record content (stream)", TARGET_DRILL),
    )
    return [*lines, "", *_candidates(data.get("content_candidates")), ""]


def _candidates(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    lines = [
        f"Candidates, measured on the same data ({found['table']}: {found['rows']:,} rows, "
        f"{mib(found['copy_bytes']):.0f} MiB of COPY text), each alone, median of 3: the server-side SQL in",
        "one backend (`max_parallel_workers_per_gather = 0`, as the snapshot session), the in-stream",
        "reader's CPU over real archives of that table fed in 1 MiB pieces. The floor of any server-side",
        "method is one more scan with the output functions; the stream method adds no server work at all.",
        "",
        "| Candidate | Seconds | ns per row | ns per byte |",
        "|---|---|---|---|",
    ]
    for name, figures in found["candidates"].items():
        lines.append(
            f"| {name} | {figures['seconds']:.2f} | {figures['ns_per_row']:.0f} | "
            f"{figures['ns_per_byte']:.2f} |"
        )
    return lines


def part8(data: dict[str, Any]) -> list[str]:
    raw: Raw = data["raw"]
    if BARE8 not in raw:
        return ["## 8. Many small tables", "", "Not run.", ""]
    many = data.get("many_tables") or {}
    lines = [
        f"## 8. Many small tables ({many.get('tables', '?'):,} tables of {many.get('rows_per_table', '?')} "
        f"rows, {mib(many.get('size_bytes', 0)):.0f} MiB; issue 21: default dump <= {TARGET_MANY_TABLES} "
        "x bare)",
        "",
        "| Side | Wall time s | Wall / bare (per round) | Machine CPU busy s | Python CPU s | Target |",
        "|---|---|---|---|---|---|",
    ]
    lines += _rows(
        raw,
        BARE8,
        [BARE8, *(s for s in raw if s.startswith("p8 operator "))],
        ("machine_busy_seconds", "self_cpu_seconds"),
        ("p8 operator record content (default)", TARGET_MANY_TABLES),
    )
    return [*lines, ""]
