"""Every error a service answers as problem details (``client_lib.wire``), Werkzeug's and
unexpected ones included; and the app's JSON, strict in every answer."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from client_lib.wire import PROBLEM_CONTENT_TYPE, STATUS_CODES, TITLES, APIProblem, problem_body

from .observe import request_id

log = logging.getLogger(__name__)


def problem_response(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """Render a problem+json response, naming the current request."""
    body = problem_body(status, code, detail, request_id(), **extra)
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM_CONTENT_TYPE)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


class StrictJSON(DefaultJSONProvider):
    """Flask's JSON in the contract's order, refusing NaN and Infinity (a 500, never invalid
    JSON in an answer)."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return super().dumps(obj, allow_nan=False, **kwargs)


def register_error_handlers(app: Flask, service: str, not_found: str | None = None) -> None:
    """Make every error, including Werkzeug's and unexpected ones, a problem+json answer, and
    every JSON answer strict. ``service`` names it in a 500's detail; ``not_found`` replaces
    Werkzeug's 404 text."""
    app.json = StrictJSON(app)

    @app.errorhandler(APIProblem)
    def _api_problem(exc: APIProblem) -> Response:
        return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = exc.description or TITLES.get(status, "error")
        if status == 413:
            detail = f"request body exceeds {app.config['MAX_CONTENT_LENGTH']} bytes"
        elif status == 404 and not_found:
            detail = not_found
        allowed = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return problem_response(
            status, STATUS_CODES.get(status, "http_error"), detail, headers=headers
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The boundary of last resort: should never run; never leaks details to the caller.
        log.error("unhandled error request_id=%s", request_id(), exc_info=exc)
        return problem_response(
            500,
            "internal_error",
            f"the {service} failed to handle this request; it has been logged",
        )
