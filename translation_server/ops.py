"""Operational endpoints: liveness and metrics (the front page is the dashboard's)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from client_lib.wire import APIProblem

from .runtime import current_runtime

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, object]:
    """200 when the server runs and its store answers; 503 otherwise."""
    try:
        current_runtime().db.ping()
    except SQLAlchemyError:
        log.warning("health check: store unreachable", exc_info=True)
        raise APIProblem(503, "store_unavailable", "the database does not answer") from None
    return {"status": "ok", "store": "ok"}


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    return Response(current_runtime().metrics.render(), mimetype=CONTENT_TYPE_LATEST)
