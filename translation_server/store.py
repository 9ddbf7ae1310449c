"""The job store: the only code that writes a job's state.

Every state change is an UPDATE guarded by ``states.TRANSITIONS``; a final state and its
webhook outbox row (numbered for the endpoint's channel, when it has one) are written in one
transaction ("persist, then notify"). How a processing attempt ends is the simulation's rule,
handed to ``finish_due``; jobs are read through ``reads.JobReads``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Update, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from client_lib.models import EventType

from .db import Database
from .estimator import estimated_progress
from .leases import ENDED_BY
from .reads import job_by_id
from .records import JobRecord, NewJob, new_id
from .resources import webhook_body
from .schema import channel_events, channels, idempotency_keys, jobs, webhook_events
from .states import InvalidTransition, State, sources_of

log = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW_S = 24 * 3600
# Processing attempts ended per transaction by finish_due.
FINISH_BATCH = 500

_JOBS_BY_IDS = select(jobs).where(jobs.c.id.in_(bindparam("ids", expanding=True)))
# an endpoint's next ``b_n`` sequence numbers (``_number_channel_events``)
_NEXT_SEQS = (
    update(channels)
    .where(
        channels.c.client_id == bindparam("b_client"), channels.c.callback_url == bindparam("b_url")
    )
    .values(last_seq=channels.c.last_seq + bindparam("b_n"), last_event_at=bindparam("b_at"))
    .returning(channels.c.last_seq)
)
_ANY_QUEUED = select(jobs.c.id).where(jobs.c.state == State.QUEUED.value).limit(1)
_DUE_FOR_UPDATE = (
    select(jobs)
    .where(jobs.c.state == State.PROCESSING.value, jobs.c.due_at <= bindparam("now"), ENDED_BY)
    .order_by(jobs.c.due_at)
    .limit(bindparam("batch"))
    .with_for_update(skip_locked=True, of=jobs)
)


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with another request body."""


# How a processing attempt ends: (the target state, the columns it sets); see simulation.py.
AttemptEnd = Callable[[JobRecord, float], tuple[State, dict[str, Any]]]
# What happens to a job's webhook: (mode, seconds to hold it back); see Simulator.webhook_fault.
WebhookFault = Callable[[JobRecord], tuple[str, float]]


def _no_fault(job: JobRecord) -> tuple[str, float]:
    return job.webhook_mode or "deliver", 0.0


def final_values(
    now: float, *, progress: float, result: dict[str, Any] | None, error: dict[str, Any] | None
) -> dict[str, Any]:
    """The columns a job entering a final state sets."""
    return {
        "finished_at": now,
        "due_at": None,
        "progress": progress,
        "result": result,
        "error": error,
    }


def _column_value(value: Any) -> Any:
    """A value as its column stores it (the JSON columns as text)."""
    return json.dumps(value) if isinstance(value, dict) else value


def _outbox_row(final: JobRecord, now: float, fault: WebhookFault) -> dict[str, Any] | None:
    """The webhook outbox row announcing a final job; None when it has no callback."""
    if not final.callback_url:
        return None
    event_type = EventType.for_status(final.state.status)
    body = webhook_body(final, event_type, now)
    mode, delay = fault(final)
    return {
        "id": new_id("msg"),
        "job_id": final.id,
        "client_id": final.client_id,
        "type": event_type.value,
        "callback_url": final.callback_url,
        "payload": body,
        "mode": mode,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now + delay,
        "created_at": now,
    }


def _open_channel(conn: Connection, client_id: str, callback_url: str, now: float) -> None:
    """Subscribe an endpoint to channel events (a no-op when it already is)."""
    dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
    conn.execute(
        dialect_insert(channels)
        .values(client_id=client_id, callback_url=callback_url, last_seq=0, created_at=now)
        .on_conflict_do_nothing()
    )


def _number_channel_events(conn: Connection, rows: list[dict[str, Any]], now: float) -> None:
    """Give each outbox row bound for a channel endpoint the endpoint's next sequence number.

    The number goes into the signed body (``"seq"``) and into ``channel_events``; rows for
    endpoints without a channel are left as they are. One UPDATE per endpoint in the batch,
    which locks the endpoint's row until the commit: concurrent writers (other instances) take
    turns, so numbers are never given twice or skipped; endpoints go in sorted order, so two
    writers never wait on each other's rows.
    """
    by_endpoint: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_endpoint.setdefault((row["client_id"], row["callback_url"]), []).append(row)
    links = []
    for (client_id, url), group in sorted(by_endpoint.items(), key=lambda item: item[0]):
        last = conn.execute(
            _NEXT_SEQS, {"b_client": client_id, "b_url": url, "b_n": len(group), "b_at": now}
        ).scalar()
        if last is None:
            continue
        for seq, row in enumerate(group, start=last - len(group) + 1):
            body = json.loads(row["payload"])
            numbered = {"type": body["type"], "timestamp": body["timestamp"], "seq": seq}
            row["payload"] = json.dumps({**numbered, "data": body["data"]}, separators=(",", ":"))
            links.append(
                {
                    "client_id": client_id,
                    "callback_url": url,
                    "seq": seq,
                    "event_id": row["id"],
                    "job_id": row["job_id"],
                    "created_at": now,
                }
            )
    if links:
        conn.execute(insert(channel_events), links)


