"""POST /webhooks verification: one valid request, and each negative case breaks one thing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from callback_receiver.receiver import get_receiver
from tests.receiver_support import (
    OTHER_SECRET,
    SECRET,
    WRONG_SECRET,
    event_body,
    receiver_app,
    signed_headers,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    with receiver_app(tmp_path, secrets=(SECRET, OTHER_SECRET), tolerance_s=300) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/webhooks", data=body, headers=headers)


def assert_problem(resp: Any, status: int, code: str, detail_has: str) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    problem = resp.get_json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"https://docs.vt.local/problems/{code}"
    assert detail_has in problem["detail"]
    assert problem["request_id"] == resp.headers["X-Request-ID"]


def stored(app: Flask) -> int:
    return get_receiver(app).store.count_events()


def test_valid_webhook_is_stored_and_answered_204(app: Flask, client: FlaskClient) -> None:
    body = event_body("job_ok")
    resp = post(client, body, signed_headers(body))
    assert resp.status_code == 204
    assert resp.get_data() == b""
    assert stored(app) == 1
    assert client.get("/v1/events/job_ok").get_json()["data"]["id"] == "job_ok"


def test_second_secret_is_accepted(app: Flask, client: FlaskClient) -> None:
    body = event_body()
    assert post(client, body, signed_headers(body, secret=OTHER_SECRET)).status_code == 204
    assert stored(app) == 1


def test_rotation_header_with_old_and_new_signatures_is_accepted(
    app: Flask, client: FlaskClient
) -> None:
    body = event_body()
    headers = signed_headers(body, secret=WRONG_SECRET, msg_id="msg_rot", timestamp=time.time())
    good = signed_headers(
        body, secret=SECRET, msg_id="msg_rot", timestamp=int(headers["webhook-timestamp"])
    )
    headers["webhook-signature"] += " " + good["webhook-signature"]
    assert post(client, body, headers).status_code == 204


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_401_naming_it(app: Flask, client: FlaskClient, header: str) -> None:
    body = event_body()
    headers = signed_headers(body)
    del headers[header]
    assert_problem(post(client, body, headers), 401, "missing_signature_header", header)
    assert stored(app) == 0


def test_wrong_secret_is_401(app: Flask, client: FlaskClient) -> None:
    body = event_body()
    resp = post(client, body, signed_headers(body, secret=WRONG_SECRET))
    assert_problem(resp, 401, "invalid_signature", "webhook-signature")
    assert stored(app) == 0


def test_tampered_body_is_401(app: Flask, client: FlaskClient) -> None:
    body = event_body("job_a")
    headers = signed_headers(body)
    resp = post(client, body.replace(b"job_a", b"job_b"), headers)
    assert_problem(resp, 401, "invalid_signature", "webhook-signature")
    assert stored(app) == 0


def test_tampered_webhook_id_is_401(app: Flask, client: FlaskClient) -> None:
    body = event_body()
    headers = signed_headers(body, msg_id="msg_original")
    headers["webhook-id"] = "msg_replayed"
    assert_problem(post(client, body, headers), 401, "invalid_signature", "webhook-signature")


def test_stale_timestamp_is_401(app: Flask, client: FlaskClient) -> None:
    body = event_body()
    resp = post(client, body, signed_headers(body, timestamp=time.time() - 301))
    assert_problem(resp, 401, "stale_webhook_timestamp", "webhook-timestamp")
    assert stored(app) == 0


def test_future_timestamp_is_401(app: Flask, client: FlaskClient) -> None:
    body = event_body()
    resp = post(client, body, signed_headers(body, timestamp=time.time() + 301))
    assert_problem(resp, 401, "future_webhook_timestamp", "webhook-timestamp")


def test_timestamp_within_tolerance_is_accepted(client: FlaskClient) -> None:
    body = event_body()
    assert post(client, body, signed_headers(body, timestamp=time.time() - 280)).status_code == 204


def test_tolerance_is_configurable_beyond_the_library_five_minutes(tmp_path: Path) -> None:
    with receiver_app(tmp_path, tolerance_s=3600) as app:
        body = event_body()
        resp = post(app.test_client(), body, signed_headers(body, timestamp=time.time() - 1800))
        assert resp.status_code == 204


def test_tolerance_can_be_tighter_than_five_minutes(tmp_path: Path) -> None:
    with receiver_app(tmp_path, tolerance_s=10) as app:
        body = event_body()
        resp = post(app.test_client(), body, signed_headers(body, timestamp=time.time() - 60))
        assert_problem(resp, 401, "stale_webhook_timestamp", "10 s")


@pytest.mark.parametrize(
    ("signature", "detail"),
    [
        ("v1", "version,signature"),  # no comma: the library's ValueError
        ("v1,not*base64!", "not base64"),  # the library's binascii.Error
        ("v1,c2hvcnQ=", "32 bytes"),  # base64, but not an HMAC-SHA256
        (",abc", "version,signature"),
    ],
)
def test_malformed_signature_list_is_400(client: FlaskClient, signature: str, detail: str) -> None:
    body = event_body()
    headers = signed_headers(body)
    headers["webhook-signature"] = signature
    assert_problem(post(client, body, headers), 400, "invalid_webhook_signature", detail)


def test_one_malformed_entry_beside_a_valid_signature_is_400(client: FlaskClient) -> None:
    body = event_body()
    headers = signed_headers(body)
    headers["webhook-signature"] += " garbage"
    assert_problem(
        post(client, body, headers), 400, "invalid_webhook_signature", "version,signature"
    )


def test_unknown_signature_versions_are_skipped_not_malformed(client: FlaskClient) -> None:
    body = event_body()
    headers = signed_headers(body)
    headers["webhook-signature"] = "v1a,whatever " + headers["webhook-signature"]
    assert post(client, body, headers).status_code == 204


@pytest.mark.parametrize("timestamp", ["soon", "1.7e9", "-5", "12345678901234"])
def test_malformed_timestamp_is_400(client: FlaskClient, timestamp: str) -> None:
    body = event_body()
    headers = signed_headers(body)
    headers["webhook-timestamp"] = timestamp
    assert_problem(
        post(client, body, headers), 400, "invalid_webhook_timestamp", "integer Unix seconds"
    )


def test_malformed_webhook_id_is_400(client: FlaskClient) -> None:
    body = event_body()
    headers = signed_headers(body)
    headers["webhook-id"] = "msg " + "x" * 300
    assert_problem(post(client, body, headers), 400, "invalid_webhook_id", "webhook-id")


def test_non_utf8_body_is_400(client: FlaskClient) -> None:
    body = b'{"type": "job.completed", "data": {"id": "\xff"}}'
    headers = signed_headers(event_body())
    assert_problem(post(client, body, headers), 400, "invalid_body", "UTF-8")


def test_no_secret_configured_is_401(tmp_path: Path) -> None:
    with receiver_app(tmp_path, secrets=()) as app:
        body = event_body()
        resp = post(app.test_client(), body, signed_headers(body))
        assert_problem(resp, 401, "no_secret_configured", "no webhook secret")


def test_rejections_are_counted_and_listed(app: Flask, client: FlaskClient) -> None:
    body = event_body()
    post(client, body, signed_headers(body, secret=WRONG_SECRET, msg_id="msg_forged"))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'receiver_webhooks_received_total{result="invalid"} 1.0' in metrics
    receipts = get_receiver(app).store.receipts()
    assert [(r.webhook_id, r.result, r.status) for r in receipts] == [
        ("msg_forged", "invalid_signature", 401)
    ]
