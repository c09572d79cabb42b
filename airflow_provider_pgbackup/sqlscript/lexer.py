"""The lexer: splits a psql script into statements the way psql does, reading every byte once.

Most of a dump is COPY data and statements that cannot reach beyond their database (``CREATE TABLE``,
``INSERT`` rows...). Those are skipped with regular expressions and ``bytes.find`` (C speed); only the
first words of each statement, and the whole of the few that can matter, go through the token loop.
"""

from __future__ import annotations

from airflow_provider_pgbackup.sqlscript.patterns import (
    BLOCK_COMMENT,
    ESCAPE_STRING,
    HEAD,
    IDENT_CHAR,
    INNER_PARENS,
    INSERT_ROWS,
    MAX_TEXT,
    PARTIAL_DOLLAR,
    QUOTED,
    SKIP,
    SKIP_RUN,
    TOKEN,
    WRITE_HEAD,
)
from airflow_provider_pgbackup.sqlscript.psql import PendingStatement, meta_command
from airflow_provider_pgbackup.sqlscript.script import SqlScript, python_codec, server_name
from airflow_provider_pgbackup.sqlscript.statements import (
    RELEVANT,
    WRITE_HEAD_TOKENS,
    WRITES,
    Token,
    classify,
    may_matter,
)

#: Tokens kept of one statement that matters; a longer one is refused as unreadable.
MAX_TOKENS = 100_000


