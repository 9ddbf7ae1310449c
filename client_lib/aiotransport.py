"""HTTP for the async client: httpx, transient failures retried, errors translated here.

``HTTPXTransport`` is to the async client what ``transport.RequestsTransport`` is to the sync
one: one keep-alive ``httpx.AsyncClient``; a request marked ``retry`` is tried again after no
answer or a 429/502/503/504, with capped exponential backoff plus jitter, honouring
``Retry-After`` (``RetryPolicy``, what urllib3's ``Retry`` does for requests). Tests plug an
httpx transport in (``httpx.MockTransport``) and a virtual ``sleep``, and run without sockets
or waiting.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable

import httpx

from .errors import TransportError
from .transport import USER_AGENT, Request, Response, retry_after_s

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failures are retried and how long apart; a ``Retry-After`` longer than
    ``retry_after_max`` is not waited for here but left to the caller (``RateLimited``)."""

    total: int = 4
    backoff_factor: float = 0.25
    backoff_max: float = 8.0
    backoff_jitter: float = 0.25
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    retry_after_max: float = 60.0

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds before the ``retry``-th retry (the first goes at once, as urllib3's)."""
        if retry_after is not None:
            return retry_after
        backoff = 0.0 if retry <= 1 else self.backoff_factor * 2 ** (retry - 1)
        return min(self.backoff_max, backoff) + rng.uniform(0, self.backoff_jitter)


class HTTPXTransport:
    """The async client's HTTP: sends a ``transport.Request``, answers a ``Response``."""

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]],
        seed: int | None = None,
    ) -> None:
        self.retries = retries or RetryPolicy()
        self._http = httpx.AsyncClient(
            transport=transport, headers={"User-Agent": USER_AGENT}, follow_redirects=False
        )
        self._sleep = sleep
        self._random = random.Random(seed)

    async def send(self, request: Request) -> Response:
        """Send, retrying as the policy says when ``request.retry``; TransportError when no
        HTTP answer came (raised from httpx's error)."""
        policy = self.retries
        retries = policy.total if request.retry else 0
        for attempt in range(retries + 1):
            try:
                answer = await self._http.request(
                    request.method,
                    request.url,
                    params=request.params,
                    json=request.json,
                    headers=dict(request.headers),
                    timeout=request.timeout,
                )
            except httpx.RequestError as exc:
                if attempt < retries:
                    await self._sleep(policy.delay(attempt + 1, self._random))
                    continue
                raise TransportError(
                    _describe(exc), method=request.method, url=request.url
                ) from exc
            response = Response(answer.status_code, answer.headers, answer.content)
            wait = retry_after_s(response.headers)
            if (
                attempt < retries
                and response.status_code in policy.statuses
                and (wait is None or wait <= policy.retry_after_max)
            ):
                log.info("%s %s: %s, retrying", request.method, request.url, answer.status_code)
                await self._sleep(policy.delay(attempt + 1, self._random, wait))
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()


def _describe(exc: httpx.RequestError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.NetworkError):
        return "connection failed"
    return type(exc).__name__


__all__ = ["HTTPXTransport", "RetryPolicy"]
