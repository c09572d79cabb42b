"""Reading one statement of a script: what it does beyond its database, from its tokens.

A token is ``(kind, value)``: ``word`` (lower-cased), ``ident`` (a quoted identifier, unquoted),
``unicode_ident``, ``string`` (its text, cut), ``dollar_string``, ``number`` or ``punct``. The lexer
hands over only statements whose first word is in :data:`RELEVANT`, and stops collecting one as soon
as :func:`may_matter` says it cannot reach beyond its database.
"""

from __future__ import annotations

from typing import Protocol

from airflow_provider_pgbackup.sqlscript.script import SqlScript

Token = tuple[str, bytes]

#: First words of the statements that can reach beyond their database; every other one is skipped.
RELEVANT = frozenset(
    b"create alter drop comment security grant revoke reassign insert update delete truncate merge "
    b"copy set do load".split()
)
#: Statements that write rows: read as far as their target (:data:`WRITE_HEAD_TOKENS` tokens).
WRITES = (b"insert", b"update", b"delete", b"truncate", b"merge")
WRITE_HEAD_TOKENS = 8
_OBJECT_KINDS = {b"database": "database", b"tablespace": "tablespace", b"role": "role", b"user": "role"}
_OBJECT_KINDS[b"group"] = "role"


class Context(Protocol):
    """What classification needs of the scanner: the result, the name decoder, session settings."""

    script: SqlScript

    def name(self, token: Token) -> str | None: ...

    def set_setting(self, setting: bytes, value: bytes) -> None: ...


def _word(tokens: list[Token], index: int) -> bytes:
    return tokens[index][1] if 0 <= index < len(tokens) and tokens[index][0] == "word" else b""


def may_matter(tokens: list[Token]) -> bool:
    """From the first tokens: whether the statement can still reach beyond its database."""
    first = tokens[0][1]
    if len(tokens) >= 2 and first in (b"create", b"alter", b"drop"):
        return _word(tokens, 1) in _OBJECT_KINDS or _word(tokens, 1) in (b"system", b"owned")
    if len(tokens) >= 3 and first == b"comment":
        return _word(tokens, 2) in _OBJECT_KINDS
    return True


def _index(tokens: list[Token], word: bytes, start: int = 0) -> int:
    """Index of ``word`` outside parentheses from ``start``; -1 when it is not there."""
    depth = 0
    for index in range(max(start, 0), len(tokens)):
        kind, value = tokens[index]
        if kind == "punct" and value in (b"(", b")"):
            depth += 1 if value == b"(" else -1
        elif depth == 0 and kind == "word" and value == word:
            return index
    return -1


def _names(tokens: list[Token], start: int, stop: tuple[bytes, ...] = ()) -> list[Token]:
    """The comma-separated names from ``start`` (``GROUP`` before a name is skipped); none for -1."""
    names: list[Token] = []
    index = start
    while 0 < index < len(tokens):
        kind, value = tokens[index]
        if kind == "word" and value == b"group" and index + 1 < len(tokens):
            index += 1
            kind, value = tokens[index]
        if kind not in ("word", "ident", "unicode_ident") or (kind == "word" and value in stop):
            break
        names.append((kind, value))
        if tokens[index + 1 : index + 2] != [("punct", b",")]:
            break
        index += 2
    return names


def _after(tokens: list[Token], word: bytes, start: int = 0, stop: tuple[bytes, ...] = ()) -> list[Token]:
    """The names after ``word`` (none when the word is not there)."""
    index = _index(tokens, word, start)
    return _names(tokens, index + 1, stop) if index >= 0 else []


def _touch(scanner: Context, statement: str, kind: str, names: list[Token]) -> None:
    for token in names:
        name = scanner.name(token)
        if name is not None:
            scanner.script.touch(statement, kind, name)


def classify(tokens: list[Token], scanner: Context) -> bool:
    """Record what one statement does beyond its database; True for ``COPY ... FROM stdin``."""
    first, second = tokens[0][1], _word(tokens, 1)
    script = scanner.script
    if first in (b"create", b"alter", b"drop"):
        _classify_object(tokens, scanner)
    elif first in (b"comment", b"security"):
        on = _index(tokens, b"on")
        what = _word(tokens, on + 1) if on > 0 else b""
        if what in _OBJECT_KINDS:
            label = "COMMENT ON" if first == b"comment" else "SECURITY LABEL ON"
            _touch(
                scanner, f"{label} {what.decode().upper()}", _OBJECT_KINDS[what], _names(tokens, on + 2)[:1]
            )
    elif first in (b"grant", b"revoke"):
        _classify_grant(tokens, scanner)
    elif first == b"reassign":
        _touch(scanner, "REASSIGN OWNED", "role", _after(tokens, b"by") + _after(tokens, b"to"))
    elif first in WRITES:
        _classify_write(tokens, scanner)
    elif first == b"copy":
        return _classify_copy(tokens, scanner)
    elif first == b"set":
        index = 2 if second in (b"session", b"local") else 1
        assigns = _word(tokens, index + 1) == b"to" or tokens[index + 1 : index + 2] == [("punct", b"=")]
        if assigns and index + 2 < len(tokens):
            scanner.set_setting(_word(tokens, index), tokens[index + 2][1])
    elif first == b"do":
        script.refuse("DO (an anonymous code block: pg_dump never writes one)")
    elif first == b"load":
        script.refuse("LOAD (it loads a library into the server)")
    return False


