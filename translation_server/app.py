"""The application factory: settings in, a Flask app with its runtime out (flaskr style)."""

from __future__ import annotations

import logging

from flask import Flask

from client_lib.wire import MAX_BODY_BYTES
from service_common.observe import RequestObserver, RoutedRequest
from service_common.problems import register_error_handlers

from . import api, dashboard, openapi, ops, tenants
from .config import Settings
from .runtime import EXTENSION, Runtime

access_log = logging.getLogger("translation_server.access")


def create_app(settings: Settings | None = None, *, start: bool = True) -> Flask:
    """Build the app: defaults, then the given settings, then blueprints and middleware."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.request_class = RoutedRequest  # the route label for RequestObserver
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    runtime = Runtime(settings)
    app.extensions[EXTENSION] = runtime
    register_error_handlers(app, "server")
    app.register_blueprint(api.bp)
    app.register_blueprint(tenants.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(dashboard.page_bp)
    app.register_blueprint(dashboard.api_bp)
    app.wsgi_app = RequestObserver(  # type: ignore[method-assign]
        app.wsgi_app, runtime.metrics.observe_request, access_log
    )
    if start:
        runtime.start()
    return app
