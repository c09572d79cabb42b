"""What a plain SQL script (pg_dump / pg_dumpall output) would do to the server beyond one database.

psql replays plain SQL. Besides the objects of the database it runs in, a script can touch the whole
server: databases (``CREATE``/``DROP``/``ALTER DATABASE``, ``COMMENT``/``GRANT``/``SECURITY LABEL ON
DATABASE``, a ``\\connect`` to another one), roles (``CREATE``/``ALTER``/``DROP ROLE``, ``USER``,
``GROUP``, memberships, ``DROP``/``REASSIGN OWNED``), tablespaces, parameter privileges, the system
catalogue, the server's files and programs (``COPY`` to or from one), and psql itself (meta-commands).
:class:`~airflow_provider_pgbackup.sqlscript.lexer.ScriptScanner` reads a script once, as a stream of
chunks, and collects those statements with the names they touch (:class:`SqlScript`); whoever replays
the script compares the names with what exists on the target server before anything runs.

It splits the script as psql does (``lexer.py``): text inside ``COPY ... FROM stdin`` data, string
literals (standard, ``E'...'``, dollar-quoted bodies), quoted identifiers and comments (nested ``/* */``
too) is never taken for a statement, and ``;`` ends one only outside parentheses and ``BEGIN ATOMIC``
bodies. Then it reads each statement that can matter (``statements.py``). No library lexes psql
scripts (meta-commands and COPY data belong to psql, not to the server's grammar), hence this small
lexer. What it cannot read with certainty is reported as refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow_provider_pgbackup.sqlscript.lexer import ScriptScanner
from airflow_provider_pgbackup.sqlscript.script import ALWAYS_EXISTING_ROLES, SqlScript, SqlScriptRefused


def scan_sql(chunks: Iterable[bytes]) -> SqlScript:
    """Scan a whole script, given as chunks of (decompressed) bytes."""
    scanner = ScriptScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.finish()


__all__ = ["ALWAYS_EXISTING_ROLES", "ScriptScanner", "SqlScript", "SqlScriptRefused", "scan_sql"]
