"""What the dashboard shows: one caller's view of its jobs, the queue and the webhooks.

A view is scoped: an API key sees its own client's jobs and figures only; the admin token
sees every client's, or one client's when it asks. Every read is a SQLAlchemy Core statement
on one connection, so the lists and the figures of one answer agree.

Each answer carries a weak ETag over what changes only when something happens (a job's
state, a queue position, a webhook's delivery state, a figure): progress and estimates move
with the clock and are left out, so an unchanged view polled again is a 304, and the page
moves its progress bars by itself between changes.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Select, bindparam, case, func, select

from client_lib.models import JobStatus, format_time

from ..demo import SYSTEM_CLIENT_ID
from ..records import ClientRecord, JobRecord
from ..resources import render_job
from ..runtime import Runtime
from ..schema import jobs, webhook_events
from ..states import State, states_for_status

RECENT_S = 60.0  # jobs per minute: jobs that ended in this window
WEBHOOK_WINDOW_S = 3600.0  # the webhook success rate: events created in this window
ACTIVE = (State.PROCESSING.value, State.QUEUED.value)
FAILED = (State.ERROR.value, State.CANCELLED.value)
CONCLUDED = ("delivered", "failed", "dropped")
# Fields that move with the clock alone: not part of the tag.
VOLATILE = frozenset({"progress", "estimated_completion_at", "estimated_start_at", "generated_at"})


@dataclasses.dataclass(frozen=True, slots=True)
class View:
    """An answer's tag, and how to render the answer (only when the tag is not held)."""

    tag: str
    build: Callable[[], dict[str, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: a client (its API key), or the operator (``client`` None)."""

    client: ClientRecord | None

    @property
    def client_id(self) -> str | None:
        """The client whose jobs an API key sees; None for the operator."""
        return self.client.id if self.client is not None else None

    @property
    def is_admin(self) -> bool:
        """True for the admin token."""
        return self.client is None

    def describe(self) -> dict[str, Any]:
        """The ``viewer`` object of an answer."""
        if self.client is None:
            return {"role": "admin", "client_id": None, "name": None}
        return {"role": "client", "client_id": self.client.id, "name": self.client.name}


def etag_of(body: Any) -> str:
    """A weak tag of ``body`` without its clock-driven fields."""
    digest = hashlib.blake2b(
        json.dumps(_stable(body), sort_keys=True, separators=(",", ":")).encode(), digest_size=12
    ).hexdigest()
    return f'W/"{digest}"'


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


# Statements built once per shape (constructing a Core statement and its cache key costs
# more than SQLite running it); the client, the limit and the windows are bound parameters.
_ORDERS = {
    "active": (
        case((jobs.c.state == State.PROCESSING.value, 0), else_=1),
        jobs.c.started_at,
        jobs.c.priority.desc(),
        jobs.c.seq,
    ),
    "ended": (jobs.c.finished_at.desc(), jobs.c.seq.desc()),
}
_LATEST_WEBHOOKS = (
    select(
        webhook_events.c.job_id,
        webhook_events.c.id,
        webhook_events.c.state,
        webhook_events.c.attempts,
    )
    .where(webhook_events.c.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(webhook_events.c.created_at)
)


def _scoped(query: Select[Any], column: Any, scoped: bool) -> Select[Any]:
    return query.where(column == bindparam("client_id")) if scoped else query


@functools.lru_cache(maxsize=64)
def _jobs_query(scoped: bool, states: tuple[str, ...], order: str) -> Select[Any]:
    query = _scoped(select(jobs).where(jobs.c.state.in_(states)), jobs.c.client_id, scoped)
    return query.order_by(*_ORDERS[order]).limit(bindparam("limit"))


@functools.lru_cache(maxsize=2)
def _summary_queries(scoped: bool) -> tuple[Select[Any], Select[Any], Select[Any]]:
    by_state = select(jobs.c.state, func.count()).group_by(jobs.c.state)
    ended = (
        select(func.count()).select_from(jobs).where(jobs.c.finished_at >= bindparam("ended_after"))
    )
    hooks = (
        select(webhook_events.c.state, func.count())
        .where(webhook_events.c.created_at >= bindparam("created_after"))
        .group_by(webhook_events.c.state)
    )
    return (
        _scoped(by_state, jobs.c.client_id, scoped),
        _scoped(ended, jobs.c.client_id, scoped),
        _scoped(hooks, webhook_events.c.client_id, scoped),
    )


def _job_rows(
    conn: Connection, client_id: str | None, states: Sequence[str], order: str, limit: int
) -> list[JobRecord]:
    if not states:
        return []
    query = _jobs_query(client_id is not None, tuple(states), order)
    rows = conn.execute(query, {"client_id": client_id, "limit": limit})
    return [JobRecord.from_row(r) for r in rows]


class Snapshots:
    """Builds the views of ``GET /v1/dashboard`` and ``GET /v1/dashboard/jobs/{job_id}``."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def clients(self) -> list[ClientRecord]:
        """Every tenant an operator sees (not the server's own system client)."""
        return [c for c in self._rt.clients.all() if c.id != SYSTEM_CLIENT_ID]

    def view(
        self,
        viewer: Viewer,
        *,
        client_id: str | None,
        status: JobStatus | None,
        limit: int,
        now: float,
    ) -> View:
        """The dashboard's answer (summary figures, the three job lists, the clients), with
        its tag, worked out before the answer is rendered."""
        scope = viewer.client_id or client_id
        wanted = set(states_for_status(status)) if status is not None else None

        def lists(states: Sequence[str]) -> Sequence[str]:
            return [s for s in states if wanted is None or s in wanted]

        with self._rt.db.engine.connect() as conn:
            active = _job_rows(conn, scope, lists(ACTIVE), "active", limit)
            completed = _job_rows(conn, scope, lists((State.COMPLETED.value,)), "ended", limit)
            failed = _job_rows(conn, scope, lists(FAILED), "ended", limit)
            summary = self._summary(conn, scope, now)
            webhooks = self._latest_webhooks(conn, [j.id for j in (*active, *completed, *failed)])
        if viewer.client is not None:
            names = {viewer.client.id: viewer.client.name}
        else:
            names = {c.id: c.name for c in self.clients()}
        positions = {j.id: self._queue_position(j) for j in active if j.state is State.QUEUED}
        clients = (
            [{"id": cid, "name": name} for cid, name in names.items()] if viewer.is_admin else None
        )
        lists_of = {"active": active, "completed": completed, "failed": failed}
        # What the tag covers, without rendering: a job's stored version stands for every
        # field of it that does not move with the clock.
        stable = [
            viewer.describe(),
            summary,
            clients,
            {
                name: [
                    (j.id, j.version, positions.get(j.id), webhooks.get(j.id), j.client_id)
                    for j in rows
                ]
                for name, rows in lists_of.items()
            },
        ]

        def build() -> dict[str, Any]:
            body: dict[str, Any] = {
                "viewer": viewer.describe(),
                "generated_at": format_time(now),
                "summary": summary,
            }
            for name, rows in lists_of.items():
                body[name] = [
                    self.render(
                        j, now, names.get(j.client_id), webhooks.get(j.id), positions.get(j.id)
                    )
                    for j in rows
                ]
            if clients is not None:
                body["clients"] = clients
            return body

        return View(tag=etag_of(stable), build=build)

    def render(
        self,
        job: JobRecord,
        now: float,
        client_name: str | None,
        webhook: dict[str, Any] | None,
        position: int | None = None,
    ) -> dict[str, Any]:
        """A job as the dashboard shows it: the job resource and where it stands."""
        estimate = self._rt.estimator.estimate(job, now)
        body = render_job(job, estimate)
        start = None
        if job.state is State.QUEUED:
            position = position or self._queue_position(job)
            if estimate is not None:
                start = format_time(max(now, estimate.completion_at - job.estimated_duration))
        return {
            **body,
            "client_id": job.client_id,
            "client_name": client_name or job.client_id,
            "queue_position": position,
            "estimated_start_at": start,
            "webhook": webhook,
        }

    def _queue_position(self, job: JobRecord) -> int:
        """1 for the next job a worker slot takes, counting every client's queued jobs."""
        view = self._rt.estimator.queue_view()
        key = (-job.priority, job.seq)
        if view.complete or key <= view.queued[-1]:
            return bisect.bisect_left(view.queued, key) + 1
        return self._rt.reads.queue_ahead(job) + 1

    def _summary(self, conn: Connection, client_id: str | None, now: float) -> dict[str, Any]:
        by_state_q, ended_q, hooks_q = _summary_queries(client_id is not None)
        scope = {"client_id": client_id}
        by_state = {s.value: 0 for s in State}
        for state, n in conn.execute(by_state_q, scope):
            by_state[state] = int(n)
        ended = conn.execute(ended_q, {**scope, "ended_after": now - RECENT_S}).scalar_one()
        recent = int(ended)
        created = {**scope, "created_after": now - WEBHOOK_WINDOW_S}
        hooks: dict[str, int] = {state: int(n) for state, n in conn.execute(hooks_q, created)}
        concluded = sum(hooks.get(s, 0) for s in CONCLUDED)
        delivered = hooks.get("delivered", 0)
        counts = {s.value: 0 for s in JobStatus}
        for state, n in by_state.items():
            counts[State(state).status.value] += n
        return {
            "queue_depth": by_state[State.QUEUED.value],
            "slots_in_use": by_state[State.PROCESSING.value],
            "workers": self._rt.settings.workers,
            "jobs_per_minute": round(recent * 60.0 / RECENT_S, 1),
            "webhook_success_rate": round(delivered / concluded, 4) if concluded else None,
            "webhooks_concluded": concluded,
            "counts": counts,
        }

    def _latest_webhooks(self, conn: Connection, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each job's newest webhook event: its id, delivery state and attempts."""
        if not job_ids:
            return {}
        rows = conn.execute(_LATEST_WEBHOOKS, {"ids": job_ids})
        return {
            job_id: {"webhook_id": event_id, "state": state, "attempts": attempts}
            for job_id, event_id, state, attempts in rows
        }