class ScriptScanner:
    """Feed a script's (decompressed) bytes to :meth:`feed`; :meth:`finish` says what it would do."""

    def __init__(self) -> None:
        self.script = SqlScript()
        self._buf = b""
        self._behind = b""  # the last bytes consumed: E'...' and $tag$ look one or two bytes back
        # sql, copy, string, escape_string, ident, dollar, line_comment, block_comment
        self._state = "sql"
        self._dollar_tag = b""
        self._comment_depth = 0
        self._text = bytearray()
        self._unicode_ident = False
        self._copy_line_start = True
        self._copy_pending = False  # a COPY ... FROM stdin ended: its data starts on the next line
        self._statement = PendingStatement()
        self._encoding = "utf-8"
        self._standard_strings = True

    def feed(self, chunk: bytes) -> None:
        buf = self._buf + chunk if self._buf else chunk
        pos = self._run(buf, final=False)
        self._behind = (self._behind + buf[max(0, pos - 2) : pos])[-2:]
        self._buf = buf[pos:]

    def finish(self) -> SqlScript:
        """The end of the script: the rest is read as psql reads the end of its input."""
        self._run(self._buf, final=True)
        self._buf = b""
        if self._state not in ("sql", "copy", "line_comment"):
            self.script.refuse(f"the script ends inside a {self._state.replace('_', ' ')}")
        self._end_statement()
        return self.script

    # ------------------------------------------------------------------------------ the lexer
    def _run(self, buf: bytes, final: bool) -> int:
        """Read ``buf`` as far as it can be read; returns how many bytes were consumed."""
        pos, end = 0, len(buf)
        while pos < end:
            if self._state == "copy":
                pos, wait = self._copy(buf, pos, final)
            elif self._state != "sql":
                pos, wait = self._quoted(buf, pos, final)
            elif self._statement.collecting or self._statement.needs_words or self._copy_pending:
                if not self._statement.tokens and self._statement.collecting and not self._copy_pending:
                    head = self._head(buf, pos)
                    if head > pos:
                        pos = head
                        continue
                pos, wait = self._token(buf, pos, final)
            else:
                pos, wait = self._skip(buf, pos, final)
            if wait:
                break
        return pos

    def _head(self, buf: bytes, pos: int) -> int:
        """A statement's start: when its first words show it cannot matter, consume them and let
        :meth:`_skip` read the rest. Returns ``pos`` when the token loop must read it."""
        head = HEAD.match(buf, pos)
        if head is None or head.end() == len(buf):
            return pos
        word = head.group(1).lower()
        if word == b"insert" and self._standard_strings:
            rows = INSERT_ROWS.match(buf, pos)
            if rows is not None and rows.end() < len(buf) and _balanced(buf[pos : rows.end()]):
                return rows.end()
        if word in RELEVANT:
            if word not in WRITES:
                return pos
            head = WRITE_HEAD.match(buf, pos)
            if head is None or head.end() == len(buf) or _catalogue(head["schema"], head["name"]):
                return pos
        self._statement.word(word)
        self._statement.collecting = False
        return head.end()

    def _before(self, buf: bytes, pos: int, count: int) -> bytes:
        return buf[pos - count : pos] if pos >= count else (self._behind + buf[:pos])[-count:]

    def _copy(self, buf: bytes, pos: int, final: bool) -> tuple[int, bool]:
        """COPY data: jump to the line psql ends it with (``\\.`` alone); its text is never SQL."""
        end = len(buf)
        while pos < end:
            if not self._copy_line_start:
                newline = buf.find(b"\n", pos)
                if newline < 0:
                    return end, False
                pos, self._copy_line_start = newline + 1, True
                continue
            if buf.startswith(b"\\.", pos):
                rest = buf[pos + 2 : pos + 4]
                if rest[:1] == b"\n" or rest == b"\r\n":
                    self._state = "sql"
                    return pos + 2 + (1 if rest[:1] == b"\n" else 2), False
                if rest in (b"", b"\r"):
                    if not final:
                        return pos, True
                    self._state = "sql"
                    return end, False
                pos, self._copy_line_start = pos + 2, False
                continue
            if buf[pos:] == b"\\" and not final:
                return pos, True
            hit = buf.find(b"\n\\.", pos)
            if hit >= 0:
                pos = hit + 1
                continue
            if not final and buf.endswith(b"\n"):
                return end, False
            if not final and buf.endswith(b"\n\\"):
                return end - 1, True
            self._copy_line_start = False
            return end, False
        return pos, False

    def _skip(self, buf: bytes, pos: int, final: bool) -> tuple[int, bool]:
        """A statement that does not matter: jump to what opens a quote or comment, nests or ends."""
        if self._standard_strings:
            run = SKIP_RUN.match(buf, pos)
            stop = run.end() if run else pos
            if stop > pos and (stop < len(buf) or final):
                text = buf[pos:stop]
                if b"(" in text or b")" in text:
                    bare = QUOTED.sub(b"", text)
                    self._statement.paren_depth += bare.count(b"(") - bare.count(b")")
                return stop, False
        match = SKIP.search(buf, pos)
        if match is None:
            if not final and buf.endswith((b"-", b"/")):
                return len(buf) - 1, True  # maybe the start of a comment
            return len(buf), False
        at, char = match.start(), buf[match.start() : match.start() + 1]
        if char == b"'":
            behind = self._before(buf, at, 2)
            prefixed = behind[-1:] in (b"e", b"E") and not (
                len(behind) == 2 and IDENT_CHAR.fullmatch(behind[:1])
            )
            escapes = prefixed or not self._standard_strings
            return self._open_string(at + 1, "escape_string" if escapes else "string")
        if char in (b"(", b")"):
            self._statement.paren_depth += 1 if char == b"(" else -1
            return at + 1, False
        return self._token(buf, at, final)

    def _open_string(self, pos: int, state: str) -> tuple[int, bool]:
        self._state = state
        self._text.clear()
        return pos, False

    def _token(self, buf: bytes, pos: int, final: bool) -> tuple[int, bool]:
        """Read one token of SQL (or wait when it may go on in the next chunk)."""
        match = TOKEN.match(buf, pos)
        assert match is not None
        kind, stop = match.lastgroup or "punct", match.end()
        if not final and (stop == len(buf) or (kind == "punct" and PARTIAL_DOLLAR.fullmatch(buf, pos))):
            return pos, True
        if kind == "dollar" and IDENT_CHAR.fullmatch(self._before(buf, pos, 1) or b" "):
            kind, stop = "punct", pos + 1  # a "$" inside a word (a$b), not a dollar quote
        if self._copy_pending and kind not in ("space", "line_comment"):
            self._copy_pending = False
            if kind == "newline":
                self._state, self._copy_line_start = "copy", True
                return stop, False
            self.script.refuse("text after COPY ... FROM stdin on its line")
        text = buf[pos:stop]
        if kind in ("space", "newline"):
            pass
        elif kind == "line_comment":
            self._state = "line_comment"
        elif kind == "block_comment":
            self._state, self._comment_depth = "block_comment", 1
        elif kind == "dollar":
            self._state, self._dollar_tag = "dollar", text
            self._add("dollar_string", b"")
        elif kind in ("string", "unicode_string", "escape_string"):
            escapes = kind == "escape_string" or (kind == "string" and not self._standard_strings)
            return self._open_string(stop, "escape_string" if escapes else "string")
        elif kind in ("ident", "unicode_ident"):
            self._unicode_ident = kind == "unicode_ident"
            return self._open_string(stop, "ident")
        elif kind == "backslash":
            return self._meta_command(buf, pos, final)
        elif kind == "semicolon":
            self._semicolon()
        else:
            self._add(kind, text.lower() if kind == "word" else text)
        return stop, False

    def _quoted(self, buf: bytes, pos: int, final: bool) -> tuple[int, bool]:
        """Inside a string, identifier, dollar body or comment: find its end."""
        state, end = self._state, len(buf)
        if state == "line_comment":
            newline = buf.find(b"\n", pos)
            if newline < 0:
                return end, False
            self._state = "sql"
            if self._copy_pending:
                self._copy_pending, self._state, self._copy_line_start = False, "copy", True
            return newline + 1, False
        if state == "block_comment":
            while match := BLOCK_COMMENT.search(buf, pos):
                pos = match.end()
                self._comment_depth += 1 if match.group() == b"/*" else -1
                if self._comment_depth == 0:
                    self._state = "sql"
                    return pos, False
            if not final and buf.endswith((b"/", b"*")) and pos < end:
                return end - 1, True
            return end, False
        if state == "dollar":
            close = buf.find(self._dollar_tag, pos)
            if close >= 0:
                self._state = "sql"
                return close + len(self._dollar_tag), False
            if final:
                return end, False
            return max(pos, end - len(self._dollar_tag) + 1), True
        quote = b'"' if state == "ident" else b"'"
        while True:
            if state == "escape_string":
                found_match = ESCAPE_STRING.search(buf, pos)
                found = found_match.start() if found_match else -1
            else:
                found = buf.find(quote, pos)
            if found < 0:
                self._keep(buf[pos:end])
                return end, False
            if found + 1 == end and not final:
                self._keep(buf[pos:found])
                return found, True  # a doubled quote or an escaped character may follow
            self._keep(buf[pos:found])
            if buf[found : found + 1] == b"\\":
                self._keep(buf[found : found + 2])
                pos = found + 2
            elif buf[found + 1 : found + 2] == quote:
                self._keep(quote)
                pos = found + 2
            else:
                self._state = "sql"
                kind = "string" if state != "ident" else "unicode_ident" if self._unicode_ident else "ident"
                self._add(kind, bytes(self._text))
                return found + 1, False

    def _keep(self, text: bytes) -> None:
        if len(self._text) < MAX_TEXT:
            self._text += text[: MAX_TEXT - len(self._text)]

    def _meta_command(self, buf: bytes, pos: int, final: bool) -> tuple[int, bool]:
        """A psql meta-command (the rest of the line): only pg_dump's own, as pg_dump writes them."""
        if buf[pos + 1 : pos + 2] in (b";", b":"):  # psql's \; and \: put the character in the query
            if buf[pos + 1 : pos + 2] == b";" and self._end_statement():
                self.script.refuse("COPY ... FROM stdin ended by \\;")
            return pos + 2, False
        newline = buf.find(b"\n", pos)
        if newline < 0 and not final:
            return pos, True
        stop = len(buf) if newline < 0 else newline
        self._encoding = meta_command(buf[pos:stop], self._encoding, self.script)
        return stop, False

    # --------------------------------------------------------------------------- statements
    def _add(self, kind: str, value: bytes) -> None:
        statement = self._statement
        if kind == "punct" and value in (b"(", b")"):
            statement.paren_depth += 1 if value == b"(" else -1
        elif kind == "word":
            statement.word(value)
        if not statement.collecting:
            return
        statement.tokens.append((kind, value))
        tokens = statement.tokens
        if tokens[0][0] != "word" or tokens[0][1] not in RELEVANT or not may_matter(tokens):
            statement.collecting = False
        elif tokens[0][1] in WRITES and len(tokens) == WRITE_HEAD_TOKENS:
            classify(tokens, self)  # its target is named by now; the rest (the rows) is skipped
            statement.collecting = False
        elif len(tokens) > MAX_TOKENS:
            self.script.refuse(f"a {tokens[0][1].decode().upper()} statement too long to read")
            statement.collecting = False

    def _semicolon(self) -> None:
        if self._statement.paren_depth > 0 or self._statement.begin_depth > 0:
            self._add("punct", b";")
        elif self._end_statement():
            self._copy_pending = True

    def _end_statement(self) -> bool:
        """Classify the statement that ended; True when it is ``COPY ... FROM stdin`` (data follows)."""
        statement, self._statement = self._statement, PendingStatement()
        return statement.collecting and bool(statement.tokens) and classify(statement.tokens, self)

    def name(self, token: Token) -> str | None:
        """A name token as the server keeps it; None (and a refusal) when it cannot be read."""
        kind, value = token
        if kind in ("word", "ident"):
            return server_name(value, self._encoding)
        if kind == "unicode_ident":
            self.script.refuse('a U&"..." name (the guard does not decode Unicode escapes)')
        return None

    def set_setting(self, setting: bytes, value: bytes) -> None:
        if setting == b"client_encoding":
            self._encoding = python_codec(value.decode("ascii", "replace"))
        elif setting == b"standard_conforming_strings":
            self._standard_strings = value.lower() in (b"on", b"true", b"1", b"yes")


def _catalogue(schema: bytes | None, name: bytes) -> bool:
    """Whether a plainly written target (``WRITE_HEAD``) may be in the system catalogue."""
    if schema is not None:
        return schema.strip(b'"').lower() == b"pg_catalog"
    return name.lower().startswith(b"pg_") or name.startswith(b'"pg_')


def _balanced(text: bytes) -> bool:
    """Whether every parenthesis outside quotes in ``text`` closes one opened before it in ``text``."""
    bare = QUOTED.sub(b"", text)
    while b"(" in bare:
        reduced = INNER_PARENS.sub(b"", bare)
        if reduced == bare:
            return False
        bare = reduced
    return b")" not in bare
