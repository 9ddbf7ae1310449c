"""The receiver's feed on real services: its token from the local set-up, refused without
it, and its capacity: beyond it a 503 with Retry-After that both clients honour."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from client_lib import AsyncTranslationClient, AuthenticationError
from client_lib.localsetup import load_local_setup
from client_lib.models import JobStatus
from tests import support
from tests.e2e.servers import Stack, start_server, start_stack
from tests.receiver_support import SECRET, event_body, signed_headers
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path)
    yield running
    running.stop()


def test_the_local_setup_holds_the_feed_token_and_its_client_reads_the_feed(stack: Stack) -> None:
    token = load_local_setup(stack.creds).receiver_token
    assert token and len(token) >= 32
    assert oct(stack.creds.stat().st_mode & 0o777) == "0o600"
    bare = requests.get(f"{stack.receiver.url}/v1/events", timeout=5)
    assert bare.status_code == 401 and bare.json()["code"] == "unauthorized"
    assert bare.headers["WWW-Authenticate"] == 'Bearer realm="vt-receiver"'
    with stack.client() as client:  # the token from the set-up file, nothing typed
        assert client.receiver_token == token
        job = client.create_job(simulate={"duration_s": 0.5, "outcome": "completed"})
        done = client.wait(job.id, timeout=30)
        assert done.status is JobStatus.COMPLETED
        assert client.detection(job.id).path == "webhook"
        assert client.stats.status_requests == 0


def test_a_wrong_token_is_a_typed_error_not_a_hang(stack: Stack) -> None:
    with stack.client(receiver_token="not-the-feed-token-0123456789") as client:
        with pytest.raises(AuthenticationError) as caught:
            client.create_job(simulate={"duration_s": 0.5, "outcome": "completed"})
    assert caught.value.status_code == 401 and caught.value.code == "invalid_feed_token"
    assert "feed token" in str(caught.value)


def test_a_wrong_token_is_a_typed_error_for_the_async_client_too(stack: Stack) -> None:
    async def main() -> None:
        async with AsyncTranslationClient(
            base_url=stack.server.url,
            receiver_url=stack.receiver.url,
            credentials_file=str(stack.creds),
            receiver_token="not-the-feed-token-0123456789",
        ) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.create_job(simulate={"duration_s": 0.5, "outcome": "completed"})
            assert caught.value.code == "invalid_feed_token"

    asyncio.run(main())


def test_a_client_already_waiting_gets_the_error_when_the_token_is_wrong(stack: Stack) -> None:
    with stack.client() as good:
        job = good.create_job(simulate={"duration_s": 30, "outcome": "completed"})
    with stack.client(receiver_token="not-the-feed-token-0123456789") as client:
        with pytest.raises(AuthenticationError):
            client.wait(job.id, timeout=20)


class ParkedPoll(threading.Thread):
    """A long-poll of the feed for a job that never ends, holding a parking slot."""

    def __init__(self, url: str, token: str, wait: float) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.wait = url, token, wait
        self.status = 0

    def run(self) -> None:
        resp = requests.get(
            f"{self.url}/v1/events",
            params={"job_id": "job_never", "wait": self.wait},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=self.wait + 10,
        )
        self.status = resp.status_code


@pytest.fixture
def small_stack(tmp_path: Path) -> Iterator[Stack]:
    """Both services, the receiver with a single parking slot."""
    server = start_server(tmp_path)
    creds = tmp_path / "local.json"
    try:
        receiver = support.start_receiver(
            tmp_path, "--threads", "4", "--max-waiters", "1", creds=creds
        )
    except BaseException:
        server.stop()
        raise
    running = Stack(server, receiver, creds, tmp_path)
    yield running
    running.stop()


def metrics_value(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{name} "))
    return float(line.split()[1])


def refused(stack: Stack) -> float:
    return metrics_value(stack.receiver.url, "receiver_feed_waits_refused_total")


def hold_the_only_slot(stack: Stack, seconds: float) -> ParkedPoll:
    token = load_local_setup(stack.creds).receiver_token
    assert token
    poll = ParkedPoll(stack.receiver.url, token, seconds)
    poll.start()
    wait_until(
        lambda: metrics_value(stack.receiver.url, "receiver_feed_waiters") == 1,
        message="the slot taken",
    )
    over = requests.get(
        f"{stack.receiver.url}/v1/events",
        params={"wait": 5},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert over.status_code == 503 and over.headers["Retry-After"] == "1"
    body = over.json()
    assert (body["code"], body["field"]) == ("too_many_waiters", "wait")
    return poll


def test_beyond_capacity_the_sync_client_comes_back_after_retry_after(small_stack: Stack) -> None:
    poll = hold_the_only_slot(small_stack, 2.5)
    before = refused(small_stack)
    with small_stack.client() as client:
        job = client.create_job(simulate={"duration_s": 1.0, "outcome": "completed"})
        assert client.wait(job.id, timeout=30).status is JobStatus.COMPLETED
    poll.join(timeout=15)
    assert poll.status == 200
    # Refused while the slot was held (about 2 s), once a second: never a tight loop.
    assert 1 <= refused(small_stack) - before <= 4


def test_beyond_capacity_the_async_client_comes_back_after_retry_after(
    small_stack: Stack,
) -> None:
    poll = hold_the_only_slot(small_stack, 2.5)
    before = refused(small_stack)

    async def main() -> JobStatus:
        async with AsyncTranslationClient(
            base_url=small_stack.server.url,
            receiver_url=small_stack.receiver.url,
            credentials_file=str(small_stack.creds),
        ) as client:
            job = await client.create_job(simulate={"duration_s": 1.0, "outcome": "completed"})
            return (await client.wait(job.id, timeout=30)).status

    assert asyncio.run(main()) is JobStatus.COMPLETED
    poll.join(timeout=15)
    assert 1 <= refused(small_stack) - before <= 4


def test_a_receiver_with_its_own_token(tmp_path: Path) -> None:
    token = "a-feed-token-of-my-own-0123456789"
    with support.start_receiver(tmp_path, "--feed-token", token, creds=tmp_path / "none.json") as r:
        auth = {"Authorization": f"Bearer {token}"}
        page = requests.get(f"{r.url}/v1/events?after=latest", headers=auth, timeout=5)
        assert page.json() == {"events": [], "cursor": "0"}
        final = requests.get(f"{r.url}/v1/events/job_x", headers=auth, timeout=5)
        assert final.status_code == 404 and final.json()["code"] == "event_not_found"
        bare = requests.get(f"{r.url}/v1/events/job_x", timeout=5)
        assert bare.status_code == 401 and bare.json()["field"] == "Authorization"


def test_a_receiver_with_no_token_from_anywhere_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "callback_receiver",
            "--port",
            "0",
            "--credentials-file",
            "",
            "--database-url",
            f"sqlite:///{tmp_path / 'r.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 2
    assert "--feed-token" in done.stderr


def test_the_shipped_receiver_parks_512_long_polls_and_still_takes_webhooks(
    tmp_path: Path,
) -> None:
    token = "a-feed-token-for-many-waiters-0123"
    with support.start_receiver(
        tmp_path, "--secret", SECRET, "--feed-token", token, "--log-level", "WARNING"
    ) as receiver:
        socks = []
        try:
            for i in range(512):
                sock = socket.create_connection(("127.0.0.1", receiver.port))
                sock.sendall(
                    f"GET /v1/events?job_id=job_{i}&wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\n\r\n".encode()
                )
                socks.append(sock)
            wait_until(
                lambda: metrics_value(receiver.url, "receiver_feed_waiters") == 512,
                timeout=30,
                message="512 parked long-polls",
            )
            auth = {"Authorization": f"Bearer {token}"}
            over = requests.get(f"{receiver.url}/v1/events?wait=5", headers=auth, timeout=10)
            assert over.status_code == 503 and over.headers["Retry-After"] == "1"
            with requests.Session() as session:
                for i in range(20):
                    body = event_body(f"job_other_{i}")
                    resp = session.post(
                        f"{receiver.url}/webhooks",
                        data=body,
                        headers=signed_headers(body),
                        timeout=10,
                    )
                    assert resp.status_code == 204
                body = event_body("job_7")  # wakes the one long-poll waiting for it
                assert (
                    session.post(
                        f"{receiver.url}/webhooks",
                        data=body,
                        headers=signed_headers(body),
                        timeout=10,
                    ).status_code
                    == 204
                )
            socks[7].settimeout(10)
            answer = socks[7].recv(65536)
            while b"job_7" not in answer and (more := socks[7].recv(65536)):
                answer += more
            assert answer.startswith(b"HTTP/1.1 200") and b'"job_7"' in answer
            assert metrics_value(receiver.url, "receiver_feed_waiters") == 511
        finally:
            for sock in socks:
                sock.close()
