"""Webhooks from a real server to a real endpoint: format, retries, faults, crash, rotation."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import requests

from client_lib.models import parse_time
from tests.e2e.servers import ADMIN, create_job, deliveries, new_tenant, start_server, wait_final
from tests.sink import Sink
from tests.support import Service, wait_until

FAST = ["--webhook-retry-schedule", "0.2,0.4,0.8,1.6", "--webhook-timeout", "1"]
QUICK_JOB = {"duration_s": 0.2, "outcome": "completed"}


@pytest.fixture
def server(tmp_path: Path) -> Any:
    srv = start_server(tmp_path, *FAST)
    yield srv
    srv.stop()


def wait_delivery_state(
    server: Service, job_id: str, auth: dict[str, str], state: str, timeout: float = 15
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        events = deliveries(server.url, job_id, auth)
        return events[0] if events and events[0]["state"] == state else None

    return wait_until(reached, timeout=timeout, message=f"delivery of {job_id} to be {state}")


def test_webhook_is_standard_webhooks_and_verifies_with_the_reference_package(
    server: Service,
) -> None:
    tenant = new_tenant(server.url)
    with Sink([tenant["webhook_secret"]]) as sink:
        ok = create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
        failed = create_job(
            server.url,
            tenant["auth"],
            callback_url=sink.url,
            simulate={"duration_s": 0.3, "outcome": "error"},
        )
        arrivals = sink.wait_for(2)
    by_job = {a.json()["data"]["id"]: a for a in arrivals}
    for arrival in arrivals:
        assert arrival.verified_with == [0]
        assert arrival.webhook_id.startswith("msg_")
        assert arrival.headers["content-type"] == "application/json"
        assert arrival.headers["webhook-signature"].startswith("v1,")
    completed = by_job[ok["id"]].json()
    assert completed["type"] == "job.completed" and completed["data"]["status"] == "completed"
    assert completed["data"]["result"]["video_url"]
    assert by_job[failed["id"]].json()["type"] == "job.error"
    # the event's timestamp is when it happened, the job's finished_at
    assert completed["timestamp"] == completed["data"]["finished_at"]


def test_channel_events_verify_with_the_reference_package_too(server: Service) -> None:
    """A numbered job event and the heartbeats that follow it, as the endpoint gets them."""
    tenant = new_tenant(server.url)
    with Sink([tenant["webhook_secret"]]) as sink:
        job = create_job(
            server.url,
            tenant["auth"],
            callback_url=sink.url,
            channel_events=True,
            simulate=QUICK_JOB,
        )

        def told_sent() -> list[Any] | None:
            arrivals = list(sink.arrivals)
            beats = [a.json() for a in arrivals if a.json()["type"] == "channel.heartbeat"]
            sent = [b for b in beats if [e["state"] for e in b["data"]["events"]] == ["sent"]]
            return arrivals if sent else None

        arrivals = wait_until(told_sent, timeout=10, message="a heartbeat saying it was sent")
    assert all(a.verified_with == [0] for a in arrivals)
    assert len({a.webhook_id for a in arrivals}) == len(arrivals)  # each heartbeat its own id
    (event,) = [a.json() for a in arrivals if a.json()["type"] == "job.completed"]
    assert event["seq"] == 1 and event["data"]["id"] == job["id"]
    beat = next(a.json()["data"] for a in arrivals if a.json()["type"] == "channel.heartbeat")
    assert beat["endpoint"] == sink.url and beat["interval_s"] == 1.0


def test_500_twice_then_204_gives_three_attempts_with_one_webhook_id(server: Service) -> None:
    tenant = new_tenant(server.url)
    with Sink([tenant["webhook_secret"]]) as sink:
        sink.script = [(500, {}, 0), (500, {}, 0)]
        job = create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
        arrivals = sink.wait_for(3)
        event = wait_delivery_state(server, job["id"], tenant["auth"], "delivered")
    assert len({a.webhook_id for a in arrivals}) == 1
    assert all(a.verified_with == [0] for a in arrivals)
    assert len({a.headers["webhook-timestamp"] for a in arrivals}) >= 1
    assert [a["status_code"] for a in event["attempt_log"]] == [500, 500, 204]
    assert [a["outcome"] for a in event["attempt_log"]] == ["retry", "retry", "delivered"]
    assert all(a["latency_ms"] is not None for a in event["attempt_log"])


def test_410_stops_after_exactly_one_attempt(server: Service) -> None:
    tenant = new_tenant(server.url)
    with Sink([tenant["webhook_secret"]]) as sink:
        sink.script = [(410, {}, 0)]
        job = create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
        event = wait_delivery_state(server, job["id"], tenant["auth"], "failed")
        assert len(sink.arrivals) == 1
    assert [a["outcome"] for a in event["attempt_log"]] == ["gone"]


def test_429_with_retry_after_is_not_retried_sooner(server: Service) -> None:
    tenant = new_tenant(server.url)
    with Sink([tenant["webhook_secret"]]) as sink:
        sink.script = [(429, {"Retry-After": "2"}, 0)]
        create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
        first, second = sink.wait_for(2, timeout=10)
    assert second.at - first.at >= 2.0  # the schedule alone would retry within 0.2 s
    assert first.webhook_id == second.webhook_id


def test_endpoint_that_never_answers_is_timed_out_and_retried(server: Service) -> None:
    tenant = new_tenant(server.url)
    with Sink([tenant["webhook_secret"]]) as sink:
        sink.script = [(204, {}, 3.0)]  # longer than --webhook-timeout 1
        job = create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
        event = wait_delivery_state(server, job["id"], tenant["auth"], "delivered")
    first, second = event["attempt_log"]
    assert first["status_code"] is None and "Timeout" in first["error"]
    assert 900 <= first["latency_ms"] < 2500 and second["status_code"] == 204


def test_exhausted_retries_are_marked_failed_and_can_be_redelivered(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--webhook-retry-schedule", "0.1,0.1")
    try:
        tenant = new_tenant(server.url)
        with Sink([tenant["webhook_secret"]]) as sink:
            sink.script = [(500, {}, 0)] * 3
            job = create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
            event = wait_delivery_state(server, job["id"], tenant["auth"], "failed")
            assert [a["outcome"] for a in event["attempt_log"]] == ["retry", "retry", "failed"]
            resp = requests.post(
                f"{server.url}/v1/jobs/{job['id']}/redeliver", headers=tenant["auth"], timeout=5
            )
            assert resp.status_code == 202 and resp.json()["webhook_id"] == event["webhook_id"]
            arrivals = sink.wait_for(4)
            assert {a.webhook_id for a in arrivals} == {event["webhook_id"]}
            wait_delivery_state(server, job["id"], tenant["auth"], "delivered")
    finally:
        server.stop()


def test_redeliver_without_webhook_is_409(server: Service) -> None:
    tenant = new_tenant(server.url)
    job = create_job(server.url, tenant["auth"], simulate={"duration_s": 60})
    resp = requests.post(
        f"{server.url}/v1/jobs/{job['id']}/redeliver", headers=tenant["auth"], timeout=5
    )
    assert resp.status_code == 409 and resp.json()["code"] == "no_webhook"
    assert "no callback_url" in resp.json()["detail"]


def test_drop_rate_one_sends_nothing_and_polling_still_works(tmp_path: Path) -> None:
    server = start_server(tmp_path, *FAST, "--fault-drop-webhook", "1.0")
    try:
        tenant = new_tenant(server.url)
        with Sink([tenant["webhook_secret"]]) as sink:
            jobs = [
                create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
                for _ in range(3)
            ]
            final = wait_final(server.url, [j["id"] for j in jobs], tenant["auth"])
            for job in jobs:
                event = wait_delivery_state(server, job["id"], tenant["auth"], "dropped")
                assert [a["outcome"] for a in event["attempt_log"]] == ["dropped"]
            assert sink.arrivals == []
        assert [j["status"] for j in final] == ["completed"] * 3
    finally:
        server.stop()


def test_duplicate_fault_delivers_the_same_event_twice(server: Service) -> None:
    tenant = new_tenant(server.url)
    with Sink([tenant["webhook_secret"]]) as sink:
        create_job(
            server.url,
            tenant["auth"],
            callback_url=sink.url,
            simulate={**QUICK_JOB, "webhook": "duplicate"},
        )
        first, second = sink.wait_for(2)
    assert first.webhook_id == second.webhook_id and first.body == second.body


def test_secret_rotation_signs_with_old_and_new(server: Service) -> None:
    tenant = new_tenant(server.url)
    rotated = requests.post(
        f"{server.url}/v1/clients/{tenant['id']}/rotate-secret",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=5,
    ).json()
    with Sink([tenant["webhook_secret"], rotated["webhook_secret"]]) as sink:
        create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
        (arrival,) = sink.wait_for(1)
    assert len(arrival.headers["webhook-signature"].split(" ")) == 2
    assert arrival.verified_with == [0, 1]  # both the old and the new secret verify it


def test_sigkill_with_pending_deliveries_then_restart_delivers_all(tmp_path: Path) -> None:
    # the breaker off: five events failing at once would pause the endpoint for its cooldown
    schedule = ["--webhook-retry-schedule", "0.5,1,2,4,8", "--webhook-breaker-failures", "0"]
    server = start_server(tmp_path, *schedule)
    tenant = new_tenant(server.url)
    sink = Sink([tenant["webhook_secret"]])
    port = sink.port
    sink.server.server_close()  # the endpoint is down: connections are refused
    jobs = [
        create_job(server.url, tenant["auth"], callback_url=sink.url, simulate=QUICK_JOB)
        for _ in range(5)
    ]
    wait_final(server.url, [j["id"] for j in jobs], tenant["auth"])
    wait_until(
        lambda: all(
            len(deliveries(server.url, j["id"], tenant["auth"])[0]["attempt_log"]) >= 2
            for j in jobs
        ),
        timeout=10,
        message="failed attempts",
    )
    server.kill()
    with Sink([tenant["webhook_secret"]], port=port) as sink:
        server = start_server(tmp_path, *schedule)
        try:
            arrivals = sink.wait_for(5, timeout=20)
            events = [
                wait_delivery_state(server, j["id"], tenant["auth"], "delivered") for j in jobs
            ]
        finally:
            server.stop()
    assert {a.json()["data"]["id"] for a in arrivals} == {j["id"] for j in jobs}
    assert all(a.verified_with == [0] for a in arrivals)
    log = events[0]["attempt_log"]
    gaps = [
        parse_time(b["attempted_at"]) - parse_time(a["attempted_at"])  # type: ignore[operator]
        for a, b in itertools.pairwise(log)
    ]
    print(f"observed attempt gaps (s) across the crash: {[round(g, 2) for g in gaps]}")
    print(
        "attempts:",
        [
            (a["attempt"], a["attempted_at"][11:23], a["status_code"] or a["error"][:30])
            for a in log
        ],
    )
    assert log[0]["error"] and "Connection" in log[0]["error"] and log[-1]["status_code"] == 204


def test_forbidden_callback_is_refused_and_never_contacted(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--callback-allow", "127.0.0.2/32")
    try:
        tenant = new_tenant(server.url)
        with Sink() as sink:
            for url in (
                sink.url,
                sink.url.replace("127.0.0.1", "localhost"),
                "file:///etc/passwd",
                "gopher://127.0.0.2/x",
                "http://10.1.2.3/x",
                "http://169.254.169.254/latest/meta-data",
                # Python's urlsplit reads host 127.0.0.2 (allowed), urllib3 the sink's address
                f"http://127.0.0.1:{sink.port}\\@127.0.0.2:9/webhooks",
                f"http://127.0.0.1:{sink.port}@127.0.0.2:9/webhooks",
            ):
                resp = requests.post(
                    f"{server.url}/v1/jobs",
                    headers=tenant["auth"],
                    json={"callback_url": url},
                    timeout=5,
                )
                assert resp.status_code == 422, url
                assert resp.json()["code"] == "invalid_callback_url"
                assert resp.json()["detail"].startswith("callback_url: ")
            assert sink.arrivals == []
    finally:
        server.stop()
