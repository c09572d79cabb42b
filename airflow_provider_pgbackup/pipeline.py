"""The byte pipeline: small stages between a producer (pg_dump's stdout, a file, a download) and a sink.

Write side: ``pg_dump``/``pg_dumpall`` stdout -> optional stages (the provider's gzip for pg_dumpall
today; encryption is one more :class:`Stage`) -> the storage target, which hashes what it stores. A
:class:`BackgroundWriter` between the two lets a slow sink (an upload) run while the producer goes on,
through a queue bounded in bytes. Read side, mirrored: a source's chunks -> :func:`decompressed_chunks`
-> a consumer (psql, ``pg_restore --list``, the SQL trailer check).
"""

from __future__ import annotations

import collections
import io
import logging
import shutil
import threading
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, Protocol

from airflow_provider_pgbackup.process import PgCommandError, PgProcessRunner, tool_env

log = logging.getLogger(__name__)

# External decompressors for methods the Python standard library lacks.
EXTERNAL_DECOMPRESSORS: dict[str, tuple[str, ...]] = {"zstd": ("zstd", "-dc"), "lz4": ("lz4", "-dc")}


class DecompressorUnavailable(RuntimeError):
    """No decompressor for this method on this machine (lz4/zstd without the command-line tool)."""


class StreamCorrupt(ValueError):
    """A compressed stream does not decompress cleanly."""


# ------------------------------------------------------------------------------------------ write side
class Stage(Protocol):
    """One step of the write pipeline: bytes in, bytes out (possibly fewer, possibly later)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class GzipStage:
    """gzip (one member) at ``level``: how the provider compresses pg_dumpall's SQL."""

    def __init__(self, level: int = 6) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)

    def feed(self, chunk: bytes) -> bytes:
        return self._compressor.compress(chunk)

    def finish(self) -> bytes:
        return self._compressor.flush()


