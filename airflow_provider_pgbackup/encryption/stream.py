"""age as a byte stage: :class:`AgeEncryptStage` (write side), :func:`decrypted_chunks` (read side) and
one file at a time for directory artifacts; pyrage's ``encrypt_io``/``decrypt_io`` in a thread of their
own, so memory stays bounded (a few chunks) whatever the artifact's size."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.encryption.keys import (
    CiphertextCorrupt,
    NoMatchingIdentity,
    load_pyrage,
    public_keys,
    pyrage_recipients,
)
from airflow_provider_pgbackup.pipeline import ChunkChannel, ChunkReader, threaded_chunks

#: Bytes queued between the stream and pyrage's thread (either way): a few chunks.
_QUEUE_BYTES = 8 * 1024 * 1024


# ------------------------------------------------------------------------------------------ write side
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
        pyrage = load_pyrage()
        self._hash = hashlib.sha256()
        self.plaintext_size = 0
        self._in = ChunkChannel(_QUEUE_BYTES)
        self._out = _ListWriter()
        targets = pyrage_recipients(recipients)

        def work() -> None:
            try:
                pyrage.encrypt_io(self._in.reader(), self._out, targets)
            except BaseException as err:
                self._in.stop(err)

        self._thread = threading.Thread(target=work, daemon=True, name="age-encrypt")
        self._thread.start()

    @property
    def plaintext_sha256(self) -> str:
        return self._hash.hexdigest()

    def _raise_if_failed(self) -> None:
        error = self._in.error
        if error is not None:
            raise RuntimeError(f"age encryption failed: {error}") from error

    def feed(self, chunk: bytes) -> bytes:
        if chunk:
            self._hash.update(chunk)
            self.plaintext_size += len(chunk)
            try:
                self._in.put(chunk)
            except BaseException:
                self._raise_if_failed()
                raise
        return self._out.take()

    def finish(self) -> bytes:
        self._in.close()
        self._thread.join()
        self._raise_if_failed()
        return self._out.take()

    def abort(self) -> None:
        """Stop the encryption thread (the dump failed): it reads an end of stream and ends."""
        self._in.stop()


# ------------------------------------------------------------------------------------------- read side
def decrypted_chunks(
    chunks: Iterable[bytes],
    identities: Sequence[Any],
    *,
    what: str = "the artifact",
    recipients: Sequence[str] = (),
) -> Generator[bytes, None, None]:
    """Decrypt an age stream (pyrage's ``decrypt_io`` in a thread, a bounded queue between).

    Raises :class:`NoMatchingIdentity` when no identity is a recipient, :class:`CiphertextCorrupt`
    when the bytes fail authentication (see :func:`decryption_error` for how ``recipients``, those the
    manifest records, tell a damaged header from a wrong key). age authenticates each 64 KiB chunk and
    the end of the stream: what is yielded is authentic, and a truncation is raised at the end.
    ``close()`` the generator when not reading to the end: that stops the thread.
    """
    pyrage = load_pyrage()

    class Writer(io.RawIOBase):
        def __init__(self, emit: Callable[[bytes], None]) -> None:
            self._emit = emit

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            block = bytes(data)
            self._emit(block)  # WriterStopped when the consumer stopped reading
            return len(block)

    try:
        yield from threaded_chunks(
            lambda emit: pyrage.decrypt_io(
                ChunkReader(functools.partial(next, iter(chunks), None)), Writer(emit), list(identities)
            ),
            name="age-decrypt",
            max_bytes=_QUEUE_BYTES,
        )
    except Exception as err:
        raise decryption_error(err, what, identities, recipients) from err


def decryption_error(
    err: BaseException, what: str, identities: Sequence[Any] = (), recipients: Sequence[str] = ()
) -> BaseException:
    """pyrage's error as :class:`NoMatchingIdentity` or :class:`CiphertextCorrupt` (others as they are).

    age says "no matching keys" both for a key that is not a recipient and for a header whose stanza was
    altered. The evidence decides: when an identity's public key is among the ``recipients`` the manifest
    records (an X25519 recipient is recorded as its public key), the file was encrypted to that key, so a
    stanza it cannot open is damage to the bytes: corrupt. Only when no identity is a recorded recipient
    is it a key problem.
    """
    text = str(err)
    if "No matching keys" in text:
        mine = [key for key in public_keys(identities) if key in set(recipients)]
        if mine:
            return CiphertextCorrupt(
                f"{what}: its age header is damaged: the manifest records {mine[0]} as a recipient and the "
                "decryption connection holds that key's identity, yet no stanza of the header opens with "
                "it (a stanza was altered)"
            )
        return NoMatchingIdentity(
            f"no identity matches the recipients recorded in the manifest: {what} cannot be decrypted "
            "with the key(s) of the decryption connection"
        )
    pyrage = load_pyrage()
    if isinstance(err, (pyrage.DecryptError, OSError, EOFError)):
        return CiphertextCorrupt(f"{what} fails age decryption (authentication): {text}")
    return err


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
    pyrage = load_pyrage()
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(source, "rb", buffering=0) as plain, os.fdopen(fd, "wb") as out:
        reader = _HashingReader(plain)
        pyrage.encrypt_io(reader, out, pyrage_recipients(recipients))
    return reader.size, reader.hash.hexdigest()


def decrypt_file(
    source: Path,
    destination: Path,
    identities: Sequence[Any],
    *,
    what: str,
    recipients: Sequence[str] = (),
) -> None:
    """Decrypt one file into ``destination`` (created 0600, must not exist); errors as
    :func:`decryption_error` (``recipients``: those the manifest records)."""
    pyrage = load_pyrage()
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(source, "rb") as cipher, os.fdopen(fd, "wb") as out:
        try:
            pyrage.decrypt_io(cipher, out, list(identities))
        except Exception as err:
            raise decryption_error(err, what, identities, recipients) from err
