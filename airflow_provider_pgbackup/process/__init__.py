"""The one streamed runner for pg_dump, pg_dumpall, pg_restore, psql (and decompressors), and its errors
(:mod:`.errors`; the child's environment is :mod:`.env`).

Knows nothing of Airflow connections: it runs an argv with the environment it is given. Every child
runs in its own session (process group), so :meth:`PgProcessRunner.kill` stops it and all its workers.
Nothing in that group outlives the task process, even when that process is killed with SIGKILL: the child
gets a parent-death signal (Linux ``PR_SET_PDEATHSIG``; pg_dump and pg_restore forward it to their
parallel workers), and a tiny reaper outside the group stops whatever is left in it (pg_dumpall runs
pg_dump through ``sh``: grandchildren that no parent-death signal reaches) once the task process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.process.env import (
    INHERITED_ENV,
    ChildEnv,
    check_inherited,
    inherited_env,
    tool_env,
)
from airflow_provider_pgbackup.process.errors import PgCommandError, PgLockTimeout

STDERR_TAIL_LINES = 20
READ_CHUNK_BYTES = 1024 * 1024
PIPE_BYTES = 1024 * 1024
_PR_SET_PDEATHSIG = 1
REAPER_GRACE_SECONDS = 5.0
# The reaper: blocks on a pipe only the task process can write to. "done" means the command ended
# normally; end-of-file without it means the task process died: SIGTERM the command's process group,
# then SIGKILL what is still there after the grace period. It is not in that group, so `killpg(group, 0)`
# tells whether anything is left (a group id cannot be reused while a member lives).
_REAPER = """
import os, signal, sys, time
group, grace = int(sys.argv[1]), float(sys.argv[2])
if sys.stdin.buffer.read() == b"done":
    sys.exit(0)
for sig in (signal.SIGTERM, signal.SIGKILL):
    deadline = time.monotonic() + grace
    try:
        os.killpg(group, sig)
        while time.monotonic() < deadline:
            time.sleep(0.05)
            os.killpg(group, 0)
    except ProcessLookupError:
        sys.exit(0)
"""


def _parent_death_signal(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when the task process dies.

    SIGTERM (not SIGKILL) lets pg_dump/pg_restore stop their own parallel workers. If the parent died
    between ``fork`` and ``prctl``, the child exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def set_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return set_signal


class _Reaper:
    """Stops the process group ``group`` if the task process dies before the command ends (``_REAPER``)."""

    def __init__(self, group: int, log: Any) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        read_end, self._write_end = os.pipe()  # not inherited by any other child (close_fds, O_CLOEXEC)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _REAPER, str(group), str(REAPER_GRACE_SECONDS)],
                env=tool_env(),
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # outside the group it watches, and out of the task's signals
                close_fds=True,
            )
        except OSError as err:  # the parent-death signal still stops the command itself
            log.warning("Could not start the reaper of process group %s: %s", group, err)
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def release(self, command_ended: bool) -> None:
        """Let the reaper go; unless ``command_ended``, it stops what is left of the group."""
        try:
            if command_ended and self._proc is not None:
                with contextlib.suppress(OSError):
                    os.write(self._write_end, b"done")
        finally:
            os.close(self._write_end)
        if command_ended and self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=REAPER_GRACE_SECONDS)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind: exit code and the last lines of stderr, not its output."""

    tool: str
    returncode: int
    stderr_tail: tuple[str, ...]
    duration_seconds: float


