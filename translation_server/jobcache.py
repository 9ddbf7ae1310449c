"""Jobs answered from memory: final ones always, pending ones while no write has touched them.

Polling is the server's hottest path, and most polls ask about a job that has not changed since
the last one. Reading it from SQLite again costs little CPU, but the driver lets go of the GIL
for every step of the statement, and with a few request threads each such handover is a context
switch and a wait of up to the interpreter's switch interval: under load that doubled the
cost of a poll and its tail latency. So the store keeps the jobs it read:

- A final job never changes again (no transition leaves a final state), so any process may
  answer it from memory for as long as it keeps it.
- A pending job changes with every transition. The store writes each one and tells the cache
  after the commit (``written``), which forgets those jobs. That is only the whole truth while
  this process is the database's one writer, which ``Store`` guarantees for a SQLite file by
  holding an exclusive lock on it; on a shared server database (PostgreSQL, several
  instances) pending jobs are always read from the database.
- A read that overlaps a write may have seen the row before it: what it read is kept only if
  no write was committed between the start of the read and the keeping (``reading`` gives the
  token to check).

Both parts are bounded; the oldest entries go first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import JobRecord

FINAL_JOBS_KEPT = 4096
PENDING_JOBS_KEPT = 16_384


class JobCache:
    """Final jobs, and (for the database's sole writer) pending jobs, as last read or written."""

    def __init__(
        self,
        *,
        pending: bool,
        final_kept: int = FINAL_JOBS_KEPT,
        pending_kept: int = PENDING_JOBS_KEPT,
    ) -> None:
        self._final: dict[str, JobRecord] = {}
        self._pending: dict[str, JobRecord] | None = {} if pending else None
        self._final_kept = final_kept
        self._pending_kept = pending_kept
        self._writes = 0  # job-write commits seen so far
        self._lock = threading.Lock()

    @property
    def keeps_pending(self) -> bool:
        """Whether pending jobs are kept (this process is the database's only writer)."""
        return self._pending is not None

    def get(self, job_id: str) -> JobRecord | None:
        """The job as kept, or None (then read it, and ``keep`` what was read)."""
        job = self._final.get(job_id)
        if job is None and self._pending is not None:
            job = self._pending.get(job_id)
        return job

    def reading(self) -> int:
        """Call before reading jobs from the database; pass the result to ``keep``."""
        return self._writes

    def keep(self, jobs: Iterable[JobRecord], token: int) -> None:
        """Remember jobs just read (final ones always; pending ones unless a write overlapped)."""
        with self._lock:
            fresh = self._writes == token
            for job in jobs:
                if job.state.is_final:
                    if job.id not in self._final:
                        _put(self._final, job, self._final_kept)
                elif fresh and self._pending is not None:
                    _put(self._pending, job, self._pending_kept)

    def written(self, job_ids: Iterable[str]) -> None:
        """After a commit that changed these jobs: forget them, and refuse overlapping reads."""
        with self._lock:
            self._writes += 1
            if self._pending is not None:
                for job_id in job_ids:
                    self._pending.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._final) + len(self._pending or ())


def _put(kept: dict[str, JobRecord], job: JobRecord, limit: int) -> None:
    kept.pop(job.id, None)  # re-inserted at the end: the newest
    if len(kept) >= limit:
        del kept[next(iter(kept))]
    kept[job.id] = job
