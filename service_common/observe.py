"""Request ids, the access log and request metrics: one WSGI middleware around a Flask app.

Every request passes through it, so it is written for the hot path: it reads the WSGI environ
directly, adds its headers in ``start_response`` and costs no Flask hook dispatch or context
lookup. Code inside the app finds the request id with ``request_id()``; the app's request
class, ``RoutedRequest``, tells the middleware which route answered (the metrics' label).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Request, request
from werkzeug.routing import Rule

from client_lib.wire import printable
from client_lib.wire import request_id as accepted_request_id

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REQUEST_ID_KEY = "vt.request_id"
ROUTE_KEY = "vt.route"
UNMATCHED_ROUTE = "<unmatched>"
# (method, route, status, seconds): a service's request metrics
ObserveRequest = Callable[[str, str, int, float], None]


def request_id() -> str | None:
    """The current request's id (inside a request through ``RequestObserver``), else None."""
    return request.environ.get(REQUEST_ID_KEY) if request else None


class RoutedRequest(Request):
    """Flask's request, which leaves its matched URL rule where the middleware reads it.

    Flask sets ``url_rule`` once, when routing matches; doing the work there costs nothing
    per request that a ``before_request`` hook (dispatch, coroutine check) would.
    """

    _rule: Rule | None = None

    @property  # type: ignore[override]
    def url_rule(self) -> Rule | None:
        return self._rule

    @url_rule.setter
    def url_rule(self, rule: Rule | None) -> None:
        self._rule = rule
        if rule is not None:
            self.environ[ROUTE_KEY] = rule.rule


class RequestObserver:
    """Give each request an id (the caller's ``X-Request-ID`` when sane), echo it in the
    answer with ``X-Content-Type-Options: nosniff``, count the request by route and status
    with its latency, and log one line to ``access_log``."""

    def __init__(
        self, app: WSGIApplication, observe: ObserveRequest, access_log: logging.Logger
    ) -> None:
        self._app = app
        self._observe = observe
        self._log = access_log

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = accepted_request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_KEY] = rid
        status_line = "500"

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status_line
            status_line = status
            headers.append(("X-Request-ID", rid))
            if not any(name.lower() == "x-content-type-options" for name, _ in headers):
                headers.append(("X-Content-Type-Options", "nosniff"))
            return start_response(status, headers, exc_info)

        try:
            body = self._app(environ, start)
        except BaseException:  # Flask answers errors itself; this is its own failure: a 500
            self.record(environ, 500, time.perf_counter() - started, rid)
            raise
        # Flask has built the whole answer by now; what remains is waitress sending it (or,
        # for a streamed answer, its first part).
        self.record(environ, int(status_line[:3]), time.perf_counter() - started, rid)
        return body

    def record(self, environ: WSGIEnvironment, status: int, seconds: float, rid: str) -> None:
        """Count the request and write its access-log line."""
        method = environ.get("REQUEST_METHOD", "")
        route = environ.get(ROUTE_KEY, UNMATCHED_ROUTE)
        self._observe(method, route, status, seconds)
        if self._log.isEnabledFor(logging.INFO):
            self._log.info(
                "%s %s %d %.1fms request_id=%s",
                method,
                # WSGI hands the path over as latin-1 text of the raw bytes: show it as UTF-8,
                # control characters escaped (a %0A must not start a log line of its own)
                printable(
                    environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
                ),
                status,
                seconds * 1000,
                rid,
            )
