"""The async client in virtual time: the sync client's scenario matrix and goals, concurrent
waits sharing one feed long-poll, and job handles; no sockets, no sleeps (its HTTP errors and
retries: ``test_client_async_errors.py``).

The fake services of ``tests/fakes.py`` sit behind an ``httpx.MockTransport`` whose handler
yields to the loop once per request, so requests that could overlap do.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from client_lib import (
    AsyncJobHandle,
    AsyncTranslationClient,
    JobCancelled,
    JobFailed,
    JobStatus,
    TranslationClient,
    TransportError,
    WaitTimeout,
)
from client_lib.errors import ConfigurationError
from client_lib.transport import Request
from tests.fakes import RECEIVER, SERVER, T0, FakeClock, FakeServices
from tests.unit import test_client_waiting as sync_suite

pytestmark = pytest.mark.timeout(60)


class Bridge:
    """The fake services as an httpx transport; counts the requests in flight by kind."""

    def __init__(self, services: FakeServices) -> None:
        self.services = services
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.tasks_during_feed = 0
        self.hold: asyncio.Event | None = None  # when given, long-polls wait for it to be set

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        kind = f"{request.method} {url.path}"
        if kind == "GET /v1/events" and url.params.get("wait"):
            kind = "feed long-poll"
            self.tasks_during_feed = max(self.tasks_during_feed, len(asyncio.all_tasks()))
        self.in_flight[kind] += 1
        self.most[kind] = max(self.most[kind], self.in_flight[kind])
        body = json.loads(request.content) if request.content else None
        plain_url = f"{url.scheme}://{url.netloc.decode()}{url.path}"
        try:
            await asyncio.sleep(0)  # a real suspension: concurrent requests would overlap here
            if self.hold is not None and kind == "feed long-poll":
                await self.hold.wait()
            req = Request(request.method, plain_url, dict(request.headers), dict(url.params), body)
            answer = self.services.send(req)
        except TransportError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        finally:
            self.in_flight[kind] -= 1
        return httpx.Response(
            answer.status_code, headers=dict(answer.headers), content=answer.content
        )


def make_client(
    services: FakeServices, tmp_path: Any, *, seed: int = 3, bridge: Bridge | None = None, **kw: Any
) -> AsyncTranslationClient:
    options: dict[str, Any] = {
        "base_url": SERVER,
        "receiver_url": RECEIVER,
        "api_key": "vt_test",
        "credentials_file": str(tmp_path / "none.json"),
        "clock": services.clock,
        "seed": seed,
    }
    options.update(kw)
    transport = (bridge or Bridge(services)).transport()
    return AsyncTranslationClient(transport=transport, **options)


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


# ------------------------------------------------- the sync suite's matrix, async


def world(fault: str, tmp_path: Any, seed: int = 3) -> tuple[FakeServices, AsyncTranslationClient]:
    services = FakeServices(FakeClock())
    sync_suite.FAULTS[fault](services)
    return services, make_client(services, tmp_path, seed=seed)


def run_one_job(fault: str, tmp_path: Any) -> sync_suite.Outcome:
    """Callers each create one job and await it (independent clients)."""

    async def main() -> sync_suite.Outcome:
        lags, lost, requests = {}, set(), 0
        for n, plan in enumerate(sync_suite.plans(20, fault)):
            services, client = world(fault, tmp_path, seed=n)
            async with client:
                job = await client.create_job(simulate=plan)
                await client.wait(job.id, timeout=120)
            lags[f"{n}"] = sync_suite.lag_of(client, job.id, T0)  # type: ignore[arg-type]
            if plan["webhook"] == "drop":
                lost.add(f"{n}")
            requests += services.requests["status"]
        return sync_suite.Outcome(lags, lost, requests)

    return run(main)  # type: ignore[no-any-return]


def run_sequential(fault: str, tmp_path: Any) -> sync_suite.Outcome:
    """One caller creates ten jobs, then awaits each in turn."""

    async def main() -> sync_suite.Outcome:
        services, client = world(fault, tmp_path)
        async with client:
            jobs = [(await client.create_job(simulate=p), p) for p in sync_suite.plans(10, fault)]
            lags, lost = {}, set()
            for job, plan in jobs:
                asked = services.clock.now()
                await client.wait(job.id, timeout=120)
                lags[job.id] = sync_suite.lag_of(client, job.id, asked)  # type: ignore[arg-type]
                if plan["webhook"] == "drop":
                    lost.add(job.id)
        return sync_suite.Outcome(lags, lost, services.requests["status"])

    return run(main)  # type: ignore[no-any-return]


def run_as_completed(fault: str, tmp_path: Any, n: int = 200) -> sync_suite.Outcome:
    """One caller creates many jobs and takes them with ``async for`` as they end."""

    async def main() -> sync_suite.Outcome:
        services, client = world(fault, tmp_path)
        async with client:
            plans = sync_suite.plans(n, fault)
            jobs = {(await client.create_job(simulate=p)).id: p for p in plans}
            ended = [j async for j in client.as_completed(list(jobs), timeout=120)]
        assert len(ended) == n
        lags = {i: sync_suite.lag_of(client, i, T0) for i in jobs}  # type: ignore[arg-type]
        lost = {i for i, p in jobs.items() if p["webhook"] == "drop"}
        return sync_suite.Outcome(lags, lost, services.requests["status"])

    return run(main)  # type: ignore[no-any-return]


ASYNC_SHAPES = {
    "async one job": run_one_job,
    "async sequential": run_sequential,
    "async as_completed": run_as_completed,
}


@pytest.fixture
def async_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync suite's goal tests, run on these shapes."""
    for name, runner in ASYNC_SHAPES.items():
        monkeypatch.setitem(sync_suite.SHAPES, name, runner)


