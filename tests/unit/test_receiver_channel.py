"""The receiver's side of the webhook channel: heartbeats verified, kept, fed when new."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.receiver_support import job, receiver_app, signed_headers

pytestmark = [pytest.mark.timeout(30), pytest.mark.both_engines]
ENDPOINT = "http://127.0.0.1:9/webhooks"


@pytest.fixture
def app(tmp_path: Path, receiver_database_url: str) -> Iterator[Flask]:
    with receiver_app(tmp_path, database_url=receiver_database_url) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def heartbeat(seq: int = 1, **data: Any) -> dict[str, Any]:
    """A valid heartbeat body: job 1's event (number 1) sent."""
    fields: dict[str, Any] = {
        "endpoint": ENDPOINT,
        "client_id": "cli_a",
        "seq": seq,
        "interval_s": 1.0,
        "events": [{"seq": 1, "job_id": "job_1", "state": "sent", "next_attempt_at": None}],
    }
    fields.update(data)
    return {"type": "channel.heartbeat", "timestamp": "2026-12-03T09:00:00.000Z", "data": fields}


def post(client: FlaskClient, doc: dict[str, Any]) -> Any:
    body = json.dumps(doc).encode()
    return client.post("/webhooks", data=body, headers=signed_headers(body))


def test_a_heartbeat_with_news_is_fed_and_a_repeat_only_refreshes(client: FlaskClient) -> None:
    assert post(client, heartbeat()).status_code == 204
    assert post(client, heartbeat()).status_code == 204  # same content, another webhook-id
    page = client.get("/v1/events?after=0").get_json()
    assert [e["type"] for e in page["events"]] == ["channel.heartbeat"]
    assert page["events"][0]["data"]["events"][0]["job_id"] == "job_1"
    (channel,) = page["channels"]
    assert channel["endpoint"] == ENDPOINT and channel["seq"] == 1 and channel["age_s"] < 5
    later = "2099-01-01T00:00:00.000Z"  # a retry far off: a client should ask instead
    pending = {"seq": 2, "job_id": "job_2", "state": "pending", "next_attempt_at": later}
    news = heartbeat(2, events=[*heartbeat()["data"]["events"], pending])
    assert post(client, news).status_code == 204
    page = client.get("/v1/events?after=0").get_json()
    assert [e["data"]["seq"] for e in page["events"]] == [1, 2]
    assert page["channels"][0]["seq"] == 2


def test_two_clients_on_one_endpoint_keep_channels_of_their_own(client: FlaskClient) -> None:
    assert post(client, heartbeat(1)).status_code == 204
    lost_b = {"seq": 5, "job_id": "job_b", "state": "sent", "next_attempt_at": None}
    other = heartbeat(5, client_id="cli_b", events=[lost_b])
    assert post(client, other).status_code == 204
    assert post(client, heartbeat(1)).status_code == 204  # cli_a's again: nothing new
    page = client.get("/v1/events?after=0").get_json()
    assert [(e["data"]["client_id"], e["data"]["seq"]) for e in page["events"]] == [
        ("cli_a", 1),
        ("cli_b", 5),
    ]
    assert sorted((c["client_id"], c["seq"]) for c in page["channels"]) == [
        ("cli_a", 1),
        ("cli_b", 5),
    ]


def test_a_heartbeat_that_asks_nothing_of_a_client_wakes_no_one(client: FlaskClient) -> None:
    """Every event it names as sent is stored here, and no retry is far off: not fed."""
    job = {"type": "job.completed", "seq": 1, "data": {"id": "job_1", "status": "completed"}}
    assert post(client, job).status_code == 204
    soon = {"seq": 2, "job_id": "job_2", "state": "pending", "next_attempt_at": None}
    assert (
        post(client, heartbeat(2, events=[*heartbeat()["data"]["events"], soon])).status_code == 204
    )
    page = client.get("/v1/events?after=0").get_json()
    assert [e["type"] for e in page["events"]] == ["job.completed"]
    assert page["channels"][0]["seq"] == 2  # the channel is refreshed all the same


def test_a_read_for_some_jobs_shows_their_events_and_every_heartbeat(
    client: FlaskClient,
) -> None:
    for job_id in ("job_1", "job_2", "job_3"):
        doc = {"type": "job.completed", "timestamp": "2026-12-03T09:00:00.000Z"}
        assert post(client, {**doc, "data": {**job(job_id)}}).status_code == 204
    lost = {"seq": 9, "job_id": "job_9", "state": "sent", "next_attempt_at": None}
    post(client, heartbeat(9, events=[lost]))  # news: fed
    page = client.get("/v1/events?after=0&jobs=job_3,job_1").get_json()
    assert [e["type"] for e in page["events"]] == ["job.completed"] * 2 + ["channel.heartbeat"]
    assert [e["data"]["id"] for e in page["events"][:2]] == ["job_1", "job_3"]
    assert page["cursor"] == page["events"][-1]["cursor"]


def test_heartbeats_stay_out_of_a_jobs_own_views(client: FlaskClient) -> None:
    post(client, heartbeat())
    assert client.get("/v1/events?after=0&job_id=job_1").get_json()["events"] == []
    assert client.get("/v1/events/job_1").status_code == 404


def test_a_numbered_job_event_keeps_its_number_in_the_feed(client: FlaskClient) -> None:
    doc = {
        "type": "job.completed",
        "timestamp": "2026-12-03T09:00:00.000Z",
        "seq": 7,
        "data": {"id": "job_7", "status": "completed"},
    }
    assert post(client, doc).status_code == 204
    (event,) = client.get("/v1/events?after=0").get_json()["events"]
    assert event["seq"] == 7 and event["data"]["id"] == "job_7"


def test_a_feed_with_no_channel_heard_has_no_channels_key(client: FlaskClient) -> None:
    assert "channels" not in client.get("/v1/events?after=0").get_json()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"endpoint": 5}, "data.endpoint"),
        ({"client_id": ""}, "data.client_id"),
        ({"interval_s": 0}, "data.interval_s"),
        ({"interval_s": "1"}, "data.interval_s"),
        ({"seq": -1}, "data.seq"),
        ({"seq": True}, "data.seq"),
        ({"events": "all"}, "data.events"),
        ({"events": [{"seq": 1, "job_id": "job_1", "state": "lost"}]}, "data.events[0]"),
        ({"events": [{"seq": "1", "job_id": "job_1", "state": "sent"}]}, "data.events[0].seq"),
        ({"events": [{"seq": 1, "job_id": "", "state": "sent"}]}, "data.events[0].job_id"),
        (
            {"events": [{"seq": 1, "job_id": "j", "state": "pending", "next_attempt_at": "soon"}]},
            "data.events[0].next_attempt_at",
        ),
    ],
)
def test_a_malformed_heartbeat_is_422_naming_the_field(
    client: FlaskClient, data: dict[str, Any], field: str
) -> None:
    resp = post(client, heartbeat(**data))
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    problem = resp.get_json()
    assert problem["detail"].startswith(f"{field}:") and problem["status"] == 422
    assert client.get("/v1/events?after=0").get_json()["events"] == []


def test_a_heartbeat_whose_data_is_not_an_object_is_422(client: FlaskClient) -> None:
    resp = post(client, {"type": "channel.heartbeat", "data": [1]})
    assert resp.status_code == 422 and resp.get_json()["detail"].startswith("data:")
