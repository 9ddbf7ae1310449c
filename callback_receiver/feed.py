"""The change feed's wake-up: a condition variable notified after each event is committed.

A long-poll reads the feed's version, queries the store, and if nothing matched waits on the
condition until the version moves (or its deadline), then queries again. Reading the version
BEFORE the query closes the race where an event commits between the query and the wait.

Capacity: waitress serves requests from a fixed pool of threads and a blocked long-poll holds
one. At most ``max_waiters`` long-polls block at once (default: threads minus 4, so webhooks,
the page and health checks always find a thread). A poll that finds events answers at once and
needs no slot; one that would have to block when every slot is taken raises ``FeedBusy``, which
the API answers immediately with 503 and ``Retry-After: 1`` rather than hanging (an empty 200
would invite a client to re-poll in a tight loop and would hide the overload).

The condition only sees this process's inserts: run one receiver process per database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class FeedBusy(Exception):
    """Every long-poll slot is taken: the caller should retry shortly."""


class Feed:
    """Wakes long-polls when an event is stored (per app; no module-level state)."""

    def __init__(self, *, max_waiters: int) -> None:
        self._cond = threading.Condition()
        self._version = 0
        self._waiters = 0
        self._max_waiters = max_waiters
        self._closed = False

    @property
    def waiters(self) -> int:
        """Long-polls blocked right now."""
        return self._waiters

    def notify(self) -> None:
        """Wake every long-poll: an event was committed."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Release every long-poll now (shutdown); later polls do not block."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def poll(self, fetch: Callable[[], Sequence[T]], *, wait: float) -> Sequence[T]:
        """``fetch()``'s first non-empty answer within ``wait`` seconds, else an empty one."""
        deadline = time.monotonic() + wait
        version = self._version
        items = fetch()
        if items or wait <= 0 or self._closed:
            return items
        self._take_slot()
        try:
            while True:
                version = self._wait_for_change(version, deadline)
                if self._closed or time.monotonic() >= deadline:
                    return fetch()
                items = fetch()
                if items:
                    return items
        finally:
            with self._cond:
                self._waiters -= 1

    def _wait_for_change(self, seen: int, deadline: float) -> int:
        """Block until the version differs from ``seen``, the feed closes or the deadline."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._version != seen or self._closed, max(0.0, deadline - time.monotonic())
            )
            return self._version

    def _take_slot(self) -> None:
        with self._cond:
            if self._waiters >= self._max_waiters:
                raise FeedBusy(f"{self._waiters} long-polls already waiting")
            self._waiters += 1
