"""HTTP conventions of the wire contract, shared by both services and the client.

Problem details (RFC 9457: the one shape of every error), the request-id rule, and
``Retry-After``. Standard library only: the services import it without the client.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import sys
from typing import Any

PROBLEM_BASE = "https://docs.vt.local/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# the ``code`` of an error raised by the web framework itself rather than by our code
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

# A caller's X-Request-ID is echoed only if it is short and plain (it goes into log lines).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Fresh request ids: unique, not secret (they correlate an answer with its log lines), so they
# come from a generator seeded once from the OS. ``secrets`` would make a getrandom() call per
# request, and every such call lets another request thread take the GIL mid-request.
_fresh_ids = random.Random()
MAX_RETRY_AFTER_S = 24 * 3600
MAX_BODY_BYTES = 64 * 1024  # a request body larger than this is 413, on either service
MAX_HEADER_BYTES = 32 * 1024


class APIProblem(Exception):
    """An error answer: raise it anywhere in a request and the service renders it."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def invalid(field: str, message: str, code: str = "validation_error") -> APIProblem:
    """A 422 naming the offending field (``detail`` starts with it, ``field`` holds it)."""
    return APIProblem(422, code, f"{field}: {message}", field=field)


def problem_body(
    status: int, code: str, detail: str, request_id: str | None, **extra: Any
) -> dict[str, Any]:
    """The problem+json document of an error answer."""
    return {
        "type": PROBLEM_BASE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
        **extra,
    }


def request_id(given: str | None) -> str:
    """The id of a request: the caller's ``X-Request-ID`` when plain, else a fresh one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return f"{_fresh_ids.getrandbits(128):032x}"


def retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) in seconds from ``now``, capped at a day;
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)


MAX_JSON_DEPTH = 32


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as infinity: refused like Infinity itself
        raise ValueError(f"{text[:40]} is out of range for a number")
    return value


def loads_strict(raw: str | bytes) -> Any:
    """JSON as RFC 8259 has it: finite numbers only (no NaN, Infinity or 1e400) and at most
    32 levels of nesting; ValueError otherwise (never a RecursionError). An unpaired
    surrogate (``"\\ud800"``) is left to the field that holds it (``fields.Field``)."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError as exc:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep") from exc
    level, depth = [value], 0
    while level := [item for item in level if isinstance(item, dict | list)]:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        level = [c for item in level for c in (item.values() if isinstance(item, dict) else item)]
    return value


def dumps_strict(value: Any, **options: Any) -> str:
    """JSON text of ``value``; ValueError rather than ``NaN`` or ``Infinity`` in the output."""
    return json.dumps(value, allow_nan=False, **options)


def printable(text: str) -> str:
    """Text safe for a log line: control characters escaped, so nothing forges a line."""
    return text if text.isprintable() else repr(text)[1:-1]


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogLineFormatter(logging.Formatter):
    """Both services' log format: a record's message with its control characters escaped,
    whatever a caller sent; a traceback keeps its lines, each indented and escaped, so no
    line but a record's first starts at the margin."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("    " + printable(line) for line in text.splitlines())


def configure_logging(level: str) -> None:
    """Log to stderr in ``LOG_FORMAT``, every line escaped (``LogLineFormatter``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogLineFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
