"""The async client's waiting: the same ``WaitCore`` as the sync client, its actions carried
out with httpx by one coroutine at a time.

Whichever waiting coroutine finds nobody driving performs the core's next action (pin the
feed, read it, look a job up, poll, sleep) and feeds the outcome back; the others await the
end of that step, then look at the core again. So any number of concurrent ``wait``s and
``as_completed``s share one feed long-poll and one ``?ids=`` poll. The driver blocks no
longer than the nearest deadline of any waiter, so each ``WaitTimeout`` comes on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, NoReturn, Protocol

from .actions import Action, Lookup, PinFeed, ReadFeed, Sleep
from .backend import feed_page
from .clock import Clock
from .driver import LOOKUPS_MAX
from .errors import AuthenticationError, JobNotFound, TranslationError, WaitTimeout
from .models import ChannelStatus, Event, Job
from .transport import Response
from .waiting import WaitCore
from .waitpolicy import Detection

AsyncSleep = Callable[[float], Awaitable[None]]


def clock_sleeper(clock: Clock) -> AsyncSleep:
    """Sleeping on a virtual clock: move it on, then let the other coroutines run."""

    async def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        await asyncio.sleep(0)

    return sleep


class AsyncHTTPClient(Protocol):
    """What the services need of the async client: its receiver, timeout and requests."""

    receiver_url: str | None
    receiver_token: str | None
    timeout: float

    async def _call(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        json: Any = ...,
        params: dict[str, str] | None = ...,
        headers: dict[str, str] | None = ...,
        retry: bool = ...,
        timeout: float | None = ...,
        auth: bool = ...,
    ) -> Response: ...

    async def get_jobs(self, job_ids: Sequence[str], *, retry: bool = True) -> list[Job]: ...


class AsyncServices:
    """The services as the waiting core's driver needs them, over the async client's HTTP."""

    def __init__(self, client: AsyncHTTPClient) -> None:
        self._client = client

    async def _receiver(self, path: str, endpoint: str, **kwargs: Any) -> Any:
        c = self._client
        if not c.receiver_url:
            raise TranslationError("no receiver configured")
        token = c.receiver_token  # the feed's bearer token, when the receiver asks for one
        headers = {"Authorization": f"Bearer {token}"} if token else None
        response = await c._call(
            "GET",
            c.receiver_url + path,
            endpoint,
            auth=False,
            retry=False,
            headers=headers,
            **kwargs,
        )
        return response.json()

    async def feed_latest(self) -> str:
        """The feed's current end."""
        data = await self._receiver(
            "/v1/events", "GET receiver /v1/events", params={"after": "latest"}
        )
        return str(data["cursor"])

    async def feed(
        self, after: str, wait: float, jobs: Sequence[str] | None = None
    ) -> tuple[list[Event], str, list[ChannelStatus]]:
        """Events after the cursor (only these jobs' and heartbeats, when given), long-polling
        up to ``wait`` seconds, and the channels."""
        params = {"after": after, "wait": f"{wait:.3f}"}
        if jobs is not None:
            params["jobs"] = ",".join(jobs)
        data = await self._receiver(
            "/v1/events",
            "GET receiver /v1/events",
            params=params,
            timeout=wait + self._client.timeout,
        )
        return feed_page(data)

    async def final_event(self, job_id: str) -> Job | None:
        """The final job the receiver has a webhook for, if any."""
        try:
            data = await self._receiver(f"/v1/events/{job_id}", "GET receiver /v1/events/{job_id}")
        except JobNotFound:
            return None
        return Event.from_dict(data).final_job

    async def status_many(self, ids: Sequence[str]) -> list[Job]:
        """One bulk status request (no retries: the waiter reschedules itself)."""
        return await self._client.get_jobs(list(ids), retry=False)


