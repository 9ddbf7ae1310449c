"""``GET /openapi.json``: the receiver described in OpenAPI 3.1, from the contract's fields.

The feed's query parameters are the very fields ``api.py`` validates with, and the schemas
are the contract's (``client_lib.contract``), so the document cannot drift from behaviour.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from client_lib.contract import (
    FEED_EVENT,
    FEED_JOB_ID,
    FEED_PAGE,
    JOB,
    PROBLEM,
    WEBHOOK,
    WEBHOOK_HEADERS,
    describe_answers,
)
from client_lib.fields import parameter, query_parameters

from . import page
from .api import feed_query
from .config import Settings
from .receiver import get_receiver

bp = Blueprint("openapi", __name__)

_PROBLEM = {
    "description": "Problem details (RFC 9457)",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_PATH_JOB_ID = parameter(FEED_JOB_ID, "path", required=True)
_WEBHOOK_HEADERS = [parameter(f, "header", required=True) for f in WEBHOOK_HEADERS]
_FEED_AUTH: list[dict[str, list[str]]] = [{"feedToken": []}]


def _json(description: str, ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _PROBLEM for s in statuses}


def _plain(summary: str, answer: str, *errors: int) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {"200": {"description": answer}, **_errors(*errors)},
        }
    }


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of a receiver with these settings."""
    webhook_body = {"application/json": {"schema": {"$ref": "#/components/schemas/Webhook"}}}
    paths: dict[str, Any] = {
        "/webhooks": {
            "post": {
                "summary": "Receive a Standard Webhooks event: verified, stored once, then 204",
                "parameters": _WEBHOOK_HEADERS,
                "requestBody": {"required": True, "content": webhook_body},
                "responses": {
                    "204": {"description": "Stored (or a duplicate)"},
                    **_errors(400, 401, 413, 422),
                },
            }
        },
        "/v1/events": {
            "get": {
                "summary": "The change feed: events after a cursor, waiting up to wait seconds",
                "security": _FEED_AUTH,
                "parameters": query_parameters(feed_query(settings)),
                "responses": {
                    "200": _json("A page of events", "FeedPage"),
                    **_errors(401, 422, 503),
                },
            }
        },
        "/v1/events/{job_id}": {
            "get": {
                "summary": "The event that made a job final",
                "security": _FEED_AUTH,
                "parameters": [_PATH_JOB_ID],
                "responses": {"200": _json("The event", "FeedEvent"), **_errors(401, 404)},
            }
        },
        "/healthz": _plain("Liveness and database reachability", "ok", 503),
        "/metrics": _plain("Prometheus metrics", "text/plain"),
        "/openapi.json": _plain("This document", "OpenAPI 3.1"),
    }
    paths.update(page.openapi_paths(_FEED_AUTH))
    describe_answers(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Callback receiver", "version": "1.0.0"},
        "paths": paths,
        "components": {
            "schemas": {
                "Job": JOB,
                "Problem": PROBLEM,
                "Webhook": WEBHOOK,
                "FeedEvent": FEED_EVENT,
                "FeedPage": FEED_PAGE,
            },
            "securitySchemes": {
                "feedToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The feed token: --feed-token, else the local set-up "
                    "file's receiver_token. The feed is never open: a receiver with neither "
                    "refuses to start, and while the file holds none every feed request is "
                    "401 no_feed_token_configured.",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """The receiver's OpenAPI document."""
    return jsonify(document(get_receiver().settings))