@pytest.mark.usefixtures("async_shapes")
@pytest.mark.parametrize("shape", list(ASYNC_SHAPES))
@pytest.mark.parametrize("fault", ["none", "duplicates"])
def test_healthy_cells_cost_no_status_request(shape: str, fault: str, tmp_path: Any) -> None:
    sync_suite.test_healthy_cells_cost_no_status_request(shape, fault, tmp_path)


@pytest.mark.usefixtures("async_shapes")
@pytest.mark.parametrize("shape", list(ASYNC_SHAPES))
def test_a_first_attempt_answered_503_is_healed(shape: str, tmp_path: Any) -> None:
    sync_suite.test_a_first_attempt_answered_503_is_healed_by_the_servers_prompt_retry(
        shape, tmp_path
    )


@pytest.mark.usefixtures("async_shapes")
@pytest.mark.parametrize("shape", list(ASYNC_SHAPES))
def test_one_lost_webhook_in_ten_is_found_within_a_second(shape: str, tmp_path: Any) -> None:
    sync_suite.test_one_lost_webhook_in_ten_is_found_within_a_second(shape, tmp_path)


@pytest.mark.usefixtures("async_shapes")
@pytest.mark.parametrize("shape", list(ASYNC_SHAPES))
@pytest.mark.parametrize("fault", ["drop all", "receiver down", "receiver flapping"])
def test_every_webhook_missing_costs_at_most_three_requests_a_job(
    shape: str, fault: str, tmp_path: Any
) -> None:
    sync_suite.test_every_webhook_missing_costs_at_most_three_requests_a_job(shape, fault, tmp_path)


# ------------------------------------------------------------- concurrent waits


def test_two_hundred_gathered_waits_share_one_feed_long_poll(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())
    services.noise = random.Random(8)
    bridge = Bridge(services)
    rng = random.Random(5)

    async def main() -> list[Any]:
        async with make_client(services, tmp_path, bridge=bridge) as client:
            jobs = [
                await client.create_job(simulate={"duration_s": rng.uniform(5, 15)})
                for _ in range(200)
            ]
            done = await asyncio.gather(*(client.wait(j.id, timeout=120) for j in jobs))
            return [done, client]

    done, client = run(main)
    assert [j.status for j in done] == [JobStatus.COMPLETED] * 200
    assert bridge.tasks_during_feed > 200  # every waiter was pending during a long-poll ...
    assert bridge.most["feed long-poll"] == 1  # ... and none but one was ever in flight
    # one long-poll served them all: a page per event the receiver stored, as one caller's
    assert services.requests["feed"] <= len(services.events()) + 2
    assert services.requests["status"] == 0 and client.stats.status_requests == 0
    assert client.stats.waiting.paths()["webhook"] == 200
    assert max(client.detection(j.id).lag_s for j in done) <= 0.05


