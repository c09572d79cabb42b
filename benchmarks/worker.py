"""One measured dump, in a fresh Python process: ``python -m benchmarks.worker '<json spec>'``.

The orchestrator (:mod:`benchmarks.run`) starts one worker per measured run, so every run starts from a
cold Python heap and the peak RSS it reports belongs to that run alone. Imports happen before the clock
starts: an Airflow worker has Airflow imported long before a task's ``execute`` is called.

The worker prints one JSON line on stdout:

- ``seconds``: wall time of the dump call only (bare: the ``pg_dump`` child; provider: ``execute``);
- ``size_bytes``: size of the artifact (file, or sum over a directory's files);
- ``vm_hwm_kib`` / ``vm_rss_before_kib``: this Python process's peak RSS (``VmHWM`` in
  ``/proc/self/status``, read at the very end) and its RSS after imports, before the dump. Children
  (pg_dump) are separate processes and not included;
- ``self_cpu_seconds`` / ``children_cpu_seconds``: user+system CPU of this process and of its waited-for
  children (pg_dump) during the dump, from ``getrusage``.

(The children's ``ru_maxrss`` is not reported: a child forked from this process keeps the parent's
high-water mark at ``exec``, so it would show the Python process's RSS, not pg_dump's.)
"""

from __future__ import annotations

import collections
import functools
import importlib
import inspect
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def artifact_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _run_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """``pg_dump`` exactly as a user would type it; stdout/stderr go to the worker's log."""
    started = time.perf_counter()
    subprocess.run(spec["argv"], env=spec["env"], check=True, stdin=subprocess.DEVNULL)
    return {"seconds": time.perf_counter() - started}


def _run_operator(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator

    operator = PgDumpOperator(task_id="bench_dump", **spec["operator"])
    started = time.perf_counter()
    result = operator.execute(context={})
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "manifest_size_bytes": result["size_bytes"], "sha256": result["sha256"]}


def _upload_operator(spec: dict[str, Any]) -> Any:
    """The transfer operator class of a dump-then-upload run: ``PgBackupToGCSOperator`` (part 4,
    arguments ``bucket`` / ``prefix``) or ``PgBackupUploadOperator`` (part 7, ``destination``)."""
    if spec.get("upload_with") == "PgBackupUploadOperator":
        from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator

        return PgBackupUploadOperator
    from airflow_provider_pgbackup.transfers.backup_to_gcs import (  # type: ignore[import-not-found]
        PgBackupToGCSOperator,
    )

    return PgBackupToGCSOperator


def _run_dump_then_upload(spec: dict[str, Any]) -> dict[str, Any]:
    """Parts 4 and 7, side A: dump to a local file, then upload it with the provider's transfer operator."""
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator

    dump = PgDumpOperator(task_id="bench_dump", **spec["operator"])
    upload = _upload_operator(spec)(task_id="bench_upload", **spec["upload"])
    started = time.perf_counter()
    dump.execute(context={})
    dumped = time.perf_counter()
    upload.execute(context={})
    finished = time.perf_counter()
    return {
        "seconds": finished - started,
        "dump_seconds": dumped - started,
        "upload_seconds": finished - dumped,
    }


def _run_streamed(spec: dict[str, Any]) -> dict[str, Any]:
    """Parts 4 and 7, side B: the hook streams pg_dump's output straight to a ``gs://``, ``s3://`` or
    ``az://`` output_path."""
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator

    operator = PgDumpOperator(task_id="bench_dump", **spec["operator"])
    started = time.perf_counter()
    result = operator.execute(context={})
    return {"seconds": time.perf_counter() - started, "manifest_size_bytes": result["size_bytes"]}


# ------------------------------------------------------------------------------------------- profiling
# Methods timed in a profiling run: (module, class, method). Wrapping costs ~1 us per call.
TIMED = (
    ("airflow_provider_pgbackup.hooks.pg_dump", "PgDumpHook", "get_connection"),
    ("airflow_provider_pgbackup.hooks.pg_dump", "PgDumpHook", "find_binary"),
    ("airflow_provider_pgbackup.hooks.pg_dump", "PgDumpHook", "_check_compression"),
    ("airflow_provider_pgbackup.hooks.pg_dump", "PgDumpHook", "_count_rows"),
    ("airflow_provider_pgbackup.hooks.pg_dump", "PgDumpHook", "_write_manifest_or_undo"),
    ("airflow_provider_pgbackup.libpq", "LibpqSession", "connect"),
    ("airflow_provider_pgbackup.process", "PgProcessRunner", "run"),
    ("airflow_provider_pgbackup.storage.local", "LocalArtifactTarget", "write"),
    ("airflow_provider_pgbackup.storage.local", "LocalArtifactTarget", "commit"),
    ("airflow_provider_pgbackup.storage.objects.write", "ObjectArtifactTarget", "__init__"),
    ("airflow_provider_pgbackup.storage.objects.write", "ObjectArtifactTarget", "write"),
    ("airflow_provider_pgbackup.storage.objects.write", "ObjectArtifactTarget", "commit"),
    ("airflow_provider_pgbackup.storage.objects.write", "ObjectArtifactTarget", "write_manifest"),
    ("airflow_provider_pgbackup.transfers.backup_to_gcs", "PgBackupToGCSOperator", "execute"),
)


