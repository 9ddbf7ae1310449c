"""``create_app(settings)``: the receiver's Flask app (flaskr-style factory)."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from client_lib.wire import MAX_BODY_BYTES, printable, request_id

from . import api, feed_auth, openapi, page
from .config import Settings
from .problems import register_error_handlers
from .receiver import EXTENSION_KEY, Receiver, get_receiver

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """A receiver app with its own store, feed and metrics; call ``close_app`` when done."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions[EXTENSION_KEY] = Receiver.build(settings)
    feed_auth.install(app, settings)
    register_error_handlers(app)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(openapi.bp)
    return app


def close_app(app: Flask) -> None:
    """Release the app's long-polls and database connections."""
    get_receiver(app).close()


def _start_request() -> None:
    g.request_id = request_id(request.headers.get("X-Request-ID"))
    g.started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    rid = g.get("request_id") or request_id(None)
    response.headers["X-Request-ID"] = rid
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
        printable(request.path),  # a %0A must not start a log line of its own
        response.status_code,
        elapsed * 1000,
        rid,
    )
    return response
