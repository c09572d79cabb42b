"""The byte pipeline: small stages between a producer (pg_dump's stdout, a file, a download) and a sink.

Write side: ``pg_dump``/``pg_dumpall`` stdout -> optional stages (the provider's gzip for pg_dumpall
today; encryption is one more :class:`Stage`) -> the storage target, which hashes what it stores. A
:class:`BackgroundWriter` between the two lets a slow sink (an upload) run while the producer goes on,
through a queue bounded in bytes. Read side, mirrored: a source's chunks -> :func:`decompressed_chunks`
-> a consumer (psql, ``pg_restore --list``, the SQL trailer check).
"""

from __future__ import annotations

import contextlib
import logging
import queue
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


class BackgroundWriter:
    """Run a slow ``sink`` (an upload) in its own thread, fed through a queue bounded in bytes.

    The producer's :meth:`write` returns at once unless ``max_queued_bytes`` are already waiting, so a
    dump and its upload overlap: the wall time is that of the slower side, not their sum. A failure of
    the sink is raised by the next :meth:`write` (the producer stops) or by :meth:`close`.

    :param sink: called in the writer thread with each chunk, in order.
    :param max_queued_bytes: bytes that may wait in the queue (memory bound, besides the sink's own).
    :param name: the thread's name.
    """

    def __init__(self, sink: Callable[[bytes], None], *, max_queued_bytes: int, name: str = "upload") -> None:
        self._sink = sink
        self._max = max(1, max_queued_bytes)
        self._queue: list[bytes | None] = []
        self._queued = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._stopped = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                chunk = self._queue.pop(0)
                self._queued -= len(chunk) if chunk is not None else 0
                self._cond.notify_all()
            if chunk is None:
                return
            try:
                self._sink(chunk)
            except BaseException as err:
                with self._cond:
                    self._error = err
                    self._stopped = True
                    self._queue.clear()
                    self._cond.notify_all()
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._stopped:
            raise WriterStopped("the upload was stopped")

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        with self._cond:
            while self._queued >= self._max and not self._stopped:
                self._cond.wait()
            self._raise_if_failed()
            self._queue.append(chunk)
            self._queued += len(chunk)
            self._cond.notify_all()

    def close(self) -> None:
        """Wait until every queued chunk reached the sink; raise the sink's error, if any."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._queue.append(None)
                self._cond.notify_all()
        self._thread.join()
        self._raise_if_failed()

    def abort(self, timeout: float | None = 30.0) -> None:
        """Drop what is queued and stop; waits (up to ``timeout``) for a chunk the sink is handling."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._queued = 0
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


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
    out: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            runner.run([command, *args], tool_env(), stdin=chunks, stdout=out.put)
        except BaseException as err:
            errors.append(err)
        finally:
            out.put(None)

    thread = threading.Thread(target=work, daemon=True, name=f"{name}-decompress")
    thread.start()
    finished = False
    try:
        while (item := out.get()) is not None:
            yield item
        finished = True
    finally:
        if not finished:  # the consumer stopped early: stop the child and unblock the pump
            runner.kill()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.1)
        thread.join()
    if errors:
        err = errors[0]
        if isinstance(err, PgCommandError) and not err.killed:
            detail = "; ".join(err.stderr_tail) or f"exit code {err.returncode}"
            raise StreamCorrupt(f"{method} stream is corrupt: {detail}") from err
        raise err
