"""The job API through Flask's test client: the happy paths of API.md section 1."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service_common.observe import RequestObserver
from tests.conftest import ADMIN_TOKEN, auth
from translation_server.metrics import ServerMetrics
from translation_server.runtime import Runtime

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def create(client: FlaskClient, tenant: dict[str, str], **body: Any) -> Any:
    resp = client.post("/v1/jobs", json=body, headers=auth(tenant))
    assert resp.status_code == 201, resp.get_json()
    return resp


def test_create_returns_the_job_resource_with_location_and_hints(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    resp = create(
        client,
        tenant,
        target_language="pt-BR",
        priority=3,
        source_url="https://example.com/in.mp4",
        metadata={"order": 7},
        simulate={"duration_s": 8},
    )
    job = resp.get_json()
    assert resp.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["id"].startswith("job_") and len(job["id"]) > 20
    assert (job["status"], job["stage"], job["progress"], job["attempts"]) == (
        "pending",
        "queued",
        0.0,
        0,
    )
    assert (job["priority"], job["target_language"], job["metadata"]) == (3, "pt-BR", {"order": 7})
    assert ISO.match(job["created_at"]) and ISO.match(job["estimated_completion_at"])
    assert int(resp.headers["Retry-After"]) >= 1 and int(resp.headers["Poll-After-Ms"]) > 0
    assert set(job) == {
        "id",
        "status",
        "stage",
        "progress",
        "created_at",
        "started_at",
        "finished_at",
        "estimated_completion_at",
        "priority",
        "target_language",
        "source_url",
        "callback_url",
        "attempts",
        "result",
        "error",
        "metadata",
    }


def test_get_follows_the_job_to_completion_and_drops_hints(
    client: FlaskClient, tenant: dict[str, str], runtime: Runtime
) -> None:
    job = create(client, tenant, simulate={"duration_s": 2, "outcome": "completed"}).get_json()
    now = time.time()
    runtime.simulator.step(now)
    running = client.get(f"/v1/jobs/{job['id']}", headers=auth(tenant))
    assert running.get_json()["stage"] == "processing" and "Retry-After" in running.headers
    runtime.simulator.step(now + 2.5)
    done = client.get(f"/v1/jobs/{job['id']}", headers=auth(tenant))
    body = done.get_json()
    assert (body["status"], body["progress"], body["estimated_completion_at"]) == (
        "completed",
        1.0,
        None,
    )
    assert body["result"]["video_url"].endswith("/es.mp4")
    assert "Retry-After" not in done.headers and "Poll-After-Ms" not in done.headers


def test_etag_answers_304_until_the_job_changes(
    client: FlaskClient, tenant: dict[str, str], runtime: Runtime
) -> None:
    job = create(client, tenant).get_json()
    first = client.get(f"/v1/jobs/{job['id']}", headers=auth(tenant))
    tag = first.headers["ETag"]
    same = client.get(f"/v1/jobs/{job['id']}", headers={**auth(tenant), "If-None-Match": tag})
    assert same.status_code == 304 and same.data == b"" and "Retry-After" in same.headers
    runtime.simulator.step(time.time())
    moved = client.get(f"/v1/jobs/{job['id']}", headers={**auth(tenant), "If-None-Match": tag})
    assert moved.status_code == 200 and moved.headers["ETag"] != tag


def test_idempotency_key_returns_the_same_job(client: FlaskClient, tenant: dict[str, str]) -> None:
    headers = {**auth(tenant), "Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json={"priority": 1}, headers=headers)
    again = client.post("/v1/jobs", json={"priority": 1}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"]


def test_bulk_ids_keeps_order_and_hides_other_tenants(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    a, b = (create(client, tenant).get_json()["id"] for _ in range(2))
    other = client.post(
        "/v1/clients", json={"name": "other"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).get_json()
    foreign = client.post(
        "/v1/jobs", json={}, headers={"Authorization": f"Bearer {other['api_key']}"}
    ).get_json()
    resp = client.get(f"/v1/jobs?ids={b},{foreign['id']},{a},{b}", headers=auth(tenant))
    assert [j["id"] for j in resp.get_json()["jobs"]] == [b, a]
    assert "Poll-After-Ms" in resp.headers


def test_list_is_paginated_newest_first_and_filters_by_status(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    ids = [create(client, tenant).get_json()["id"] for _ in range(5)]
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth(tenant))
    page = client.get("/v1/jobs?limit=3", headers=auth(tenant)).get_json()
    rest = client.get(
        f"/v1/jobs?limit=3&cursor={page['next_cursor']}", headers=auth(tenant)
    ).get_json()
    assert [j["id"] for j in page["jobs"] + rest["jobs"]] == ids[::-1]
    assert rest["next_cursor"] is None
    cancelled = client.get("/v1/jobs?status=cancelled", headers=auth(tenant)).get_json()
    assert [j["id"] for j in cancelled["jobs"]] == [ids[0]]
    pending = client.get("/v1/jobs?status=pending", headers=auth(tenant)).get_json()
    assert len(pending["jobs"]) == 4


def test_cancel_a_pending_job(client: FlaskClient, tenant: dict[str, str]) -> None:
    job = create(client, tenant).get_json()
    resp = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth(tenant))
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "cancelled" and body["stage"] is None
    assert ISO.match(body["finished_at"]) and "Retry-After" not in resp.headers


def test_legacy_status_with_demo_job_and_with_job_id(make_app: Any) -> None:
    app: Flask = make_app(demo_job=True)
    client = app.test_client()
    demo = client.get("/status")
    body = demo.get_json()
    assert demo.status_code == 200 and body["result"] == "pending" and body["status"] == "pending"
    assert body["metadata"] == {"demo": True} and "Retry-After" in demo.headers
    runtime: Runtime = app.extensions["vt"]
    runtime.simulator.step(time.time())
    runtime.simulator.step(time.time() + 20)
    done = client.get("/status").get_json()
    assert done["result"] == "completed" and done["output"]["video_url"]


def test_legacy_status_maps_cancelled_to_error(client: FlaskClient, tenant: dict[str, str]) -> None:
    job = create(client, tenant).get_json()
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth(tenant))
    body = client.get(f"/status?job_id={job['id']}", headers=auth(tenant)).get_json()
    assert (body["result"], body["status"]) == ("error", "cancelled")


def test_admin_lists_clients_and_rotates_a_secret(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    listed = client.get("/v1/clients", headers=admin).get_json()["clients"]
    assert {"id": tenant["id"], "name": "acme"} in listed
    assert all("api_key" not in c and "webhook_secret" not in c for c in listed)
    rotated = client.post(f"/v1/clients/{tenant['id']}/rotate-secret", headers=admin)
    body = rotated.get_json()
    assert rotated.status_code == 200 and body["webhook_secret"].startswith("whsec_")
    assert body["webhook_secret"] != tenant["webhook_secret"]


def test_new_client_secret_is_standard_webhooks_shaped(tenant: dict[str, str]) -> None:
    import base64

    assert tenant["id"].startswith("cli_") and tenant["api_key"].startswith("vt_")
    assert len(base64.b64decode(tenant["webhook_secret"].removeprefix("whsec_"))) == 32


def test_every_request_is_logged_counted_and_given_an_id(
    client: FlaskClient, tenant: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    job = create(client, tenant).get_json()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="translation_server.access"):
        ok = client.get(f"/v1/jobs/{job['id']}", headers={**auth(tenant), "X-Request-ID": "r-1"})
        lost = client.get("/no/such/päth", headers={"X-Request-ID": "bad\u0007id"})
    wrong_method = client.delete(f"/v1/jobs/{job['id']}", headers=auth(tenant))
    refused = client.get(f"/v1/jobs/{job['id']}")  # the route matched, the view said 401
    assert wrong_method.status_code == 405 and refused.status_code == 401
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "r-1"
    assert lost.status_code == 404
    fresh = lost.headers["X-Request-ID"]  # an unprintable id is replaced, never echoed
    assert re.fullmatch(r"[0-9a-f]{32}", fresh) and lost.get_json()["request_id"] == fresh
    lines = [r.getMessage() for r in caplog.records if r.name == "translation_server.access"]
    assert re.fullmatch(rf"GET /v1/jobs/{job['id']} 200 \d+\.\dms request_id=r-1", lines[0])
    assert re.fullmatch(rf"GET /no/such/päth 404 \d+\.\dms request_id={fresh}", lines[1])
    assert "vt_" not in " ".join(lines)  # no API key in the log
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'route="/v1/jobs/<job_id>",status="200"} 1.0' in metrics
    assert 'vt_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in metrics
    assert 'vt_http_requests_total{method="DELETE",route="<unmatched>",status="405"} 1.0' in metrics
    assert 'method="GET",route="/v1/jobs/<job_id>",status="401"} 1.0' in metrics


def test_a_failure_of_flask_itself_is_counted_as_a_500() -> None:
    metrics = ServerMetrics(lambda: {})

    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("an error handler that fails")

    observed = RequestObserver(broken, metrics.observe_request, logging.getLogger("test"))  # type: ignore[arg-type]
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/jobs/x"}
    with pytest.raises(RuntimeError):
        observed(environ, lambda *args: None)  # type: ignore[arg-type]
    text = metrics.render().decode()
    assert 'vt_http_requests_total{method="GET",route="<unmatched>",status="500"} 1.0' in text


def test_ops_endpoints(client: FlaskClient, tenant: dict[str, str]) -> None:
    create(client, tenant)
    assert client.get("/healthz").get_json() == {"status": "ok", "store": "ok"}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'vt_jobs{state="queued"} 1.0' in metrics and "vt_queue_depth 1.0" in metrics
    assert 'vt_http_requests_total{method="POST",route="/v1/jobs",status="201"} 1.0' in metrics
    assert client.get("/").status_code == 200
    resp = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"


def test_openapi_describes_every_route_and_nothing_else(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(
            m.lower() for m in rule.methods or () if m not in ("HEAD", "OPTIONS")
        )
    documented = {path: set(ops) for path, ops in doc["paths"].items()}
    assert documented == routes
