"""The async client's HTTP: the same exception tree from httpx's errors, retries (safe
create, Retry-After), ETag reuse and settings, with scripted ``httpx.MockTransport`` answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from client_lib import (
    APIError,
    AsyncTranslationClient,
    AuthenticationError,
    InvalidRequest,
    JobNotFound,
    JobStatus,
    RateLimited,
    TranslationError,
    TransportError,
)
from client_lib.errors import ConfigurationError
from tests.fakes import RECEIVER, SERVER, T0, FakeClock

pytestmark = pytest.mark.timeout(60)


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


class Scripted:
    """An httpx handler answering with scripted responses or exceptions, the last repeated."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def problem(status: int, code: str = "some_code", **headers: str) -> httpx.Response:
    body = {"status": status, "code": code, "detail": "field: bad", "request_id": "req-1"}
    return httpx.Response(status, json=body, headers=headers)


def scripted_client(
    script: Callable[[httpx.Request], httpx.Response], tmp_path: Any, **kw: Any
) -> AsyncTranslationClient:
    options: dict[str, Any] = {
        "base_url": SERVER,
        "api_key": "vt_k",
        "receiver_url": None,
        "credentials_file": str(tmp_path / "none.json"),
        "clock": FakeClock(),
    }
    options.update(kw)
    return AsyncTranslationClient(transport=httpx.MockTransport(script), **options)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError),
        (404, JobNotFound),
        (400, InvalidRequest),
        (409, InvalidRequest),
        (422, InvalidRequest),
        (500, APIError),
    ],
)
def test_status_codes_map_to_the_tree(status: int, cls: type[APIError], tmp_path: Any) -> None:
    script = Scripted(problem(status, **{"Retry-After": "3"}))
    with pytest.raises(cls) as info:
        run(lambda: scripted_client(script, tmp_path).get_job("job_1"))
    err = info.value
    assert isinstance(err, TranslationError) and type(err) is cls
    assert (err.status_code, err.code, err.detail, err.request_id, err.retry_after) == (
        status,
        "some_code",
        "field: bad",
        "req-1",
        3.0,
    )
    assert f"GET {SERVER}/v1/jobs/job_1: {status} some_code: field: bad" in str(err)
    assert len(script.sent) == 1  # not a transient failure: asked once


def test_429_is_retried_as_retry_after_says_then_raised_with_it(tmp_path: Any) -> None:
    clock = FakeClock()
    script = Scripted(problem(429, "rate_limited", **{"Retry-After": "3"}))
    with pytest.raises(RateLimited) as info:
        run(lambda: scripted_client(script, tmp_path, clock=clock).get_job("job_1"))
    assert info.value.retry_after == 3.0 and info.value.code == "rate_limited"
    assert len(script.sent) == 5 and clock.now() == pytest.approx(T0 + 12)


def test_a_retry_after_too_long_is_left_to_the_caller(tmp_path: Any) -> None:
    script = Scripted(problem(429, "rate_limited", **{"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as info:
        run(lambda: scripted_client(script, tmp_path).get_job("job_1"))
    assert info.value.retry_after == 3600.0 and len(script.sent) == 1


def test_transport_failures_are_translated_from_httpx(tmp_path: Any) -> None:
    script = Scripted(httpx.ConnectError("refused"))
    with pytest.raises(TransportError, match="connection failed") as info:
        run(lambda: scripted_client(script, tmp_path).get_job("job_1"))
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.method == "GET" and len(script.sent) == 5  # retried, then raised
    once = Scripted(httpx.ReadTimeout("slow"))
    with pytest.raises(TransportError, match=r"timed out \(ReadTimeout\)"):
        run(lambda: scripted_client(once, tmp_path).cancel_job("job_1"))
    assert len(once.sent) == 1  # an unsafe POST is never retried


def test_create_is_retried_with_one_idempotency_key(tmp_path: Any) -> None:
    created = httpx.Response(201, json={"id": "job_1", "status": "pending"})
    script = Scripted(problem(503), httpx.ConnectError("reset"), created)

    async def main() -> AsyncTranslationClient:
        client = scripted_client(script, tmp_path)
        job = await client.create_job(priority=2, simulate={"duration_s": 1})
        assert job.id == "job_1"
        return client

    client = run(main)
    keys = {r.headers["Idempotency-Key"] for r in script.sent}
    assert len(script.sent) == 3 and len(keys) == 1 and keys.pop().startswith("vt-")
    assert script.sent[0].headers["Authorization"] == "Bearer vt_k"
    assert json.loads(script.sent[0].content) == {"priority": 2, "simulate": {"duration_s": 1}}
    assert client.stats.requests["POST /v1/jobs"] == 1


def test_bulk_status_reuses_jobs_on_304(tmp_path: Any) -> None:
    body = {"jobs": [{"id": "job_1", "status": "pending", "stage": "processing"}]}
    script = Scripted(
        httpx.Response(200, json=body, headers={"ETag": 'W/"v1"'}),
        httpx.Response(304, headers={"ETag": 'W/"v1"'}),
    )

    async def main() -> tuple[Any, Any]:
        client = scripted_client(script, tmp_path)
        return await client.get_jobs(["job_1"]), await client.get_jobs(["job_1"])

    first, again = run(main)
    assert again == first and again[0].status is JobStatus.PENDING
    assert "If-None-Match" not in script.sent[0].headers
    assert script.sent[1].headers["If-None-Match"] == 'W/"v1"'


def test_settings_resolve_as_the_sync_clients_do(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="did you mean http://server:9000"):
        AsyncTranslationClient(base_url="server:9000", credentials_file=str(tmp_path / "x"))
    script = Scripted(problem(401, "invalid_api_key"))
    missing = scripted_client(script, tmp_path, api_key=None)
    with pytest.raises(AuthenticationError, match="no API key"):
        run(lambda: missing.get_job("job_1"))
    assert script.sent == []
    monkeypatch.setenv("VT_API_KEY", "vt_env")
    from_env = scripted_client(script, tmp_path, api_key=None)
    with pytest.raises(AuthenticationError, match="the API key came from VT_API_KEY"):
        run(lambda: from_env.get_job("job_1"))
    assert script.sent[0].headers["Authorization"] == "Bearer vt_env"


def test_list_jobs_follows_the_cursor_and_health_reports_both(tmp_path: Any) -> None:
    pages = Scripted(
        httpx.Response(200, json={"jobs": [{"id": "a", "status": "pending"}], "next_cursor": "c"}),
        httpx.Response(200, json={"jobs": [{"id": "b", "status": "completed"}]}),
    )

    async def main() -> list[str]:
        client = scripted_client(pages, tmp_path)
        return [job.id async for job in client.list_jobs(status="pending", limit=1)]

    assert run(main) == ["a", "b"]
    assert pages.sent[1].url.params["cursor"] == "c"
    assert pages.sent[0].url.params["status"] == "pending"

    def healthz(request: httpx.Request) -> httpx.Response:
        if request.url.host == "receiver.test":
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"status": "ok"})

    health = run(lambda: scripted_client(healthz, tmp_path, receiver_url=RECEIVER).health())
    assert health["server"] == {"status": "ok"}
    assert health["receiver"]["status"] == "unreachable"
