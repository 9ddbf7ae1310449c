"""Every error path answers problem+json with the right status and a detail naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_TOKEN, auth


def valid_body() -> dict[str, Any]:
    """The one valid create body that each negative test breaks in exactly one place."""
    return {
        "source_url": "https://example.com/in.mp4",
        "target_language": "es",
        "priority": 0,
        "callback_url": "http://127.0.0.1:9/webhooks",
        "metadata": {"k": "v"},
        "simulate": {"duration_s": 1, "outcome": "completed", "webhook": "deliver"},
    }


def assert_problem(resp: Any, status: int, code: str, detail_part: str = "") -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = json.loads(resp.get_data())
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"].endswith("/" + code) and body["title"]
    assert detail_part in body["detail"]
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


def test_valid_body_is_accepted(client: FlaskClient, tenant: dict[str, str]) -> None:
    assert client.post("/v1/jobs", json=valid_body(), headers=auth(tenant)).status_code == 201


@pytest.mark.parametrize(
    ("field", "value", "code", "detail"),
    [
        ("source_url", "ftp://example.com/a.mp4", "validation_error", "source_url: scheme"),
        ("source_url", 12, "validation_error", "source_url: must be a non-empty string"),
        ("source_url", "http://", "validation_error", "source_url: must name a host"),
        ("source_url", "http://x:99999/", "validation_error", "source_url: not a valid URL"),
        ("target_language", "spanish!", "validation_error", "target_language"),
        ("target_language", None, "validation_error", "target_language"),
        ("priority", 10, "validation_error", "priority: must be an integer from 0 to 9"),
        ("priority", -1, "validation_error", "priority"),
        ("priority", "1", "validation_error", "priority"),
        ("priority", True, "validation_error", "priority"),
        ("callback_url", "file:///etc/passwd", "invalid_callback_url", "callback_url: scheme"),
        ("callback_url", "gopher://127.0.0.1/", "invalid_callback_url", "callback_url: scheme"),
        ("callback_url", "http://10.0.0.5/hook", "invalid_callback_url", "allow-list"),
        ("callback_url", "http://169.254.169.254/latest", "invalid_callback_url", "allow-list"),
        ("callback_url", "http://[fe80::1]/hook", "invalid_callback_url", "allow-list"),
        (
            "callback_url",
            "http://no-such-host.invalid/hook",
            "invalid_callback_url",
            "does not resolve",
        ),
        ("metadata", [1, 2], "validation_error", "metadata: must be a JSON object"),
        ("metadata", {"big": "x" * 5000}, "validation_error", "metadata: must be at most 4096"),
        ("simulate", "fast", "validation_error", "simulate: must be a JSON object"),
        ("simulate", {"duration_s": -1}, "validation_error", "simulate.duration_s"),
        ("simulate", {"duration_s": "5"}, "validation_error", "simulate.duration_s"),
        ("simulate", {"outcome": "maybe"}, "validation_error", "simulate.outcome: must be one of"),
        ("simulate", {"webhook": "lose"}, "validation_error", "simulate.webhook"),
        ("simulate", {"speed": 2}, "unknown_field", "simulate.speed: unknown field"),
        ("colour", "blue", "unknown_field", "colour: unknown field"),
    ],
)
def test_each_invalid_field_is_named(
    client: FlaskClient, tenant: dict[str, str], field: str, value: Any, code: str, detail: str
) -> None:
    body = valid_body()
    body[field] = value
    resp = client.post("/v1/jobs", json=body, headers=auth(tenant))
    problem = assert_problem(resp, 422, code, detail)
    assert problem["field"].split(".")[0] == field


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2", b"\xff\xfe"])
def test_malformed_json_is_400(client: FlaskClient, tenant: dict[str, str], raw: bytes) -> None:
    resp = client.post(
        "/v1/jobs", data=raw, headers={**auth(tenant), "Content-Type": "application/json"}
    )
    assert_problem(resp, 400, "malformed_json", "not valid JSON")


def test_body_that_is_not_an_object_is_422(client: FlaskClient, tenant: dict[str, str]) -> None:
    resp = client.post("/v1/jobs", json=[1], headers=auth(tenant))
    assert_problem(resp, 422, "validation_error", "body: must be a JSON object")


def test_body_over_64_kib_is_413(client: FlaskClient, tenant: dict[str, str]) -> None:
    resp = client.post(
        "/v1/jobs",
        data=b"{" + b" " * (64 * 1024) + b"}",
        headers={**auth(tenant), "Content-Type": "application/json"},
    )
    assert_problem(resp, 413, "body_too_large", "65536 bytes")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "unauthorized"),
        ({"Authorization": "Bearer "}, "unauthorized"),
        ({"Authorization": "Bearer vt_wrong"}, "invalid_api_key"),
    ],
)
def test_missing_or_wrong_credentials_are_401(
    client: FlaskClient, headers: dict[str, str], code: str
) -> None:
    resp = client.post("/v1/jobs", json=valid_body(), headers=headers)
    assert_problem(resp, 401, code)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_job_is_404(client: FlaskClient, tenant: dict[str, str]) -> None:
    for path in ("/v1/jobs/job_doesnotexist", "/v1/jobs/not-even-an-id", "/status?job_id=job_nope"):
        assert_problem(client.get(path, headers=auth(tenant)), 404, "job_not_found", "no job")
    resp = client.post("/v1/jobs/job_doesnotexist/cancel", headers=auth(tenant))
    assert_problem(resp, 404, "job_not_found")


def test_another_tenants_job_is_404_not_403(client: FlaskClient, tenant: dict[str, str]) -> None:
    job = client.post("/v1/jobs", json={}, headers=auth(tenant)).get_json()
    other = client.post(
        "/v1/clients", json={"name": "other"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).get_json()
    headers = {"Authorization": f"Bearer {other['api_key']}"}
    assert_problem(client.get(f"/v1/jobs/{job['id']}", headers=headers), 404, "job_not_found")
    assert_problem(
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers), 404, "job_not_found"
    )


def test_cancelling_a_final_job_is_409(client: FlaskClient, tenant: dict[str, str]) -> None:
    job = client.post("/v1/jobs", json={}, headers=auth(tenant)).get_json()
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth(tenant))
    resp = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth(tenant))
    assert_problem(resp, 409, "job_final", "already cancelled")


def test_idempotency_key_with_another_body_is_409(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    headers = {**auth(tenant), "Idempotency-Key": "k-1"}
    assert client.post("/v1/jobs", json={"priority": 1}, headers=headers).status_code == 201
    resp = client.post("/v1/jobs", json={"priority": 2}, headers=headers)
    assert_problem(resp, 409, "idempotency_key_reused", "different request body")
    resp = client.post("/v1/jobs", json={}, headers={**auth(tenant), "Idempotency-Key": "k" * 300})
    assert_problem(resp, 422, "validation_error", "Idempotency-Key")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("ids=", "ids"),
        ("ids=" + ",".join(f"job_{i}" for i in range(101)), "ids"),
        ("ids=job_a&status=pending", "status"),
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=bogus", "cursor"),
        ("colour=blue", "colour"),
    ],
)
def test_bad_list_queries_are_422(
    client: FlaskClient, tenant: dict[str, str], query: str, field: str
) -> None:
    resp = client.get(f"/v1/jobs?{query}", headers=auth(tenant))
    assert assert_problem(resp, 422, "validation_error", f"{field}:")["field"] == field


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Bearer not-the-token"}, "invalid_admin_token"),
    ],
)
def test_admin_endpoints_need_the_admin_token(
    client: FlaskClient, tenant: dict[str, str], headers: dict[str, str], code: str
) -> None:
    assert_problem(client.post("/v1/clients", json={"name": "x"}, headers=headers), 401, code)
    assert_problem(client.get("/v1/clients", headers=headers), 401, code)
    # a tenant's own key is not an admin token either
    assert_problem(client.get("/v1/clients", headers=auth(tenant)), 401, "invalid_admin_token")


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": 5}, {"name": "a", "x": 1}])
def test_bad_client_bodies_are_422(client: FlaskClient, body: dict[str, Any]) -> None:
    resp = client.post("/v1/clients", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_problem(resp, 422, "unknown_field" if "x" in body else "validation_error")


def test_rotating_an_unknown_client_is_404(client: FlaskClient) -> None:
    resp = client.post(
        "/v1/clients/cli_nope/rotate-secret", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert_problem(resp, 404, "client_not_found", "cli_nope")


def test_unknown_route_and_wrong_method(client: FlaskClient) -> None:
    assert_problem(client.get("/v2/nothing"), 404, "not_found")
    resp = client.delete("/v1/jobs")
    assert_problem(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]


def test_demo_job_off_is_404(client: FlaskClient) -> None:
    assert_problem(client.get("/status"), 404, "demo_job_disabled", "--no-demo-job")


def test_rate_limit_is_429_with_retry_after(make_app: Any) -> None:
    app: Flask = make_app(rate_limit=1, rate_burst=2)
    client = app.test_client()
    created = client.post(
        "/v1/clients", json={"name": "r"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).get_json()
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    statuses = [client.get("/v1/jobs", headers=headers).status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    resp = client.get("/v1/jobs", headers=headers)
    assert_problem(resp, 429, "rate_limited", "retry after")
    assert int(resp.headers["Retry-After"]) >= 1


def test_status_fault_injection_is_503_with_retry_after(make_app: Any) -> None:
    app: Flask = make_app(fault_status_503=1.0, demo_job=True)
    resp = app.test_client().get("/status")
    assert_problem(resp, 503, "unavailable", "simulated outage")
    assert resp.headers["Retry-After"] == "1"


def test_name_resolving_to_a_forbidden_address_is_refused(make_app: Any) -> None:
    app: Flask = make_app(callback_allow=("127.0.0.2/32",))
    client = app.test_client()
    created = client.post(
        "/v1/clients", json={"name": "n"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).get_json()
    body = {**valid_body(), "callback_url": "http://localhost:9/webhooks"}
    resp = client.post(
        "/v1/jobs", json=body, headers={"Authorization": f"Bearer {created['api_key']}"}
    )
    assert_problem(resp, 422, "invalid_callback_url", "host localhost (")
