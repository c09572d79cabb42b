"""The environment a pg tool child gets: only the worker's harmless variables (:data:`INHERITED_ENV`),
plus, in a :class:`ChildEnv`, the descriptors it names (a session's in-memory passfile)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

# Variables a child may inherit from the worker. Everything else (AIRFLOW_CONN_*, PG*, cloud keys) is dropped.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
)


def inherited_env() -> dict[str, str]:
    """The worker's variables a child may see (``INHERITED_ENV``), and nothing else."""
    return {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}


class ChildEnv(dict[str, str]):
    """A child's environment plus the descriptors it names (``PGPASSFILE=/proc/self/fd/N``, an in-memory
    file): :meth:`PgProcessRunner.run` lets the child inherit exactly these (``pass_fds``, same numbers),
    and no other descriptor of the task process."""

    def __init__(self, variables: dict[str, str], pass_fds: Iterable[int] = ()) -> None:
        super().__init__(variables)
        self.pass_fds = tuple(pass_fds)

    def copy(self) -> ChildEnv:
        """A copy to change variables in that still hands the child its descriptors."""
        return ChildEnv(self, self.pass_fds)


_FD_PATH = re.compile(r"^/proc/self/fd/(\d+)$")


def check_inherited(env: dict[str, str]) -> tuple[int, ...]:
    """The descriptors ``env`` hands the child; a variable naming ``/proc/self/fd/N`` that is not among
    them (an environment copied into a plain dict) is a bug: the child would find no passfile and
    ask for a password, so it is refused before anything starts."""
    pass_fds = env.pass_fds if isinstance(env, ChildEnv) else ()
    for name, value in env.items():
        match = _FD_PATH.match(value)
        if match and int(match.group(1)) not in pass_fds:
            raise RuntimeError(
                f"{name} names descriptor {match.group(1)}, which this environment does not hand to the "
                "child (copy a session's env with .copy(), not dict())"
            )
    return pass_fds


def tool_env() -> dict[str, str]:
    """A minimal environment for pg_restore --list, probes and decompressors: no connection, no secrets."""
    env = inherited_env()
    env["LC_MESSAGES"] = "C"
    return env
