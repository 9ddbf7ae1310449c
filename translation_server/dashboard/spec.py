"""The dashboard's part of ``/openapi.json``: its page, its files and its JSON endpoints."""

from __future__ import annotations

from typing import Any

from client_lib.contract import JOB_ID
from client_lib.fields import parameter, query_parameters

from .page import ASSETS
from .routes import DASHBOARD_QUERY

_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_VIEWER: list[dict[str, list[str]]] = [{"apiKey": []}, {"adminToken": []}]
_PROBLEM = {
    "description": "Problem details (RFC 9457)",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_HTML = {"description": "HTML"}
_NOT_MODIFIED = {"description": "Not modified (If-None-Match held the current ETag)"}
_ETAG = {
    "ETag": {
        "description": "Weak tag of the view, leaving out what moves with the clock alone",
        "schema": {"type": "string"},
    }
}

DASHBOARD_JOB: dict[str, Any] = {
    "description": "The job resource, and where the job stands",
    "allOf": [
        {"$ref": "#/components/schemas/Job"},
        {
            "type": "object",
            "properties": {
                "client_id": {"type": "string"},
                "client_name": {"type": "string"},
                "queue_position": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "description": "Queued jobs: 1 for the next a worker slot takes",
                },
                "estimated_start_at": {**_TIME_OR_NULL, "description": "Queued jobs: an ESTIMATE"},
                "webhook": {
                    "type": ["object", "null"],
                    "properties": {
                        "webhook_id": {"type": "string"},
                        "state": {"type": "string"},
                        "attempts": {"type": "integer"},
                    },
                },
            },
        },
    ],
}

_JOBS = {"type": "array", "items": {"$ref": "#/components/schemas/DashboardJob"}}

DASHBOARD: dict[str, Any] = {
    "type": "object",
    "required": ["viewer", "generated_at", "summary", "active", "completed", "failed"],
    "properties": {
        "viewer": {
            "type": "object",
            "properties": {
                "role": {"enum": ["client", "admin"]},
                "client_id": {"type": ["string", "null"]},
                "name": {"type": ["string", "null"]},
            },
        },
        "generated_at": {"type": "string", "format": "date-time"},
        "summary": {
            "type": "object",
            "properties": {
                "queue_depth": {"type": "integer"},
                "slots_in_use": {"type": "integer"},
                "workers": {"type": "integer"},
                "jobs_per_minute": {"type": "number"},
                "webhook_success_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "webhooks_concluded": {"type": "integer"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        "active": _JOBS,
        "completed": _JOBS,
        "failed": _JOBS,
        "clients": {
            "type": "array",
            "description": "Admin token only",
            "items": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
            },
        },
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _PROBLEM for c in codes}


def _job_param() -> dict[str, Any]:
    return parameter(JOB_ID, "path", required=True)


def _json(description: str, ref: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def schemas() -> dict[str, Any]:
    """The component schemas the dashboard's answers use."""
    return {"Dashboard": DASHBOARD, "DashboardJob": DASHBOARD_JOB}


def paths() -> dict[str, Any]:
    """The dashboard's paths."""
    detail = {
        "type": "object",
        "properties": {
            "job": {"$ref": "#/components/schemas/DashboardJob"},
            "deliveries": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {
        "/": {
            "get": {"summary": "The dashboard page", "responses": {"200": {"description": "HTML"}}}
        },
        "/dashboard/{name}": {
            "get": {
                "summary": "The dashboard's script and stylesheet",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": sorted(ASSETS)},
                    },
                ],
                "responses": {"200": {"description": "The file"}, **_errors(404)},
            }
        },
        "/v1/dashboard": {
            "get": {
                "summary": "Summary figures and the caller's active, completed and failed jobs",
                "description": "An API key sees its client's jobs; the admin token every "
                "client's, and the client list.",
                "security": _VIEWER,
                "parameters": query_parameters(DASHBOARD_QUERY),
                "responses": {
                    "200": {**_json("The view", "Dashboard"), "headers": _ETAG},
                    "304": _NOT_MODIFIED,
                    **_errors(401, 404, 422, 429),
                },
            }
        },
        "/v1/dashboard/jobs/{job_id}": {
            "get": {
                "summary": "One job as the dashboard shows it, with every webhook attempt",
                "security": _VIEWER,
                "parameters": [_job_param()],
                "responses": {
                    "200": {
                        "description": "The job and its deliveries",
                        "content": {"application/json": {"schema": detail}},
                        "headers": _ETAG,
                    },
                    "304": _NOT_MODIFIED,
                    **_errors(401, 404, 429),
                },
            }
        },
        "/v1/dashboard/jobs/{job_id}/cancel": {
            "post": {
                "summary": "Cancel a pending job (API key: its own; admin token: any)",
                "security": _VIEWER,
                "parameters": [_job_param()],
                "responses": {"200": _json("Cancelled", "Job"), **_errors(401, 404, 409, 429)},
            }
        },
        "/v1/dashboard/jobs/{job_id}/redeliver": {
            "post": {
                "summary": "Send the job's final webhook again (same webhook-id)",
                "security": _VIEWER,
                "parameters": [_job_param()],
                "responses": {
                    "202": {"description": "Queued for delivery"},
                    **_errors(401, 404, 409, 429),
                },
            }
        },
    }
