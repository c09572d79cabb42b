"""The byte pipeline's stages and its BackgroundWriter, on real threads (no mocks)."""

from __future__ import annotations

import gzip
import threading
import time

import pytest

from airflow_provider_pgbackup.pipeline import BackgroundWriter, GzipStage, Pipeline, WriterStopped


def test_gzip_stage_output_is_one_gzip_member_of_everything_written() -> None:
    out: list[bytes] = []
    pipeline = Pipeline(out.append, [GzipStage(1)])
    for i in range(100):
        pipeline.write(f"line {i}\n".encode() * 50)
    pipeline.close()
    assert gzip.decompress(b"".join(out)) == b"".join(f"line {i}\n".encode() * 50 for i in range(100))


def test_producer_runs_ahead_of_a_slow_sink_by_the_queue_bound_and_no_further() -> None:
    """While the sink is stuck on its first chunk, the producer may queue max_queued_bytes more."""
    release = threading.Event()
    received: list[bytes] = []

    def slow_sink(chunk: bytes) -> None:
        release.wait(10)
        received.append(chunk)

    writer = BackgroundWriter(slow_sink, max_queued_bytes=3 * 1024)
    produced = 0

    def produce() -> None:
        nonlocal produced
        for _ in range(10):
            writer.write(b"x" * 1024)
            produced += 1

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 5
    while produced < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # give the producer the chance to overrun the bound, if it could
    assert produced == 4  # one chunk in the sink's hands + three queued: the bound holds
    release.set()
    producer.join(10)
    writer.close()
    assert b"".join(received) == b"x" * 10 * 1024


def test_a_sink_failure_stops_the_producer_with_the_sink_error() -> None:
    def broken(chunk: bytes) -> None:
        raise ConnectionError("upload failed")

    writer = BackgroundWriter(broken, max_queued_bytes=1024)

    def produce() -> None:
        for _ in range(100):
            writer.write(b"y" * 1024)
            time.sleep(0.001)

    with pytest.raises(ConnectionError, match="upload failed"):
        produce()
    with pytest.raises(ConnectionError):
        writer.close()


def test_abort_drops_what_is_queued_and_later_writes_fail() -> None:
    started = threading.Event()
    release = threading.Event()
    received: list[bytes] = []

    def sink(chunk: bytes) -> None:
        started.set()
        release.wait(10)
        received.append(chunk)

    writer = BackgroundWriter(sink, max_queued_bytes=10 * 1024)
    for _ in range(5):
        writer.write(b"z" * 1024)
    assert started.wait(5)
    release.set()
    writer.abort()
    assert len(received) <= 1  # the chunk in the sink's hands, nothing of the queue
    with pytest.raises(WriterStopped):
        writer.write(b"more")
