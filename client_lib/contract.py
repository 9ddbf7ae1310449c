"""The contract's request fields and resource schemas, declared once (docs/api.md).

The services validate requests with these fields and derive their OpenAPI documents from
them and from the resource schemas here; tests hold the schemas to what the services send.
"""

from __future__ import annotations

from typing import Any

from .fields import Field, object_schema
from .models import BULK_IDS_MAX, METADATA_MAX_BYTES, JobStatus, Outcome, Stage, WebhookMode
from .wire import MAX_BODY_BYTES

MAX_URL_LENGTH = 2048
MAX_SIMULATED_DURATION_S = 24 * 3600
MIN_ESTIMATE_FACTOR, MAX_ESTIMATE_FACTOR = 0.3, 5.0
ID_LENGTH = 255
FEED_JOBS_MAX = 100  # job ids one feed read may name
MAX_SEQ = 2**53 - 1  # the largest integer every JSON reader keeps exact
HEARTBEAT_EVENTS_MAX = 1000

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

# Blanks are ASCII white space (what the server strips); one id is any text without a comma.
_BLANK, _ID = "[ \\t\\n\\r\\f\\v]*", "[ \\t\\n\\r\\f\\v]*[^, \\t\\n\\r\\f\\v][^,]*"
IDS_PATTERN = f"(?:{_BLANK},)*{_ID}(?:,(?:{_BLANK},)*{_ID}){{0,{BULK_IDS_MAX - 1}}}(?:,{_BLANK})*"
BLANKS = " \t\n\r\f\v"
NON_BLANK = "[ \\t\\n\\r\\f\\v]*[^ \\t\\n\\r\\f\\v][\\s\\S]*"

LIST_QUERY = (
    Field("ids", "string", f"Comma-separated job ids, 1 to {BULK_IDS_MAX} (bulk status; blanks "
          "are ignored, duplicates folded; excludes the other parameters)",
          max_length=BULK_IDS_MAX * 80, pattern=IDS_PATTERN, blank_is_default=False,
          pattern_hint=f"must list 1 to {BULK_IDS_MAX} comma-separated job ids"),
    Field("status", "string", "Only jobs in this status", enum=tuple(s.value for s in JobStatus)),
    Field("limit", "integer", "Jobs per page", default=20, minimum=1, maximum=100),
    Field("cursor", "string", "next_cursor of the previous page", max_length=200),
)  # fmt: skip

CREATE_CLIENT = (
    Field("name", "string", "The client's name (trimmed)", required=True, max_length=200,
          pattern=NON_BLANK, pattern_hint="must not be blank"),
)  # fmt: skip

# headers and path segments
IDEMPOTENCY_KEY = Field(
    "Idempotency-Key", "string", "The same key and body within 24 h return the same job",
    max_length=255, pattern="[\\x21-\\x7e](?:[\\x20-\\x7e]*[\\x21-\\x7e])?",
    pattern_hint="must be printable ASCII, not starting or ending with a space",
)  # fmt: skip
JOB_ID_PATTERN = "job_[A-Za-z0-9_-]{1,64}"
JOB_ID = Field("job_id", "string", "A job id (anything else is 404)", max_length=68,
               pattern=JOB_ID_PATTERN)  # fmt: skip
CLIENT_ID = Field("client_id", "string", "A client id (anything else is 404)", max_length=68,
                  pattern="cli_[A-Za-z0-9_-]{1,64}")  # fmt: skip
FEED_JOB_ID = Field("job_id", "string", "The job's id as its webhooks name it",
                    max_length=ID_LENGTH)  # fmt: skip
# What a receiver can tell is well-formed before checking a signature (client_lib.webhooks).
WEBHOOK_HEADERS = (
    Field("webhook-id", "string", "The event's id, the same on every retry", max_length=255,
          pattern="[\\x21-\\x7e]{1,255}"),
    Field("webhook-timestamp", "string", "Unix seconds of this attempt", max_length=12,
          pattern="[0-9]{1,12}"),
    Field("webhook-signature", "string", "v1,<base64 HMAC-SHA256>, space-separated, up to 16",
          max_length=16 * 50, pattern="v1,[A-Za-z0-9+/]{43}=( v1,[A-Za-z0-9+/]{43}=){0,15}"),
)  # fmt: skip

REQUEST_ID_HEADER: dict[str, Any] = {
    "X-Request-ID": {
        "description": "The caller's X-Request-ID when it is 1 to 128 of A-Za-z0-9._:-, else "
        "a fresh id",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"},
    }
}


def describe_answers(paths: dict[str, Any]) -> None:
    """Every answer of an OpenAPI document's paths carries ``X-Request-ID``; a 413 may also be
    waitress's own, in plain text and without it (docs/api.md)."""
    for operation in (op for item in paths.values() for op in item.values()):
        responses = operation["responses"]
        for status, response in responses.items():
            header = REQUEST_ID_HEADER
            content = response.get("content")
            if status == "413":
                header = {"X-Request-ID": {**REQUEST_ID_HEADER["X-Request-ID"], "required": False}}
                content = {**(content or {}), "text/plain": {"schema": {"type": "string"}}}
            answer = {**response, "headers": {**response.get("headers", {}), **header}}
            responses[status] = {**answer, "content": content} if content else answer


FEED_QUERY = (
    Field("after", "string", "A cursor the feed returned; empty: from the beginning; latest: "
          "from now", pattern=r"latest|[0-9]{1,18}", max_length=18,
          pattern_hint="not a cursor this feed returned"),
    Field("job_id", "string", "Only this job's events", max_length=ID_LENGTH),
    Field("jobs", "string", f"Comma-separated job ids, up to {FEED_JOBS_MAX}: only their events "
          "and the channels' heartbeats (a waiting client's own jobs; excludes job_id)",
          max_length=FEED_JOBS_MAX * (ID_LENGTH + 1)),
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
        "endpoint": {"type": "string", "maxLength": MAX_URL_LENGTH},
        "client_id": {"type": "string", "maxLength": ID_LENGTH},
        "seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
        "interval_s": {"type": "number", "exclusiveMinimum": 0},
        "events": {
            "type": "array",
            "maxItems": HEARTBEAT_EVENTS_MAX,
            "items": {
                "type": "object",
                "properties": {
                    "seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                    "job_id": {"type": "string", "maxLength": ID_LENGTH},
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
    "x-max-json-bytes": MAX_BODY_BYTES,  # the body limit bounds what the fields do not
    "properties": {
        "type": {"type": "string", "minLength": 1, "maxLength": 100, "description":
                 "job.completed, job.error, job.cancelled, channel.heartbeat, or a newer type"},
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
