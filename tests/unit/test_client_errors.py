"""Errors reach the caller as the library's exception tree, with context, from one place."""

from __future__ import annotations

from typing import Any

import pytest

from client_lib import (
    APIError,
    AuthenticationError,
    InvalidRequest,
    JobNotFound,
    RateLimited,
    TranslationClient,
    TranslationError,
    TransportError,
)
from client_lib.models import Event, Job, JobStatus, format_time, parse_time
from client_lib.transport import Request, Response, retry_after_s
from tests.fakes import SERVER


class Scripted:
    """A transport answering every request with one scripted response or exception."""

    def __init__(self, answer: Response | Exception) -> None:
        self.answer = answer
        self.sent: list[Request] = []

    def send(self, request: Request) -> Response:
        self.sent.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        pass


def problem(status: int, code: str, **headers: str) -> Response:
    body = (
        f'{{"type":"x","title":"t","status":{status},"code":"{code}",'
        f'"detail":"field: bad","request_id":"req-1"}}'
    ).encode()
    return Response(status, {"Content-Type": "application/problem+json", **headers}, body)


def client_with(answer: Response | Exception, tmp_path: Any) -> TranslationClient:
    return TranslationClient(
        base_url=SERVER,
        api_key="vt_k",
        receiver_url=None,
        credentials_file=str(tmp_path / "none.json"),
        transport=Scripted(answer),
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError),
        (404, JobNotFound),
        (400, InvalidRequest),
        (409, InvalidRequest),
        (413, InvalidRequest),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, APIError),
        (503, APIError),
    ],
)
def test_status_codes_map_to_the_tree(status: int, cls: type[APIError], tmp_path: Any) -> None:
    client = client_with(problem(status, "some_code", **{"Retry-After": "3"}), tmp_path)
    with pytest.raises(cls) as info:
        client.get_job("job_1")
    err = info.value
    assert isinstance(err, TranslationError)
    assert (err.status_code, err.code, err.detail, err.request_id) == (
        status,
        "some_code",
        "field: bad",
        "req-1",
    )
    assert err.method == "GET" and err.url == f"{SERVER}/v1/jobs/job_1"
    assert f"GET {SERVER}/v1/jobs/job_1: {status} some_code: field: bad" in str(err)
    assert err.retry_after == 3.0


def test_non_json_error_body_still_gives_context(tmp_path: Any) -> None:
    client = client_with(Response(502, {}, b"<html>bad gateway</html>"), tmp_path)
    with pytest.raises(APIError) as info:
        client.get_job("job_1")
    assert info.value.status_code == 502 and "bad gateway" in (info.value.detail or "")


def test_transport_errors_are_wrapped(tmp_path: Any) -> None:
    client = client_with(TransportError("connection failed", method="GET", url="u"), tmp_path)
    with pytest.raises(TranslationError, match="connection failed"):
        client.get_job("job_1")


def test_create_always_sends_an_idempotency_key_and_the_api_key(tmp_path: Any) -> None:
    transport = Scripted(Response(201, {}, b'{"id":"job_1","status":"pending"}'))
    client = TranslationClient(
        base_url=SERVER,
        api_key="vt_k",
        receiver_url=None,
        credentials_file=str(tmp_path / "none.json"),
        transport=transport,
    )
    client.create_job(priority=2, simulate={"duration_s": 1})
    client.create_job(priority=2, idempotency_key="mine")
    first, second = transport.sent
    assert first.headers["Idempotency-Key"].startswith("vt-") and first.retry
    assert second.headers["Idempotency-Key"] == "mine"
    assert first.headers["Authorization"] == "Bearer vt_k"
    assert first.json == {"priority": 2, "simulate": {"duration_s": 1}}  # no callback: None


def test_retry_after_parsing() -> None:
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({}) is None and retry_after_s({"Retry-After": "soon"}) is None


def test_models_round_trip_and_tolerate_new_fields() -> None:
    data = {
        "id": "job_1",
        "status": "error",
        "stage": None,
        "progress": 0.5,
        "error": {"code": "x", "message": "y"},
        "something_new": 1,
        "attempts": 2,
    }
    job = Job.from_dict(data)
    assert job.status is JobStatus.ERROR and job.is_final and job.error and job.error.code == "x"
    assert Job.from_dict(job.to_dict()) == job
    event = Event.from_dict(
        {
            "cursor": "3",
            "webhook_id": "msg_1",
            "received_at": "t",
            "type": "job.archived",
            "data": data,
        }
    )
    assert event.final_job is None  # an event type this version does not know
    assert parse_time(format_time(1_800_000_000.123)) == pytest.approx(1_800_000_000.123)


def test_bulk_status_sends_if_none_match_and_reuses_jobs_on_304(tmp_path: Any) -> None:
    body = b'{"jobs":[{"id":"job_1","status":"pending","stage":"processing"}]}'
    transport = Scripted(Response(200, {"ETag": 'W/"v1"'}, body))
    client = TranslationClient(
        base_url=SERVER,
        api_key="vt_k",
        receiver_url=None,
        credentials_file=str(tmp_path / "none.json"),
        transport=transport,
    )
    first = client.get_jobs(["job_1"])
    transport.answer = Response(304, {"ETag": 'W/"v1"'}, b"")
    again = client.get_jobs(["job_1"])
    assert again == first and again[0].status is JobStatus.PENDING
    assert "If-None-Match" not in transport.sent[0].headers
    assert transport.sent[1].headers["If-None-Match"] == 'W/"v1"'
