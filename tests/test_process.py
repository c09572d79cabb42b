"""The runner's kill paths with real child processes (issue 12, item 4)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Any

import pytest
import structlog

from airflow_provider_pgbackup import process
from airflow_provider_pgbackup.process import PgCommandError, PgProcessRunner


def test_on_kill_arriving_while_popen_starts_the_child_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow calls on_kill from its SIGTERM handler on the thread running execute. A signal that
    lands while that thread is inside ``subprocess.Popen`` runs the handler right after Popen returns
    its child, before the runner has recorded it: kill() then finds no process to stop. A real signal
    cannot be aimed at that instant, so this test runs kill() at exactly that point, on the same
    thread, from a wrapped Popen; the child is real."""
    runner = PgProcessRunner(structlog.get_logger(), progress_interval=0.2)
    real_popen = subprocess.Popen
    children: list[subprocess.Popen[bytes]] = []

    def popen_then_signal(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        child = real_popen(argv, **kwargs)
        if not children:  # the pg tool itself (the reaper that follows is started normally)
            children.append(child)
            runner.kill()  # what the SIGTERM handler (on_kill) does when it runs at this instant
        return child

    monkeypatch.setattr(process.subprocess, "Popen", popen_then_signal)
    sleep = shutil.which("sleep")
    assert sleep is not None

    with pytest.raises(PgCommandError) as raised:
        runner.run([sleep, "60"], dict(os.environ))

    assert raised.value.killed
    (child,) = children
    assert child.returncode == -signal.SIGTERM, "the child was stopped, not left to run its 60 s"
    assert not os.path.exists(f"/proc/{child.pid}")


def test_a_session_env_copied_into_a_plain_dict_is_refused_before_the_child_starts() -> None:
    """A copy of a session's env made with dict() loses the descriptors its PGPASSFILE names: the child
    would find no passfile and prompt for a password. The runner refuses that before anything starts;
    ``ChildEnv.copy()`` keeps them (a real memfd, a real child reading it)."""
    runner = PgProcessRunner(structlog.get_logger("test"))
    fd = os.memfd_create("pgpass")
    try:
        os.write(fd, b"secret-line\n")
        env = process.ChildEnv({"PATH": os.environ["PATH"], "PGPASSFILE": f"/proc/self/fd/{fd}"}, [fd])
        seen: list[bytes] = []
        cat = shutil.which("cat")
        assert cat is not None
        runner.run([cat, env["PGPASSFILE"]], env.copy(), stdout=seen.append)
        assert b"".join(seen) == b"secret-line\n"
        with pytest.raises(RuntimeError, match=rf"PGPASSFILE names descriptor {fd}"):
            runner.run([cat, env["PGPASSFILE"]], dict(env))
    finally:
        os.close(fd)
