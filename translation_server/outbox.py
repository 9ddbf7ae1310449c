"""The webhook outbox: leasing due events, recording attempts, redelivery, the delivery log.

Rows are written by the store together with a job's final state; this module moves them
through their delivery states with guarded UPDATEs, like the store does for jobs:

    pending --lease--> sending --2xx--> delivered
       ^                  |---error, retries left--> pending (next_attempt_at from the schedule)
       |                  |---410 / retries exhausted--> failed
       |                  '---fault injection--> dropped
       '------------------ redeliver (from delivered, failed or dropped)

A lease expires (a sender crashed, the process was killed), so a ``sending`` row whose lease
has passed is due again: delivery is at-least-once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, tuple_, update

from .db import Database
from .schema import delivery_attempts, webhook_events

PENDING, SENDING, DELIVERED, FAILED, DROPPED = (
    "pending",
    "sending",
    "delivered",
    "failed",
    "dropped",
)
FINAL_DELIVERY_STATES = (DELIVERED, FAILED, DROPPED)


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One webhook event to send."""

    id: str
    job_id: str
    client_id: str
    type: str
    callback_url: str
    payload: str
    mode: str
    attempts: int
    created_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt did, and what the event becomes."""

    attempted_at: float
    status_code: int | None
    error: str | None
    latency_ms: float | None
    outcome: str  # delivered, retry, failed, gone, dropped
    state: str  # the event's next delivery state
    next_attempt_at: float | None


# chooses, of leasable events, those to send now and those to move later ({id: when})
Admit = Callable[[list["OutboxEvent"]], tuple[list["OutboxEvent"], dict[str, float]]]
# finished leases: each event with the attempts it made
Done = Sequence[tuple["OutboxEvent", list["AttemptResult"]]]

# The statements of the delivery loop, built once: constructing a Core statement per event
# cost more than running it.
_DUE = or_(
    and_(webhook_events.c.state == PENDING, webhook_events.c.next_attempt_at <= bindparam("now")),
    and_(webhook_events.c.state == SENDING, webhook_events.c.lease_until <= bindparam("now")),
)
_DUE_EVENTS = (
    select(*(webhook_events.c[f.name] for f in dataclasses.fields(OutboxEvent)))
    .where(_DUE)
    .where(webhook_events.c.client_id.not_in(bindparam("skip_clients", expanding=True)))
    .where(
        tuple_(webhook_events.c.client_id, webhook_events.c.callback_url).not_in(
            bindparam("skip_endpoints", expanding=True)
        )
    )
    .order_by(webhook_events.c.next_attempt_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_LEASE = (
    update(webhook_events)
    .where(webhook_events.c.id.in_(bindparam("ids", expanding=True)), _DUE)
    .values(state=SENDING, lease_until=bindparam("lease_until"))
)
# executemany: due events that may not be sent yet move to a later time, with no attempt
_DEFER = (
    update(webhook_events)
    .where(webhook_events.c.id == bindparam("b_id"), _DUE)
    .values(state=PENDING, next_attempt_at=bindparam("b_until"), lease_until=None)
)
# executemany: one row per lease; only a row still leased (``sending``) moves on
_RECORD = (
    update(webhook_events)
    .where(webhook_events.c.id == bindparam("b_id"), webhook_events.c.state == SENDING)
    .values(
        state=bindparam("b_state"),
        attempts=webhook_events.c.attempts + bindparam("b_sent"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        lease_until=None,
        finished_at=bindparam("b_finished_at"),
    )
)

_INSERT_ATTEMPTS = insert(delivery_attempts)
_NEXT_PENDING = select(func.min(webhook_events.c.next_attempt_at)).where(
    webhook_events.c.state == PENDING
)
_NEXT_LEASE_END = select(func.min(webhook_events.c.lease_until)).where(
    webhook_events.c.state == SENDING
)


def _record(conn: Connection, done: Done) -> None:
    """Log the attempts of several leases and move their events on (``Outbox.record_many``)."""
    rows = [
        {
            "event_id": event.id,
            "job_id": event.job_id,
            "attempt": n,
            "attempted_at": r.attempted_at,
            "status_code": r.status_code,
            "error": r.error,
            "latency_ms": r.latency_ms,
            "outcome": r.outcome,
            "next_attempt_at": r.next_attempt_at,
        }
        for event, results in done
        for n, r in enumerate(results, start=event.attempts + 1)
    ]
    moves = [
        {
            "b_id": event.id,
            "b_state": results[-1].state,
            "b_sent": len(results),
            "b_next_attempt_at": results[-1].next_attempt_at,
            "b_finished_at": (
                results[-1].attempted_at if results[-1].state in FINAL_DELIVERY_STATES else None
            ),
        }
        for event, results in done
    ]
    conn.execute(_INSERT_ATTEMPTS, rows)
    conn.execute(_RECORD, moves)


class Outbox:
    """Persistence of webhook deliveries."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def lease(
        self,
        *,
        now: float,
        limit: int,
        lease_s: float,
        skip_clients: Collection[str] = (),
        skip_endpoints: Collection[tuple[str, str]] = (),
        admit: Admit | None = None,
        done: Done = (),
    ) -> list[OutboxEvent]:
        """Take up to ``limit`` due events for sending, oldest due first, leaving those of
        ``skip_clients`` and of ``skip_endpoints`` (client, callback URL) unread. ``admit``
        (given up to four times ``limit`` due events) chooses which to send and which to move
        later (``{id: when}``). ``done``: finished attempts recorded first, in the same
        transaction (``record_many``), so a round of the dispatcher costs one commit."""
        if limit <= 0:
            if done:
                self.record_many(done)
            return []
        window = limit * 4 if admit else limit
        skips = {"skip_clients": list(skip_clients), "skip_endpoints": list(skip_endpoints)}
        with self._db.writer.begin() as conn:
            if done:
                _record(conn, done)
            rows = conn.execute(_DUE_EVENTS, {"now": now, "limit": window, **skips}).all()
            events = [OutboxEvent(*r) for r in rows]
            later: dict[str, float] = {}
            if admit is not None:
                events, later = admit(events)  # at most ``limit`` to send
            if later:
                moves = [{"b_id": i, "b_until": t, "now": now} for i, t in later.items()]
                conn.execute(_DEFER, moves)
            if events:
                conn.execute(
                    _LEASE,
                    {"ids": [e.id for e in events], "now": now, "lease_until": now + lease_s},
                )
        return events

    def record_many(self, done: Done) -> None:
        """Log the attempts of several leases, in one transaction."""
        if done:
            with self._db.writer.begin() as conn:
                _record(conn, done)

    def next_due_at(self) -> float | None:
        """When the next pending event or expiring lease is due (two reads, each a snapshot of
        its own: a hint for the dispatcher's timer)."""
        with self._db.reader.connect() as conn:
            pending = conn.execute(_NEXT_PENDING).scalar()
            leased = conn.execute(_NEXT_LEASE_END).scalar()
        times = [t for t in (pending, leased) if t is not None]
        return min(times) if times else None

    def redeliver(self, job_id: str, *, now: float) -> dict[str, Any] | None:
        """Queue a job's latest event again (same webhook-id); None when it has none."""
        with self._db.writer.begin() as conn:
            row = conn.execute(
                select(webhook_events.c.id, webhook_events.c.state)
                .where(webhook_events.c.job_id == job_id)
                .order_by(webhook_events.c.created_at.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            if row.state != SENDING:
                # an explicit redelivery is a real send: fault injection no longer applies
                conn.execute(
                    update(webhook_events)
                    .where(webhook_events.c.id == row.id, webhook_events.c.state != SENDING)
                    .values(
                        state=PENDING,
                        next_attempt_at=now,
                        attempts=0,
                        mode="deliver",
                        finished_at=None,
                    )
                )
        return {"webhook_id": row.id, "previous_state": row.state}

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """Every event of a job with its attempts, oldest first."""
        with self._db.engine.connect() as conn:
            events = (
                conn.execute(
                    select(webhook_events)
                    .where(webhook_events.c.job_id == job_id)
                    .order_by(webhook_events.c.created_at)
                )
                .mappings()
                .all()
            )
            attempts = (
                conn.execute(
                    select(delivery_attempts)
                    .where(delivery_attempts.c.job_id == job_id)
                    .order_by(delivery_attempts.c.seq)
                )
                .mappings()
                .all()
            )
        by_event: dict[str, list[dict[str, Any]]] = {}
        for a in attempts:
            by_event.setdefault(a["event_id"], []).append(dict(a))
        return [{**dict(e), "attempt_log": by_event.get(e["id"], [])} for e in events]
