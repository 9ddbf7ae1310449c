"""Every error the receiver answers as problem details (``client_lib.wire``), Werkzeug's and
unexpected ones included; and the app's JSON, strict in every answer."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, g, json
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from client_lib.wire import (
    PROBLEM_CONTENT_TYPE,
    STATUS_CODES,
    TITLES,
    APIProblem,
    invalid,
    problem_body,
)

log = logging.getLogger(__name__)


def problem_response(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """Render a problem+json response."""
    body = problem_body(status, code, detail, g.get("request_id"), **extra)
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM_CONTENT_TYPE)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    detail = exc.description or TITLES.get(status, "error")
    if status == 413:
        detail = f"request body exceeds {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    elif status == 404:
        detail = "no such resource on the callback receiver"
    methods = getattr(exc, "valid_methods", None)
    headers = {"Allow": ", ".join(methods)} if methods else None
    return problem_response(status, STATUS_CODES.get(status, "http_error"), detail, headers=headers)


class StrictJSON(DefaultJSONProvider):
    """Flask's JSON, refusing NaN and Infinity (a 500, never invalid JSON in an answer)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return super().dumps(obj, allow_nan=False, **kwargs)


def register_error_handlers(app: Flask) -> None:
    """Make every error, including Werkzeug's and unexpected ones, a problem+json answer, and
    every JSON answer strict."""
    app.json = StrictJSON(app)

    @app.errorhandler(APIProblem)
    def _api_problem(exc: APIProblem) -> Response:
        return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers, **exc.extra)

    app.register_error_handler(HTTPException, _http_exception)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The boundary of last resort: should never run; never leaks details to the caller.
        log.error("unhandled error request_id=%s", g.get("request_id"), exc_info=exc)
        return problem_response(
            500, "internal_error", "the receiver failed to handle this request; it has been logged"
        )


__all__ = ["APIProblem", "invalid", "problem_response", "register_error_handlers"]
