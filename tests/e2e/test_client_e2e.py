"""The client library against real servers: each waiting scenario, with faults from the server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from client_lib import JobStatus, RateLimited, TranslationClient, WaitTimeout
from tests.e2e.servers import Stack, start_stack
from tests.support import wait_until

RETRIES = ("--webhook-retry-schedule", "0.5,1,1,1,1,1,1")
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    marker = request.node.get_closest_marker("server_args")
    args = marker.args if marker else ()
    started = start_stack(tmp_path, *RETRIES, *args)
    yield started
    started.stop()


def ids_of(jobs: list) -> list[str]:  # type: ignore[type-arg]
    return [j.id for j in jobs]


def test_webhooks_working_need_no_status_request(stack: Stack) -> None:
    with stack.client() as client:
        jobs = [
            client.create_job(simulate={"duration_s": 0.5 + i * 0.3, "outcome": "completed"})
            for i in range(4)
        ]
        ended = list(client.as_completed(ids_of(jobs), timeout=30))
        assert sorted(ids_of(ended)) == sorted(ids_of(jobs))
        assert {client.detection(j.id).path for j in jobs} == {"webhook"}  # type: ignore
        assert max(client.detection(j.id).lag_s for j in jobs) < 0.5  # type: ignore
        assert client.stats.status_requests == 0


def test_webhooks_to_another_address_of_the_receiver_are_waited_on_the_same(stack: Stack) -> None:
    # the server posts to one address of the receiver, the client reads the feed at another
    public = stack.receiver.url.replace("127.0.0.1", "localhost") + "/webhooks"
    with stack.client(callback_url=public) as client:
        job = client.create_job(simulate={"duration_s": 0.5, "outcome": "completed"})
        assert job.callback_url == public
        assert client.wait(job.id, timeout=30).status is JobStatus.COMPLETED
        assert client.detection(job.id).path == "webhook"  # type: ignore[union-attr]
        assert client.stats.status_requests == 0


@pytest.mark.server_args("--fault-drop-webhook", "1.0")
def test_lost_webhooks_resolve_by_polling(stack: Stack) -> None:
    with stack.client() as client:
        jobs = [
            client.create_job(simulate={"duration_s": 0.5 + i * 0.2, "outcome": "completed"})
            for i in range(5)
        ]
        ended = list(client.as_completed(ids_of(jobs), timeout=30))
        assert all(j.status is JobStatus.COMPLETED for j in ended)
        assert {client.detection(j.id).path for j in jobs} == {"poll"}  # type: ignore
        assert client.stats.status_requests <= 5
        assert client.stats.waiting.lost_webhooks == 5  # the channel said each was sent
        assert max(client.detection(j.id).lag_s for j in jobs) < 1.5  # type: ignore


def test_receiver_down_from_the_start(stack: Stack) -> None:
    stack.receiver.stop()
    with stack.client() as client:
        job = client.create_job(simulate={"duration_s": 1.0, "outcome": "completed"})
        done = client.wait(job.id, timeout=30)
        detection = client.detection(job.id)
        assert done.status is JobStatus.COMPLETED and detection and detection.path == "poll"
        assert detection.lag_s is not None and detection.lag_s < 1.0
        assert client.stats.waiting.receiver_outages == 1


def test_receiver_dies_mid_wait_and_comes_back(stack: Stack) -> None:
    with stack.client() as client:
        early = client.create_job(simulate={"duration_s": 1.5, "outcome": "completed"})
        late = client.create_job(simulate={"duration_s": 6.0, "outcome": "completed"})
        stack.receiver.stop()
        first = next(client.as_completed([early.id, late.id], timeout=30))
        assert first.id == early.id
        assert client.detection(early.id).path == "poll"  # type: ignore[union-attr]
        stack.restart_receiver()
        client.wait(late.id, timeout=30)
        assert client.detection(late.id).path == "webhook"  # type: ignore[union-attr]
        assert client.stats.waiting.receiver_outages == 1
        assert client._core.receiver_up


@pytest.mark.server_args("--fault-duplicate-webhook", "1.0")
def test_duplicate_webhooks_are_reported_once(stack: Stack) -> None:
    with stack.client() as client:
        jobs = [
            client.create_job(simulate={"duration_s": 0.3, "outcome": "completed"})
            for _ in range(3)
        ]
        ended = list(client.as_completed(ids_of(jobs), timeout=30))
        assert sorted(ids_of(ended)) == sorted(ids_of(jobs))  # each once
        # the server sent each twice; the receiver stored each webhook-id once
        for job in jobs:
            outcomes = wait_until(
                lambda j=job: [
                    a["outcome"] for e in client.deliveries(j.id) for a in e["attempt_log"]
                ],
                timeout=10,
            )
            assert outcomes == ["delivered", "delivered"]
        feed = requests.get(
            f"{stack.receiver.url}/v1/events", headers=stack.feed_auth(), timeout=5
        ).json()["events"]
        job_events = [e for e in feed if e["type"].startswith("job.")]
        assert sorted(e["data"]["id"] for e in job_events) == sorted(ids_of(jobs))


@pytest.mark.server_args("--rate-limit", "1", "--rate-burst", "1")
def test_429_retry_after_is_honoured(stack: Stack) -> None:
    with stack.client() as client:
        job = client.create_job(simulate={"duration_s": 30})
        started = time.monotonic()
        assert client.get_job(job.id).id == job.id  # 429 first, retried after Retry-After
        assert time.monotonic() - started >= 0.9
        with pytest.raises(RateLimited) as info:
            client.get_jobs([job.id], retry=False)
        assert info.value.retry_after is not None and info.value.retry_after >= 1


def test_deadline_raises_wait_timeout(stack: Stack) -> None:
    with stack.client() as client:
        job = client.create_job(simulate={"duration_s": 60})
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as info:
            client.wait(job.id, timeout=1.0)
        assert 1.0 <= time.monotonic() - started < 3.0
        assert info.value.last_status is JobStatus.PENDING


@pytest.mark.server_args("--fault-status-503", "0.5", "--seed", "5")
def test_status_outages_are_retried(stack: Stack) -> None:
    stack.receiver.stop()
    with stack.client() as client:
        jobs = [
            client.create_job(simulate={"duration_s": 0.5, "outcome": "completed"})
            for _ in range(3)
        ]
        ended = list(client.as_completed(ids_of(jobs), timeout=30))
        assert len(ended) == 3


def test_waiting_threads_share_one_feed(stack: Stack) -> None:
    import threading

    with stack.client() as client:
        jobs = [
            client.create_job(simulate={"duration_s": 0.5 + i * 0.2, "outcome": "completed"})
            for i in range(6)
        ]
        results: dict[str, str] = {}

        def wait_one(job_id: str) -> None:
            results[job_id] = client.wait(job_id, timeout=30).status.value

        threads = [threading.Thread(target=wait_one, args=(j.id,)) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        assert results == {j.id: "completed" for j in jobs}
        assert client.stats.status_requests == 0


def test_client_defaults_come_from_the_local_setup(stack: Stack) -> None:
    client = TranslationClient(
        credentials_file=str(stack.creds),
        base_url=stack.server.url,
        receiver_url=stack.receiver.url,
    )
    assert client.api_key and client.api_key.startswith("vt_")
    assert client.default_callback_url == f"{stack.receiver.url}/webhooks"
    health = client.health()
    assert health["server"]["status"] == "ok" and health["receiver"]["status"] == "ok"
