"""Validation of request input: every error is a 422 (or 400) that names the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from client_lib.contract import (
    BLANKS,
    CREATE_CLIENT,
    CREATE_JOB,
    IDEMPOTENCY_KEY,
    JOB_ID_PATTERN,
    LIST_QUERY,
    SIMULATE,
)
from client_lib.fields import check_object
from client_lib.models import JobStatus
from client_lib.wire import APIProblem, invalid, loads_strict

CREATE_FIELDS = {f.name for f in CREATE_JOB}
SIMULATE_FIELDS = {f.name for f in SIMULATE}
JOB_ID_RE = re.compile(f"^{JOB_ID_PATTERN}$")
_LIST = {f.name: f for f in LIST_QUERY}


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object: 400 when it is not JSON, 422 when not an object."""
    if not raw.strip():
        return {}
    try:
        body = loads_strict(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIProblem(400, "malformed_json", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    return body


def validate_create(body: dict[str, Any], check_callback: Callable[[str], None]) -> dict[str, Any]:
    """Check a create body against the contract's fields (``client_lib.contract``); returns
    clean fields. ``check_callback`` is the SSRF guard."""
    out = check_object(CREATE_JOB, body)
    if out["callback_url"] is not None:
        check_callback(out["callback_url"])
    elif out["channel_events"]:
        raise invalid("channel_events", "needs a callback_url to send the channel events to")
    return out


def parse_ids(raw: str) -> list[str]:
    """The ``ids`` query parameter: 1 to 100 comma-separated job ids (blanks ignored),
    duplicates folded; the contract's pattern says the same."""
    _LIST["ids"].check(raw)
    return list(dict.fromkeys(p.strip(BLANKS) for p in raw.split(",") if p.strip(BLANKS)))


def parse_limit(raw: str | None) -> int:
    """The ``limit`` query parameter."""
    return int(_LIST["limit"].parse(raw))


def parse_status(raw: str | None) -> JobStatus | None:
    """The ``status`` filter of the list endpoint."""
    value = _LIST["status"].parse(raw)
    return None if value is None else JobStatus(value)


def parse_client_name(body: dict[str, Any]) -> str:
    """The body of ``POST /v1/clients``: its ``name``, trimmed."""
    return str(check_object(CREATE_CLIENT, body)["name"]).strip(BLANKS)


def parse_idempotency_key(raw: str | None) -> str | None:
    """The ``Idempotency-Key`` header, when sent."""
    return None if raw is None else str(IDEMPOTENCY_KEY.check(raw))
