"""The shapes users write, against the real services: the path each job's end took, its lag,
and the status requests the server itself counted (its ``/metrics``)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from client_lib import TranslationClient
from tests.e2e.servers import Stack, start_stack
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)
STATUS_ROUTES = ("/v1/jobs", "/v1/jobs/<job_id>")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    started = start_stack(tmp_path)
    yield started
    started.stop()


def status_requests(stack: Stack) -> int:
    """GET /v1/jobs and GET /v1/jobs/{id} answered, as the server's metrics count them."""
    text = requests.get(f"{stack.server.url}/metrics", timeout=5).text
    total = 0.0
    for route in STATUS_ROUTES:
        pattern = (
            rf'^vt_http_requests_total\{{method="GET",route="{re.escape(route)}",[^}}]*\}} (\S+)$'
        )
        total += sum(float(v) for v in re.findall(pattern, text, re.M))
    return int(total)


def lag_when_asked(client: TranslationClient, job_id: str, asked: float) -> float:
    """Seconds from the later of the job's end and the call, to the call returning it."""
    detection = client.detection(job_id)
    assert detection is not None and detection.lag_s is not None
    finished = detection.detected_at - detection.lag_s
    return detection.detected_at - max(finished, asked)


def test_jobs_created_then_waited_in_turn_all_come_by_webhook(stack: Stack) -> None:
    with stack.client() as client:
        jobs = [
            client.create_job(simulate={"duration_s": 1.0 + 0.2 * i, "outcome": "completed"})
            for i in range(5)
        ]
        for job in jobs:
            asked = time.time()
            client.wait(job.id, timeout=30)
            assert client.detection(job.id).path == "webhook"  # type: ignore[union-attr]
            assert lag_when_asked(client, job.id, asked) < 0.5
    assert status_requests(stack) == 0


def test_one_job_with_a_lost_webhook_is_found_within_a_second(stack: Stack) -> None:
    with stack.client() as client:
        job = client.create_job(
            simulate={"duration_s": 2.0, "outcome": "completed", "webhook": "drop"}
        )
        client.wait(job.id, timeout=30)
        detection = client.detection(job.id)
        assert detection is not None and detection.path == "poll"
        assert detection.lag_s is not None and detection.lag_s < 1.5
    assert status_requests(stack) == 1


def test_lost_webhooks_waited_in_turn_cost_one_request_each(stack: Stack) -> None:
    with stack.client() as client:
        jobs = [
            client.create_job(
                simulate={"duration_s": 1.0 + 0.1 * i, "outcome": "completed", "webhook": "drop"}
            )
            for i in range(4)
        ]
        for job in jobs:
            asked = time.time()
            client.wait(job.id, timeout=30)
            assert lag_when_asked(client, job.id, asked) < 1.5
    assert status_requests(stack) <= 4


def test_a_plain_webhook_consumer_gets_job_events_alone(stack: Stack) -> None:
    """Channel events go only to the endpoint that asked: beside a channel endpoint whose
    heartbeats flow, a plain one sees its job event alone, with no sequence number."""
    auth = {"Authorization": f"Bearer {stack.client().api_key}"}
    plain, channel = f"{stack.receiver.url}/webhooks", f"{stack.receiver.url}/webhooks?ch=1"
    for url, asked in ((plain, False), (channel, True)):
        resp = requests.post(
            f"{stack.server.url}/v1/jobs",
            json={
                "callback_url": url,
                "channel_events": asked,
                "simulate": {"duration_s": 0.5, "outcome": "completed"},
            },
            headers=auth,
            timeout=5,
        )
        assert resp.status_code == 201

    def both_ended_and_channel_heard() -> dict | None:  # type: ignore[type-arg]
        page = requests.get(
            f"{stack.receiver.url}/v1/events?after=0", headers=stack.feed_auth(), timeout=5
        ).json()
        ended = [e for e in page["events"] if e["type"] == "job.completed"]
        return page if len(ended) == 2 and page.get("channels") else None

    page = wait_until(both_ended_and_channel_heard, timeout=20, message="both ends, a heartbeat")
    assert {c["endpoint"] for c in page["channels"]} == {channel}
    beats = [e for e in page["events"] if e["type"] == "channel.heartbeat"]
    assert all(b["data"]["endpoint"] == channel for b in beats)
    jobs = {e["data"]["callback_url"]: e for e in page["events"] if e["type"] == "job.completed"}
    assert "seq" not in jobs[plain] and jobs[channel]["seq"] == 1
