"""age encryption (https://age-encryption.org/v1) as a byte stage: recipients, identities, header.

No cryptography is written here: encryption and decryption are ``pyrage`` (the Python binding of
rage, the Rust implementation of age), driven through its streaming ``encrypt_io`` / ``decrypt_io`` in
a thread of their own so that memory stays bounded (a few chunks) whatever the artifact's size.

- :func:`parse_recipients`: one string or a list of ``age1...`` / ``ssh-ed25519`` / ``ssh-rsa`` public
  keys, each checked by pyrage; a malformed one is named.
- :class:`AgeEncryptStage`: a :class:`~airflow_provider_pgbackup.pipeline.Stage` that encrypts what
  passes through and measures the plaintext (sha256 and size) on the way.
- :func:`decrypted_chunks`: the read side, mirrored: ciphertext chunks in, plaintext chunks out.
  ``NoMatchingIdentity`` when none of the identities is a recipient (a key problem, never "corrupt");
  :class:`CiphertextCorrupt` when the bytes fail age's authentication (tampered or truncated).
- :func:`read_header` / :func:`check_header`: what can be checked without a key: the header is
  well-formed age v1 and its stanzas match the recorded recipients.

The identity (``AGE-SECRET-KEY-1...``) stays in this process's memory: it is never written to a file,
an argument, an environment variable or a message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import queue
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.pipeline import StreamCorrupt

#: The value of the manifest's ``encryption.format``.
AGE_FORMAT = "age-v1"
#: What an encrypted artifact's name (and each file of an encrypted directory artifact) ends with.
AGE_SUFFIX = ".age"
AGE_MAGIC = b"age-encryption.org/v1\n"
#: An age header is small (one stanza per recipient); more than this before ``---`` is not age.
MAX_HEADER_BYTES = 256 * 1024
RECIPIENT_PREFIXES = ("age1", "ssh-ed25519 ", "ssh-rsa ")
# Stanza type in the header for each kind of recipient.
STANZA_TYPES = {"age1": "X25519", "ssh-ed25519 ": "ssh-ed25519", "ssh-rsa ": "ssh-rsa"}
_QUEUE_CHUNKS = 8


class EncryptionUnavailable(InvalidOptionError):
    """Encryption was asked for but ``pyrage`` (the ``[age]`` extra) is not installed."""


class NoMatchingIdentity(ValueError):
    """None of the identities can open the artifact: a key problem (wrong connection), not bad bytes."""


class CiphertextCorrupt(StreamCorrupt):
    """The ciphertext fails age's authentication: tampered, truncated or not age at all."""


class IdentityError(ValueError):
    """The decryption connection holds no usable age identity (the message never shows the secret)."""


def _pyrage() -> Any:
    try:
        import pyrage
    except ImportError as err:  # an optional extra
        raise EncryptionUnavailable(
            "age encryption needs pyrage: install airflow-provider-pgbackup[age]"
        ) from err
    return pyrage


# ------------------------------------------------------------------------------------------ recipients
def _recipient_kind(text: str) -> str | None:
    return next((p for p in RECIPIENT_PREFIXES if text.startswith(p)), None)


def parse_recipients(value: object, *, what: str = "encryption_recipients") -> tuple[str, ...]:
    """The recipients as a tuple of public keys (one string, or a list of them); each is checked by
    pyrage and a malformed one is named. ``None``/empty -> ``()`` (no encryption)."""
    if value is None or value == "" or value == [] or value == ():
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InvalidOptionError(f"{what} must be an age recipient or a list of them, not {value!r}")
    pyrage = _pyrage()
    recipients: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidOptionError(f"{what}: {item!r} is not a string")
        text = " ".join(item.split())  # one line; an ssh key's comment is kept, it is public
        kind = _recipient_kind(text)
        if kind is None:
            raise InvalidOptionError(
                f"{what}: {item!r} is not an age recipient (age1..., ssh-ed25519 ... or ssh-rsa ...)"[:300]
            )
        module = pyrage.x25519 if kind == "age1" else pyrage.ssh
        try:
            module.Recipient.from_str(text)
        except Exception as err:  # pyrage.RecipientError
            raise InvalidOptionError(f"{what}: {item!r} is malformed: {err}"[:300]) from None
        if text not in recipients:
            recipients.append(text)
    return tuple(recipients)


