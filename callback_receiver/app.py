"""``create_app(settings)``: the receiver's Flask app (flaskr-style factory)."""

from __future__ import annotations

import logging

from flask import Flask

from client_lib.wire import MAX_BODY_BYTES
from service_common.observe import RequestObserver, RoutedRequest
from service_common.problems import register_error_handlers

from . import api, feed_auth, openapi, page
from .config import Settings
from .receiver import EXTENSION_KEY, Receiver, get_receiver

access_log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """A receiver app with its own store, feed and metrics; call ``close_app`` when done."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.request_class = RoutedRequest  # the route label for RequestObserver
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    receiver = Receiver.build(settings)
    app.extensions[EXTENSION_KEY] = receiver
    feed_auth.install(app, settings)
    register_error_handlers(app, "receiver", "no such resource on the callback receiver")
    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(openapi.bp)
    app.wsgi_app = RequestObserver(  # type: ignore[method-assign]
        app.wsgi_app, receiver.metrics.observe_request, access_log
    )
    return app


def close_app(app: Flask) -> None:
    """Release the app's long-polls and database connections."""
    get_receiver(app).close()
