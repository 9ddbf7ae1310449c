"""The receiver's JSON routes: webhooks in, the change feed out, health and metrics."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from client_lib.contract import FEED_QUERY
from client_lib.fields import Field

from .config import Settings
from .feed import FeedBusy
from .problems import APIProblem, problem_response
from .receiver import get_receiver

bp = Blueprint("api", __name__)


@bp.post("/webhooks")
def receive_webhook() -> Response:
    """Verify and store one webhook; 204 once it is durable (also for a duplicate)."""
    body = request.get_data(cache=False)
    get_receiver().inbox.receive(body, request.headers)  # type: ignore[arg-type]
    return Response(status=204)


@bp.get("/v1/events")
def list_events() -> Response:
    """The change feed: events after ``after``, waiting up to ``wait`` seconds for one."""
    receiver = get_receiver()
    query = {f.name: f.parse(request.args.get(f.name)) for f in feed_query(receiver.settings)}
    after = receiver.store.last_cursor() if query["after"] == "latest" else int(query["after"] or 0)
    job_id, limit, wait = query["job_id"], query["limit"], query["wait"]
    try:
        found = receiver.feed.poll(
            lambda: receiver.store.events_after(after, job_id=job_id, limit=limit), wait=wait
        )
    except FeedBusy as exc:
        receiver.metrics.waits_refused.inc()
        raise APIProblem(
            503,
            "too_many_waiters",
            f"wait: every long-poll slot is taken ({exc}); retry shortly",
            headers={"Retry-After": "1"},
        ) from exc
    cursor = str(found[-1].seq) if found else str(after)
    page: dict[str, Any] = {"events": [e.to_wire() for e in found], "cursor": cursor}
    now = time.time()
    channels = [c.to_wire(now) for c in receiver.store.channels(now)]
    if channels:  # webhook channels heard from lately (docs/api.md)
        page["channels"] = channels
    return jsonify(page)


@bp.get("/v1/events/<job_id>")
def final_event(job_id: str) -> Response:
    """The final event received for a job, or 404."""
    found = get_receiver().store.final_event(job_id)
    if found is None:
        raise APIProblem(404, "event_not_found", "job_id: no final event received for this job")
    return jsonify(found.to_wire())


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness and database reachability."""
    try:
        get_receiver().store.ping()
    except SQLAlchemyError:
        current_app.logger.warning("health check: database unreachable", exc_info=True)
        return problem_response(
            503, "database_unavailable", "database: unreachable", database="unreachable"
        )
    return jsonify({"status": "ok", "database": "ok"})


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, from this app's own registry."""
    body = generate_latest(get_receiver().metrics.registry)
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)


def feed_query(settings: Settings) -> tuple[Field, ...]:
    """The feed's query fields, ``wait`` bounded by ``--max-wait``."""
    return tuple(
        dataclasses.replace(f, maximum=settings.max_wait_s) if f.name == "wait" else f
        for f in FEED_QUERY
    )
