"""``client_lib.webhooks.verify``: events signed by the reference package, and every way to
break one (each case breaks exactly one thing of a valid request)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from client_lib import JobStatus, TranslationError, WebhookVerificationError
from client_lib.webhooks import sign, verify
from tests.receiver_support import OTHER_SECRET, SECRET, WRONG_SECRET, event_body, signed_headers


def test_a_valid_job_event_comes_back_typed() -> None:
    body = event_body("job_9")
    headers = signed_headers(body, msg_id="msg_abc")
    event = verify(body, headers, [SECRET])
    assert event.id == "msg_abc" and event.type == "job.completed"
    assert event.job is not None and event.job.id == "job_9"
    assert event.job.status is JobStatus.COMPLETED
    assert event.timestamp.isoformat() == "2026-11-23T05:00:08+00:00"
    assert event.seq is None and event.heartbeat is None


def test_headers_in_any_case_and_any_of_several_secrets() -> None:
    body = event_body()
    headers = {k.upper(): v for k, v in signed_headers(body, secret=OTHER_SECRET).items()}
    assert verify(body, headers, [SECRET, OTHER_SECRET]).type == "job.completed"


def test_the_servers_rotation_header_verifies_with_either_secret() -> None:
    body = event_body().decode()
    now = int(time.time())
    headers = {
        "webhook-id": "msg_rot",
        "webhook-timestamp": str(now),
        "webhook-signature": sign([SECRET, OTHER_SECRET], "msg_rot", now, body),
    }
    assert verify(body.encode(), headers, [OTHER_SECRET]).id == "msg_rot"


def test_a_heartbeat_comes_back_typed() -> None:
    doc = {
        "type": "channel.heartbeat",
        "timestamp": "2026-12-03T09:00:00.000Z",
        "data": {"endpoint": "http://x/webhooks", "seq": 2, "interval_s": 1.0, "events": []},
    }
    body = json.dumps(doc).encode()
    event = verify(body, signed_headers(body), [SECRET])
    assert event.job is None and event.heartbeat is not None and event.heartbeat.seq == 2


def broken(case: str) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    body = event_body()
    headers = signed_headers(body)
    kwargs: dict[str, Any] = {}
    if case == "wrong secret":
        headers = signed_headers(body, secret=WRONG_SECRET)
    elif case == "tampered body":
        body = body.replace(b"job_1", b"job_2")
    elif case == "stale":
        headers = signed_headers(body, timestamp=time.time() - 301)
    elif case == "future":
        headers = signed_headers(body, timestamp=time.time() + 301)
    elif case == "tolerance":
        headers = signed_headers(body, timestamp=time.time() - 20)
        kwargs["tolerance"] = 10
    elif case.startswith("missing "):
        del headers[case.removeprefix("missing ")]
    elif case == "timestamp not a number":
        headers["webhook-timestamp"] = "soon"
    elif case == "signature not base64":
        headers["webhook-signature"] = "v1,***"
    elif case == "not json":
        body = b"not json"
        headers = signed_headers(body)
    return body, headers, kwargs


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("wrong secret", 401, "invalid_signature"),
        ("tampered body", 401, "invalid_signature"),
        ("stale", 401, "stale_webhook_timestamp"),
        ("future", 401, "future_webhook_timestamp"),
        ("tolerance", 401, "stale_webhook_timestamp"),
        ("missing webhook-id", 401, "missing_signature_header"),
        ("missing webhook-timestamp", 401, "missing_signature_header"),
        ("missing webhook-signature", 401, "missing_signature_header"),
        ("timestamp not a number", 400, "invalid_webhook_timestamp"),
        ("signature not base64", 400, "invalid_webhook_signature"),
        ("not json", 400, "invalid_body"),
    ],
)
def test_every_broken_webhook_raises_one_documented_error(
    case: str, status: int, code: str
) -> None:
    body, headers, kwargs = broken(case)
    with pytest.raises(WebhookVerificationError) as info:
        verify(body, headers, [SECRET], **kwargs)
    assert info.value.status == status and info.value.code == code
    assert isinstance(info.value, TranslationError)


def test_an_unusable_secret_is_a_value_error_that_never_echoes_it() -> None:
    with pytest.raises(ValueError) as info:
        verify(event_body(), signed_headers(event_body()), ["whsec_!!notbase64!!"])
    assert "notbase64" not in str(info.value)
