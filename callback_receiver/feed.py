"""The change feed's reads: an in-memory tail of recent events, parked long-polls, wake-ups.

**Reads.** Every request needs a page as fresh as the database was when it arrived. The feed
keeps the newest events in memory (``tail_size`` of them, with the channels' liveness) and
brings that tail up to date with one query for the events after its newest; concurrent
requests share such a sync (one started after a request arrived serves it), so any number of
readers costs one query at a time. A cursor older than the tail is read from the database.

**Waiting.** After each of its write transactions the process's writer hands the events it
committed to ``committed()``, which appends them to the tail with no query when the tail
holds every earlier transaction (they are numbered: ``feed_lock.writes``), and wakes exactly
the parked long-polls they match (their jobs, or any job, after their cursor); each builds its
page from memory. Otherwise (another process wrote in between, or a sync is under way), and
for ``notify()`` (from any thread), the feed's own sync thread syncs the tail once, then wakes
the long-polls the same way. Many clients waiting on one event cost no query, or one, never
one each.

**Capacity.** waitress serves requests from a fixed pool of threads and a parked long-poll
holds one. At most ``max_waiters`` park at once (default: threads minus 32, so webhooks,
pages and health checks always find a thread). A poll that finds events answers at once and
needs no slot; one that would have to park when every slot is taken raises ``FeedBusy``,
which the API answers at once with 503 and ``Retry-After`` rather than hanging.

Events other processes store reach the tail at the next request or ``notify()``.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

SYNC_BATCH = 1000  # events read per query while the tail catches up
DEFAULT_TAIL = 4096


class FeedBusy(Exception):
    """Every long-poll slot is taken: the caller should retry shortly."""


class StoredEventLike(Protocol):
    """What the feed needs of a stored event."""

    @property
    def seq(self) -> int: ...
    @property
    def job_id(self) -> str: ...
    def to_wire(self) -> dict[str, Any]: ...


class ChannelLike(Protocol):
    """What the feed needs of a channel's latest heartbeat."""

    def to_wire(self, now: float) -> dict[str, Any]: ...


class FeedSource(Protocol):
    """The store's reads the feed uses."""

    def events_after(
        self, after: int, *, jobs: Collection[str] | None = None, limit: int = 100
    ) -> Sequence[StoredEventLike]: ...
    def tail_after(self, after: int, *, limit: int) -> tuple[int, Sequence[StoredEventLike]]: ...
    def last_cursor(self) -> int: ...
    def channels(self, now: float) -> Sequence[ChannelLike]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One event of the tail, in its wire form (built once, served to every reader)."""

    seq: int
    job_id: str
    wire: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """What a feed request answers: events, oldest first, and the channels' liveness."""

    events: list[dict[str, Any]]
    channels: list[dict[str, Any]]
    last_seq: int | None


Jobs = frozenset[str] | None  # the job ids a read is for ("" for heartbeats); None: every event


@dataclasses.dataclass(eq=False, slots=True)
class _Waiter:
    after: int
    jobs: Jobs
    woken: threading.Event = dataclasses.field(default_factory=threading.Event)