def test_a_short_deadline_is_kept_while_another_wait_drives(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())

    async def main() -> tuple[list[Any], AsyncTranslationClient]:
        client = make_client(services, tmp_path)
        long = await client.create_job(simulate={"duration_s": 30.0})
        short = await client.create_job(simulate={"duration_s": 100.0})
        outcomes = await asyncio.gather(
            client.wait(long.id), client.wait(short.id, timeout=5), return_exceptions=True
        )
        return outcomes, client

    (finished, timed_out), _client = run(main)
    assert finished.status is JobStatus.COMPLETED
    assert isinstance(timed_out, WaitTimeout) and timed_out.last_status is JobStatus.PENDING
    assert timed_out.waited_s == pytest.approx(5.0, abs=0.01)


def test_a_driving_wait_cancelled_mid_request_hands_the_feed_on(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())
    bridge = Bridge(services)

    async def main() -> tuple[asyncio.Task[Any], Any]:
        client = make_client(services, tmp_path, bridge=bridge)
        first = await client.create_job(simulate={"duration_s": 5.0})
        second = await client.create_job(simulate={"duration_s": 8.0})
        bridge.hold = asyncio.Event()
        driver = asyncio.create_task(client.wait(first.id))
        follower = asyncio.create_task(client.wait(second.id))
        await asyncio.sleep(0.01)  # the first drives, its long-poll held; the other awaits it
        assert bridge.in_flight["feed long-poll"] == 1
        driver.cancel()
        bridge.hold.set()
        return driver, await asyncio.wait_for(follower, 10)

    driver, done = run(main)
    assert driver.cancelled() and done.status is JobStatus.COMPLETED
    assert services.requests["status"] == 0


def test_as_completed_raises_wait_timeout_for_the_first_job_still_pending(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())

    async def main() -> list[str]:
        client = make_client(services, tmp_path)
        quick = await client.create_job(simulate={"duration_s": 2.0})
        slow = await client.create_job(simulate={"duration_s": 50.0})
        seen = []
        with pytest.raises(WaitTimeout) as info:
            async for job in client.as_completed([slow.id, quick.id], timeout=10):
                seen.append(job.id)
        assert info.value.job_id == slow.id
        return [quick.id, *seen]

    quick, *seen = run(main)
    assert seen == [quick]
    assert services.clock.now() == pytest.approx(T0 + 10, abs=0.01)


def test_jobs_never_seen_are_looked_up_at_the_receiver_first(tmp_path: Any) -> None:
    """Five jobs of another process that ended: found at the receiver, no status request."""
    services = FakeServices(FakeClock())
    ids = [services.add_job(f"job_other{i}", 1.0 + i).id for i in range(5)]
    services.clock.sleep(10)

    async def main() -> list[str]:
        client = make_client(services, tmp_path)
        return [j.id async for j in client.as_completed(ids, timeout=10)]

    assert sorted(run(main)) == ids
    assert services.requests["status"] == 0 and services.requests["lookup"] == 5


def test_a_running_job_created_elsewhere_costs_one_first_look(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())
    services.add_job("job_elsewhere", 3.0)
    updates: list[str] = []

    async def on_update(job: Any) -> None:
        updates.append(job.status.value)

    async def main() -> AsyncTranslationClient:
        client = make_client(services, tmp_path)
        done = await client.wait("job_elsewhere", timeout=30, on_update=on_update)
        assert done.status is JobStatus.COMPLETED
        return client

    client = run(main)
    assert services.requests["status"] == 1  # the first look; the end came by webhook
    assert client.detection("job_elsewhere").path == "webhook"  # type: ignore[union-attr]
    assert updates[0] == "pending" and updates[-1] == "completed"


def test_error_and_cancel_outcomes_raise(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())

    async def main() -> None:
        client = make_client(services, tmp_path)
        failed = await client.create_job(simulate={"duration_s": 2.0, "outcome": "error"})
        with pytest.raises(JobFailed) as info:
            await client.wait(failed.id, timeout=30)
        assert info.value.job.error and info.value.job.error.code == "translation_failed"
        doomed = await client.submit(simulate={"duration_s": 50.0})
        await doomed.cancel()
        with pytest.raises(JobCancelled):
            await doomed

    run(main)


