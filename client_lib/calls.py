"""One request of either client, before and after its I/O: what it sends, and what its answer
means. The sync and the asyncio client only send it in between."""

from __future__ import annotations

import uuid
from typing import Any

from .config import ClientConfig
from .errors import AuthenticationError
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