def _announce(conn: Connection, finals: list[JobRecord], now: float, fault: WebhookFault) -> None:
    """Queue the webhooks of jobs that just became final, in the caller's transaction."""
    rows = [row for row in (_outbox_row(job, now, fault) for job in finals) if row is not None]
    if rows:
        _number_channel_events(conn, rows, now)
        conn.execute(insert(webhook_events), rows)


@functools.lru_cache(maxsize=64)
def _transition_statement(target: State, names: tuple[str, ...]) -> Update:
    """The executemany UPDATE of ``Store._transition_many``, built once per target and columns."""
    return (
        update(jobs)
        # the guard spelled out (an IN list would be an expanding parameter, which an
        # executemany cannot take)
        .where(
            jobs.c.id == bindparam("b_id"),
            or_(*(jobs.c.state == source for source in sources_of(target))),
        )
        .values(
            state=target.value,
            version=jobs.c.version + 1,
            **{name: bindparam(f"b_{name}") for name in names},
        )
    )


class Store:
    """Every write of jobs the server makes."""

    def __init__(self, database: Database, *, owner: str | None = None) -> None:
        self._db = database
        self.owner = owner  # this instance's id: the jobs it starts are its to end
        self._change_counter = itertools.count(1)
        self.queue_version = 0

    def _moved(self) -> None:
        """Note, after its commit, a write that changed (or created) jobs.

        Readers that keep a view of the queue (the estimator) compare ``queue_version``: it
        only grows. Writes by other server instances are not seen here: such views age out.
        """
        self.queue_version = next(self._change_counter)

    def create_job(
        self,
        new: NewJob,
        *,
        now: float,
        idempotency: tuple[str, str] | None = None,
        channel: bool = False,
    ) -> tuple[JobRecord, bool]:
        """Insert a job; with (key, request hash) a repeat returns the first job and False.

        ``channel``: the job's callback endpoint asks for channel events (see ``channel.py``).
        """
        try:
            return self._create_job(new, now=now, idempotency=idempotency, channel=channel)
        except IntegrityError:
            # A concurrent request with the same key won the race: answer as a repeat.
            if idempotency is None:
                raise
            return self._create_job(new, now=now, idempotency=idempotency, channel=channel)

    def _create_job(
        self, new: NewJob, *, now: float, idempotency: tuple[str, str] | None, channel: bool
    ) -> tuple[JobRecord, bool]:
        with self._db.writer.begin() as conn:
            if channel and new.callback_url:
                _open_channel(conn, new.client_id, new.callback_url, now)
            if idempotency is not None:
                existing = self._idempotent_replay(conn, new.client_id, idempotency, now)
                if existing is not None:
                    return existing, False
            values = dataclasses.asdict(new)
            values.update(
                id=new_id("job"),
                state=State.QUEUED.value,
                created_at=now,
                metadata=json.dumps(new.metadata, separators=(",", ":")),
                attempts=0,
                version=1,
            )
            conn.execute(insert(jobs).values(**values))
            if idempotency is not None:
                conn.execute(
                    insert(idempotency_keys).values(
                        client_id=new.client_id,
                        key=idempotency[0],
                        request_hash=idempotency[1],
                        job_id=values["id"],
                        created_at=now,
                    )
                )
            record = job_by_id(conn, values["id"])
        assert record is not None
        self._moved()
        log.info(
            "%s created priority=%s duration=%.3fs", record.id, record.priority, record.duration_s
        )
        return record, True

    def _idempotent_replay(
        self, conn: Connection, client_id: str, idempotency: tuple[str, str], now: float
    ) -> JobRecord | None:
        key, request_hash = idempotency
        where = and_(idempotency_keys.c.client_id == client_id, idempotency_keys.c.key == key)
        row = conn.execute(select(idempotency_keys).where(where)).first()
        if row is None:
            return None
        if row.created_at < now - IDEMPOTENCY_WINDOW_S:
            conn.execute(idempotency_keys.delete().where(where))
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict(key)
        return job_by_id(conn, row.job_id)

    def cancel(self, job_id: str, *, now: float, fault: WebhookFault = _no_fault) -> JobRecord:
        """Cancel a pending job; raises InvalidTransition when it is already final."""
        with self._db.writer.begin() as conn:
            job = job_by_id(conn, job_id)
            if job is None:
                raise KeyError(job_id)
            progress = estimated_progress(job, now)
            values = final_values(now, progress=progress, result=None, error=None)
            final = self._transition(conn, job, State.CANCELLED, values)
            _announce(conn, [final], now, fault)
        self._moved()
        return final

    def claim(self, *, now: float, limit: int) -> list[JobRecord]:
        """Start up to ``limit`` queued jobs, most urgent then oldest first."""
        if limit <= 0:
            return []
        with self._db.reader.connect() as conn:
            if conn.execute(_ANY_QUEUED).first() is None:
                return []  # no write transaction (nor the writer's turn) for an empty queue
        with self._db.writer.begin() as conn:
            ids = (
                conn.execute(
                    select(jobs.c.id)
                    .where(jobs.c.state == State.QUEUED.value)
                    .order_by(jobs.c.priority.desc(), jobs.c.seq)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            if not ids:
                return []
            rows = conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(ids), jobs.c.state.in_(sources_of(State.PROCESSING)))
                .values(
                    state=State.PROCESSING.value,
                    owner=self.owner,
                    started_at=now,
                    due_at=now + jobs.c.duration_s,
                    attempts=jobs.c.attempts + 1,
                    version=jobs.c.version + 1,
                )
                .returning(*jobs.c)
            ).all()
        self._moved()
        # RETURNING gives no order: hand the jobs out in the order they were chosen
        started = sorted((JobRecord.from_row(r) for r in rows), key=lambda j: (-j.priority, j.seq))
        for job in started:
            log.info("%s queued -> processing attempt=%d", job.id, job.attempts)
        return started

    def finish_due(
        self,
        *,
        now: float,
        end: AttemptEnd,
        fault: WebhookFault = _no_fault,
        batch: int = FINISH_BATCH,
    ) -> list[JobRecord]:
        """End every processing attempt that is due, as ``end`` says; returns the jobs changed.

        A batch costs a few statements however many jobs it ends: one guarded UPDATE (an
        executemany) and one read-back per target state, one INSERT of all the outbox rows.
        """
        with self._db.writer.begin() as conn:
            due = [
                JobRecord.from_row(r)
                for r in conn.execute(
                    _DUE_FOR_UPDATE, {"now": now, "batch": batch, "owner": self.owner}
                )
            ]
            groups: dict[State, list[tuple[JobRecord, dict[str, Any]]]] = {}
            for job in due:
                target, values = end(job, now)
                groups.setdefault(target, []).append((job, values))
            moved: dict[str, JobRecord] = {}
            for target, changes in groups.items():
                moved.update((j.id, j) for j in self._transition_many(conn, target, changes))
            # in due order: the seeded fault draws follow the due times, not the grouping
            changed = [moved[job.id] for job in due if job.id in moved]
            _announce(conn, [j for j in changed if j.state.is_final], now, fault)
        if changed:
            self._moved()
        return changed

    def _transition_many(
        self, conn: Connection, target: State, changes: list[tuple[JobRecord, dict[str, Any]]]
    ) -> list[JobRecord]:
        """The guarded UPDATE for many jobs read (and locked) in this transaction.

        Only rows still in a state allowed to enter ``target`` change; the others are left as
        they are and logged. Returns the rows that changed, read back.
        """
        names = tuple(sorted(changes[0][1]))
        conn.execute(
            _transition_statement(target, names),
            [
                {"b_id": job.id, **{f"b_{n}": _column_value(values[n]) for n in names}}
                for job, values in changes
            ],
        )
        before = {job.id: job for job, _ in changes}
        rows = conn.execute(_JOBS_BY_IDS, {"ids": list(before)}).all()
        after = {r.id: JobRecord.from_row(r) for r in rows}
        out = []
        for job, _ in changes:
            new = after.get(job.id)
            if new is None or new.state is not target or new.version != job.version + 1:
                log.warning("%s left in %s: not moved to %s", job.id, job.state, target)
                continue
            log.info("%s %s -> %s attempt=%d", job.id, job.state, target, job.attempts)
            out.append(new)
        return out

    def _transition(
        self, conn: Connection, job: JobRecord, target: State, values: dict[str, Any]
    ) -> JobRecord:
        """The guarded UPDATE: no row changed means the transition is illegal."""
        columns = {name: _column_value(value) for name, value in values.items()}
        row = conn.execute(
            update(jobs)
            .where(jobs.c.id == job.id, jobs.c.state.in_(sources_of(target)))
            .values(state=target.value, version=jobs.c.version + 1, **columns)
            .returning(*jobs.c)
        ).first()
        if row is None:
            current = job_by_id(conn, job.id)
            raise InvalidTransition(job.id, current.state if current else job.state, target)
        log.info("%s %s -> %s attempt=%d", job.id, job.state, target, job.attempts)
        return JobRecord.from_row(row)
