"""One request of either client, before and after its I/O: what it sends, and what its answer
means. The sync and the asyncio client only send it in between."""

from __future__ import annotations

import uuid
from typing import Any

from .config import ClientConfig
from .errors import AuthenticationError
from .models import Job
from .transport import Request, Response, raise_for_problem


def prepare(
    config: ClientConfig,
    method: str,
    url: str,
    *,
    json: Any,
    params: dict[str, str] | None,
    headers: dict[str, str] | None,
    retry: bool,
    timeout: float,
    auth: bool,
) -> Request:
    """The request, with the API key when it needs one (AuthenticationError, saying what was
    looked at, when there is none: nothing is sent then) and a request id."""
    all_headers = dict(headers or {})
    if auth:
        if not config.api_key:
            raise AuthenticationError(
                status_code=401,
                method=method,
                url=url,
                code="missing_credentials",
                detail=config.missing_api_key(),
            )
        all_headers["Authorization"] = f"Bearer {config.api_key}"
    all_headers.setdefault("X-Request-ID", uuid.uuid4().hex)
    return Request(method, url, all_headers, params, json, timeout, retry)


def checked(config: ClientConfig, request: Request, response: Response, *, auth: bool) -> Response:
    """The answer when it is a success; the matching APIError otherwise (a 401 says where the
    API key came from, unless the caller passed it)."""
    source = config.source_of("api_key")
    if auth and response.status_code == 401 and source != "argument":
        raise_for_problem(request, response, hint=f"the API key came from {source}")
    raise_for_problem(request, response)
    return response


def create_body(fields: dict[str, Any], *, channel: bool) -> dict[str, Any]:
    """``POST /v1/jobs``'s body: the fields given (None ones left out), asking for the channel
    when the callback is this client's own receiver."""
    body = {k: v for k, v in fields.items() if v is not None}
    if channel:
        body["channel_events"] = True  # numbered events and heartbeats (see waiting.py)
    return body


def idempotency_headers(key: str | None) -> dict[str, str]:
    """An ``Idempotency-Key`` on every create (generated unless given): retries are safe."""
    return {"Idempotency-Key": key or f"vt-{uuid.uuid4()}"}


class ETags:
    """Each ``?ids=`` answer's ETag and jobs, so that asking again for the same ids sends
    ``If-None-Match`` and a 304 reuses the jobs already seen (the newest 256 kept)."""

    KEPT = 256

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, list[Job]]] = {}

    def headers(self, chunk: str) -> dict[str, str] | None:
        """``If-None-Match`` for these ids, when an answer for them was seen."""
        seen = self._seen.get(chunk)
        return {"If-None-Match": seen[0]} if seen else None

    def jobs(self, chunk: str, response: Response) -> list[Job]:
        """The answer's jobs (the kept ones on a 304); keeps the answer's ETag."""
        if response.status_code == 304:
            return self._seen[chunk][1]
        found = [Job.from_dict(j) for j in response.json()["jobs"]]
        if response.headers.get("ETag"):
            if len(self._seen) >= self.KEPT:
                self._seen.pop(next(iter(self._seen)))
            self._seen[chunk] = (response.headers["ETag"], found)
        return found