def _classify_object(tokens: list[Token], scanner: Context) -> None:
    """CREATE / ALTER / DROP of a database, role or tablespace; ALTER SYSTEM; DROP OWNED."""
    first, second = tokens[0][1], _word(tokens, 1)
    label = f"{first.decode().upper()} {second.decode().upper()}"
    if first == b"alter" and second == b"system":
        scanner.script.refuse("ALTER SYSTEM (it changes the server's configuration)")
        return
    if first == b"drop" and second == b"owned":
        _touch(scanner, "DROP OWNED", "role", _after(tokens, b"by"))
        return
    kind = _OBJECT_KINDS.get(second)
    if kind is None or (second == b"user" and _word(tokens, 2) == b"mapping"):
        return
    start = 4 if first == b"drop" and _word(tokens, 2) == b"if" and _word(tokens, 3) == b"exists" else 2
    names = _names(tokens, start) if first == b"drop" else _names(tokens, start)[:1]
    if first == b"alter" and kind == "role" and names[:1] == [("word", b"all")]:
        scanner.script.refuse("ALTER ROLE ALL (it changes every role)")
        return
    _touch(scanner, label, kind, names)
    if first == b"create" and kind == "tablespace":
        shown = ", ".join(repr(scanner.name(n)) for n in names)
        scanner.script.refuse(
            f"CREATE TABLESPACE {shown} (a new tablespace writes into a folder of the server's file "
            "system; dump with --no-tablespaces)"
        )
    if first == b"alter" and kind == "role":
        database = _index(tokens, b"database")
        if database > 0 and _word(tokens, database - 1) == b"in":
            _touch(scanner, f"{label} IN DATABASE", "database", _names(tokens, database + 1)[:1])


def _classify_grant(tokens: list[Token], scanner: Context) -> None:
    """GRANT / REVOKE on a database, tablespace or parameter, and role memberships."""
    verb = tokens[0][1].decode().upper()
    towards = b"to" if tokens[0][1] == b"grant" else b"from"
    stop = (b"with", b"granted", b"cascade", b"restrict")
    on = _index(tokens, b"on")
    if on < 0:  # GRANT role TO member: what the member may do changes
        _touch(scanner, f"{verb} (role membership)", "role", _after(tokens, towards, 1, stop))
        return
    what = _word(tokens, on + 1)
    if what in (b"database", b"tablespace"):
        _touch(scanner, f"{verb} ON {what.decode().upper()}", _OBJECT_KINDS[what], _names(tokens, on + 2))
    elif what == b"parameter":
        _touch(scanner, f"{verb} ON PARAMETER", "role", _after(tokens, towards, on, stop))


def _qualified(tokens: list[Token], index: int) -> list[Token]:
    """``name(.name)*`` from ``index``."""
    parts: list[Token] = []
    while index < len(tokens) and tokens[index][0] in ("word", "ident", "unicode_ident"):
        parts.append(tokens[index])
        if tokens[index + 1 : index + 2] != [("punct", b".")]:
            break
        index += 2
    return parts


def _system_catalogue(parts: list[Token]) -> bool:
    values = [value for _kind, value in parts]
    return (len(values) >= 2 and values[-2] == b"pg_catalog") or (
        len(values) == 1 and parts[0][0] == "word" and values[0].startswith(b"pg_")
    )


def _classify_write(tokens: list[Token], scanner: Context) -> None:
    """INSERT / UPDATE / DELETE / TRUNCATE / MERGE into the system catalogue."""
    index = 1
    while _word(tokens, index) in (b"into", b"from", b"only", b"table"):
        index += 1
    parts = _qualified(tokens, index)
    if _system_catalogue(parts):
        shown = ".".join(value.decode(errors="backslashreplace") for _kind, value in parts)
        scanner.script.refuse(f"{tokens[0][1].decode().upper()} {shown} (a write into the system catalogue)")


def _classify_copy(tokens: list[Token], scanner: Context) -> bool:
    """COPY: only from psql's stdin (or to its stdout), never into the system catalogue."""
    direction = max(_index(tokens, b"from"), _index(tokens, b"to"))
    if direction < 0:
        return False
    source = _word(tokens, direction + 1)
    if source not in (b"stdin", b"stdout", b"pstdin", b"pstdout"):
        scanner.script.refuse(f"COPY {tokens[direction][1].decode().upper()} a file or program of the server")
        return False
    if source in (b"stdin", b"pstdin") and _system_catalogue(_qualified(tokens, 1)):
        scanner.script.refuse("COPY into the system catalogue")
    return source in (b"stdin", b"pstdin")