class AsyncWaiting:
    """Drives a ``WaitCore`` for an async client (one event loop; the core needs no lock)."""

    def __init__(
        self,
        core: WaitCore,
        services: AsyncServices,
        clock: Clock,
        sleep: AsyncSleep,
        *,
        get_jobs: Callable[[Sequence[str]], Awaitable[list[Job]]],
        get_job: Callable[[str], Awaitable[Job]],
    ) -> None:
        self.core = core
        self._services = services
        self._clock = clock
        self._sleep = sleep
        self._get_jobs = get_jobs
        self._get_job = get_job
        self._step: asyncio.Event | None = None  # set while a coroutine drives; fired after
        self._deadlines: Counter[float] = Counter()  # of every waiter, for the driver's block
        self._pinning = asyncio.Lock()

    def forget(self, job_id: str) -> None:
        """Stop following a job, and drop what is kept of it."""
        self.core.forget(job_id)

    def track(self, job: Job, mark: int | None) -> None:
        """Follow a job from now on (one this client created; ``mark``: ``pin_feed``'s)."""
        self.core.track(job, self._clock.now(), mark)

    async def pin_feed(self) -> int:
        """Pin the feed position before creating a job, so none of its events is missed; the
        core's read mark, for ``track``."""
        async with self._pinning:  # concurrent creates pin it once
            if self.core.needs_pin(self._clock.now()):
                await self.run(PinFeed())
        return self.core.read_mark()

    async def track_ids(self, ids: Sequence[str]) -> None:
        """Follow these jobs; only those the client never saw cost a first request."""
        now = self._clock.now
        mark = self.core.read_mark()
        self.core.want(ids, now())
        unknown = [i for i in ids if not self.core.knows(i, now())]
        if not unknown:
            return
        if len(unknown) <= LOOKUPS_MAX:  # the receiver may hold their end: no status request
            found = await asyncio.gather(*(self._found_at_receiver(i) for i in unknown))
            unknown = [i for i, held in zip(unknown, found, strict=True) if not held]
            if not unknown:
                return
        await self.pin_feed()  # before the look-up: an end after it is then in the feed
        fetched = {j.id: j for j in await self._get_jobs(unknown)}
        for job_id in unknown:
            if job_id not in fetched:
                await self._get_job(job_id)  # not visible to this client: raises JobNotFound
        for job in fetched.values():
            self.core.track(job, now(), mark)

    async def _found_at_receiver(self, job_id: str) -> bool:
        try:
            final = await self._services.final_event(job_id)
        except AuthenticationError:
            raise  # a wrong or missing feed token
        except TranslationError:
            return False  # the receiver is not reachable: ask the server
        if final is None:
            return False
        self.core.on_lookup(job_id, final, self._clock.now())
        return True

    async def wait_for(
        self,
        job_id: str,
        timeout: float | None,
        on_update: Callable[[Job], Awaitable[None] | None] | None,
    ) -> Detection:
        """Drive, or await whoever drives, until the job ended."""
        started = self._clock.now()
        deadline = None if timeout is None else started + timeout
        await self.track_ids([job_id])
        shown: tuple[Any, ...] | None = None
        with self._deadline(deadline):
            while True:
                detection = self.core.result(job_id)
                last = self.core.last_known(job_id)
                if on_update is not None and last is not None:
                    state = (last.status, last.stage, round(last.progress, 2))
                    if state != shown:
                        shown = state
                        if inspect.isawaitable(called := on_update(last)):
                            await called
                if detection is not None:
                    return detection
                now = self._clock.now()
                if deadline is not None and now >= deadline:
                    self._timeout(job_id, now - started)
                await self.drive(None if deadline is None else deadline - now)

    async def as_completed(self, ids: list[str], timeout: float | None) -> AsyncIterator[Job]:
        """Each job as it ends, in the order they end (WaitTimeout at the deadline)."""
        started = self._clock.now()
        deadline = None if timeout is None else started + timeout
        mark = self.core.finished_since(0)[1]
        await self.track_ids(ids)
        remaining = set(ids)
        ready = list(ids)  # some may have ended before
        with self._deadline(deadline):
            while True:
                for job_id in ready:
                    if job_id not in remaining:
                        continue
                    detection = self.core.result(job_id)  # raises if it vanished
                    if detection is not None:
                        remaining.discard(job_id)
                        yield detection.job
                if not remaining:
                    return
                ready, mark = self.core.finished_since(mark)
                if ready:
                    continue
                now = self._clock.now()
                if deadline is not None and now >= deadline:
                    self._timeout(sorted(remaining)[0], now - started)
                await self.drive(None if deadline is None else deadline - now)

    @contextlib.contextmanager
    def _deadline(self, deadline: float | None) -> Iterator[None]:
        if deadline is None:
            yield
            return
        self._deadlines[deadline] += 1
        try:
            yield
        finally:
            self._deadlines[deadline] -= 1
            if not self._deadlines[deadline]:
                del self._deadlines[deadline]

    def _timeout(self, job_id: str, waited: float) -> NoReturn:
        last = self.core.last_known(job_id)
        raise WaitTimeout(job_id, last.status if last else None, waited)

    def _max_block(self, now: float) -> float | None:
        """Until the nearest deadline of any waiter (a passed one is its owner's to raise)."""
        ahead = [d for d in self._deadlines if d > now]
        return min(ahead) - now if ahead else None

    async def drive(self, budget: float | None) -> None:
        """Carry out the core's next action, or await the step another coroutine is driving
        (at most ``budget`` seconds)."""
        step = self._step
        if step is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(step.wait(), budget)
            return
        self._step = step = asyncio.Event()
        try:
            now = self._clock.now()
            await self.run(self.core.next_action(now, max_block=self._max_block(now)))
        finally:
            self._step = None
            step.set()
        await asyncio.sleep(0)  # the waiters this step woke look at the core before the next

    async def run(self, action: Action) -> None:
        """One action of the core, its I/O here, its outcome fed back."""
        backend, core, now = self._services, self.core, self._clock.now
        try:
            if isinstance(action, Sleep):
                await self._sleep(action.seconds)
            elif isinstance(action, PinFeed):
                cursor = await backend.feed_latest()
                core.feed_pinned(cursor, now())
            elif isinstance(action, ReadFeed):
                events, cursor, channels = await backend.feed(
                    action.after, action.wait, action.jobs
                )
                core.on_feed(events, cursor, now(), channels)
            elif isinstance(action, Lookup):
                final = await backend.final_event(action.job_id)
                core.on_lookup(action.job_id, final, now())
            else:
                try:
                    jobs = await backend.status_many(action.job_ids)
                except TranslationError as exc:
                    core.on_status_error(action.job_ids, exc, now())
                    return
                core.on_statuses(action.job_ids, jobs, now())
        except AuthenticationError:
            raise  # the feed refused its token: the caller's to fix, never a cause to poll
        except TranslationError as exc:  # the receiver's (a status failure is handled above)
            core.on_feed_error(exc, now())
