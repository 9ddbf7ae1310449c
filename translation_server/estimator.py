"""The estimator: completion time, progress and polling hints, WITHOUT the drawn duration.

Like a real system estimating from a video's length, it sees each job's duration distorted by
a factor drawn once per job (normal around 1, standard deviation ``--estimate-noise``), plus the
expected queue wait from the job's position and the worker slots. A client therefore cannot
cheat by reading the true completion time from the hints.

For queued jobs it reads the queue through a shared view (the queued jobs in claim order and
the busy slots' estimated ends), not with three queries per request. The view is read again
once this server's own writes have moved the queue (``queue_version``, from ``Store``), but
not sooner than ``min_view_age`` after the last read, so a busy queue costs at most a few
reads a second; and at the latest when it is ``max_view_age`` old, which bounds how long the
writes of another server instance go unseen.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .states import State

if TYPE_CHECKING:
    from .reads import JobReads
    from .records import JobRecord, QueueView

MIN_POLL_S = 0.2
MAX_POLL_S = 30.0
# Past its estimate a job is "overdue": the estimate moves forward by a tenth of the job's
# estimated duration each time it is asked (bounded), so polls space out sensibly.
OVERDUE_STEP_FRACTION = 0.1
# The estimate is deliberately noisy; a queue view this old is still good enough for it.
MAX_VIEW_AGE_S = 0.2
MIN_VIEW_AGE_S = 0.05
# Queued jobs a view holds; a job further back has its position counted in the database.
QUEUE_VIEW_LIMIT = 10_000


def estimated_progress(job: JobRecord, at: float) -> float:
    """Elapsed processing over the estimated duration, capped below 1 until it is done."""
    if job.state is State.COMPLETED:
        return 1.0
    if job.started_at is None:
        return 0.0
    return round(min(0.99, max(0.0, (at - job.started_at) / max(job.estimated_duration, 1e-6))), 4)


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """The estimator's view of a pending job."""

    completion_at: float
    progress: float
    poll_after_s: float

    @property
    def poll_after_ms(self) -> int:
        """The ``Poll-After-Ms`` hint."""
        return int(self.poll_after_s * 1000)

    @property
    def retry_after(self) -> int:
        """The ``Retry-After`` hint: whole seconds, never under 1."""
        return max(1, math.ceil(self.poll_after_s))


class Estimator:
    """Estimates for pending jobs from what a real backend could know."""

    def __init__(
        self,
        reads: JobReads,
        *,
        queue_version: Callable[[], int],
        workers: int | Callable[[], int],
        mean_duration: float,
        min_view_age: float = MIN_VIEW_AGE_S,
        max_view_age: float = MAX_VIEW_AGE_S,
        view_limit: int = QUEUE_VIEW_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reads = reads
        self._queue_version = queue_version
        # the worker slots of every live instance sharing the database (leases.py)
        self._slots: Callable[[], int] = workers if callable(workers) else (lambda: workers)
        self._mean_duration = mean_duration
        self._min_view_age = min_view_age
        self._max_view_age = max_view_age
        self._view_limit = view_limit
        self._clock = clock
        # (queue_version() it was read at, clock() when read, the view)
        self._view: tuple[int, float, QueueView] | None = None
        self._view_lock = threading.Lock()

    def estimate(self, job: JobRecord, now: float) -> Estimate | None:
        """The estimate for a pending job; None once it is final."""
        if job.state is State.PROCESSING:
            assert job.started_at is not None
            completion = job.started_at + job.estimated_duration
        elif job.state is State.QUEUED:
            completion = self._expected_start(job, now) + job.estimated_duration
        else:
            return None
        if completion <= now:
            step = OVERDUE_STEP_FRACTION * job.estimated_duration
            completion = now + min(max(step, MIN_POLL_S * 2.5), MAX_POLL_S)
        poll = min(max(completion - now, MIN_POLL_S), MAX_POLL_S)
        return Estimate(
            completion_at=completion, progress=estimated_progress(job, now), poll_after_s=poll
        )

    def _expected_start(self, job: JobRecord, now: float) -> float:
        """When a slot should take this queued job, from its position and the busy slots."""
        view = self.queue_view()
        ahead = self._queue_ahead(job, view)
        workers = self._slots()
        ends = view.slot_ends[: min(ahead + 1, workers)]
        free = workers - view.processing
        if ahead < free:
            return now
        index = ahead - max(free, 0)
        busy = max(len(ends), 1)
        first_free = ends[index % busy] if ends else now
        return max(now, first_free) + (index // busy) * self._mean_duration

    def _queue_ahead(self, job: JobRecord, view: QueueView) -> int:
        """Queued jobs a slot takes before this one: those of higher priority, then older."""
        key = (-job.priority, job.seq)
        if view.complete or key <= view.queued[-1]:
            return bisect.bisect_left(view.queued, key)
        return self._reads.queue_ahead(job)  # behind every job the view holds: count them

    def queue_view(self) -> QueueView:
        """The queue as read lately (see the module docstring for how lately)."""
        current = self._view
        if current is not None and self._fresh(current):
            return current[2]
        with self._view_lock:  # one reader refreshes; the others wait for its view
            current = self._view
            if current is not None and self._fresh(current):
                return current[2]
            version = self._queue_version()  # before reading: a later write invalidates
            taken_at = self._clock()
            view = self._reads.queue_view(limit=self._view_limit, slots=self._slots())
            self._view = (version, taken_at, view)
            return view

    def _fresh(self, cached: tuple[int, float, QueueView]) -> bool:
        version, taken_at, _ = cached
        age = self._clock() - taken_at
        if age < self._min_view_age:
            return True
        return age < self._max_view_age and version == self._queue_version()