def _install_timers(phases: dict[str, list[float]]) -> None:
    """Wrap the methods in :data:`TIMED` so each call adds to ``phases[name] = [calls, seconds]``."""
    for module_name, class_name, method in TIMED:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            raw = inspect.getattr_static(cls, method)
        except (ImportError, AttributeError):
            continue  # not in this version of the package
        kind = type(raw) if isinstance(raw, (staticmethod, classmethod)) else None
        func: Callable[..., Any] = raw.__func__ if kind else raw
        key = f"{class_name}.{method}"
        phases[key] = [0, 0.0]

        def wrapper(*args: Any, __func: Callable[..., Any] = func, __key: str = key, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return __func(*args, **kwargs)
            finally:
                phases[__key][0] += 1
                phases[__key][1] += time.perf_counter() - started

        wrapped = functools.wraps(func)(wrapper)
        setattr(cls, method, kind(wrapped) if kind else wrapped)


def _thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by native thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    result = {}
    for entry in os.scandir("/proc/self/task"):
        try:
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        result[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return result


@contextmanager
def sampling(result: dict[str, Any], interval: float = 0.005) -> Iterator[None]:
    """A tiny wall-clock sampling profiler over every thread, plus each thread's CPU time.

    Every ``interval`` seconds the innermost Python frame of each thread is counted, and each
    thread's CPU time is read; the last figure seen per thread is kept (threads end before the dump
    returns), minus what the thread had used before the block (the main thread's imports).
    """
    stop = threading.Event()
    frames: collections.Counter[str] = collections.Counter()
    cpu_by_name: dict[str, float] = {}
    cpu_before = _thread_cpu()

    def sample() -> None:
        own = threading.get_ident()
        while not stop.wait(interval):
            threads = threading.enumerate()
            names = {t.ident: t.name for t in threads}
            natives = {t.native_id: t.name for t in threads if t.ident != own}
            for ident, frame in sys._current_frames().items():
                if ident == own:
                    continue
                code = frame.f_code
                where = f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}"
                frames[f"{names.get(ident, '?')}: {where}"] += 1
            for native, seconds in _thread_cpu().items():
                name = natives.get(native)
                if name:
                    used = seconds - cpu_before.get(native, 0.0)
                    cpu_by_name[name] = max(used, cpu_by_name.get(name, 0.0))

    thread = threading.Thread(target=sample, name="sampler", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        total = sum(frames.values()) or 1
        result["samples"] = [[where, count, count / total] for where, count in frames.most_common(25)]
        result["thread_cpu_seconds"] = {
            name: round(seconds, 3) for name, seconds in sorted(cpu_by_name.items(), key=lambda kv: -kv[1])
        }


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process: pg_dump, the server, the
    emulator, this worker), from ``/proc/stat``. Non-idle = total - idle - iowait."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def _run_drill(spec: dict[str, Any]) -> dict[str, Any]:
    """Part 5: the restore drill (verify, restore into a scratch database, compare, drop)."""
    from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator

    drill = PgRestoreOperator(task_id="bench_drill", **spec["drill"])
    started = time.perf_counter()
    result = drill.execute(context={})
    seconds = time.perf_counter() - started
    content = result.get("content") or {}
    return {
        "seconds": seconds,
        "restore_seconds": result["restore_seconds"],
        "compare_seconds": content.get("seconds", 0.0),
        "verdict": content.get("verdict", "row counts"),
    }


RUNNERS = {
    "bare": _run_bare,
    "drill": _run_drill,
    "operator": _run_operator,
    "dump_then_upload": _run_dump_then_upload,
    "streamed": _run_streamed,
}


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[1])
    runner = RUNNERS[spec["kind"]]
    if spec["kind"] != "bare":
        # Import what the measured call imports, so the clock and the "before" RSS exclude it.
        import airflow_provider_pgbackup.operators.pg_dump  # noqa: F401

        if spec.get("operator", {}).get("encryption_recipients"):
            import pyrage  # noqa: F401  (part 6: age is loaded on first use)
        if spec["kind"] == "dump_then_upload":
            # Built once before the readings too: the runner builds it outside the clock, and its
            # construction (the outlet Asset loads every provider's URI handlers: seconds of CPU)
            # must not land in the CPU, machine-busy and RSS "before" figures either.
            _upload_operator(spec)(task_id="bench_warm", **spec["upload"])
        for module in spec.get("preload", ()):
            importlib.import_module(module)  # part 7: the store SDK, on both sides alike
    if spec.get("force_server_method"):
        # Part 5: the previous default, the server's md5 of every row in the dump's snapshot, on the
        # same dump (only the choice of method is changed, in this process).
        from airflow_provider_pgbackup import snapshot

        snapshot.stream_unreadable = lambda options: "the benchmark measures the server method"  # type: ignore[assignment]
    phases: dict[str, list[float]] = {}
    profile: dict[str, Any] = {}
    if spec.get("profile"):
        _install_timers(phases)
    rss_before = _status_kib("VmRSS")
    cpu_self, cpu_children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_seconds()
    if spec.get("profile"):
        with sampling(profile):
            result = runner(spec)
        result.update(profile, phases=phases)
    else:
        result = runner(spec)
    result["machine_busy_seconds"] = round(machine_busy_seconds() - busy_before, 3)
    result["cpu_count"] = os.cpu_count() or 1
    result["self_cpu_seconds"] = _cpu(resource.RUSAGE_SELF) - cpu_self
    result["children_cpu_seconds"] = _cpu(resource.RUSAGE_CHILDREN) - cpu_children
    result["vm_rss_before_kib"] = rss_before
    result["vm_hwm_kib"] = _status_kib("VmHWM")
    if spec.get("artifact"):
        result["size_bytes"] = artifact_size(Path(spec["artifact"]))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv))
