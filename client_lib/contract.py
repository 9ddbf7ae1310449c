"""The contract's request fields and resource schemas, declared once (docs/api.md).

The services validate requests with these fields and derive their OpenAPI documents from
them and from the resource schemas here; tests hold the schemas to what the services send.
"""

from __future__ import annotations

from typing import Any

from .fields import Field, object_schema
from .models import BULK_IDS_MAX, METADATA_MAX_BYTES, JobStatus, Outcome, Stage, WebhookMode

MAX_URL_LENGTH = 2048
MAX_SIMULATED_DURATION_S = 24 * 3600
MIN_ESTIMATE_FACTOR, MAX_ESTIMATE_FACTOR = 0.3, 5.0
ID_LENGTH = 255

# ----------------------------------------------------------------- requests

SIMULATE = (
    Field("duration_s", "number", "Pin the drawn duration", minimum=0,
          maximum=MAX_SIMULATED_DURATION_S),
    Field("estimate_factor", "number", "Pin the estimator's distortion of the duration",
          minimum=MIN_ESTIMATE_FACTOR, maximum=MAX_ESTIMATE_FACTOR),
    Field("outcome", "string", "Pin the outcome", enum=tuple(o.value for o in Outcome)),
    Field("webhook", "string", "Pin the webhook's fate", enum=tuple(m.value for m in WebhookMode)),
)  # fmt: skip

CREATE_JOB = (
    Field("source_url", "string", "The video to translate", nullable=True, format="uri",
          max_length=MAX_URL_LENGTH),
    Field("target_language", "string", "A language tag", default="es", max_length=35,
          pattern=r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*",
          pattern_hint="must be a language tag such as 'es' or 'pt-BR'"),
    Field("priority", "integer", "0 (normal) to 9 (most urgent)", default=0, minimum=0,
          maximum=9),
    Field("callback_url", "string", "Where the job's webhook goes (http(s), a host in the "
          "callback allow-list); null: none", nullable=True, format="uri",
          max_length=MAX_URL_LENGTH, code="invalid_callback_url"),
    Field("metadata", "object", f"The caller's own, echoed back, at most {METADATA_MAX_BYTES} "
          "bytes as JSON", default={}, max_json_bytes=METADATA_MAX_BYTES),
    Field("simulate", "object", "Pin the simulation (tests and demos)", default={},
          properties=SIMULATE),
    Field("channel_events", "boolean", "Also send the callback endpoint channel events: a "
          "sequence number on every job event, and channel.heartbeat events (needs "
          "callback_url)", default=False),
)  # fmt: skip

LIST_QUERY = (
    Field("ids", "string", f"Comma-separated job ids, up to {BULK_IDS_MAX} (bulk status; "
          "excludes the others)", max_length=BULK_IDS_MAX * 80),
    Field("status", "string", "Only jobs in this status", enum=tuple(s.value for s in JobStatus)),
    Field("limit", "integer", "Jobs per page", default=20, minimum=1, maximum=100),
    Field("cursor", "string", "next_cursor of the previous page", max_length=200),
)  # fmt: skip

FEED_QUERY = (
    Field("after", "string", "A cursor the feed returned; empty: from the beginning; latest: "
          "from now", pattern=r"latest|[0-9]{1,18}",
          pattern_hint="not a cursor this feed returned"),
    Field("job_id", "string", "Only this job's events", max_length=ID_LENGTH),
    Field("limit", "integer", "Events per page", default=100, minimum=1, maximum=1000),
    Field("wait", "number", "Seconds to wait for an event when there is none", default=0.0,
          minimum=0, maximum=60),
)  # fmt: skip

# ---------------------------------------------------------------- resources

_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}

JOB: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "created_at", "priority"],
    "properties": {
        "id": {"type": "string"},
        "status": {"enum": [s.value for s in JobStatus]},
        "stage": {"enum": [*(s.value for s in Stage), None]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "created_at": _TIME,
        "started_at": _TIME_OR_NULL,
        "finished_at": _TIME_OR_NULL,
        "estimated_completion_at": {**_TIME_OR_NULL, "description": "An estimate; null once final"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        "target_language": {"type": "string"},
        "source_url": {"type": ["string", "null"]},
        "callback_url": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
        "result": {"type": ["object", "null"]},
        "error": {
            "type": ["object", "null"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "metadata": {"type": "object"},
    },
}

PROBLEM: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        **{k: {"type": "string"} for k in ("type", "title", "detail", "code")},
        "status": {"type": "integer"},
        "request_id": {"type": ["string", "null"]},
        "field": {"type": "string", "description": "The field a 422 is about"},
    },
}

HEARTBEAT_DATA: dict[str, Any] = {
    "type": "object",
    "required": ["endpoint", "seq", "events"],
    "properties": {
        "endpoint": {"type": "string"},
        "client_id": {"type": "string"},
        "seq": {"type": "integer", "minimum": 0},
        "interval_s": {"type": "number", "exclusiveMinimum": 0},
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "seq": {"type": "integer"},
                    "job_id": {"type": "string"},
                    "state": {"enum": ["pending", "sent"]},
                    "next_attempt_at": _TIME_OR_NULL,
                },
            },
        },
    },
}

WEBHOOK: dict[str, Any] = {
    "type": "object",
    "required": ["type", "data"],
    "properties": {
        "type": {"type": "string", "description": "job.completed, job.error, job.cancelled, "
                 "channel.heartbeat, or a newer type"},
        "timestamp": _TIME,
        "seq": {"type": "integer", "description": "Channel endpoints: the event's number"},
        "data": {"oneOf": [{"$ref": "#/components/schemas/Job"}, HEARTBEAT_DATA]},
    },
}  # fmt: skip

FEED_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["cursor", "webhook_id", "received_at", "type", "data"],
    "properties": {
        "cursor": {"type": "string"},
        "webhook_id": {"type": "string"},
        "received_at": _TIME,
        "type": {"type": "string"},
        "seq": {"type": "integer"},
        "data": WEBHOOK["properties"]["data"],
    },
}

FEED_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["events", "cursor"],
    "properties": {
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/FeedEvent"}},
        "cursor": {"type": "string"},
        "channels": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "endpoint": {"type": "string"},
                    "client_id": {"type": "string"},
                    "seq": {"type": "integer"},
                    "received_at": _TIME,
                    "age_s": {"type": "number"},
                },
            },
        },
    },
}


def create_job_schema() -> dict[str, Any]:
    """The JSON Schema of ``POST /v1/jobs``'s body."""
    return object_schema(CREATE_JOB)