class PgProcessRunner:
    """The one streamed runner for pg_dump, pg_dumpall, pg_restore and psql.

    The child runs in its own session (process group) so :meth:`kill` stops it and all its workers.
    stderr (and stdout, unless a consumer takes it) goes to the log line by line; a ``progress``
    callable is polled every ``progress_interval`` seconds and its line logged.
    """

    def __init__(self, log: Any, progress_interval: float = 5.0):
        self.log = log
        self.progress_interval = progress_interval
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed = threading.Event()
        self._lock = threading.RLock()  # on_kill runs in a signal handler on the same thread

    @property
    def killed(self) -> bool:
        """True once :meth:`kill` was called: the runner starts nothing more."""
        return self._killed.is_set()

    def run(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        stdout: Callable[[bytes], None] | None = None,
        stdin: Iterable[bytes] | None = None,
        progress: Callable[[float], str] | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run ``argv`` (no shell) with ``env``; raise :class:`PgCommandError` on a non-zero exit.

        A :class:`ChildEnv` also hands the child the descriptors it names; nothing else is inherited.

        :param stdout: called with each chunk of the child's stdout (e.g. an artifact writer); when
            None, stdout lines are logged.
        :param stdin: chunks fed to the child's stdin from a thread.
        :param progress: called with the elapsed seconds; returns a line to log.
        """
        tool = Path(argv[0]).name
        started = time.monotonic()
        with self._lock:
            if self._killed.is_set():
                # on_kill can arrive between two commands, or before the first: start nothing more.
                raise PgCommandError(tool, -signal.SIGTERM, ["stopped before it started"], killed=True)
            self._proc = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                restore_signals=True,
                close_fds=True,
                pass_fds=check_inherited(env),
                preexec_fn=_parent_death_signal(os.getpid()),
            )
        proc = self._proc
        try:
            reaper = _Reaper(proc.pid, self.log)
        except BaseException:
            self._terminate(proc)
            raise
        try:
            return self._follow(proc, tool, stdout, stdin, progress, check, started)
        finally:
            reaper.release(command_ended=proc.poll() is not None)

    def _follow(
        self,
        proc: subprocess.Popen[bytes],
        tool: str,
        stdout: Callable[[bytes], None] | None,
        stdin: Iterable[bytes] | None,
        progress: Callable[[float], str] | None,
        check: bool,
        started: float,
    ) -> CommandResult:
        """Stream the running ``proc``'s output, feed its input, wait for it; see :meth:`run`."""
        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        errors: list[BaseException] = []
        if self._killed.is_set():
            # on_kill ran (in a signal handler) while Popen was starting: it saw no process to stop.
            self._terminate(proc)
        self.log.info("Started %s (pid %s)", tool, proc.pid)

        def guarded(target: Callable[[], None]) -> Callable[[], None]:
            def body() -> None:
                try:
                    target()
                except BaseException as err:
                    errors.append(err)
                    self._terminate(proc)

            return body

        def pump_stderr() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                line = raw.decode("utf-8", errors="backslashreplace").rstrip("\n")
                tail.append(line)
                self.log.info("%s: %s", tool, line)

        def pump_stdout() -> None:
            assert proc.stdout is not None
            if stdout is None:
                for raw in proc.stdout:
                    self.log.info("%s: %s", tool, raw.decode("utf-8", errors="backslashreplace").rstrip("\n"))
                return
            fd = proc.stdout.fileno()
            with contextlib.suppress(AttributeError, OSError):  # Linux: 64 KiB pipes mean 20x more reads
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]
            while chunk := os.read(fd, READ_CHUNK_BYTES):
                stdout(chunk)

        def feed_stdin() -> None:
            assert proc.stdin is not None
            assert stdin is not None
            try:
                for chunk in stdin:
                    proc.stdin.write(chunk)
            except BrokenPipeError:
                pass  # the child exited early; its exit code tells why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()

        threads = [threading.Thread(target=guarded(pump_stderr), daemon=True, name=f"{tool}-stderr")]
        threads.append(threading.Thread(target=guarded(pump_stdout), daemon=True, name=f"{tool}-stdout"))
        if stdin is not None:
            threads.append(threading.Thread(target=guarded(feed_stdin), daemon=True, name=f"{tool}-stdin"))
        for thread in threads:
            thread.start()

        def report_progress() -> None:
            if progress is not None:
                self.log.info("%s", progress(time.monotonic() - started))

        try:
            # The end of stdout wakes this thread at once (Popen.wait(timeout) polls every 50 ms).
            stdout_thread = threads[1]
            while stdout_thread.is_alive():
                stdout_thread.join(timeout=self.progress_interval)
                if stdout_thread.is_alive():
                    report_progress()
            while True:  # a child may close stdout before it exits
                try:
                    proc.wait(timeout=self.progress_interval)
                    break
                except subprocess.TimeoutExpired:
                    report_progress()
        except BaseException:
            self._terminate(proc)
            raise
        finally:
            for thread in threads:
                thread.join()
        duration = time.monotonic() - started
        if self._killed.is_set() and proc.returncode != 0:
            # A kill also breaks the consumer (its sink was aborted); the kill is the cause to report.
            cause = errors[0] if errors else None
            raise PgCommandError(tool, proc.returncode, tail, killed=True) from cause
        if errors:
            raise errors[0]
        result = CommandResult(tool, proc.returncode, tuple(tail), duration)
        if check and proc.returncode != 0:
            raise PgCommandError(tool, proc.returncode, tail, killed=self._killed.is_set())
        self.log.info("%s finished in %.1f s", tool, duration)
        return result

    def kill(self) -> None:
        """Stop the running command and every process in its group (SIGTERM, then SIGKILL).

        The runner stays stopped: a command it is asked to run afterwards fails without starting.
        """
        with self._lock:
            self._killed.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            self._terminate(proc)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], grace_seconds: float = 5.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_seconds)


__all__ = [
    "INHERITED_ENV",
    "READ_CHUNK_BYTES",
    "STDERR_TAIL_LINES",
    "ChildEnv",
    "CommandResult",
    "PgCommandError",
    "PgLockTimeout",
    "PgProcessRunner",
    "inherited_env",
    "tool_env",
]
