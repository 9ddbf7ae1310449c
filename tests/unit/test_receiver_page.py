"""The receiver's page and ``GET /v1/receipts`` (docs/api.md section 4): the receipts behind
the feed token, newest first, rejected ones with their reason, the job filter, the tags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.receiver_support import SECRET, WRONG_SECRET, event_body, receiver_app, signed_headers

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    with receiver_app(tmp_path) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()  # sends the feed token


def deliver(client: FlaskClient, body: bytes, *, secret: str = SECRET, msg_id: str) -> int:
    headers = signed_headers(body, secret=secret, msg_id=msg_id)
    return client.post("/webhooks", data=body, headers=headers).status_code


def receipts(client: FlaskClient, query: str = "") -> list[dict[str, Any]]:
    resp = client.get(f"/v1/receipts{query}")
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["receipts"]  # type: ignore[no-any-return]


def test_receipts_newest_first_with_results_and_reasons(client: FlaskClient) -> None:
    deliver(client, event_body("job_first"), msg_id="msg_1")
    deliver(client, event_body("job_first"), msg_id="msg_1")
    deliver(client, event_body("job_forged"), secret=WRONG_SECRET, msg_id="msg_2")
    deliver(client, event_body("job_last", "job.error"), msg_id="msg_3")
    resp = client.get("/v1/receipts")
    assert resp.get_json()["stored_events"] == 2
    rows = resp.get_json()["receipts"]
    assert [r["webhook_id"] for r in rows] == ["msg_3", "msg_2", "msg_1", "msg_1"]
    assert rows[0] | {"received_at": None} == {
        "received_at": None,
        "webhook_id": "msg_3",
        "job_id": "job_last",
        "type": "job.error",
        "result": "verified",
        "status": 204,
        "duplicate": False,
        "reason": None,
    }
    assert rows[1]["result"] == "invalid_signature" and rows[1]["status"] == 401
    assert rows[1]["reason"] == "no v1 signature matches an accepted secret"
    assert rows[2]["duplicate"] is True and rows[3]["duplicate"] is False


def test_a_rejection_without_a_webhook_id_still_says_why(client: FlaskClient) -> None:
    assert client.post("/webhooks", data=b"{}").status_code == 401
    [row] = receipts(client)
    assert row["result"] == "missing_signature_header" and row["webhook_id"] is None
    assert "header is missing" in row["reason"]


def test_the_job_filter_keeps_one_jobs_receipts(client: FlaskClient) -> None:
    deliver(client, event_body("job_a"), msg_id="msg_a")
    deliver(client, event_body("job_b"), msg_id="msg_b")
    assert [r["job_id"] for r in receipts(client, "?job_id=job_b")] == ["job_b"]
    assert receipts(client, "?job_id=job_none") == []
    assert len(receipts(client, "?limit=1")) == 1


def test_an_unchanged_list_is_304(client: FlaskClient) -> None:
    deliver(client, event_body("job_a"), msg_id="msg_a")
    tag = client.get("/v1/receipts").headers["ETag"]
    again = client.get("/v1/receipts", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == tag
    deliver(client, event_body("job_b"), msg_id="msg_b")
    assert client.get("/v1/receipts", headers={"If-None-Match": tag}).status_code == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Authorization": ""}, "unauthorized"),
        ({"Authorization": "Bearer nope"}, "invalid_feed_token"),
    ],
)
def test_the_receipts_need_the_feed_token(app: Flask, headers: dict[str, str], code: str) -> None:
    resp = app.test_client().get("/v1/receipts", headers=headers)
    assert resp.status_code == 401 and resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == code and resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("?limit=0", "limit"), ("?limit=201", "limit"), ("?job_id=" + "j" * 256, "job_id"),
     ("?after=3", "after")],
)  # fmt: skip
def test_bad_parameters_are_422_naming_them(client: FlaskClient, query: str, field: str) -> None:
    resp = client.get(f"/v1/receipts{query}")
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == "validation_error" and resp.get_json()["field"] == field


def test_the_page_holds_no_data_and_loads_only_its_own_files(app: Flask) -> None:
    anonymous = app.test_client()
    anonymous.environ_base.pop("HTTP_AUTHORIZATION", None)
    deliver(anonymous, event_body("job_secret"), msg_id="msg_secret")
    page = anonymous.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b"job_secret" not in page.data and b'src="/assets/receiver.js"' in page.data
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    for name, mimetype in [("receiver.js", "text/javascript"), ("receiver.css", "text/css")]:
        resp = anonymous.get(f"/assets/{name}")
        assert resp.status_code == 200 and resp.mimetype == mimetype
    missing = anonymous.get("/assets/page.py")
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"
