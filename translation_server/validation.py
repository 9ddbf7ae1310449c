"""Validation of request input: every error is a 422 (or 400) that names the field."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from client_lib.models import BULK_IDS_MAX, METADATA_MAX_BYTES, JobStatus, Outcome, WebhookMode

from .errors import APIProblem, invalid

CREATE_FIELDS = {
    "source_url",
    "target_language",
    "priority",
    "callback_url",
    "metadata",
    "simulate",
    "channel_events",
}
SIMULATE_FIELDS = {"duration_s", "estimate_factor", "outcome", "webhook"}
MAX_URL_LENGTH = 2048
MAX_SIMULATED_DURATION_S = 24 * 3600
# the estimator sees duration x factor; a pinned factor outside this range is refused
MIN_ESTIMATE_FACTOR, MAX_ESTIMATE_FACTOR = 0.3, 5.0
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
JOB_ID_RE = re.compile(r"^job_[A-Za-z0-9_-]{1,64}$")
DEFAULT_TARGET_LANGUAGE = "es"


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object: 400 when it is not JSON, 422 when not an object."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIProblem(400, "malformed_json", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    return body


def _reject_unknown(body: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(prefix + unknown[0], "unknown field", "unknown_field")


def _url(field: str, value: Any, *, code: str = "validation_error") -> str:
    if not isinstance(value, str) or not value:
        raise invalid(field, "must be a non-empty string", code)
    if len(value) > MAX_URL_LENGTH:
        raise invalid(field, f"must be at most {MAX_URL_LENGTH} characters", code)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise invalid(field, f"not a valid URL ({exc})", code) from exc
    if parts.scheme not in ("http", "https"):
        raise invalid(field, "scheme must be http or https", code)
    if not parts.hostname:
        raise invalid(field, "must name a host", code)
    return value


def _number(field: str, value: Any, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, "must be a number")
    if not low <= value <= high:
        raise invalid(field, f"must be between {low:g} and {high:g}")
    return float(value)


def _choice(field: str, value: Any, choices: list[str]) -> str:
    if value not in choices:
        raise invalid(field, f"must be one of {', '.join(choices)}")
    return str(value)


def validate_create(body: dict[str, Any], check_callback: Callable[[str], None]) -> dict[str, Any]:
    """Check a create body; returns clean fields. ``check_callback`` is the SSRF guard."""
    _reject_unknown(body, CREATE_FIELDS)
    out: dict[str, Any] = {}
    source = body.get("source_url")
    out["source_url"] = None if source is None else _url("source_url", source)
    lang = body.get("target_language", DEFAULT_TARGET_LANGUAGE)
    if not isinstance(lang, str) or not LANGUAGE_RE.match(lang):
        raise invalid("target_language", "must be a language tag such as 'es' or 'pt-BR'")
    out["target_language"] = lang
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise invalid("priority", "must be an integer from 0 to 9")
    out["priority"] = priority
    callback = body.get("callback_url")
    if callback is not None:
        _url("callback_url", callback, code="invalid_callback_url")
        check_callback(callback)
    out["callback_url"] = callback
    out["metadata"] = _metadata(body.get("metadata", {}))
    channel = body.get("channel_events", False)
    if not isinstance(channel, bool):
        raise invalid("channel_events", "must be true or false")
    if channel and callback is None:
        raise invalid("channel_events", "needs a callback_url to send the channel events to")
    out["channel_events"] = channel
    out["simulate"] = _simulate(body.get("simulate", {}))
    return out


def _metadata(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("metadata", "must be a JSON object")
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > METADATA_MAX_BYTES:
        raise invalid(
            "metadata", f"must be at most {METADATA_MAX_BYTES} bytes as JSON (got {size})"
        )
    return value


def _simulate(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("simulate", "must be a JSON object")
    _reject_unknown(value, SIMULATE_FIELDS, "simulate.")
    out: dict[str, Any] = {}
    if "duration_s" in value:
        out["duration_s"] = _number(
            "simulate.duration_s", value["duration_s"], low=0, high=MAX_SIMULATED_DURATION_S
        )
    if "estimate_factor" in value:
        out["estimate_factor"] = _number(
            "simulate.estimate_factor",
            value["estimate_factor"],
            low=MIN_ESTIMATE_FACTOR,
            high=MAX_ESTIMATE_FACTOR,
        )
    if "outcome" in value:
        out["outcome"] = _choice("simulate.outcome", value["outcome"], [o.value for o in Outcome])
    if "webhook" in value:
        out["webhook"] = _choice(
            "simulate.webhook", value["webhook"], [m.value for m in WebhookMode]
        )
    return out


def parse_ids(raw: str) -> list[str]:
    """The ``ids`` query parameter: comma-separated, 1 to 100 job ids, duplicates folded."""
    ids = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not ids:
        raise invalid("ids", "must list at least one job id")
    if len(ids) > BULK_IDS_MAX:
        raise invalid("ids", f"must list at most {BULK_IDS_MAX} job ids (got {len(ids)})")
    return ids


def parse_limit(raw: str | None, *, default: int = 20, maximum: int = 100) -> int:
    """The ``limit`` query parameter."""
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise invalid("limit", f"must be an integer from 1 to {maximum}")
    return int(raw)


def parse_status(raw: str | None) -> JobStatus | None:
    """The ``status`` filter of the list endpoint."""
    if raw is None or raw == "":
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        raise invalid("status", "must be one of " + ", ".join(s.value for s in JobStatus)) from None


def parse_client_name(body: dict[str, Any]) -> str:
    """The body of ``POST /v1/clients``."""
    _reject_unknown(body, {"name"})
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise invalid("name", "must be a non-empty string of at most 200 characters")
    return name.strip()
