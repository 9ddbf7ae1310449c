"""Storing webhooks: body validation after verification, de-duplication, final job states."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from callback_receiver.receiver import get_receiver
from tests.receiver_support import event_body, receiver_app, signed_headers

pytestmark = [pytest.mark.timeout(60), pytest.mark.both_engines]


@pytest.fixture
def app(tmp_path: Path, receiver_database_url: str) -> Iterator[Flask]:
    with receiver_app(tmp_path, database_url=receiver_database_url) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def deliver(client: FlaskClient, body: bytes, msg_id: str | None = None) -> Any:
    return client.post("/webhooks", data=body, headers=signed_headers(body, msg_id=msg_id))


def feed(client: FlaskClient, query: str = "") -> dict[str, Any]:
    resp = client.get(f"/v1/events{query}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return dict(resp.get_json())


def test_duplicate_delivery_is_204_and_stored_once(app: Flask, client: FlaskClient) -> None:
    body = event_body("job_dup")
    assert deliver(client, body, "msg_same").status_code == 204
    assert deliver(client, body, "msg_same").status_code == 204
    events = feed(client)["events"]
    assert [e["webhook_id"] for e in events] == ["msg_same"]
    receipts = get_receiver(app).store.receipts()
    assert [(r.webhook_id, r.duplicate) for r in receipts] == [
        ("msg_same", True),
        ("msg_same", False),
    ]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'receiver_webhooks_received_total{result="verified"} 1.0' in metrics
    assert 'receiver_webhooks_received_total{result="duplicate"} 1.0' in metrics


def test_concurrent_duplicates_are_stored_once(app: Flask) -> None:
    body = event_body("job_race")
    headers = signed_headers(body, msg_id="msg_race")
    start = threading.Barrier(20)
    codes: list[int] = []

    def send() -> None:
        client = app.test_client()
        start.wait()
        codes.append(client.post("/webhooks", data=body, headers=headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [204] * 20
    assert get_receiver(app).store.count_events() == 1


def test_hundred_concurrent_webhooks_are_all_stored(app: Flask) -> None:
    bodies = [(f"msg_{i}", event_body(f"job_{i}")) for i in range(100)]
    start = threading.Barrier(100)
    codes: dict[str, int] = {}

    def send(msg_id: str, body: bytes) -> None:
        client = app.test_client()
        headers = signed_headers(body, msg_id=msg_id)
        start.wait()
        codes[msg_id] = client.post("/webhooks", data=body, headers=headers).status_code

    threads = [threading.Thread(target=send, args=pair) for pair in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(codes.values()) == {204}
    events = feed(app.test_client(), "?limit=1000")["events"]
    assert sorted(e["webhook_id"] for e in events) == sorted(m for m, _ in bodies)
    cursors = [int(e["cursor"]) for e in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == 100


def test_out_of_order_events_never_unfinal_a_job(client: FlaskClient) -> None:
    assert deliver(client, event_body("job_x", "job.completed"), "msg_final").status_code == 204
    # A late non-final event (a type the API may add later) and a contradicting final one.
    late = event_body("job_x", "job.progress", status="pending")
    assert deliver(client, late, "msg_late").status_code == 204
    assert deliver(client, event_body("job_x", "job.error"), "msg_error").status_code == 204
    final = client.get("/v1/events/job_x").get_json()
    assert (final["webhook_id"], final["type"], final["data"]["status"]) == (
        "msg_final",
        "job.completed",
        "completed",
    )
    # The feed is a log: every distinct event is in it, in arrival order.
    assert [e["webhook_id"] for e in feed(client, "?job_id=job_x")["events"]] == [
        "msg_final",
        "msg_late",
        "msg_error",
    ]


def test_non_final_event_alone_gives_no_final_event(client: FlaskClient) -> None:
    deliver(client, event_body("job_p", "job.progress", status="pending"))
    resp = client.get("/v1/events/job_p")
    assert resp.status_code == 404
    assert resp.get_json()["code"] == "event_not_found"


@pytest.mark.parametrize(
    ("body", "status", "code", "detail"),
    [
        (b"{not json", 400, "invalid_json", "body"),
        (b"[1, 2]", 422, "validation_error", "body: must be a JSON object"),
        (b'{"data": {"id": "j"}}', 422, "validation_error", "type:"),
        (b'{"type": 7, "data": {"id": "j"}}', 422, "validation_error", "type:"),
        (b'{"type": "job.completed"}', 422, "validation_error", "data:"),
        (b'{"type": "job.completed", "data": []}', 422, "validation_error", "data:"),
        (b'{"type": "job.completed", "data": {}}', 422, "validation_error", "data.id:"),
        (b'{"type": "job.completed", "data": {"id": ""}}', 422, "validation_error", "data.id:"),
        (
            b'{"type": "job.completed", "data": {"id": "a\\nb"}}',
            422,
            "validation_error",
            "data.id:",
        ),
        (
            b'{"type": "job.completed", "data": {"id": "\\ud800"}}',
            422,
            "validation_error",
            "data.id:",
        ),
        (b"[" * 30000 + b"]" * 30000, 400, "invalid_json", "body"),
    ],
)
def test_signed_but_invalid_body_is_rejected(
    app: Flask, client: FlaskClient, body: bytes, status: int, code: str, detail: str
) -> None:
    resp = deliver(client, body)
    assert resp.status_code == status, resp.get_data(as_text=True)
    problem = resp.get_json()
    assert problem["code"] == code
    assert detail in problem["detail"]
    assert get_receiver(app).store.count_events() == 0


def test_body_over_64_kib_is_413(client: FlaskClient) -> None:
    body = json.dumps({"type": "job.completed", "data": {"id": "j", "pad": "x" * 70000}})
    resp = deliver(client, body.encode())
    assert resp.status_code == 413
    assert resp.get_json()["code"] == "body_too_large"


def test_receipts_log_is_bounded(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("callback_receiver.batchwrite.RECEIPTS_KEPT", 5)
    monkeypatch.setattr("callback_receiver.batchwrite.RECEIPTS_PRUNE_EVERY", 2)
    for i in range(12):
        client.post("/webhooks", data=b"{}", headers={"webhook-id": f"msg_{i}"})
    kept = [r.webhook_id for r in get_receiver(app).store.receipts(limit=100)]
    assert len(kept) <= 5 + 2
    assert kept[0] == "msg_11"