# --------------------------------------------------------------------- handles


def test_a_handle_is_awaited_and_answers_without_requests(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())

    async def main() -> None:
        client = make_client(services, tmp_path)
        handle = await client.submit(simulate={"duration_s": 5.0})
        assert isinstance(handle, AsyncJobHandle)
        assert await handle.status() is JobStatus.PENDING and not handle.done()
        assert (await handle).status is JobStatus.COMPLETED
        assert (await handle.result(timeout=1)).status is JobStatus.COMPLETED
        assert handle.done() and await handle.status() is JobStatus.COMPLETED
        assert repr(handle).endswith("completed>")
        slow = await client.submit(simulate={"duration_s": 100.0})
        with pytest.raises(TimeoutError):  # WaitTimeout is a builtin TimeoutError too
            await slow.result(timeout=2)

    run(main)
    assert services.requests["status"] == 0


def test_done_callbacks_run_on_the_loop_once_the_job_ended(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    services = FakeServices(FakeClock())

    async def main() -> list[Any]:
        client = make_client(services, tmp_path)
        handle = await client.submit(simulate={"duration_s": 3.0})
        called = asyncio.Event()
        seen: list[Any] = []

        async def later(h: AsyncJobHandle) -> None:
            seen.append(("async", await h))
            called.set()

        handle.add_done_callback(lambda h: seen.append(("sync", h.done())))
        handle.add_done_callback(lambda h: 1 / 0)  # logged; the others still run
        handle.add_done_callback(later)
        await asyncio.wait_for(called.wait(), 10)
        again = asyncio.Event()
        handle.add_done_callback(lambda h: again.set())  # already done: called at once
        await asyncio.wait_for(again.wait(), 10)
        return seen

    seen = run(main)
    assert seen[0] == ("sync", True)
    assert "job_1: done callback" in caplog.text and "ZeroDivisionError" in caplog.text
    assert seen[1][0] == "async" and seen[1][1].status is JobStatus.COMPLETED


def test_resuming_where_the_receiver_holds_the_end_costs_no_status_request(
    tmp_path: Any,
) -> None:
    services = FakeServices(FakeClock())

    async def submitted() -> str:
        handle = await make_client(services, tmp_path).submit(simulate={"duration_s": 2.0})
        return handle.continuation_token()

    token = run(submitted)
    services.clock.sleep(5)  # the job ended and its webhook is stored meanwhile

    async def resumed() -> tuple[Any, AsyncTranslationClient]:
        other = make_client(services, tmp_path)  # another process, the same services
        return await other.resume(token), other

    done, other = run(resumed)
    assert done.status is JobStatus.COMPLETED and services.requests["status"] == 0
    assert other.detection(done.id).path == "webhook"  # type: ignore[union-attr]
    sync = TranslationClient(
        base_url=SERVER,
        api_key="k",
        receiver_url=None,
        credentials_file=str(tmp_path / "none.json"),
        transport=services,
    )
    assert sync.resume(token).id == done.id  # one token codec for both clients


def test_resuming_a_running_job_follows_it_to_its_end(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())

    async def main() -> Any:
        token = (
            await make_client(services, tmp_path).submit(simulate={"duration_s": 8.0})
        ).continuation_token()
        return await make_client(services, tmp_path).resume(token).result(timeout=30)

    assert run(main).status is JobStatus.COMPLETED
    assert services.requests["status"] == 1  # the first look, then the end by webhook


def test_a_token_is_for_its_own_server(tmp_path: Any) -> None:
    services = FakeServices(FakeClock())

    async def main() -> None:
        handle = await make_client(services, tmp_path).submit(simulate={"duration_s": 1.0})
        elsewhere = make_client(services, tmp_path, base_url="http://elsewhere")
        with pytest.raises(ConfigurationError, match="not for http://elsewhere"):
            elsewhere.resume(handle.continuation_token())
        with pytest.raises(ConfigurationError, match="not a continuation token"):
            make_client(services, tmp_path).resume("garbage!")

    run(main)
