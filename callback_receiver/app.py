"""``create_app(settings)``: the receiver's Flask app (flaskr-style factory)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from . import api, page
from .config import Settings
from .problems import register_error_handlers
from .receiver import EXTENSION_KEY, Receiver, get_receiver

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# A caller's X-Request-ID is echoed only if it is short and plain (it goes into log lines).
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def create_app(settings: Settings | None = None) -> Flask:
    """A receiver app with its own store, feed and metrics; call ``close_app`` when done."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions[EXTENSION_KEY] = Receiver.build(settings)
    register_error_handlers(app)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)
    return app


def close_app(app: Flask) -> None:
    """Release the app's long-polls and database connections."""
    get_receiver(app).close()


def _start_request() -> None:
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers["X-Request-ID"] = request_id
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    # The rule, not the path, labels metrics: unknown paths must not grow the label set.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics = get_receiver().metrics
    metrics.requests.labels(route=route, status=str(response.status_code)).inc()
    metrics.latency.labels(route=route).observe(elapsed)
    log.info(
        "%s %s %d %.1fms request_id=%s",
        request.method,
        request.path,
        response.status_code,
        elapsed * 1000,
        request_id,
    )
    return response
