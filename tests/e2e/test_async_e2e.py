"""The async client against the real services: the path each job's end took, its lag, and
the status requests the server itself counted (its ``/metrics``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client_lib import AsyncTranslationClient, JobStatus
from tests.e2e.servers import Stack, start_stack
from tests.e2e.test_waiting_shapes import lag_when_asked, status_requests
from tests.support import ADMIN

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    started = start_stack(tmp_path)
    yield started
    started.stop()


class CountingTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, counting the feed long-polls in flight at once."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.long_polls = 0
        self.most_long_polls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        long_poll = request.url.path == "/v1/events" and "wait" in request.url.params
        self.long_polls += long_poll
        self.most_long_polls = max(self.most_long_polls, self.long_polls)
        try:
            return await self._inner.handle_async_request(request)
        finally:
            self.long_polls -= long_poll

    async def aclose(self) -> None:
        await self._inner.aclose()


def async_client(stack: Stack, **overrides: Any) -> AsyncTranslationClient:
    """An async client of this stack (the demo client's key, the receiver as callback)."""
    return AsyncTranslationClient(
        base_url=stack.server.url,
        receiver_url=stack.receiver.url,
        credentials_file=str(stack.creds),
        seed=7,
        **overrides,
    )


def test_jobs_awaited_in_turn_all_come_by_webhook(stack: Stack) -> None:
    async def main() -> None:
        async with async_client(stack) as client:
            jobs = [
                await client.create_job(
                    simulate={"duration_s": 1.0 + 0.2 * i, "outcome": "completed"}
                )
                for i in range(5)
            ]
            for job in jobs:
                asked = time.time()
                await client.wait(job.id, timeout=30)
                assert client.detection(job.id).path == "webhook"  # type: ignore[union-attr]
                assert lag_when_asked(client, job.id, asked) < 0.5  # type: ignore[arg-type]

    asyncio.run(main())
    assert status_requests(stack) == 0


def test_a_lost_webhook_is_found_within_a_second_and_a_half(stack: Stack) -> None:
    async def main() -> None:
        async with async_client(stack) as client:
            handle = await client.submit(
                simulate={"duration_s": 2.0, "outcome": "completed", "webhook": "drop"}
            )
            assert (await handle.result(timeout=30)).status is JobStatus.COMPLETED
            detection = client.detection(handle.id)
            assert detection is not None and detection.path == "poll"
            assert detection.lag_s is not None and detection.lag_s < 1.5
            assert client.stats.waiting.lost_webhooks == 1

    asyncio.run(main())
    assert status_requests(stack) == 1


def test_twenty_gathered_waits_share_the_feed_and_ask_nothing(stack: Stack) -> None:
    transport = CountingTransport()

    async def main() -> None:
        async with async_client(stack, transport=transport) as client:
            jobs = [
                await client.create_job(
                    simulate={"duration_s": 0.5 + 0.05 * i, "outcome": "completed"}
                )
                for i in range(20)
            ]
            done = await asyncio.gather(*(client.wait(j.id, timeout=60) for j in jobs))
            assert [j.id for j in done] == [j.id for j in jobs]
            assert client.stats.waiting.paths()["webhook"] == 20
            assert max(client.detection(j.id).lag_s for j in jobs) < 0.5  # type: ignore

    asyncio.run(main())
    assert transport.most_long_polls == 1  # twenty waiters, one long-poll at a time
    assert status_requests(stack) == 0


def test_as_completed_yields_jobs_in_the_order_they_end(stack: Stack) -> None:
    async def main() -> None:
        async with async_client(stack) as client:
            jobs = [
                await client.create_job(simulate={"duration_s": d, "outcome": "completed"})
                for d in (2.5, 2.0, 1.5, 1.0)  # four worker slots: they all run at once
            ]
            ended = [j.id async for j in client.as_completed([j.id for j in jobs], timeout=30)]
            assert ended == [j.id for j in reversed(jobs)]
            assert {client.detection(i).path for i in ended} == {"webhook"}  # type: ignore

    asyncio.run(main())
    assert status_requests(stack) == 0


def test_operator_calls_as_coroutines(stack: Stack) -> None:
    async def run() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        async with async_client(stack, admin_token=ADMIN) as client:
            created = await client.create_client("async-acme")
            listed = await client.list_clients()
            rotated = await client.rotate_secret(created["id"])
            return created, listed, rotated

    created, listed, rotated = asyncio.run(run())
    assert created["api_key"] and created["id"] in [c["id"] for c in listed]
    assert rotated["webhook_secret"] != created["webhook_secret"]
