"""``GET /openapi.json``: an OpenAPI 3.1 description of every endpoint the server has.

Request bodies, query parameters and resource schemas are the contract's declared fields and
schemas (``client_lib.contract``), the very ones ``validation.py`` checks requests with.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from client_lib.contract import (
    CLIENT_ID,
    CREATE_CLIENT,
    CREATE_JOB,
    IDEMPOTENCY_KEY,
    JOB,
    JOB_ID,
    LIST_QUERY,
    PROBLEM,
    describe_answers,
)
from client_lib.fields import object_schema, parameter, query_parameters
from client_lib.models import BULK_IDS_MAX

from .dashboard import spec as dashboard_spec

bp = Blueprint("openapi", __name__)

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_ERR = {
    "description": "Problem details (RFC 9457)",
    "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
}
_JOB = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
_HINTS = {
    "Retry-After": {
        "description": "Pending jobs: seconds until asking again is useful (>= 1)",
        "schema": {"type": "integer"},
    },
    "Poll-After-Ms": {
        "description": "Pending jobs: milliseconds until asking again is useful",
        "schema": {"type": "integer"},
    },
    "ETag": {"description": "Weak tag of the stored job version", "schema": {"type": "string"}},
}
_AUTH: list[dict[str, list[str]]] = [{"apiKey": []}]
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]


def _ok(description: str, schema_ref: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, **extra}
    if schema_ref:
        out["content"] = {"application/json": {"schema": {"$ref": schema_ref}}}
    return out


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERR for c in codes}


def _job_id_param() -> dict[str, Any]:
    return parameter(JOB_ID, "path", required=True)


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    jobs_list = {
        "type": "object",
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    paths: dict[str, Any] = {
        "/v1/jobs": {
            "post": {
                "summary": "Create a job",
                "security": _AUTH,
                "parameters": [parameter(IDEMPOTENCY_KEY, "header")],
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/CreateJob"}}
                    }
                },
                "responses": {
                    "201": {"description": "Created", **_JOB, "headers": _HINTS},
                    "200": {"description": "Idempotent repeat", **_JOB},
                    **_errors(400, 401, 409, 413, 422, 429),
                },
            },
            "get": {
                "summary": f"Bulk status (ids, up to {BULK_IDS_MAX}) or list, newest first",
                "security": _AUTH,
                "parameters": query_parameters(LIST_QUERY),
                "responses": {
                    "200": _ok("Jobs", "#/components/schemas/JobList"),
                    "304": {"description": "Not modified"},
                    **_errors(401, 422, 429, 503),
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "summary": "One job",
                "security": _AUTH,
                "parameters": [_job_id_param()],
                "responses": {
                    "200": {"description": "The job", **_JOB, "headers": _HINTS},
                    "304": {"description": "Not modified"},
                    **_errors(401, 404, 429, 503),
                },
            }
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "summary": "Cancel a pending job",
                "security": _AUTH,
                "parameters": [_job_id_param()],
                "responses": {
                    "200": {"description": "Cancelled", **_JOB},
                    **_errors(401, 404, 409, 429),
                },
            }
        },
        "/status": {
            "get": {
                "summary": "The original problem's status endpoint; without job_id, the demo job",
                "parameters": [parameter(JOB_ID, "query")],
                "responses": {
                    "200": _ok("{result: pending|completed|error} plus the job fields"),
                    **_errors(401, 404, 503),
                },
            }
        },
        "/v1/clients": {
            "post": {
                "summary": "Create a client (operator)",
                "security": _ADMIN,
                "requestBody": {
                    "content": {"application/json": {"schema": object_schema(CREATE_CLIENT)}}
                },
                "responses": {
                    "201": _ok("The client with its API key and webhook secret"),
                    **_errors(400, 401, 413, 422),
                },
            },
            "get": {
                "summary": "List clients (operator)",
                "security": _ADMIN,
                "responses": {"200": _ok("Clients"), **_errors(401)},
            },
        },
        "/v1/clients/{client_id}/rotate-secret": {
            "post": {
                "summary": "Rotate a client's webhook secret (both sign during the grace period)",
                "security": _ADMIN,
                "parameters": [parameter(CLIENT_ID, "path", required=True)],
                "responses": {"200": _ok("The new secret"), **_errors(401, 404)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness and store reachability",
                "responses": {"200": _ok("Healthy"), **_errors(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Text exposition format"}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
    }
    paths.update(_webhook_paths())
    paths.update(dashboard_spec.paths())
    describe_answers(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Video translation server (simulated)", "version": "1.0.0"},
        "paths": paths,
        "components": {
            "schemas": {
                "Job": JOB,
                "CreateJob": object_schema(CREATE_JOB),
                "Problem": PROBLEM,
                "JobList": jobs_list,
                **dashboard_spec.schemas(),
            },
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _webhook_paths() -> dict[str, Any]:
    """The webhook delivery endpoints."""
    return {
        "/v1/jobs/{job_id}/deliveries": {
            "get": {
                "summary": "The job's webhook events and every delivery attempt",
                "description": "Each attempt: time, status code or error, latency, next attempt.",
                "security": _AUTH,
                "parameters": [_job_id_param()],
                "responses": {"200": _ok("Deliveries"), **_errors(401, 404, 429)},
            }
        },
        "/v1/jobs/{job_id}/redeliver": {
            "post": {
                "summary": "Send the job's final webhook again (same webhook-id)",
                "security": _AUTH,
                "parameters": [_job_id_param()],
                "responses": {"202": _ok("Queued for delivery"), **_errors(401, 404, 409, 429)},
            }
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> dict[str, Any]:
    """The document, as JSON."""
    return document()
