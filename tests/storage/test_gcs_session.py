"""The bytes a GCS resumable session reads its chunks from (``_SessionBytes``): pure bookkeeping, so no
server is needed. A session may persist less than a chunk it was sent (a 308 whose ``Range`` ends early);
whatever it did not persist must be read again, from the right offset, and nothing else."""

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_pgbackup.storage.gcs.objects import _SessionBytes

CHUNK = 16


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.integers(1, 3), min_size=1, max_size=8),
    last=st.integers(0, CHUNK - 1),
    kept=st.lists(st.integers(0, CHUNK), min_size=1, max_size=30),
)
def test_what_the_session_did_not_persist_is_read_again_in_order(parts, last, kept) -> None:
    """Full parts (whole chunks), then a short last one; each chunk sent, the session keeps a prefix
    (``kept``, cycling; every third chunk whole so it ends). The bytes persisted are the bytes added."""
    stream, persisted, sent = _SessionBytes(), bytearray(), bytearray()
    turn = 0

    def transmit() -> None:
        nonlocal turn
        assert stream.tell() == len(persisted)  # the library checks this before each chunk
        start = stream.tell()
        chunk = stream.read(CHUNK)
        keep = len(chunk) if turn % 3 == 2 else min(kept[turn % len(kept)], len(chunk))
        turn += 1
        persisted.extend(chunk[:keep])
        stream.persisted(start + keep)

    for number, count in enumerate(parts):
        data = bytes([number]) * (count * CHUNK)
        sent.extend(data)
        stream.add(data)
        while stream.available >= CHUNK:
            transmit()
    tail = bytes([255]) * last
    sent.extend(tail)
    stream.add(tail)
    while stream.available:
        transmit()
    assert bytes(persisted) == bytes(sent)


def test_a_whole_part_is_read_back_as_the_same_object_and_seeks_stay_in_what_is_held() -> None:
    import pytest

    stream = _SessionBytes()
    part = bytes(range(CHUNK))
    stream.add(part)
    assert stream.read(CHUNK) is part  # no copy on the way to the socket
    stream.seek(4)  # a retry of the same chunk rewinds within it
    assert stream.read(CHUNK) == part[4:]
    with pytest.raises(ValueError, match="offset 17 is not held"):
        stream.seek(CHUNK + 1)
    stream.persisted(CHUNK)
    assert (stream.tell(), stream.available, stream.read()) == (CHUNK, 0, b"")
