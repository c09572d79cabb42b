"""Sending the parts of one upload: several at once where the store allows it, in order where not."""

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from airflow_provider_pgbackup.storage.base import Location, StorageError, UploadCancelled
from airflow_provider_pgbackup.storage.objects.client import ObjectClient, PartUpload

#: Parts held for a store that takes them one after the other (GCS's resumable session).
SEQUENTIAL_PARTS = 2


class PartSender:
    """Sends the parts of one upload, numbered in the order they come: up to ``parts_in_flight`` at once
    where the store allows it, else one after the other in a thread of their own (GCS's session), with
    at most :data:`SEQUENTIAL_PARTS` held.

    :meth:`submit` waits while that many parts are in flight, and raises the first part's failure; after
    one failure nothing more is sent. :meth:`finish` waits for every part; :meth:`abort` drops those not
    started, waits for those being sent, then aborts the upload (nothing appears).
    """

    def __init__(self, client: ObjectClient, upload: PartUpload, location: Location) -> None:
        self.upload = upload
        self.location = location
        self.max_parts = client.max_parts
        in_flight = client.settings.parts_in_flight
        if not client.parallel_parts:  # one part on the wire, one waiting: more would only hold memory
            in_flight = min(in_flight, SEQUENTIAL_PARTS)
        workers = in_flight if client.parallel_parts else 1
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"upload-{location.basename}"[:30])
        self._slots = threading.BoundedSemaphore(in_flight)
        self._futures: list[Future[None]] = []
        self._failure: BaseException | None = None
        self._number = 0
        self.parts_sent = 0

    def _run(self, number: int, data: bytes) -> None:
        try:
            if self._failure is None:
                self.upload.send(number, data)
                self.parts_sent += 1
        except BaseException as err:
            self._failure = self._failure or err
            raise
        finally:
            self._slots.release()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def submit(self, take: Callable[[], bytes]) -> None:
        """Send the part ``take()`` returns, once a slot is free: it is gathered into one ``bytes`` only
        then, so memory is the parts in flight plus the one being gathered, not one more."""
        self._raise_if_failed()
        if self._number >= self.max_parts:
            raise StorageError(f"{self.location.uri} would need more than {self.max_parts} parts")
        self._slots.acquire()
        try:
            self._raise_if_failed()  # a part failed while this one waited for its slot
            self._futures.append(self._pool.submit(self._run, self._number + 1, take()))
        except BaseException:
            self._slots.release()
            raise
        self._number += 1
        self._futures = [f for f in self._futures if not f.done() or f.exception() is not None]

    def finish(self) -> None:
        for future in self._futures:
            future.exception()  # wait
        self._pool.shutdown()
        self._raise_if_failed()

    def abort(self) -> None:
        self._failure = self._failure or UploadCancelled(f"upload to {self.location.uri} was aborted")
        self._pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.upload.abort()
