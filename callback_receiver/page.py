"""The receiver's page: ``GET /`` and its files, and ``GET /v1/receipts``, the JSON it reads.

The page is a shell with no data in it; it signs in with the feed token (kept in the browser
tab's session storage) and reads the receipts with it, every half second while visible, every
30 s while hidden, with ``If-None-Match`` so an unchanged list costs a 304. A receipt is one
POST /webhooks: verified, or rejected with its problem code and what that code means.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request

from client_lib.fields import Field, query_parameters
from client_lib.models import format_time
from client_lib.wire import invalid
from service_common import pages

from .feed_auth import require_feed_token
from .receiver import get_receiver
from .store import Receipt

bp = Blueprint("page", __name__)

PAGE_ROWS = 200
SEARCHED_ROWS = 1000  # a job id filter looks through this many of the latest receipts
STATIC = Path(__file__).resolve().with_name("static")
ASSETS = {"receiver.js": "text/javascript", "receiver.css": "text/css"}
RECEIPTS_QUERY = (
    Field("job_id", "string", "Only receipts of this job", max_length=255),
    Field("limit", "integer", "Receipts per answer", default=PAGE_ROWS, minimum=1,
          maximum=PAGE_ROWS),
)  # fmt: skip
_QUERY = {f.name: f for f in RECEIPTS_QUERY}

# What each rejection means (docs/api.md section 4).
REASONS = {
    "missing_signature_header": "a webhook-id, webhook-timestamp or webhook-signature header "
    "is missing",
    "invalid_webhook_id": "webhook-id is not 1 to 255 printable ASCII characters",
    "invalid_webhook_timestamp": "webhook-timestamp is not integer Unix seconds",
    "invalid_webhook_signature": "webhook-signature is malformed",
    "stale_webhook_timestamp": "the timestamp is older than the tolerance",
    "future_webhook_timestamp": "the timestamp is further ahead than the tolerance",
    "invalid_body": "the body is not UTF-8",
    "no_secret_configured": "the receiver accepts no secret",
    "invalid_signature": "no v1 signature matches an accepted secret",
    "invalid_json": "the verified body is not JSON",
    "validation_error": "the verified body has the wrong shape",
    "body_too_large": "the body is over 64 KiB",
}


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    """One receipt on the wire; ``reason`` is null for a verified one."""
    verified = receipt.result == "verified"
    return {
        "received_at": format_time(receipt.received_at),
        "webhook_id": receipt.webhook_id,
        "job_id": receipt.job_id,
        "type": receipt.type,
        "result": receipt.result,
        "status": receipt.status,
        "duplicate": receipt.duplicate,
        "reason": None if verified else REASONS.get(receipt.result, receipt.result),
    }


@bp.get("/")
def index() -> Response:
    """The page of received webhooks (its data comes from ``/v1/receipts``)."""
    return pages.page_file(STATIC, "receiver.html", "text/html")


@bp.get("/assets/<name>")
def asset(name: str) -> Response:
    """The page's script or stylesheet."""
    return pages.asset(STATIC, ASSETS, name)


@bp.get("/v1/receipts")
def list_receipts() -> Response:
    """The latest receipts, newest first, optionally of one job; 304 when unchanged."""
    require_feed_token()
    unknown = sorted(set(request.args) - set(_QUERY))
    if unknown:
        raise invalid(unknown[0], "unknown query parameter")
    query = {name: field.parse(request.args.get(name)) for name, field in _QUERY.items()}
    receiver = get_receiver()
    job_id, limit = query["job_id"], query["limit"]
    rows = receiver.store.receipts(limit=SEARCHED_ROWS if job_id else limit)
    if job_id:
        rows = [r for r in rows if r.job_id == job_id][:limit]
    body = {
        "receipts": [receipt_json(r) for r in rows],
        "stored_events": receiver.store.count_events(),
    }
    data = json.dumps(body, separators=(",", ":"))
    tag = f'W/"{hashlib.blake2b(data.encode(), digest_size=12).hexdigest()}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    held = {part.strip() for part in request.headers.get("If-None-Match", "").split(",")}
    if tag in held:
        return Response(status=304, headers=headers)
    return Response(data, headers=headers, mimetype="application/json")


def openapi_paths(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The page's part of the receiver's OpenAPI document."""
    problem = {
        "description": "Problem details (RFC 9457)",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
    receipt = {
        "type": "object",
        "properties": {
            "received_at": {"type": "string", "format": "date-time"},
            "webhook_id": {"type": ["string", "null"]},
            "job_id": {"type": ["string", "null"]},
            "type": {"type": ["string", "null"]},
            "result": {"type": "string", "description": "verified, or the rejection's code"},
            "status": {"type": "integer", "description": "the status POST /webhooks answered"},
            "duplicate": {"type": "boolean"},
            "reason": {"type": ["string", "null"], "description": "a rejection's meaning"},
        },
    }
    page = {
        "type": "object",
        "properties": {
            "receipts": {"type": "array", "items": receipt},
            "stored_events": {"type": "integer"},
        },
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"enum": sorted(ASSETS)}}
    return {
        "/": {"get": {"summary": "The page of received webhooks", "responses": {"200": {
            "description": "text/html"}}}},
        "/assets/{name}": {"get": {"summary": "The page's script and stylesheet",
            "parameters": [name], "responses": {"200": {"description": "The file"},
                                                "404": problem}}},
        "/v1/receipts": {"get": {
            "summary": "The latest POST /webhooks receipts, newest first: verified or why not",
            "security": security,
            "parameters": query_parameters(RECEIPTS_QUERY),
            "responses": {
                "200": {"description": "Receipts", "content": {"application/json": {
                    "schema": page}}, "headers": {"ETag": {"schema": {"type": "string"}}}},
                "304": {"description": "Not modified (If-None-Match held the current ETag)"},
                "401": problem, "422": problem,
            },
        }},
    }  # fmt: skip
