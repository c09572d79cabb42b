"""The age v1 header: what can be checked without a key (well-formed, stanzas matching the recorded
recipients)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from airflow_provider_pgbackup.encryption.keys import STANZA_TYPES, CiphertextCorrupt, recipient_kind

AGE_MAGIC = b"age-encryption.org/v1\n"
#: An age header is small (one stanza per recipient); more than this before ``---`` is not age.
MAX_HEADER_BYTES = 256 * 1024


# ---------------------------------------------------------------------------------------------- header
@dataclass(frozen=True)
class AgeHeader:
    """The stanzas of an age v1 header: ``(type, arguments)`` each, and the header's length in bytes."""

    stanzas: tuple[tuple[str, tuple[str, ...]], ...]
    length: int


def read_header(chunks: Iterable[bytes]) -> AgeHeader:
    """Parse the age v1 header at the start of ``chunks`` (reads only the header's bytes, at most
    :data:`MAX_HEADER_BYTES`); :class:`CiphertextCorrupt` names what is wrong."""
    data = b""
    iterator: Iterator[bytes] = iter(chunks)
    try:
        while b"\n--- " not in data or not data.split(b"\n--- ", 1)[1].count(b"\n"):
            if len(data) > MAX_HEADER_BYTES:
                raise CiphertextCorrupt(f"no end of an age header in the first {MAX_HEADER_BYTES} bytes")
            chunk = next(iterator, None)
            if chunk is None:
                break
            data += chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    if not data.startswith(AGE_MAGIC):
        shown = data[:24].decode("ascii", errors="backslashreplace")
        raise CiphertextCorrupt(f"does not start with the age v1 header line (starts with {shown!r})")
    end = data.find(b"\n--- ")
    mac_end = data.find(b"\n", end + 1) if end >= 0 else -1
    if end < 0 or mac_end < 0:
        raise CiphertextCorrupt("the age header has no '---' line (truncated)")
    lines = data[len(AGE_MAGIC) : end].split(b"\n")
    stanzas: list[tuple[str, tuple[str, ...]]] = []
    index = 0
    try:
        while index < len(lines):
            line = lines[index].decode("ascii")
            if not line.startswith("-> "):
                raise CiphertextCorrupt(f"age header line {line[:40]!r} is not a stanza")
            kind, *args = line[3:].split(" ")
            if not kind:
                raise CiphertextCorrupt("an age header stanza has no type")
            index += 1
            while True:  # the body: base64 lines of 64 characters, the last one shorter
                if index >= len(lines):
                    raise CiphertextCorrupt(f"the {kind} stanza's body is cut short")
                body = lines[index].decode("ascii")
                index += 1
                if len(body) < 64:
                    break
            stanzas.append((kind, tuple(args)))
    except UnicodeDecodeError as err:
        raise CiphertextCorrupt("the age header is not ASCII text") from err
    mac = data[end + 5 : mac_end]
    if len(mac) != 43:
        raise CiphertextCorrupt("the age header's MAC line is malformed")
    if not stanzas:
        raise CiphertextCorrupt("the age header has no recipient stanza")
    return AgeHeader(tuple(stanzas), mac_end + 1)


def ssh_tag(recipient: str) -> str:
    """The tag an ``ssh-ed25519`` / ``ssh-rsa`` stanza carries: the first 4 bytes of the sha256 of the
    key's SSH wire encoding, base64 without padding (age's spec)."""
    blob = base64.b64decode(recipient.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()[:4]).decode().rstrip("=")


def check_header(header: AgeHeader, recipients: Sequence[str]) -> str:
    """Compare the header's stanzas with the recorded recipients; raise :class:`CiphertextCorrupt`
    when they differ, return what was checked.

    An X25519 stanza holds an ephemeral share, not the recipient: only their number can be compared.
    An ssh stanza names its key by a 4-byte tag: each recorded ssh key must have its stanza."""
    counts: dict[str, int] = {}
    tags: set[tuple[str, str]] = set()
    for kind, args in header.stanzas:
        if kind.endswith("-grease"):
            continue
        counts[kind] = counts.get(kind, 0) + 1
        if kind.startswith("ssh-") and args:
            tags.add((kind, args[0]))
    expected: dict[str, int] = {}
    for recipient in recipients:
        stanza = STANZA_TYPES[recipient_kind(recipient) or "age1"]
        expected[stanza] = expected.get(stanza, 0) + 1
        if stanza.startswith("ssh-") and (stanza, ssh_tag(recipient)) not in tags:
            raise CiphertextCorrupt(
                f"the age header has no {stanza} stanza for recorded recipient {recipient!r}"
            )
    if counts != expected:
        raise CiphertextCorrupt(
            f"the age header's stanzas {counts} do not match the {len(recipients)} recorded recipients "
            f"({expected})"
        )
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