class Feed:
    """The feed of one app: the tail, its sync thread and the parked long-polls."""

    def __init__(
        self, source: FeedSource, *, max_waiters: int, tail_size: int = DEFAULT_TAIL
    ) -> None:
        self._source = source
        self._max_waiters = max_waiters
        self._tail_size = max(1, tail_size)
        self._lock = threading.Lock()  # the tail, the channels and the parked waiters
        self._sync_lock = threading.Lock()  # one sync at a time
        self._tail: list[Entry] = []
        # the tail holds every event of the first ``_writes`` write transactions, at least (0:
        # the first batch committed after start is read back by a sync)
        self._writes = 0
        self._high = self._low = source.last_cursor()  # the tail holds (low, high]
        self._channels: Sequence[ChannelLike] = ()
        self._syncs_started = 0
        self._syncs_done = 0
        self._parked: dict[str | None, set[_Waiter]] = {}
        self._waiters = 0
        self._closed = False
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-sync", daemon=True)
        self._thread.start()

    @property
    def waiters(self) -> int:
        """Long-polls parked right now."""
        return self._waiters

    def notify(self) -> None:
        """Events were committed: sync the tail and wake the long-polls they match."""
        self._kick.set()

    def committed(self, writes: int, events: Sequence[StoredEventLike]) -> None:
        """Write transaction number ``writes`` (``feed_lock.writes``) of this process committed
        ``events`` (in cursor order): add them to the tail and wake the long-polls they match,
        with no query when the tail holds every earlier transaction; else sync."""
        if not self._sync_lock.acquire(blocking=False):  # a sync under way may miss them
            self._kick.set()
            return
        try:
            if writes <= self._writes:
                return  # a sync brought them already
            if writes != self._writes + 1:  # another process wrote in between
                self._kick.set()
                return
            high = self._high
            fresh = [Entry(e.seq, e.job_id, e.to_wire()) for e in events if e.seq > high]
            self._extend(fresh, None)
            self._writes = writes
        finally:
            self._sync_lock.release()

    def close(self) -> None:
        """Release every long-poll now (shutdown); later polls do not park."""
        with self._lock:
            self._closed = True
            for group in self._parked.values():
                for waiter in group:
                    waiter.woken.set()
        self._kick.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def latest(self) -> int:
        """The cursor of the newest event, as fresh as the database now."""
        self._sync(self._syncs_started)
        return self._high

    def read(self, after: int, *, jobs: Jobs, limit: int, wait: float) -> Page:
        """Events after ``after`` (for these jobs, or all), parking up to ``wait`` seconds
        for one when there are none yet; FeedBusy when every parking slot is taken."""
        deadline = time.monotonic() + wait
        self._sync(self._syncs_started)
        page = self._page(after, jobs, limit)
        if page.events or wait <= 0 or self._closed:
            return page
        waiter = self._park(after, jobs)
        try:
            while True:
                page = self._page(after, jobs, limit)  # what synced before it parked, too
                left = deadline - time.monotonic()
                if page.events or self._closed or left <= 0:
                    break
                waiter.woken.wait(left)
                waiter.woken.clear()
        finally:
            self._unpark(waiter)
        if page.events or self._closed:
            return page
        self._sync(self._syncs_started)  # the deadline: a last look, as fresh as can be
        return self._page(after, jobs, limit)

    def _page(self, after: int, jobs: Jobs, limit: int) -> Page:
        now = time.time()
        with self._lock:
            channels = [c.to_wire(now) for c in self._channels]
            if after >= self._low:
                start = bisect.bisect_right(self._tail, after, key=lambda e: e.seq)
                found: list[Entry] = []
                for entry in self._tail[start:]:
                    if jobs is None or entry.job_id in jobs:
                        found.append(entry)
                        if len(found) >= limit:
                            break
                last = found[-1].seq if found else None
                return Page([e.wire for e in found], channels, last)
        older = self._source.events_after(after, jobs=jobs, limit=limit)
        last = older[-1].seq if older else None
        return Page([e.to_wire() for e in older], channels, last)

    def _sync(self, seen_started: int) -> None:
        """Bring the tail up to date with a sync that began after ``seen_started`` syncs had
        (the caller read that count when it arrived)."""
        with self._sync_lock:
            if self._syncs_done > seen_started:
                return  # one that began after the caller arrived has finished
            self._syncs_started += 1
            number = self._syncs_started
            fresh: list[Entry] = []
            high = self._high
            while True:  # a failure propagates: the next caller tries again
                # the last read holds every event of ``writes`` transactions after ``high``
                writes, batch = self._source.tail_after(high, limit=SYNC_BATCH)
                fresh.extend(Entry(e.seq, e.job_id, e.to_wire()) for e in batch)
                if batch:
                    high = batch[-1].seq
                if len(batch) < SYNC_BATCH:
                    break
            self._extend(fresh, self._source.channels(time.time()))
            self._writes = max(self._writes, writes)
            self._syncs_done = number

    def _extend(self, fresh: list[Entry], channels: Sequence[ChannelLike] | None) -> None:
        with self._lock:
            if channels is not None:
                self._channels = channels
            if not fresh:
                return
            self._tail.extend(fresh)
            self._high = fresh[-1].seq
            excess = len(self._tail) - self._tail_size
            if excess > 0:
                self._low = self._tail[excess - 1].seq
                del self._tail[:excess]
            newest = fresh[-1].seq
            for waiter in self._parked.get(None, ()):
                if newest > waiter.after:
                    waiter.woken.set()
            for entry in fresh:
                for waiter in self._parked.get(entry.job_id, ()):
                    if entry.seq > waiter.after:
                        waiter.woken.set()

    def _park(self, after: int, jobs: Jobs) -> _Waiter:
        waiter = _Waiter(after, jobs)
        with self._lock:
            if self._waiters >= self._max_waiters:
                raise FeedBusy(f"{self._waiters} long-polls already waiting")
            self._waiters += 1
            for key in (None,) if jobs is None else jobs:
                self._parked.setdefault(key, set()).add(waiter)
        return waiter

    def _unpark(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters -= 1
            for key in (None,) if waiter.jobs is None else waiter.jobs:
                group = self._parked.get(key)
                if group is not None:
                    group.discard(waiter)
                    if not group:
                        del self._parked[key]

    def _run(self) -> None:
        while True:
            self._kick.wait()
            self._kick.clear()
            if self._closed:
                return
            try:
                self._sync(self._syncs_started)
            except Exception:  # the database is away: the next request or notify retries
                log.warning("feed: syncing the tail failed", exc_info=True)
