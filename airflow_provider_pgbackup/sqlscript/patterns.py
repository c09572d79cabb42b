"""The lexer's regular expressions (:mod:`~airflow_provider_pgbackup.sqlscript.lexer`): the token
pattern, and the patterns that skip what cannot matter at C speed. Python 3.10 syntax only (the
package's floor): no possessive quantifiers or atomic groups, :func:`atomic` builds the latter."""

from __future__ import annotations

import re

#: Bytes kept of one string literal or quoted identifier.
MAX_TEXT = 4096

TOKEN = re.compile(
    rb"""(?P<space>[ \t\r\f\v]+)|(?P<newline>\n)|(?P<line_comment>--)|(?P<block_comment>/\*)
    |(?P<dollar>\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$)
    |(?P<escape_string>[eE]')|(?P<unicode_string>[uU]&')|(?P<unicode_ident>[uU]&")
    |(?P<string>')|(?P<ident>")|(?P<word>[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)
    |(?P<number>[0-9][0-9A-Za-z_.]*)|(?P<backslash>\\)|(?P<semicolon>;)|(?P<punct>.)""",
    re.X | re.S,
)
SPACE = rb"[ \t\r\n\f\v]"


def atomic(pattern: bytes, name: str) -> bytes:
    """``pattern`` as an atomic group, never backtracked into: a lookahead (atomic in Python's ``re``)
    captures what it matches, a backreference consumes exactly that. ``(?>...)`` and possessive
    quantifiers would say the same, but need Python 3.11 (the package supports 3.10)."""
    return b"(?=(?P<" + name.encode() + b">" + pattern + b"))(?P=" + name.encode() + b")"


# The first word of a statement, followed by a space or "(": most statements are decided by it.
HEAD = re.compile(SPACE + rb"*([A-Za-z_]+)(?=[ \t\r\n\f\v(])")
NAME = rb'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")*")'
# The target of a statement that writes rows, when written plainly (else the token loop reads it).
WRITE_HEAD = re.compile(
    SPACE
    + rb"*(?i:insert"
    + SPACE
    + rb"+into|update(?:"
    + SPACE
    + rb"+only)?|delete"
    + SPACE
    + rb"+from(?:"
    + SPACE
    + rb"+only)?|truncate(?:"
    + SPACE
    + rb"+table)?(?:"
    + SPACE
    + rb"+only)?|merge"
    + SPACE
    + rb"+into)"
    + SPACE
    + rb"+(?:(?P<schema>"
    + NAME
    + rb")"
    + SPACE
    + rb"*\."
    + SPACE
    + rb"*)?(?P<name>"
    + NAME
    + rb")(?=[ \t\r\n\f\v(;,])"
)
# The rest of a statement that does not matter, up to what the token loop must see: standard strings
# and quoted identifiers whole (a doubled quote reads as two adjacent ones: same split), but never an
# E'...' string, a dollar quote, a comment, a meta-command or a ";". Atomic: never backtracked into.
BODY = atomic(rb"""(?:[^;'"$\\/\-eE]+|[eE](?!')|'[^']*'|"[^"]*"|-(?!-)|/(?!\*))*""", "body")
SKIP_RUN = re.compile(BODY)
# pg_dump --inserts rows: a run of whole "INSERT INTO schema.table ...;" statements (not into the
# system catalogue) read in one match; the caller checks that their parentheses balance.
INSERT_ROWS = re.compile(
    atomic(
        rb"(?:"
        + SPACE
        + rb"*INSERT INTO (?!(?i:\"?pg_catalog\"?)\.)"
        + NAME
        + rb"\."
        + NAME
        + BODY
        + rb";)+",
        "rows",
    )
)
INNER_PARENS = re.compile(rb"\([^()]*\)")
QUOTED = re.compile(rb"'[^']*'|\"[^\"]*\"")
SKIP = re.compile(rb"""[;'"$()\\]|--|/\*""")
IDENT_CHAR = re.compile(rb"[A-Za-z0-9_$\x80-\xff]")
PARTIAL_DOLLAR = re.compile(rb"\$[A-Za-z0-9_\x80-\xff]*")
BLOCK_COMMENT = re.compile(rb"/\*|\*/")
ESCAPE_STRING = re.compile(rb"[\\']")
