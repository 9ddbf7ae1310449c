"""``AsyncTranslationClient``: the asyncio twin of ``TranslationClient``, built on httpx.

    from client_lib import AsyncTranslationClient
    async with AsyncTranslationClient() as client:    # the same settings, the same defaults
        job = await client.create_job(target_language="es")
        done = await client.wait(job.id, timeout=120)
        handle = await client.submit(target_language="fr")
        print((await handle).result)

The same names as the sync client, as coroutines (``list_jobs`` and ``as_completed`` are async
iterators), the same exceptions, and the same waiting core (``waiting.py``) driven by one
coroutine at a time (``aiodriver.py``): concurrent waits share one feed long-poll. Use a
client within one event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any

import httpx

from .aiodriver import AsyncServices, AsyncSleep, AsyncWaiting, clock_sleeper
from .aiotransport import HTTPXTransport, RetryPolicy
from .calls import ETags, checked, create_body, idempotency_headers, prepare
from .clock import Clock, SystemClock
from .config import UNSET, resolve
from .errors import TranslationError, job_outcome
from .handles import decode_token, encode_token
from .models import BULK_IDS_MAX, Job, JobStatus
from .stats import ClientStats
from .transport import Response
from .waiting import WaitCore
from .waitpolicy import Detection, WaitPolicy

log = logging.getLogger(__name__)


class AsyncTranslationClient:
    """An async client of the translation server and of the callback receiver."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        receiver_url: str | None = UNSET,
        receiver_token: str | None = None,
        timeout: float = 10.0,
        credentials_file: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        sleep: AsyncSleep | None = None,
        policy: WaitPolicy | None = None,
        retries: RetryPolicy | None = None,
        seed: int | None = None,
        admin_token: str | None = None,
        callback_url: str | None = None,
    ) -> None:
        """Each setting as ``TranslationClient`` resolves it (``config.py``).

        ``transport``: an httpx transport (``httpx.MockTransport`` in tests). ``clock`` and
        ``sleep``: a virtual clock for tests; a clock other than the system's is slept on
        with ``clock.sleep`` (then the loop runs once), unless ``sleep`` is given.
        """
        self.config = resolve(
            base_url=base_url,
            receiver_url=receiver_url,
            api_key=api_key,
            receiver_token=receiver_token,
            admin_token=admin_token,
            credentials_file=credentials_file,
            callback_url=callback_url,
        )
        self.base_url = self.config.server_url
        self.api_key = self.config.api_key
        self.receiver_url = self.config.receiver_url
        self.receiver_token = self.config.receiver_token
        self.admin_token = self.config.admin_token
        self.timeout = timeout
        self._clock = clock or SystemClock()
        if sleep is None:
            virtual = not isinstance(self._clock, SystemClock)
            sleep = clock_sleeper(self._clock) if virtual else asyncio.sleep
        self._transport = HTTPXTransport(
            transport=transport, retries=retries, sleep=sleep, seed=seed
        )
        self._core = WaitCore(endpoint=self.default_callback_url, policy=policy, seed=seed)
        self._waiting = AsyncWaiting(
            self._core,
            AsyncServices(self),
            self._clock,
            sleep,
            get_jobs=self.get_jobs,
            get_job=self.get_job,
        )
        self.stats = ClientStats(self._core.stats)
        self._etags = ETags()

    async def __aenter__(self) -> AsyncTranslationClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release connections."""
        await self._transport.aclose()

    @property
    def default_callback_url(self) -> str | None:
        """Where this client's jobs send their webhooks unless ``create_job`` is given another:
        ``callback_url`` (``VT_CALLBACK_URL``), else the receiver's ``/webhooks``."""
        return self.config.callback_url

    # ------------------------------------------------------------------ HTTP

    async def _call(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        timeout: float | None = None,
        auth: bool = True,
    ) -> Response:
        """Send one request; every error of the library is raised from here."""
        request = prepare(
            self.config,
            method,
            url,
            json=json,
            params=params,
            headers=headers,
            retry=retry,
            timeout=timeout or self.timeout,
            auth=auth,
        )
        self.stats.count(endpoint)
        return checked(self.config, request, await self._transport.send(request), auth=auth)

    async def _server(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Any:
        return (await self._call(method, self.base_url + path, endpoint, **kwargs)).json()

    # ------------------------------------------------------------------ jobs

    async def create_job(
        self,
        *,
        source_url: str | None = None,
        target_language: str | None = None,
        priority: int | None = None,
        callback_url: str | None = UNSET,
        metadata: dict[str, Any] | None = None,
        simulate: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Create a job; ``callback_url`` defaults to the receiver's (None: no webhook).

        An ``Idempotency-Key`` is always sent (generated unless given), so the request is
        retried safely on transient failures and never creates two jobs.
        """
        if callback_url is UNSET:
            callback_url = self.default_callback_url
        channel = bool(callback_url) and callback_url == self.default_callback_url
        fields = dict(
            source_url=source_url,
            target_language=target_language,
            priority=priority,
            callback_url=callback_url,
            metadata=metadata,
            simulate=simulate,
        )
        mark = await self._waiting.pin_feed() if channel else None  # the feed misses none of them
        data = await self._server(
            "POST",
            "/v1/jobs",
            "POST /v1/jobs",
            json=create_body(fields, channel=channel),
            headers=idempotency_headers(idempotency_key),
        )
        job = Job.from_dict(data)
        self._waiting.track(job, mark)  # followed from now on: its events kept until waited on
        return job

    async def get_job(self, job_id: str) -> Job:
        """One job's current state."""
        return Job.from_dict(await self._server("GET", f"/v1/jobs/{job_id}", "GET /v1/jobs/{id}"))

    async def get_jobs(self, job_ids: Sequence[str], *, retry: bool = True) -> list[Job]:
        """Several jobs in one request per 100 (ids this client cannot see are left out);
        asking again for the same ids sends ``If-None-Match``, and a 304 reuses the jobs."""
        jobs: list[Job] = []
        for i in range(0, len(job_ids), BULK_IDS_MAX):
            chunk = ",".join(job_ids[i : i + BULK_IDS_MAX])
            resp = await self._call(
                "GET",
                f"{self.base_url}/v1/jobs",
                "GET /v1/jobs?ids",
                params={"ids": chunk},
                retry=retry,
                headers=self._etags.headers(chunk),
            )
            jobs.extend(self._etags.jobs(chunk, resp))
        return jobs

    async def list_jobs(
        self, *, status: JobStatus | str | None = None, limit: int = 20
    ) -> AsyncIterator[Job]:
        """This client's jobs, newest first, following the cursor across pages."""
        params: dict[str, str] = {"limit": str(limit)}
        if status:
            params["status"] = JobStatus(status).value
        while True:
            data = await self._server("GET", "/v1/jobs", "GET /v1/jobs", params=dict(params))
            for job in data["jobs"]:
                yield Job.from_dict(job)
            if not data.get("next_cursor"):
                return
            params["cursor"] = data["next_cursor"]

    async def cancel_job(self, job_id: str) -> Job:
        """Cancel a pending job (InvalidRequest, 409, when it already ended)."""
        data = await self._server(
            "POST", f"/v1/jobs/{job_id}/cancel", "POST /v1/jobs/{id}/cancel", retry=False
        )
        return Job.from_dict(data)

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's webhook events and their delivery attempts."""
        path = f"/v1/jobs/{job_id}/deliveries"
        return list((await self._server("GET", path, "GET /v1/jobs/{id}/deliveries"))["deliveries"])

    async def redeliver(self, job_id: str) -> dict[str, Any]:
        """Ask the server to send the job's final webhook again."""
        path, endpoint = f"/v1/jobs/{job_id}/redeliver", "POST /v1/jobs/{id}/redeliver"
        return dict(await self._server("POST", path, endpoint, retry=False))

    async def health(self) -> dict[str, Any]:
        """Both services' health: ``{"server": {...}, "receiver": {...}}`` (errors as text)."""
        targets = {"server": self.base_url, "receiver": self.receiver_url}
        answers = await asyncio.gather(*(self._health(n, u) for n, u in targets.items()))
        return dict(zip(targets, answers, strict=True))

    async def _health(self, name: str, url: str | None) -> dict[str, Any]:
        if not url:
            return {"status": "not configured"}
        try:
            resp = await self._call(
                "GET", f"{url}/healthz", f"GET {name} /healthz", auth=False, retry=False, timeout=3
            )
        except TranslationError as exc:
            return {"status": "unreachable", "error": str(exc)}
        return dict(resp.json())

    # ----------------------------------------------------------------- admin

    async def _admin(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Any:
        if not self.admin_token:
            raise TranslationError("this needs the admin token (VT_ADMIN_TOKEN or --admin-token)")
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        url = self.base_url + path
        return (
            await self._call(method, url, endpoint, auth=False, headers=headers, **kwargs)
        ).json()

    async def create_client(self, name: str) -> dict[str, Any]:
        """Operator: create a client; its API key and webhook secret are shown only here."""
        body = {"name": name}
        return dict(
            await self._admin("POST", "/v1/clients", "POST /v1/clients", json=body, retry=False)
        )

    async def list_clients(self) -> list[dict[str, Any]]:
        """Operator: every client (ids and names)."""
        return list((await self._admin("GET", "/v1/clients", "GET /v1/clients"))["clients"])

    async def rotate_secret(self, client_id: str) -> dict[str, Any]:
        """Operator: a new webhook secret for a client (the old one signs during the grace)."""
        path, endpoint = (
            f"/v1/clients/{client_id}/rotate-secret",
            "POST /v1/clients/{id}/rotate-secret",
        )
        return dict(await self._admin("POST", path, endpoint, retry=False))

    # --------------------------------------------------------------- waiting

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[Job], Awaitable[None] | None] | None = None,
    ) -> Job:
        """Until the job ends; return it completed, else raise JobFailed/JobCancelled.

        Raises WaitTimeout (with the last status seen) when ``timeout`` seconds pass first.
        ``on_update`` (a function or a coroutine function) sees each change of state.
        """
        return job_outcome((await self._waiting.wait_for(job_id, timeout, on_update)).job)

    def as_completed(
        self, job_ids: Iterable[str], *, timeout: float | None = None
    ) -> AsyncIterator[Job]:
        """Each job as it ends (completed, error or cancelled), in the order they end, for
        ``async for``; raises WaitTimeout for the first job still pending at ``timeout``."""
        return self._waiting.as_completed(list(dict.fromkeys(job_ids)), timeout)

    async def submit(self, **fields: Any) -> AsyncJobHandle:
        """Create a job (``create_job``'s arguments) and return its handle."""
        return AsyncJobHandle(self, (await self.create_job(**fields)).id)

    def resume(self, continuation_token: str) -> AsyncJobHandle:
        """The handle of a job from its continuation token (no request is made)."""
        return AsyncJobHandle(self, decode_token(continuation_token, self.base_url))

    def last_known(self, job_id: str) -> Job | None:
        """The latest state this client saw of a job (no request)."""
        return self._core.last_known(job_id)

    def detection(self, job_id: str) -> Detection | None:
        """How and when waiting learned that this job ended (path and lag)."""
        return self._core.stats.detections.get(job_id)

    def forget(self, job_id: str) -> None:
        """Stop following a job this client created or waited on, and drop what it kept."""
        self._waiting.forget(job_id)


class AsyncJobHandle:
    """One job of an ``AsyncTranslationClient``; ``await handle`` is ``await handle.result()``."""

    def __init__(self, client: AsyncTranslationClient, job_id: str) -> None:
        self._client = client
        self.id = job_id
        self._callbacks: list[Callable[[AsyncJobHandle], Any]] = []
        self._watcher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        job = self._client.last_known(self.id)
        return f"<AsyncJobHandle {self.id} {job.status.value if job else 'unknown'}>"

    def __await__(self) -> Generator[Any, None, Job]:
        return self.result().__await__()

    async def result(self, timeout: float | None = None) -> Job:
        """The completed job, waiting up to ``timeout`` seconds (None: as long as it takes)."""
        return await self._client.wait(self.id, timeout=timeout)

    def done(self) -> bool:
        """Whether the job is known to have ended (no request is made)."""
        return self._client.detection(self.id) is not None

    async def status(self) -> JobStatus:
        """The latest status known; one request when this client knows nothing of the job."""
        job = self._client.last_known(self.id)
        return (job or await self._client.get_job(self.id)).status

    async def cancel(self) -> Job:
        """Cancel the job (InvalidRequest, 409, when it already ended)."""
        return await self._client.cancel_job(self.id)

    def continuation_token(self) -> str:
        """A token from which ``client.resume`` gives this handle back, in any process."""
        return encode_token(self.id, self._client.base_url)

    def add_done_callback(self, fn: Callable[[AsyncJobHandle], Any]) -> None:
        """Call ``fn(handle)`` (awaited if it is a coroutine function) once the job ended, at
        once if it has, from a task on the running loop."""
        self._callbacks.append(fn)
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name=f"vt-handle-{self.id}"
            )

    async def _watch(self) -> None:
        try:
            await self.result()
        except TranslationError:
            pass  # failed, cancelled or unreachable: the callbacks run and can ask result()
        finally:
            self._watcher = None  # cancelled with the loop: the callbacks are not called
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                if inspect.isawaitable(called := fn(self)):
                    await called
            except Exception:  # a callback's failure is its own; the others still run
                log.exception("%s: done callback %r failed", self.id, fn)


__all__ = ["AsyncJobHandle", "AsyncTranslationClient", "RetryPolicy"]
