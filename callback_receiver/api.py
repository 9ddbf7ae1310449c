"""The receiver's JSON routes: webhooks in, the change feed out, health and metrics."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from client_lib.contract import FEED_JOBS_MAX, FEED_QUERY
from client_lib.fields import Field
from client_lib.wire import APIProblem, invalid
from service_common.problems import problem_response

from .config import Settings
from .feed import FeedBusy
from .feed_auth import require_feed_token
from .receiver import get_receiver

bp = Blueprint("api", __name__)
RETRY_AFTER_S = 1  # a parked long-poll ends within --max-wait; most clients re-poll sooner


@bp.post("/webhooks")
def receive_webhook() -> Response:
    """Verify and store one webhook; 204 once it is durable (also for a duplicate)."""
    body = request.get_data(cache=False)
    get_receiver().inbox.receive(body, request.headers)  # type: ignore[arg-type]
    return Response(status=204)


@bp.get("/v1/events")
def list_events() -> Response:
    """The change feed: events after ``after``, waiting up to ``wait`` seconds for one."""
    require_feed_token()
    receiver = get_receiver()
    query = {f.name: f.parse(request.args.get(f.name)) for f in feed_query(receiver.settings)}
    feed = receiver.feed
    after = feed.latest() if query["after"] == "latest" else int(query["after"] or 0)
    try:
        page = feed.read(after, jobs=_jobs(query), limit=query["limit"], wait=query["wait"])
    except FeedBusy as exc:
        receiver.metrics.waits_refused.inc()
        raise APIProblem(
            503,
            "too_many_waiters",
            f"wait: every long-poll slot is taken ({exc}); retry after {RETRY_AFTER_S} s",
            headers={"Retry-After": str(RETRY_AFTER_S)},
            field="wait",
        ) from exc
    cursor = str(page.last_seq) if page.last_seq is not None else str(after)
    body: dict[str, Any] = {"events": page.events, "cursor": cursor}
    if page.channels:  # webhook channels heard from lately (docs/api.md)
        body["channels"] = page.channels
    return jsonify(body)


@bp.get("/v1/events/<job_id>")
def final_event(job_id: str) -> Response:
    """The final event received for a job, or 404."""
    require_feed_token()
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


def _jobs(query: dict[str, Any]) -> frozenset[str] | None:
    """The jobs a feed read is for: ``job_id`` alone, or ``jobs`` and heartbeats (job id "");
    None: every event."""
    if query["job_id"] is not None and query["jobs"] is not None:
        raise invalid("jobs", "give job_id or jobs, not both")
    if query["job_id"] is not None:
        return frozenset([query["job_id"]])
    if query["jobs"] is None:
        return None
    ids = {i.strip() for i in query["jobs"].split(",")} - {""}
    if not ids or len(ids) > FEED_JOBS_MAX:
        raise invalid("jobs", f"must name 1 to {FEED_JOBS_MAX} job ids")
    return frozenset(ids | {""})


def feed_query(settings: Settings) -> tuple[Field, ...]:
    """The feed's query fields, ``wait`` bounded by ``--max-wait``."""
    return tuple(
        dataclasses.replace(f, maximum=settings.max_wait_s) if f.name == "wait" else f
        for f in FEED_QUERY
    )
