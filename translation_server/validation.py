"""Validation of request input: every error is a 422 (or 400) that names the field."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from client_lib.contract import CREATE_JOB, LIST_QUERY, SIMULATE
from client_lib.fields import check_object
from client_lib.models import BULK_IDS_MAX, JobStatus
from client_lib.wire import loads_strict

from .errors import APIProblem, invalid

CREATE_FIELDS = {f.name for f in CREATE_JOB}
SIMULATE_FIELDS = {f.name for f in SIMULATE}
JOB_ID_RE = re.compile(r"^job_[A-Za-z0-9_-]{1,64}$")
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


def _reject_unknown(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(unknown[0], "unknown field", "unknown_field")


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
    """The ``ids`` query parameter: comma-separated, 1 to 100 job ids, duplicates folded."""
    ids = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not ids:
        raise invalid("ids", "must list at least one job id")
    if len(ids) > BULK_IDS_MAX:
        raise invalid("ids", f"must list at most {BULK_IDS_MAX} job ids (got {len(ids)})")
    return ids


def parse_limit(raw: str | None) -> int:
    """The ``limit`` query parameter."""
    return int(_LIST["limit"].parse(raw))


def parse_status(raw: str | None) -> JobStatus | None:
    """The ``status`` filter of the list endpoint."""
    value = _LIST["status"].parse(raw)
    return None if value is None else JobStatus(value)


def parse_client_name(body: dict[str, Any]) -> str:
    """The body of ``POST /v1/clients``."""
    _reject_unknown(body, {"name"})
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise invalid("name", "must be a non-empty string of at most 200 characters")
    return name.strip()
