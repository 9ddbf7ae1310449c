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
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Select, case, func, select

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


def _scoped(query: Select[Any], column: Any, client_id: str | None) -> Select[Any]:
    return query if client_id is None else query.where(column == client_id)


def _job_rows(
    conn: Connection, client_id: str | None, states: Sequence[str], order: Iterable[Any], limit: int
) -> list[JobRecord]:
    query = _scoped(select(jobs).where(jobs.c.state.in_(list(states))), jobs.c.client_id, client_id)
    return [JobRecord.from_row(r) for r in conn.execute(query.order_by(*order).limit(limit))]


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
    ) -> dict[str, Any]:
        """The dashboard's answer: summary figures, the three job lists, the clients."""
        scope = viewer.client_id or client_id
        wanted = set(states_for_status(status)) if status is not None else None

        def lists(states: Sequence[str]) -> Sequence[str]:
            return [s for s in states if wanted is None or s in wanted]

        completed_order = (jobs.c.finished_at.desc(), jobs.c.seq.desc())
        active_order = (
            case((jobs.c.state == State.PROCESSING.value, 0), else_=1),
            jobs.c.started_at,
            jobs.c.priority.desc(),
            jobs.c.seq,
        )
        with self._rt.db.engine.connect() as conn:
            active = _job_rows(conn, scope, lists(ACTIVE), active_order, limit)
            completed = _job_rows(
                conn, scope, lists((State.COMPLETED.value,)), completed_order, limit
            )
            failed = _job_rows(conn, scope, lists(FAILED), completed_order, limit)
            summary = self._summary(conn, scope, now)
            webhooks = self._latest_webhooks(conn, [j.id for j in (*active, *completed, *failed)])
        if viewer.client is not None:
            names = {viewer.client.id: viewer.client.name}
        else:
            names = {c.id: c.name for c in self.clients()}

        def render(records: list[JobRecord]) -> list[dict[str, Any]]:
            return [
                self.render(j, now, names.get(j.client_id), webhooks.get(j.id)) for j in records
            ]

        body: dict[str, Any] = {
            "viewer": viewer.describe(),
            "generated_at": format_time(now),
            "summary": summary,
            "active": render(active),
            "completed": render(completed),
            "failed": render(failed),
        }
        if viewer.is_admin:
            body["clients"] = [{"id": cid, "name": name} for cid, name in names.items()]
        return body

    def render(
        self,
        job: JobRecord,
        now: float,
        client_name: str | None,
        webhook: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """A job as the dashboard shows it: the job resource and where it stands."""
        estimate = self._rt.estimator.estimate(job, now)
        body = render_job(job, estimate)
        position = start = None
        if job.state is State.QUEUED:
            position = self._queue_position(job)
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
        by_state = {s.value: 0 for s in State}
        counted = select(jobs.c.state, func.count()).group_by(jobs.c.state)
        for state, n in conn.execute(_scoped(counted, jobs.c.client_id, client_id)):
            by_state[state] = int(n)
        ended = select(func.count()).select_from(jobs).where(jobs.c.finished_at >= now - RECENT_S)
        recent = int(conn.execute(_scoped(ended, jobs.c.client_id, client_id)).scalar_one())
        deliveries = (
            select(webhook_events.c.state, func.count())
            .where(webhook_events.c.created_at >= now - WEBHOOK_WINDOW_S)
            .group_by(webhook_events.c.state)
        )
        hooks: dict[str, int] = {
            state: int(n)
            for state, n in conn.execute(_scoped(deliveries, webhook_events.c.client_id, client_id))
        }
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
        rows = conn.execute(
            select(
                webhook_events.c.job_id,
                webhook_events.c.id,
                webhook_events.c.state,
                webhook_events.c.attempts,
            )
            .where(webhook_events.c.job_id.in_(job_ids))
            .order_by(webhook_events.c.created_at)
        )
        return {
            job_id: {"webhook_id": event_id, "state": state, "attempts": attempts}
            for job_id, event_id, state, attempts in rows
        }
