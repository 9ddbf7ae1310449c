"""The receiver's JSON routes: webhooks in, the change feed out, health and metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from .feed import FeedBusy
from .problems import APIProblem, invalid, problem_response
from .receiver import get_receiver
from .store import ID_LENGTH

bp = Blueprint("api", __name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


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
    after = _cursor(request.args.get("after"), receiver.store.last_cursor)
    job_id = _job_id(request.args.get("job_id"))
    limit = _int_in("limit", request.args.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT)
    wait = _wait(request.args.get("wait"), receiver.settings.max_wait_s)
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


def _cursor(value: str | None, latest: Callable[[], int]) -> int:
    """``after``: a cursor we returned, empty for the beginning, or ``latest`` for "from now"."""
    if value is None or value == "":
        return 0
    if value == "latest":
        return latest()
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise invalid("after", "not a cursor this feed returned")
    return int(value)


def _job_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not 0 < len(value) <= ID_LENGTH:
        raise invalid("job_id", f"must be 1 to {ID_LENGTH} characters")
    return value


def _int_in(field: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise invalid(field, f"must be an integer from {low} to {high}")
    return number


def _wait(value: str | None, max_wait: float) -> float:
    if value is None or value == "":
        return 0.0
    number: Any
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= max_wait:  # also false for nan
        raise invalid("wait", f"must be a number of seconds from 0 to {max_wait:g}")
    return float(number)
