"""What psql itself does while it reads a script, beyond splitting it into tokens: the meta-commands it
runs (only pg_dump's own are allowed: ``\\restrict``, ``\\encoding``, ``\\connect``) and how it keeps a
``CREATE FUNCTION ... BEGIN ATOMIC ... END`` body together as one statement. Used by the lexer
(:class:`~airflow_provider_pgbackup.sqlscript.lexer.ScriptScanner`).
"""

from __future__ import annotations

import re

from psycopg import Error as PsycopgError
from psycopg.conninfo import conninfo_to_dict

from airflow_provider_pgbackup.sqlscript.script import SqlScript, python_codec, server_name
from airflow_provider_pgbackup.sqlscript.statements import Token

# The meta-commands pg_dump writes, with the arguments it writes them with; any other line is refused.
_RESTRICT = re.compile(rb"\\(?:restrict|unrestrict)[ \t]+[A-Za-z0-9]+[ \t\r]*")
_ENCODING = re.compile(rb"\\encoding[ \t]+(?P<encoding>[A-Za-z0-9_]+)[ \t\r]*")
_CONNECT = re.compile(
    rb"\\(?:connect|c)[ \t]+(?:-reuse-previous=(?:on|off)[ \t]+)?"
    rb"""(?:"(?P<quoted>(?:[^"\n]|"")*)"|(?P<bare>[^\s"'`:\\]+))[ \t\r]*"""
)
_META_NAME = re.compile(rb"\\(?:[A-Za-z_][A-Za-z0-9_]*|.?)")
ATOMIC_WORDS = (b"create", b"function", b"procedure", b"or", b"replace")


class PendingStatement:
    """The statement being read: its tokens (while it may matter) and psql's state for splitting it.

    psql keeps ``CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ... END`` together: it notes
    the initial of the first four words when they are create/function/procedure/or/replace, and then
    counts BEGIN (and CASE inside it) against END outside parentheses.
    """

    __slots__ = ("atomic", "begin_depth", "collecting", "ids", "needs_words", "paren_depth", "tokens")

    def __init__(self) -> None:
        self.tokens: list[Token] = []
        self.collecting = True  # False once it cannot matter (or was classified already)
        self.ids: list[bytes] = []
        self.atomic = False
        self.needs_words = True  # it is, or may still become, atomic
        self.paren_depth = 0
        self.begin_depth = 0

    def word(self, value: bytes) -> None:
        if len(self.ids) < 4:
            self.ids.append(value[:1] if value in ATOMIC_WORDS else b"")
            ids = [*self.ids, b"", b"", b""][:4]
            self.atomic = ids[0] == b"c" and (
                ids[1] in (b"f", b"p") or (ids[1:3] == [b"o", b"r"] and ids[3] in (b"f", b"p"))
            )
            prefix = b"".join(i or b"-" for i in self.ids)
            self.needs_words = self.atomic or prefix in (b"c", b"co", b"cor")
        if self.atomic and self.paren_depth == 0:
            if value == b"begin" or (value == b"case" and self.begin_depth):
                self.begin_depth += 1
            elif value == b"end" and self.begin_depth:
                self.begin_depth -= 1


def meta_command(line: bytes, encoding: str, script: SqlScript) -> str:
    """Read one meta-command line (``\\`` to the end of the line) in a script written in ``encoding``;
    returns the encoding from then on. Anything but pg_dump's own meta-commands is refused."""
    if _RESTRICT.fullmatch(line):
        pass
    elif found := _ENCODING.fullmatch(line):
        return python_codec(found["encoding"].decode("ascii"))
    elif connect := _CONNECT.fullmatch(line):
        quoted = connect["quoted"]
        _connect(quoted.replace(b'""', b'"') if quoted is not None else connect["bare"], encoding, script)
    else:
        name = _META_NAME.match(line)
        shown = name.group().decode(encoding, "backslashreplace") if name else "\\"
        script.refuse(f"the psql meta-command {shown} (pg_dump never writes it)")
    return encoding


def _connect(target: bytes, encoding: str, script: SqlScript) -> None:
    """A ``\\connect`` to ``target``: the database it names is touched; a connection string setting
    anything but ``dbname`` is refused (without its values: it may hold a password)."""
    text = server_name(target, encoding)
    if "=" in text or text.startswith(("postgresql://", "postgres://")):
        try:
            settings = conninfo_to_dict(text)
        except PsycopgError:
            script.refuse("a \\connect whose connection string cannot be read")
            return
        others = sorted(k for k in settings if k != "dbname")
        if others:  # never show the values: a connection string may hold a password
            script.refuse(f"a \\connect that also sets {', '.join(others)}")
            return
        text = server_name(str(settings.get("dbname") or "").encode("utf-8", "surrogateescape"), "utf-8")
    if not text:
        script.refuse("a \\connect without a database name")
        return
    script.touch("\\connect", "database", text)
