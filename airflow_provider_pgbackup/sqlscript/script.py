"""The result of a scan (:class:`SqlScript`) and how names in the script's bytes become the server's."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

#: Role names that always exist: the current user, and PUBLIC as a grantee.
ALWAYS_EXISTING_ROLES = frozenset({"current_user", "current_role", "session_user", "public"})
#: PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
MAX_NAME_BYTES = 63
#: Distinct names and refusals kept (no message lists more).
MAX_ENTRIES = 10_000


class SqlScriptRefused(Exception):
    """A plain SQL backup would drop, alter or write into what exists on the server it is restored to
    (or do what no restore may do); nothing of it ran. The message names the objects and statements."""


@dataclass
class SqlScript:
    """What a script would do beyond the database it runs in.

    ``touches``: ``(kind, name) -> statements`` for every database, role and tablespace (``kind``) the
    script creates, alters, drops, grants on or connects to, names as the server keeps them.
    ``refused``: what no restore may run whatever exists on the server (a psql meta-command pg_dump
    never writes, a write into the system catalogue, a server file or program, a new tablespace,
    ``ALTER SYSTEM``, what the scanner cannot read with certainty).
    """

    touches: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def touch(self, statement: str, kind: str, name: str) -> None:
        if (kind, name) not in self.touches and len(self.touches) >= MAX_ENTRIES:
            return
        statements = self.touches.setdefault((kind, name), [])
        if statement not in statements:
            statements.append(statement)

    def refuse(self, what: str) -> None:
        if what not in self.refused and len(self.refused) < MAX_ENTRIES:
            self.refused.append(what)


def python_codec(encoding: str) -> str:
    """The Python codec of a PostgreSQL client encoding (``UTF8``, ``LATIN1``, ``WIN1252``...)."""
    name = encoding.upper().replace("-", "").replace("_", "")
    special = {"UTF8": "utf-8", "SQLASCII": "utf-8", "UNICODE": "utf-8", "SJIS": "shift_jis",
               "UHC": "cp949", "KOI8R": "koi8_r", "KOI8U": "koi8_u", "LATIN5": "iso8859_9",
               "LATIN6": "iso8859_10", "LATIN7": "iso8859_13", "LATIN8": "iso8859_14",
               "LATIN9": "iso8859_15", "LATIN10": "iso8859_16"}  # fmt: skip
    if name in special:
        return special[name]
    for candidate in (name.replace("WIN", "CP", 1), name.replace("ISO8859", "ISO8859_", 1), name):
        try:
            return codecs.lookup(candidate).name
        except LookupError:
            continue
    return "utf-8"


def server_name(raw: bytes, codec: str) -> str:
    """A name from the script's bytes as the server keeps it: decoded, cut to 63 bytes like the
    server cuts a longer identifier (on a character boundary)."""
    name = raw.decode(codec, "surrogateescape")
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    return encoded[:MAX_NAME_BYTES].decode("utf-8", "ignore")
