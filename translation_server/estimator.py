"""The estimator: completion time, progress and polling hints, WITHOUT the drawn duration.

Like a real system estimating from a video's length, it sees each job's duration distorted by
a factor drawn once per job (normal around 1, standard deviation ``--estimate-noise``), plus the
expected queue wait from the job's position and the worker slots. A client therefore cannot
cheat by reading the true completion time from the hints.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import JobRecord, Store

from .states import State

MIN_POLL_S = 0.2
MAX_POLL_S = 30.0
# Past its estimate a job is "overdue": the estimate moves forward by a tenth of the job's
# estimated duration each time it is asked (bounded), so polls space out sensibly.
OVERDUE_STEP_FRACTION = 0.1


def estimated_progress(job: JobRecord, at: float) -> float:
    """Elapsed processing over the estimated duration, capped below 1 until it is done."""
    if job.state is State.COMPLETED:
        return 1.0
    if job.started_at is None:
        return 0.0
    return round(min(0.99, max(0.0, (at - job.started_at) / max(job.estimated_duration, 1e-6))),
                 4)


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

    def __init__(self, store: Store, *, workers: int, mean_duration: float) -> None:
        self._store = store
        self._workers = workers
        self._mean_duration = mean_duration

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
        return Estimate(completion_at=completion, progress=estimated_progress(job, now),
                        poll_after_s=poll)

    def _expected_start(self, job: JobRecord, now: float) -> float:
        """When a slot should take this queued job, from its position and the busy slots."""
        ahead = self._store.queue_ahead(job)
        ends = self._store.estimated_slot_ends(min(ahead + 1, self._workers))
        free = self._workers - self._store.count_in_state(State.PROCESSING)
        if ahead < free:
            return now
        index = ahead - max(free, 0)
        busy = max(len(ends), 1)
        first_free = ends[index % busy] if ends else now
        return max(now, first_free) + (index // busy) * self._mean_duration
