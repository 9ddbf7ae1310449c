"""The dashboard's JSON endpoints (docs/api.md section 2.1) and its files, through Flask's test
client: who sees what, the figures, the tags, the actions, and every error as problem+json."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_TOKEN, auth
from tests.support import wait_until
from translation_server.runtime import Runtime

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CALLBACK = "http://127.0.0.1:9/webhooks"  # a port no local service uses: never delivered


def new_tenant(client: FlaskClient, name: str) -> dict[str, str]:
    resp = client.post("/v1/clients", json={"name": name}, headers=ADMIN)
    assert resp.status_code == 201
    body = resp.get_json()
    return {**body, "auth": f"Bearer {body['api_key']}"}


def create(client: FlaskClient, tenant: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = client.post("/v1/jobs", json=body, headers=auth(tenant))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()  # type: ignore[no-any-return]


def view(client: FlaskClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    resp = client.get(f"/v1/dashboard{query}", headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()  # type: ignore[no-any-return]


def ids(jobs: list[dict[str, Any]]) -> list[str]:
    return [j["id"] for j in jobs]


def assert_problem(resp: Any, status: int, code: str, field: str | None = None) -> None:
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["status"] == status and body["code"] == code and body["detail"]
    if field is not None:
        assert body["field"] == field


def test_a_client_key_sees_its_own_jobs_and_figures_only(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    other = new_tenant(client, "globex")
    mine = [create(client, tenant, simulate={"duration_s": 5})["id"] for _ in range(2)]
    theirs = create(client, other)["id"]
    body = view(client, auth(tenant))
    assert body["viewer"] == {"role": "client", "client_id": tenant["id"], "name": "acme"}
    assert sorted(ids(body["active"])) == sorted(mine)
    assert theirs not in str(body) and other["id"] not in str(body) and "clients" not in body
    assert body["summary"]["queue_depth"] == 2 and body["summary"]["counts"]["pending"] == 2
    for job in body["active"]:
        assert job["client_id"] == tenant["id"] and job["client_name"] == "acme"


def test_the_admin_token_sees_every_client_and_the_client_list(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    other = new_tenant(client, "globex")
    a, b = create(client, tenant)["id"], create(client, other)["id"]
    body = view(client, ADMIN)
    assert body["viewer"]["role"] == "admin"
    assert {a, b} <= set(ids(body["active"]))
    assert {"id": tenant["id"], "name": "acme"} in body["clients"]
    assert {"id": other["id"], "name": "globex"} in body["clients"]
    assert all(c["id"] != "cli_system" for c in body["clients"])
    only = view(client, ADMIN, f"?client_id={other['id']}")
    assert ids(only["active"]) == [b] and only["summary"]["queue_depth"] == 1


def test_queued_jobs_have_a_position_and_an_estimated_start(
    client: FlaskClient, tenant: dict[str, str], runtime: Runtime
) -> None:
    workers = runtime.settings.workers
    jobs = [create(client, tenant, simulate={"duration_s": 10})["id"] for _ in range(workers + 2)]
    runtime.simulator.step(time.time())
    urgent = create(client, tenant, priority=9, simulate={"duration_s": 10})["id"]
    expected = [urgent, jobs[workers], jobs[workers + 1]]

    def settled() -> dict[str, Any] | None:  # the estimator's queue view may lag a few ms
        body = view(client, auth(tenant))
        positions = [j["queue_position"] for j in body["active"][workers:]]
        return body if positions == [1, 2, 3] else None

    body = wait_until(settled, message="queue positions 1, 2, 3")
    processing, queued = body["active"][:workers], body["active"][workers:]
    assert all(j["stage"] == "processing" and j["queue_position"] is None for j in processing)
    assert {j["id"] for j in processing} == set(jobs[:workers])
    assert body["summary"]["slots_in_use"] == workers and body["summary"]["queue_depth"] == 3
    assert ids(queued) == expected  # in the order a slot takes them: priority, then age
    starts = [j["estimated_start_at"] for j in queued]
    assert all(starts) and starts == sorted(starts)
    assert all(j["estimated_start_at"] is None for j in processing)


def test_final_jobs_have_lists_of_their_own_and_count_per_minute(
    client: FlaskClient, tenant: dict[str, str], runtime: Runtime
) -> None:
    done = create(client, tenant, simulate={"duration_s": 0.5, "outcome": "completed"})["id"]
    failed = create(client, tenant, simulate={"duration_s": 0.5, "outcome": "error"})["id"]
    cancelled = create(client, tenant, simulate={"duration_s": 50})["id"]
    cancel = client.post(f"/v1/dashboard/jobs/{cancelled}/cancel", headers=auth(tenant))
    assert cancel.status_code == 200
    now = time.time()
    runtime.simulator.step(now)
    runtime.simulator.step(now + 1)
    body = view(client, auth(tenant))
    assert ids(body["completed"]) == [done] and body["active"] == []
    assert set(ids(body["failed"])) == {failed, cancelled}
    assert body["completed"][0]["result"]["video_url"]
    assert body["summary"]["jobs_per_minute"] == 3.0
    assert ids(view(client, auth(tenant), "?status=error")["failed"]) == [failed]
    assert view(client, auth(tenant), "?status=error")["completed"] == []
    assert len(view(client, auth(tenant), "?limit=1")["failed"]) == 1


def test_an_unchanged_view_is_304_and_a_change_gives_a_new_tag(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    create(client, tenant, simulate={"duration_s": 30})

    def settled() -> str | None:  # the queue view the estimator reads may lag a few ms
        tag = client.get("/v1/dashboard", headers=auth(tenant)).headers["ETag"]
        again = client.get("/v1/dashboard", headers={**auth(tenant), "If-None-Match": tag})
        return tag if again.status_code == 304 else None

    tag = wait_until(settled, message="an unchanged view to be 304")
    assert tag.startswith('W/"')
    not_modified = client.get("/v1/dashboard", headers={**auth(tenant), "If-None-Match": tag})
    assert not_modified.data == b"" and not_modified.headers["ETag"] == tag
    create(client, tenant)
    changed = client.get("/v1/dashboard", headers={**auth(tenant), "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag


def test_the_job_detail_lists_deliveries_and_is_conditional(
    client: FlaskClient, tenant: dict[str, str], runtime: Runtime
) -> None:
    pinned = {"duration_s": 0.1, "outcome": "completed"}
    job = create(client, tenant, callback_url=CALLBACK, simulate=pinned)["id"]
    runtime.simulator.step(time.time())
    runtime.simulator.step(time.time() + 1)
    resp = client.get(f"/v1/dashboard/jobs/{job}", headers=auth(tenant))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["job"]["id"] == job and body["job"]["status"] == "completed"
    [event] = body["deliveries"]
    assert event["type"] == "job.completed" and event["state"] == "pending"
    assert body["job"]["webhook"] == {
        "webhook_id": event["webhook_id"],
        "state": "pending",
        "attempts": 0,
    }
    again = client.get(
        f"/v1/dashboard/jobs/{job}", headers={**auth(tenant), "If-None-Match": resp.headers["ETag"]}
    )
    assert again.status_code == 304
    assert client.get(f"/v1/dashboard/jobs/{job}", headers=ADMIN).status_code == 200


def test_another_clients_job_is_404_for_every_dashboard_route(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    other = new_tenant(client, "globex")
    theirs = create(client, other, callback_url=CALLBACK)["id"]
    for method, path in [
        ("get", f"/v1/dashboard/jobs/{theirs}"),
        ("post", f"/v1/dashboard/jobs/{theirs}/cancel"),
        ("post", f"/v1/dashboard/jobs/{theirs}/redeliver"),
        ("get", "/v1/dashboard/jobs/job_unknown"),
        ("get", "/v1/dashboard/jobs/not-a-job-id"),
    ]:
        resp = getattr(client, method)(path, headers=auth(tenant))
        assert_problem(resp, 404, "job_not_found")
    assert client.get(f"/v1/dashboard/jobs/{theirs}", headers=auth(other)).status_code == 200


def test_cancel_from_the_dashboard(client: FlaskClient, tenant: dict[str, str]) -> None:
    other = new_tenant(client, "globex")
    mine = create(client, tenant, simulate={"duration_s": 30})["id"]
    theirs = create(client, other, simulate={"duration_s": 30})["id"]
    resp = client.post(f"/v1/dashboard/jobs/{mine}/cancel", headers=auth(tenant))
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"
    again = client.post(f"/v1/dashboard/jobs/{mine}/cancel", headers=auth(tenant))
    assert_problem(again, 409, "job_final")
    by_admin = client.post(f"/v1/dashboard/jobs/{theirs}/cancel", headers=ADMIN)
    assert by_admin.status_code == 200 and by_admin.get_json()["status"] == "cancelled"


def test_redeliver_from_the_dashboard(
    client: FlaskClient, tenant: dict[str, str], runtime: Runtime
) -> None:
    plain = create(client, tenant, simulate={"duration_s": 0.1})["id"]
    hooked = create(client, tenant, callback_url=CALLBACK, simulate={"duration_s": 0.1})["id"]
    waiting = create(client, tenant, callback_url=CALLBACK, simulate={"duration_s": 60})["id"]
    assert_problem(
        client.post(f"/v1/dashboard/jobs/{waiting}/redeliver", headers=auth(tenant)),
        409,
        "no_webhook",
    )
    runtime.simulator.step(time.time())
    runtime.simulator.step(time.time() + 1)
    assert_problem(
        client.post(f"/v1/dashboard/jobs/{plain}/redeliver", headers=auth(tenant)),
        409,
        "no_webhook",
    )
    resp = client.post(f"/v1/dashboard/jobs/{hooked}/redeliver", headers=ADMIN)
    assert resp.status_code == 202
    assert resp.headers["Location"] == f"/v1/dashboard/jobs/{hooked}"
    body = resp.get_json()
    assert body["job_id"] == hooked and body["state"] == "pending" and body["webhook_id"]


def test_credentials_are_required_and_checked(client: FlaskClient) -> None:
    resp = client.get("/v1/dashboard")
    assert_problem(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/v1/dashboard", "/v1/dashboard/jobs/job_x"):
        resp = client.get(path, headers={"Authorization": "Bearer vt_not_a_key"})
        assert_problem(resp, 401, "invalid_api_key")
    resp = client.post("/v1/dashboard/jobs/job_x/cancel", headers={"Authorization": "Basic x"})
    assert_problem(resp, 401, "unauthorized")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?status=running", "status"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?page=2", "page"),
        ("?client_id=" + "c" * 41, "client_id"),
    ],
)
def test_bad_query_parameters_are_422_naming_them(
    client: FlaskClient, tenant: dict[str, str], query: str, field: str
) -> None:
    resp = client.get(f"/v1/dashboard{query}", headers=auth(tenant))
    assert_problem(resp, 422, "validation_error", field)


def test_naming_a_client_one_may_not_see_is_404(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    other = new_tenant(client, "globex")
    for who, client_id in [(auth(tenant), other["id"]), (auth(tenant), "cli_none")]:
        resp = client.get(f"/v1/dashboard?client_id={client_id}", headers=who)
        assert_problem(resp, 404, "client_not_found")
    assert_problem(
        client.get("/v1/dashboard?client_id=cli_none", headers=ADMIN), 404, "client_not_found"
    )
    assert view(client, auth(tenant), f"?client_id={tenant['id']}")["viewer"]["role"] == "client"


def test_the_webhook_success_rate_counts_concluded_events(make_app: Any, tmp_path: Any) -> None:
    app: Flask = make_app(start=True)
    client = app.test_client()
    tenant = new_tenant(client, "acme")
    assert view(client, auth(tenant))["summary"]["webhook_success_rate"] is None
    create(client, tenant, callback_url=CALLBACK, simulate={"duration_s": 0, "webhook": "drop"})

    def concluded() -> dict[str, Any] | None:
        summary = view(client, auth(tenant))["summary"]
        return summary if summary["webhooks_concluded"] else None

    summary = wait_until(concluded, message="the dropped webhook to conclude")
    assert summary["webhooks_concluded"] == 1 and summary["webhook_success_rate"] == 0.0


def test_the_page_and_its_files_are_served_with_a_strict_policy(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'src="/dashboard/dashboard.js"' in page.data and b"//" not in page.data.split(
        b"<body>"
    )[0].replace(b"http://www.w3.org", b"")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    for name, mimetype in [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")]:
        resp = client.get(f"/dashboard/{name}")
        assert resp.status_code == 200 and resp.mimetype == mimetype and resp.headers["ETag"]
    assert_problem(client.get("/dashboard/secrets.txt"), 404, "not_found")
    assert_problem(client.get("/dashboard/..%2Fpage.py"), 404, "not_found")
