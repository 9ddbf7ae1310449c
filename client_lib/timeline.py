"""The waiting core's schedule: each followed job, and ids ordered by when to ask."""

from __future__ import annotations

import collections
import dataclasses
import heapq
from typing import Generic, TypeVar

from .models import Job


class Timeline:
    """Job ids ordered by a time, O(log n) to set or read the earliest (stale entries are
    skipped lazily), so waiting on thousands of jobs does not scan them all at every step."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._at: dict[str, float] = {}

    def set(self, job_id: str, at: float) -> None:
        self._at[job_id] = at
        heapq.heappush(self._heap, (at, job_id))
        if len(self._heap) > 4 * len(self._at) + 64:  # compact the stale entries
            self._heap = [(t, j) for j, t in self._at.items()]
            heapq.heapify(self._heap)

    def discard(self, job_id: str) -> None:
        self._at.pop(job_id, None)

    def earliest(self) -> float | None:
        while self._heap:
            at, job_id = self._heap[0]
            if self._at.get(job_id) == at:
                return at
            heapq.heappop(self._heap)
        return None


@dataclasses.dataclass(slots=True)
class Tracked:
    """A job the core follows, and when it would next ask about it."""

    job: Job
    start: float
    estimate: float | None  # estimated end (absolute)
    next_poll: float = 0.0
    checks: int = 0
    urgent: bool = False  # the channel says it ended: ask now
    covered: bool = True  # followed from a feed position before its end could be stored

    def duration(self, now: float, floor: float) -> float:
        end = self.estimate if self.estimate is not None else now
        return max(end - self.start, floor)


V = TypeVar("V")


class Bounded(collections.OrderedDict[str, V], Generic[V]):
    """A dict that keeps its newest ``limit`` entries: what the core remembers, bounded."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: V) -> None:
        """Keep ``value`` as the newest entry; the oldest goes beyond the limit."""
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
