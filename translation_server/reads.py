"""Job reads: one job, a tenant's jobs, pages, counts, and the queue as the estimator sees it.

Every read is a SQLAlchemy Core statement, the same on SQLite and PostgreSQL, and sees every
commit made before it began, by this process or another server instance. Jobs read in a final
state are kept in memory (``FinalJobs``): no transition leaves a final state, so such a job
never changes again whoever writes the database. A pending job read by id is kept too
(``PendingJobs``), but only as good while the database still holds its version: every write
of a job raises its version (which its ETag names), so the next read of it asks for the
version alone and reads the whole row only when it moved. One column instead of every one
also matters to SQLite: its driver lets go of the GIL around each column of a row it reads,
and each time, under load, wakes another request thread for nothing. Where this process is
the database's only writer (SQLite, ``solewriter.py``), a pending record read since its last
commit is still current and is answered with no read at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, and_, bindparam, func, or_, select

from .db import Database
from .leases import ENDED_BY
from .pointread import PointRead
from .records import JobRecord, QueueView
from .schema import jobs
from .solewriter import SoleWriter
from .states import State

FINAL_JOBS_KEPT = 4096
PENDING_JOBS_KEPT = 4096

# The hot reads, built once: constructing a Core statement and its cache key on every call
# cost more than running it (the compiled form is cached by SQLAlchemy either way).
_JOB_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_VERSION_BY_ID = select(jobs.c.version).where(jobs.c.id == bindparam("job_id"))
_JOBS_OF_CLIENT = select(jobs).where(
    jobs.c.client_id == bindparam("client_id"), jobs.c.id.in_(bindparam("ids", expanding=True))
)
_ESTIMATED_END = jobs.c.started_at + jobs.c.duration_s * jobs.c.estimate_factor
_QUEUED_KEYS = (
    select(jobs.c.priority, jobs.c.seq)
    .where(jobs.c.state == State.QUEUED.value)
    .order_by(jobs.c.priority.desc(), jobs.c.seq)
    .limit(bindparam("limit"))
)
_SLOT_ENDS = (
    select(_ESTIMATED_END)
    .where(jobs.c.state == State.PROCESSING.value)
    .order_by(_ESTIMATED_END)
    .limit(bindparam("slots"))
)
_RUNNING_COUNT = (
    select(func.count())
    .select_from(jobs)
    .where(
        jobs.c.state == State.PROCESSING.value,
        or_(jobs.c.owner == bindparam("owner"), jobs.c.owner.is_(None)),
    )
)
# when the next processing attempt ends; the scheduler's: one an instance may end (ENDED_BY)
_NEXT_END = select(func.min(jobs.c.due_at)).where(jobs.c.state == State.PROCESSING.value)
_NEXT_END_OWNED = _NEXT_END.where(ENDED_BY)
_PROCESSING_COUNT = (
    select(func.count()).select_from(jobs).where(jobs.c.state == State.PROCESSING.value)
)


def job_by_id(conn: Connection, job_id: str) -> JobRecord | None:
    """One job, read on ``conn`` (inside the caller's transaction, if it has one)."""
    row = conn.execute(_JOB_BY_ID, {"job_id": job_id}).first()
    return JobRecord.from_row(row) if row else None


class FinalJobs:
    """Jobs read in a final state, newest last; the oldest goes first beyond ``kept``."""

    def __init__(self, kept: int = FINAL_JOBS_KEPT) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._kept = kept
        self._lock = threading.Lock()

    def get(self, job_id: str) -> JobRecord | None:
        """The job as kept, or None."""
        return self._jobs.get(job_id)

    def keep(self, jobs: Iterable[JobRecord]) -> None:
        """Remember the final ones among jobs just read (pending ones are never kept)."""
        with self._lock:
            for job in jobs:
                if job.state.is_final and job.id not in self._jobs:
                    if len(self._jobs) >= self._kept:
                        del self._jobs[next(iter(self._jobs))]
                    self._jobs[job.id] = job

    def __len__(self) -> int:
        return len(self._jobs)


class PendingJobs:
    """The record last read of pending jobs, each to be used only while the database still
    holds its version, with the sole writer's mark it is current at (``solewriter.py``; None
    on a shared database); the oldest goes first beyond ``kept``."""

    def __init__(self, kept: int = PENDING_JOBS_KEPT) -> None:
        self._jobs: dict[str, tuple[JobRecord, int | None]] = {}
        self._kept = kept
        self._lock = threading.Lock()

    def get(self, job_id: str) -> tuple[JobRecord, int | None] | None:
        """The record kept and its mark, or None."""
        return self._jobs.get(job_id)

    def keep(self, job: JobRecord, mark: int | None) -> None:
        """Remember a pending job just read, in place of what was kept of it."""
        with self._lock:
            if self._jobs.pop(job.id, None) is None and len(self._jobs) >= self._kept:
                del self._jobs[next(iter(self._jobs))]
            self._jobs[job.id] = (job, mark)

    def drop(self, job_id: str) -> None:
        """Forget a job (read in a final state: ``FinalJobs`` keeps it from then on)."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._jobs)


class JobReads:
    """Every read of jobs the server makes."""

    def __init__(self, database: Database, *, final_kept: int = FINAL_JOBS_KEPT) -> None:
        self._db = database
        self._sole: SoleWriter = database.sole
        self.final = FinalJobs(final_kept)
        self.pending = PendingJobs()
        held = threading.local()  # one reader connection per request thread for both
        self._by_id = PointRead(database.reader, _JOB_BY_ID, held)
        self._version_of = PointRead(database.reader, _VERSION_BY_ID, held)

    def get_job(self, job_id: str, *, client_id: str | None = None) -> JobRecord | None:
        """One job; with ``client_id``, only when that tenant owns it."""
        job = self.final.get(job_id) or self._stored(job_id)
        if job is None or (client_id is not None and job.client_id != client_id):
            return None
        return job

    def _stored(self, job_id: str) -> JobRecord | None:
        """The job as the database holds it now: the pending record kept while nothing was
        committed since it was read (only writer) or while its version is still the stored
        one, else the row read afresh."""
        mark = self._sole.mark()  # before any read
        kept = self.pending.get(job_id)
        if kept is not None:
            record, seen = kept
            if self._sole.unchanged_since(seen):
                return record
            version = self._version_of.first({"job_id": job_id})
            if version is not None and version[0] == record.version:
                if mark is not None:
                    self.pending.keep(record, mark)
                return record
        row = self._by_id.first({"job_id": job_id})
        job = JobRecord.from_row(row) if row is not None else None
        if job is None:
            self.pending.drop(job_id)
        elif job.state.is_final:
            self.final.keep([job])
            self.pending.drop(job_id)
        else:
            self.pending.keep(job, mark)
        return job

    def get_jobs(self, client_id: str, ids: Sequence[str]) -> list[JobRecord]:
        """The tenant's jobs among ``ids``, in the order asked (unknown ids left out)."""
        by_id = {job.id: job for job in map(self.final.get, ids) if job is not None}
        missing = [i for i in ids if i not in by_id]
        if missing:
            with self._db.reader.connect() as conn:
                rows = conn.execute(_JOBS_OF_CLIENT, {"client_id": client_id, "ids": missing})
                read = [JobRecord.from_row(row) for row in rows]
            self.final.keep(read)
            by_id.update((job.id, job) for job in read)
        # a job kept in memory may be another tenant's: never theirs to see
        return [
            job for job in map(by_id.get, ids) if job is not None and job.client_id == client_id
        ]

    def list_jobs(
        self, client_id: str, *, states: Iterable[str] | None, limit: int, before_seq: int | None
    ) -> list[JobRecord]:
        """A page of the tenant's jobs, newest first."""
        query = select(jobs).where(jobs.c.client_id == client_id)
        if states is not None:
            query = query.where(jobs.c.state.in_(list(states)))
        if before_seq is not None:
            query = query.where(jobs.c.seq < before_seq)
        query = query.order_by(jobs.c.seq.desc()).limit(limit)
        with self._db.reader.connect() as conn:
            return [JobRecord.from_row(r) for r in conn.execute(query)]

    def next_due_at(self, *, owner: str | None = None, now: float = 0.0) -> float | None:
        """When the next processing attempt ends; with ``owner`` (an instance), the next one it
        may end (``leases.ENDED_BY``): its own, and those of instances whose lease had passed
        at ``now``."""
        query = _NEXT_END if owner is None else _NEXT_END_OWNED
        with self._db.reader.connect() as conn:
            return conn.execute(query, {"owner": owner, "now": now}).scalar()

    def count_running(self, owner: str | None) -> int:
        """How many jobs ``owner`` (an instance) is processing: the worker slots it holds."""
        with self._db.reader.connect() as conn:
            return int(conn.execute(_RUNNING_COUNT, {"owner": owner}).scalar_one())

    def count_in_state(self, state: State) -> int:
        """How many jobs are in ``state``."""
        with self._db.reader.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(jobs).where(jobs.c.state == state.value)
                ).scalar_one()
            )

    def counts_by_state(self) -> dict[str, int]:
        """Jobs per internal state (every state present, zeros included)."""
        with self._db.reader.connect() as conn:
            rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
        counts = {s.value: 0 for s in State}
        counts.update({state: int(n) for state, n in rows})
        return counts

    def queue_ahead(self, job: JobRecord) -> int:
        """Queued jobs that a worker slot will take before this one."""
        ahead = or_(
            jobs.c.priority > job.priority,
            and_(jobs.c.priority == job.priority, jobs.c.seq < job.seq),
        )
        with self._db.reader.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(jobs)
                    .where(jobs.c.state == State.QUEUED.value, ahead)
                ).scalar_one()
            )

    def queue_view(self, *, limit: int, slots: int) -> QueueView:
        """The first ``limit`` queued jobs and the ``slots`` soonest-free busy slots.

        Read in one transaction, so the parts agree.
        """
        with self._db.engine.connect() as conn:
            queued = [(-p, seq) for p, seq in conn.execute(_QUEUED_KEYS, {"limit": limit})]
            ends = [float(v) for v in conn.execute(_SLOT_ENDS, {"slots": slots}).scalars()]
            processing = int(conn.execute(_PROCESSING_COUNT).scalar_one())
        return QueueView(
            queued=queued, complete=len(queued) < limit, slot_ends=ends, processing=processing
        )