def _pyrage_recipients(recipients: Sequence[str]) -> list[Any]:
    pyrage = _pyrage()
    return [(pyrage.x25519 if r.startswith("age1") else pyrage.ssh).Recipient.from_str(r) for r in recipients]


# ------------------------------------------------------------------------------------------ identities
def parse_identities(secret: str | None, *, what: str = "the decryption connection") -> list[Any]:
    """pyrage identities from a connection's password: one or more ``AGE-SECRET-KEY-1...`` lines
    (an ``age-keygen`` key file as it is, ``#`` comments allowed). Errors never show the secret."""
    pyrage = _pyrage()
    identities = []
    for number, line in enumerate((secret or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise IdentityError(
                f"{what}: line {number} of its password is not an AGE-SECRET-KEY-1... identity"
            )
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            raise IdentityError(
                f"{what}: line {number} of its password is a malformed age identity"
            ) from None
    if not identities:
        raise IdentityError(f"{what} has no AGE-SECRET-KEY-1... identity in its password")
    return identities


def public_keys(identities: Sequence[Any]) -> list[str]:
    """The recipients (public keys) of identities: safe to log."""
    return [str(i.to_public()) for i in identities]


# ------------------------------------------------------------------------------------------ write side
class _QueueReader(io.RawIOBase):
    """A readable file object fed from a queue of chunks (``None`` = end of stream)."""

    def __init__(self, chunks: queue.Queue[bytes | None]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._eof:
            chunk = self._chunks.get()
            if chunk is None:
                self._eof = True
            else:
                self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _ListWriter(io.RawIOBase):
    """A writable file object that keeps what it is given until :meth:`take` (under a lock)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        block = bytes(data)
        with self._lock:
            self._parts.append(block)
        return len(block)

    def take(self) -> bytes:
        with self._lock:
            parts, self._parts = self._parts, []
        return b"".join(parts)


class AgeEncryptStage:
    """Encrypt the stream to ``recipients`` (age v1, pyrage's ``encrypt_io`` in a thread); the
    plaintext's sha256 and size are measured on the way (:attr:`plaintext_sha256`, :attr:`plaintext_size`).

    Memory: at most a few queued input chunks plus the ciphertext made from them since the last
    :meth:`feed`, which returns it.
    """

    def __init__(self, recipients: Sequence[str]) -> None:
        pyrage = _pyrage()
        self._hash = hashlib.sha256()
        self.plaintext_size = 0
        self._in: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._out = _ListWriter()
        self._errors: list[BaseException] = []
        targets = _pyrage_recipients(recipients)

        def work() -> None:
            try:
                pyrage.encrypt_io(_QueueReader(self._in), self._out, targets)
            except BaseException as err:
                self._errors.append(err)

        self._thread = threading.Thread(target=work, daemon=True, name="age-encrypt")
        self._thread.start()

    @property
    def plaintext_sha256(self) -> str:
        return self._hash.hexdigest()

    def _put(self, item: bytes | None) -> None:
        while True:
            if self._errors:
                raise RuntimeError(f"age encryption failed: {self._errors[0]}") from self._errors[0]
            try:
                self._in.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def feed(self, chunk: bytes) -> bytes:
        if chunk:
            self._hash.update(chunk)
            self.plaintext_size += len(chunk)
            self._put(chunk)
        return self._out.take()

    def finish(self) -> bytes:
        self._put(None)
        self._thread.join()
        if self._errors:
            raise RuntimeError(f"age encryption failed: {self._errors[0]}") from self._errors[0]
        return self._out.take()

    def abort(self) -> None:
        """Stop the encryption thread (the dump failed): it reads an end of stream and ends."""
        with contextlib.suppress(queue.Full):
            while True:
                self._in.get_nowait()
        with contextlib.suppress(queue.Full):
            self._in.put_nowait(None)


# ------------------------------------------------------------------------------------------- read side
class _IterReader(io.RawIOBase):
    """A readable file object over an iterable of chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _Stopped(Exception):
    pass


def decrypted_chunks(
    chunks: Iterable[bytes], identities: Sequence[Any], *, what: str = "the artifact"
) -> Generator[bytes, None, None]:
    """Decrypt an age stream (pyrage's ``decrypt_io`` in a thread, a bounded queue between).

    Raises :class:`NoMatchingIdentity` when no identity is a recipient, :class:`CiphertextCorrupt`
    when the bytes fail authentication. age authenticates each 64 KiB chunk and the end of the
    stream: what is yielded is authentic, and a truncation is raised at the end. ``close()`` the
    generator when not reading to the end: that stops the thread.
    """
    pyrage = _pyrage()
    out: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    errors: list[BaseException] = []
    stop = threading.Event()

    class Writer(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            block = bytes(data)
            while True:
                if stop.is_set():
                    raise _Stopped
                try:
                    out.put(block, timeout=0.2)
                    return len(block)
                except queue.Full:
                    continue

    def work() -> None:
        try:
            pyrage.decrypt_io(_IterReader(chunks), Writer(), list(identities))
        except BaseException as err:
            errors.append(err)
        finally:
            while True:
                try:
                    out.put(None, timeout=0.2)
                    break
                except queue.Full:
                    if stop.is_set():
                        break

    thread = threading.Thread(target=work, daemon=True, name="age-decrypt")
    thread.start()
    finished = False
    try:
        while (item := out.get()) is not None:
            yield item
        finished = True
    finally:
        if not finished:
            stop.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.1)
        thread.join()
    if errors and finished:
        raise decryption_error(errors[0], what) from errors[0]


def decryption_error(err: BaseException, what: str) -> BaseException:
    """pyrage's error as :class:`NoMatchingIdentity` or :class:`CiphertextCorrupt` (others as they are)."""
    text = str(err)
    if "No matching keys" in text:
        return NoMatchingIdentity(
            f"no identity matches the recipients recorded in the manifest: {what} cannot be decrypted "
            "with the key(s) of the decryption connection"
        )
    pyrage = _pyrage()
    if isinstance(err, (pyrage.DecryptError, OSError, EOFError)):
        return CiphertextCorrupt(f"{what} fails age decryption (authentication): {text}")
    return err


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
        stanza = STANZA_TYPES[_recipient_kind(recipient) or "age1"]
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


# ------------------------------------------------------------------------------------------ files
class _HashingReader(io.RawIOBase):
    """Reads a file and measures what it read (sha256, size)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size: int = self._handle.readinto(buffer)
        if size:
            self.hash.update(memoryview(buffer)[:size])
            self.size += size
        return size


def encrypt_file(source: Path, destination: Path, recipients: Sequence[str]) -> tuple[int, str]:
    """Encrypt one file (a directory artifact's) into ``destination`` (created 0600, must not exist);
    returns the plaintext's size and sha256."""
    pyrage = _pyrage()
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(source, "rb", buffering=0) as plain, os.fdopen(fd, "wb") as out:
        reader = _HashingReader(plain)
        pyrage.encrypt_io(reader, out, _pyrage_recipients(recipients))
    return reader.size, reader.hash.hexdigest()


def decrypt_file(source: Path, destination: Path, identities: Sequence[Any], *, what: str) -> None:
    """Decrypt one file into ``destination`` (created 0600, must not exist)."""
    pyrage = _pyrage()
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(source, "rb") as cipher, os.fdopen(fd, "wb") as out:
        try:
            pyrage.decrypt_io(cipher, out, list(identities))
        except Exception as err:
            raise decryption_error(err, what) from err


def check_artifact_name(path: str, recipients: Sequence[str], *, what: str = "output_path") -> None:
    """An encrypted artifact's name ends with ``.age``, and only an encrypted one's: the name says what
    the bytes are, and the provider never renames what the user asked for."""
    name = path.rstrip("/")
    if recipients and not name.endswith(AGE_SUFFIX):
        raise InvalidOptionError(
            f"{what} {path!r} must end with {AGE_SUFFIX!r}: the backup is encrypted to "
            "encryption_recipients (e.g. /backups/db.dump.age)"
        )
    if not recipients and name.endswith(AGE_SUFFIX):
        raise InvalidOptionError(
            f"{what} {path!r} ends with {AGE_SUFFIX!r} but no encryption_recipients are given: "
            "the backup would not be encrypted"
        )
