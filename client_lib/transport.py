"""HTTP for the client: a small pluggable transport, and the one place errors are translated.

``RequestsTransport`` is the real one: one keep-alive ``requests.Session``, with urllib3's
``Retry`` mounted for transient failures (connection errors, 429, 502, 503, 504) with capped
exponential backoff plus jitter, honouring ``Retry-After``. Tests plug in a fake transport
(anything with ``send`` and ``close``) and run without sockets.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.util.retry import Retry

from .errors import APIError, TransportError, error_for_status
from .wire import retry_after

USER_AGENT = "vt-client/1.0"


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request."""

    method: str
    url: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    params: Mapping[str, str] | None = None
    json: Any = None
    timeout: float = 10.0
    retry: bool = True  # transient failures retried by the transport (never for unsafe POSTs)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.content) if self.content else None


class Transport(Protocol):
    """What the client needs from HTTP."""

    def send(self, request: Request) -> Response:
        """Send; raise TransportError when no HTTP answer came."""

    def close(self) -> None:
        """Release connections."""


def default_retry(total: int = 4) -> Retry:
    """Transient failures: capped exponential backoff with jitter, Retry-After honoured."""
    return Retry(
        total=total,
        connect=2,  # a refused connection: the service is down, say so within a second
        read=2,
        status=total,
        backoff_factor=0.25,
        backoff_max=8.0,
        backoff_jitter=0.25,
        status_forcelist=(429, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD", "POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )


class RequestsTransport:
    """The real transport: keep-alive sessions, one with retries and one without."""

    def __init__(self, *, retry: Retry | None = None, pool_size: int = 10) -> None:
        self._retrying = self._session(retry or default_retry(), pool_size)
        self._single = self._session(
            Retry(total=0, raise_on_status=False, raise_on_redirect=False), pool_size
        )

    @staticmethod
    def _session(retry: Retry, pool_size: int) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        return session

    def send(self, request: Request) -> Response:
        """Send one request; connection-level failures become TransportError."""
        session = self._retrying if request.retry else self._single
        try:
            resp = session.request(
                request.method,
                request.url,
                params=request.params,
                json=request.json,
                headers=dict(request.headers),
                timeout=request.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TransportError(_describe(exc), method=request.method, url=request.url) from exc
        return Response(resp.status_code, CaseInsensitiveDict(resp.headers), resp.content)

    def close(self) -> None:
        """Close both sessions."""
        self._retrying.close()
        self._single.close()


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` header in seconds from now, None when absent or unreadable."""
    return retry_after(headers.get("Retry-After"), time.time())


def raise_for_problem(request: Request, response: Response, *, hint: str | None = None) -> None:
    """Turn a non-2xx answer into the matching APIError (problem+json fields included);
    ``hint`` is added to its detail."""
    if 200 <= response.status_code < 300 or response.status_code == 304:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    problem = body if isinstance(body, dict) else {}
    raise error_for_status(
        response.status_code,
        method=request.method,
        url=request.url,
        code=problem.get("code"),
        detail=_with_hint(problem.get("detail") or _snippet(response.content), hint),
        request_id=problem.get("request_id") or response.headers.get("X-Request-ID"),
        body=body,
        retry_after=retry_after_s(response.headers),
    )


def _with_hint(detail: str | None, hint: str | None) -> str | None:
    return f"{detail} ({hint})" if hint else detail


def _snippet(content: bytes) -> str | None:
    text = content[:200].decode(errors="replace").strip()
    return text or None


__all__ = [
    "APIError",
    "Request",
    "RequestsTransport",
    "Response",
    "Transport",
    "raise_for_problem",
    "retry_after_s",
]