class TeeStage:
    """Hands every chunk, unchanged, to ``sink`` as well (a reader of the stream, such as a
    :class:`BackgroundWriter` feeding the parser of pg_dump's COPY data), and passes it on."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink

    def feed(self, chunk: bytes) -> bytes:
        self._sink(chunk)
        return chunk

    def finish(self) -> bytes:
        return b""


class Pipeline:
    """``write(chunk)`` runs the stages in order and hands what comes out to ``sink``; ``close()`` flushes.

    :param sink: receives the bytes (a target's ``write``, or a :class:`BackgroundWriter`'s).
    :param stages: applied in order.
    """

    def __init__(self, sink: Callable[[bytes], None], stages: Sequence[Stage] = ()) -> None:
        self.sink = sink
        self.stages = tuple(stages)

    def write(self, chunk: bytes) -> None:
        for stage in self.stages:
            chunk = stage.feed(chunk)
            if not chunk:
                return
        self.sink(chunk)

    def close(self) -> None:
        """Flush every stage, in order, through the ones after it."""
        for index, stage in enumerate(self.stages):
            tail = stage.finish()
            for later in self.stages[index + 1 :]:
                if not tail:
                    break
                tail = later.feed(tail)
            if tail:
                self.sink(tail)


class WriterStopped(RuntimeError):
    """The background writer was aborted (the task is being killed); nothing more is written."""


class ChunkChannel:
    """The one hand-over of chunks between two threads, bounded in bytes (every thread bridge of the
    package is built on it: :class:`BackgroundWriter`, :func:`threaded_chunks`, age's encryption stage).

    :meth:`put` waits while ``max_bytes`` are queued, :meth:`get` while nothing is; :meth:`close` ends the
    stream (``get`` returns None once it is drained); :meth:`stop` (either side, with the error that
    stopped it) drops what is queued, and makes ``put`` raise that error (else :class:`WriterStopped`)
    and ``get`` return None.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max(1, max_bytes)
        self._items: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self.stopped = False
        self.error: BaseException | None = None

    def put(self, chunk: bytes) -> None:
        with self._cond:
            while self._queued >= self._max and not self.stopped:
                self._cond.wait()
            self.raise_if_stopped()
            self._items.append(chunk)
            self._queued += len(chunk)
            self._cond.notify_all()

    def get(self) -> bytes | None:
        with self._cond:
            while not self._items and not self._closed and not self.stopped:
                self._cond.wait()
            if self.stopped or not self._items:
                return None
            chunk = self._items.popleft()
            self._queued -= len(chunk)
            self._cond.notify_all()
            return chunk

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stop(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.stopped = True
            self.error = self.error or error
            self._items.clear()
            self._queued = 0
            self._cond.notify_all()

    def raise_if_stopped(self) -> None:
        if self.error is not None:
            raise self.error
        if self.stopped:
            raise WriterStopped("the stream was stopped")

    def reader(self) -> io.RawIOBase:
        """A readable file object over :meth:`get` (for a library that pulls, such as pyrage)."""
        return ChunkReader(self.get)


class ChunkReader(io.RawIOBase):
    """A readable file object over ``next_chunk()`` (bytes, or None at the end of the stream)."""

    def __init__(self, next_chunk: Callable[[], bytes | None]) -> None:
        self._next = next_chunk
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._next()
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class BackgroundWriter:
    """Run a slow ``sink`` in its own thread, fed through a :class:`ChunkChannel` bounded in bytes.

    The producer's :meth:`write` returns at once unless ``max_queued_bytes`` are already waiting, so the
    two overlap: the wall time is that of the slower side, not their sum. A failure of the sink is
    raised by the next :meth:`write` (the producer stops) or by :meth:`close`.

    :param sink: called in the writer thread with each chunk, in order.
    :param max_queued_bytes: bytes that may wait in the queue (memory bound, besides the sink's own).
    :param name: the thread's name.
    """

    def __init__(self, sink: Callable[[bytes], None], *, max_queued_bytes: int, name: str = "upload") -> None:
        self._sink = sink
        self._channel = ChunkChannel(max_queued_bytes)
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._channel.get()) is not None:
            try:
                self._sink(chunk)
            except BaseException as err:
                self._channel.stop(err)
                return

    def write(self, chunk: bytes) -> None:
        if chunk:
            self._channel.put(chunk)

    def close(self) -> None:
        """Wait until every queued chunk reached the sink; raise the sink's error, if any."""
        self._channel.close()
        self._thread.join()
        if self._channel.stopped:
            self._channel.raise_if_stopped()

    def abort(self, timeout: float | None = 30.0) -> None:
        """Drop what is queued and stop; waits (up to ``timeout``) for a chunk the sink is handling."""
        self._channel.stop()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


def threaded_chunks(
    work: Callable[[Callable[[bytes], None]], object],
    *,
    name: str,
    on_stop: Callable[[], None] | None = None,
    max_bytes: int = 8 * 1024 * 1024,
) -> Generator[bytes, None, None]:
    """Run ``work(emit)`` in a thread of its own and yield what it emits (a producer that pushes, such as
    a child's stdout or pyrage's ``decrypt_io``, read by a consumer that pulls). The worker's error is
    raised after its last chunk. When the consumer stops early (closes the generator), ``emit`` raises
    :class:`WriterStopped` in the worker, ``on_stop`` runs (to stop a child) and the thread is joined."""
    channel = ChunkChannel(max_bytes)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work(channel.put)
        except BaseException as err:
            errors.append(err)
        finally:
            channel.close()

    thread = threading.Thread(target=run, daemon=True, name=name)
    thread.start()
    finished = False
    try:
        while (chunk := channel.get()) is not None:
            yield chunk
        finished = True
    finally:
        if not finished:  # the consumer stopped early: unblock the worker and stop what it runs
            channel.stop()
            if on_stop is not None:
                on_stop()
        thread.join()
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------------------------- read side
def decompressed_chunks(
    chunks: Iterable[bytes], method: str, *, runner_log: Any = None
) -> Generator[bytes, None, None]:
    """Decompress a stream as pg_dump (plain) or the provider (pg_dumpall) wrote it.

    ``gzip`` is decompressed in-process (several members allowed); ``zstd`` and ``lz4`` go through the
    ``zstd`` / ``lz4`` command when one is on PATH (the standard library has neither), else
    :class:`DecompressorUnavailable`. A stream that does not decompress cleanly, or ends before its end
    marker, raises :class:`StreamCorrupt`.

    :param chunks: the compressed bytes.
    :param method: ``none``, ``gzip``, ``zstd`` or ``lz4``.
    :param runner_log: logger for the external decompressor's runner (default: this module's).

    ``close()`` the generator when not reading it to the end: that stops an external decompressor.
    """
    if method == "none":
        yield from chunks
    elif method == "gzip":
        yield from _gunzip(chunks)
    elif method in EXTERNAL_DECOMPRESSORS:
        yield from _external_decompress(chunks, method, runner_log or log)
    else:
        raise StreamCorrupt(f"unknown compression method {method!r} in the manifest")


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    seen_input = False
    try:
        for chunk in chunks:
            seen_input = seen_input or bool(chunk)
            data = chunk
            while data:
                out = decompressor.decompress(data)
                if out:
                    yield out
                data = b""
                if decompressor.eof:  # another gzip member may follow
                    data = decompressor.unused_data
                    if data:
                        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        tail = decompressor.flush()
        if tail:
            yield tail
    except zlib.error as err:
        raise StreamCorrupt(f"gzip stream is corrupt: {err}") from err
    if not seen_input:
        raise StreamCorrupt("gzip stream is empty")
    if not decompressor.eof:
        raise StreamCorrupt("gzip stream ends before its end marker (truncated)")


def _external_decompress(chunks: Iterable[bytes], method: str, runner_log: Any) -> Iterator[bytes]:
    name, *args = EXTERNAL_DECOMPRESSORS[method]
    command = shutil.which(name)
    if command is None:
        raise DecompressorUnavailable(
            f"no {method} decompressor: Python has none built in and no {name!r} command is on PATH"
        )
    runner = PgProcessRunner(runner_log)
    try:
        yield from threaded_chunks(
            lambda emit: runner.run([command, *args], tool_env(), stdin=chunks, stdout=emit),
            name=f"{name}-decompress",
            on_stop=runner.kill,
        )
    except PgCommandError as err:
        if err.killed:
            raise
        detail = "; ".join(err.stderr_tail) or f"exit code {err.returncode}"
        raise StreamCorrupt(f"{method} stream is corrupt: {detail}") from err
