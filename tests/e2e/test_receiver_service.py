"""The receiver as a real process: restarts lose nothing acknowledged, long-polls are prompt."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.receiver_support import FEED_AUTH, FEED_TOKEN, SECRET, event_body, signed_headers
from tests.support import Service, start_service, wait_until

pytestmark = pytest.mark.timeout(90)


class Receivers:
    """Starts receivers on one database and stops whatever is left at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Service] = []

    def start(self, *extra: str) -> Service:
        args = [
            "--database-url",
            f"sqlite:///{self.workdir / 'receiver.db'}",
            "--secret",
            SECRET,
            "--credentials-file",
            "",
            "--feed-token",
            FEED_TOKEN,
            *extra,
        ]
        service = start_service(
            "callback_receiver", args, self.workdir, name=f"receiver{len(self.started)}"
        )
        self.started.append(service)
        return service


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Receivers]:
    pool = Receivers(tmp_path)
    yield pool
    for service in pool.started:
        if service.proc.poll() is None:
            service.kill()


def deliver(session: requests.Session, url: str, job_id: str, msg_id: str) -> int:
    body = event_body(job_id)
    resp = session.post(
        f"{url}/webhooks", data=body, headers=signed_headers(body, msg_id=msg_id), timeout=10
    )
    return resp.status_code


def feed_ids(url: str) -> list[str]:
    resp = requests.get(f"{url}/v1/events", params={"limit": 1000}, headers=FEED_AUTH, timeout=10)
    resp.raise_for_status()
    return [e["webhook_id"] for e in resp.json()["events"]]


def waiters(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    line = next(ln for ln in text.splitlines() if ln.startswith("receiver_feed_waiters "))
    return float(line.split()[1])


class LongPoll(threading.Thread):
    """One GET /v1/events?wait= in its own thread, timing its answer."""

    def __init__(self, url: str, **params: Any) -> None:
        super().__init__(daemon=True)
        self.url, self.params = url, params
        self.status = 0
        self.body: dict[str, Any] = {}
        self.returned_at = 0.0

    def run(self) -> None:
        try:
            resp = requests.get(
                f"{self.url}/v1/events", params=self.params, headers=FEED_AUTH, timeout=70
            )
            self.status, self.body = resp.status_code, resp.json()
        except requests.RequestException:
            self.status = -1
        self.returned_at = time.monotonic()


def start_long_poll(url: str, expected_waiters: int = 1, **params: Any) -> LongPoll:
    poll = LongPoll(url, **params)
    poll.start()
    wait_until(lambda: waiters(url) >= expected_waiters, timeout=5, message="long-poll blocked")
    return poll


def test_sigterm_exits_zero_and_restart_keeps_every_event(receivers: Receivers) -> None:
    service = receivers.start()
    with requests.Session() as session:
        sent = [f"msg_{i}" for i in range(20)]
        assert [deliver(session, service.url, f"job_{i}", m) for i, m in enumerate(sent)] == [
            204
        ] * 20
    assert service.stop(signal.SIGTERM) == 0
    assert "stopped" in service.log()
    again = receivers.start()
    assert feed_ids(again.url) == sent


def test_sigint_exits_zero(receivers: Receivers) -> None:
    assert receivers.start().stop(signal.SIGINT) == 0


def test_sigkill_loses_no_acknowledged_event(receivers: Receivers) -> None:
    service = receivers.start()
    acked: list[str] = []
    attempted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        with requests.Session() as session:
            for i in range(10_000):
                if stop.is_set():
                    return
                msg_id = f"msg_{worker}_{i}"
                with lock:
                    attempted.append(msg_id)
                try:
                    code = deliver(session, service.url, f"job_{worker}_{i}", msg_id)
                except requests.RequestException:
                    return
                if code == 204:
                    with lock:
                        acked.append(msg_id)

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 40, timeout=20, message="40 acknowledged webhooks")
    service.kill()  # mid-stream: some requests are in flight
    stop.set()
    for t in threads:
        t.join(timeout=15)
    again = receivers.start()
    stored = set(feed_ids(again.url))
    assert set(acked) <= stored, f"lost: {sorted(set(acked) - stored)}"
    # The sender retries whatever was not acknowledged: each is then stored exactly once.
    with requests.Session() as session:
        for msg_id in attempted:
            job_id = msg_id.replace("msg_", "job_")
            assert deliver(session, again.url, job_id, msg_id) == 204
    final = feed_ids(again.url)
    assert sorted(final) == sorted(set(attempted))


def test_long_poll_answers_promptly_when_a_webhook_arrives(receivers: Receivers) -> None:
    service = receivers.start()
    latencies = []
    cursor = "0"
    with requests.Session() as session:
        for i in range(5):
            poll = start_long_poll(service.url, after=cursor, wait=30)
            sent_at = time.monotonic()
            assert deliver(session, service.url, f"job_{i}", f"msg_{i}") == 204
            poll.join(timeout=10)
            assert poll.status == 200
            assert [e["webhook_id"] for e in poll.body["events"]] == [f"msg_{i}"]
            cursor = poll.body["cursor"]
            latencies.append(poll.returned_at - sent_at)
    # Measured separately (scripts/bench_receiver.py) at a few ms; generous bound for CI.
    assert max(latencies) < 0.5, latencies


def test_long_poll_times_out_cleanly(receivers: Receivers) -> None:
    service = receivers.start()
    started = time.monotonic()
    query = {"after": "7", "wait": 0.3}
    resp = requests.get(f"{service.url}/v1/events", params=query, headers=FEED_AUTH, timeout=10)
    elapsed = time.monotonic() - started
    assert resp.status_code == 200
    assert resp.json() == {"events": [], "cursor": "7"}
    assert 0.3 <= elapsed < 1.5


def test_sigterm_during_a_long_poll_exits_zero_promptly(receivers: Receivers) -> None:
    service = receivers.start()
    poll = start_long_poll(service.url, wait=60)
    started = time.monotonic()
    assert service.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 3.0
    poll.join(timeout=5)
    assert not poll.is_alive()


def test_busy_long_polls_never_block_webhooks(receivers: Receivers) -> None:
    service = receivers.start("--threads", "4", "--max-waiters", "2")
    polls = [start_long_poll(service.url, n, job_id="job_never", wait=30) for n in (1, 2)]
    started = time.monotonic()
    refused = requests.get(
        f"{service.url}/v1/events", params={"wait": 30}, headers=FEED_AUTH, timeout=10
    )
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["code"] == "too_many_waiters"
    with requests.Session() as session:
        codes = [deliver(session, service.url, f"job_{i}", f"msg_{i}") for i in range(10)]
    assert codes == [204] * 10
    assert time.monotonic() - started < 3.0
    assert all(p.is_alive() for p in polls)


def test_hundred_concurrent_webhooks_are_all_stored(receivers: Receivers) -> None:
    service = receivers.start()
    start = threading.Barrier(100)
    codes: dict[str, int] = {}

    def send(i: int) -> None:
        body = event_body(f"job_{i}")
        headers = signed_headers(body, msg_id=f"msg_{i}")
        start.wait()
        resp = requests.post(f"{service.url}/webhooks", data=body, headers=headers, timeout=30)
        codes[f"msg_{i}"] = resp.status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(codes) == 100 and set(codes.values()) == {204}
    assert sorted(feed_ids(service.url)) == sorted(codes)
