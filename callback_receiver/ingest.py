"""Group commit: every write of ``POST /webhooks`` goes through one writer thread, which commits
whatever is queued when it is free as ONE transaction (``batchwrite.write_batch``).

A request thread verifies and parses its webhook itself, queues the write and blocks until the
batch holding it has committed; only then does it answer 2xx, so an acknowledged event is always
durable. A webhook arriving alone commits at once; under a burst, webhooks arriving while a batch
commits form the next one, and while the last batch held more than one write the writer also
gathers for up to ``GATHER_S`` before committing (a batch's cost barely grows with its size).
A batch holds at most ``batch_max`` writes (1: one transaction per webhook). One writer per
process also means the request threads never contend for SQLite's write lock (whose busy
handler sleeps).

After each commit, before its requests are answered, the events the batch fed
(``BatchResult.fed``, in cursor order) go straight to the feed's tail with the transaction's
number (``Feed.committed()``), which wakes the long-polls they match with no query. A batch
that fed a heartbeat wakes the feed's sync instead (``Feed.notify()``): the channels' liveness
is read back from the store with the events. A batch whose transaction
fails is rolled back whole: none of its writes is stored and each waiter raises
``IngestFailed`` (the API answers 503 with ``Retry-After``, the sender retries later and
de-duplication makes that safe). Nothing acknowledged is ever lost, since nothing in a failed
batch was acknowledged.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque

from prometheus_client import Histogram
from sqlalchemy.exc import SQLAlchemyError

from .batchwrite import BatchResult, HeartbeatWrite, Write, write_batch
from .feed import Feed
from .store import Store

# Under load (the last batch held more than one write) the writer waits this long for more
# before committing: fewer, larger transactions for the CPU they save, at most this much later.
GATHER_S = 0.005
ACK_TIMEOUT_S = 60.0  # a waiter gives up (503) if its batch has not committed by then

log = logging.getLogger(__name__)


class IngestFailed(Exception):
    """The write was not stored (its batch failed, or the writer stopped): retry later."""


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclasses.dataclass(slots=True)
class _Pending:
    write: Write
    # held until the batch is done: the writer releases it, the request thread acquires it (a
    # lock, not an Event: waking a thread is then one release, the cheapest signal there is)
    done: threading.Lock = dataclasses.field(default_factory=_held_lock)
    cursor: int | None = None
    error: str | None = None


class Ingest:
    """The receiver's single writer: queues writes, commits them in batches, wakes the feed."""

    def __init__(
        self, store: Store, feed: Feed, *, batch_max: int, batch_sizes: Histogram | None = None
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self._store = store
        self._feed = feed
        self._batch_max = batch_max
        self._batch_sizes = batch_sizes
        self._queue: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._committing = 0
        self._last = 0  # writes in the last batch taken
        self._thread = threading.Thread(target=self._run, name="receiver-ingest", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Writes waiting for the next batch."""
        return len(self._queue)

    @property
    def committing(self) -> int:
        """Writes in the batch being committed now (0: the writer is idle)."""
        return self._committing

    def store(self, write: Write) -> int | None:
        """Queue ``write`` and block until its batch commits: its feed cursor, or None (a
        duplicate, a heartbeat not fed, a receipt). Raises ``IngestFailed`` if not stored."""
        pending = _Pending(write)
        with self._cond:
            if self._closed:
                raise IngestFailed("the receiver is stopping")
            self._queue.append(pending)
            if len(self._queue) in (1, self._batch_max):  # what the writer may be waiting for
                self._cond.notify()
        if not pending.done.acquire(timeout=ACK_TIMEOUT_S):
            raise IngestFailed(f"not committed within {ACK_TIMEOUT_S:g} s")
        if pending.error is not None:
            raise IngestFailed(pending.error)
        return pending.cursor

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the writer (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _next_batch(self) -> list[_Pending]:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closed)
            if self._last > 1:  # webhooks are arriving together: let this batch gather more
                full = self._batch_max
                self._cond.wait_for(lambda: len(self._queue) >= full or self._closed, GATHER_S)
            count = min(len(self._queue), self._batch_max)
            self._committing = self._last = count
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while batch := self._next_batch():
            self._commit(batch)
            self._committing = 0

    def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            with self._store.begin_write() as conn:
                result: BatchResult = write_batch(conn, [p.write for p in batch])
        except SQLAlchemyError as exc:
            log.error("a batch of %d webhooks was not stored: %s", len(batch), exc)
            self._release(batch, error=f"the store failed: {type(exc).__name__}")
            return
        except Exception:  # a bug: never leave a request thread waiting on it
            log.exception("a batch of %d webhooks was not stored", len(batch))
            self._release(batch, error="the receiver failed to store it")
            return
        for pending, cursor in zip(batch, result.cursors, strict=True):
            pending.cursor = cursor
        try:
            beats = any(isinstance(p.write, HeartbeatWrite) for p in batch)
            if beats and result.fed:
                self._feed.notify()
            else:
                self._feed.committed(result.writes, result.fed)
            if self._batch_sizes is not None:
                self._batch_sizes.observe(len(batch))
        except Exception:  # the batch is stored: its requests are answered 204 regardless
            log.exception("waking the feed after a batch failed")
        self._release(batch)
        log.debug(
            "batch of %d committed in %.1f ms, %d fed",
            len(batch),
            (time.perf_counter() - started) * 1000,
            len(result.fed),
        )

    @staticmethod
    def _release(batch: list[_Pending], *, error: str | None = None) -> None:
        for pending in batch:
            pending.error = error
            pending.done.release()
