"""The server's side of the webhook channel: numbered events and what heartbeats report."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from tests.conftest import auth
from tests.unit.test_server_store import new_job
from translation_server.channel import Heartbeats
from translation_server.db import Database
from translation_server.outbox import DELIVERED
from translation_server.runtime import Runtime
from translation_server.schema import webhook_events
from translation_server.simulation import attempt_end
from translation_server.store import Store

pytestmark = pytest.mark.both_engines
T0 = 1_800_000_000.0
URL = "http://127.0.0.1:9/webhooks"


def ended(store: Store, *, channel: bool, count: int = 1, url: str = URL) -> list[str]:
    """Create ``count`` 1 s jobs to ``url`` and end them all; their ids in order."""
    ids = []
    for _ in range(count):
        job, _ = store.create_job(new_job(callback_url=url), now=T0, channel=channel)
        ids.append(job.id)
    store.claim(now=T0, limit=count)
    store.finish_due(now=T0 + 10, end=attempt_end)
    return ids


def payloads(database: Database) -> dict[str, dict[str, Any]]:
    with database.engine.connect() as conn:
        rows = conn.execute(select(webhook_events.c.job_id, webhook_events.c.payload)).all()
    return {r.job_id: json.loads(r.payload) for r in rows}


def beats(runtime: Runtime) -> Heartbeats:
    return Heartbeats(runtime.db, lambda *a: 204, interval=1.0, linger=10.0)


def test_channel_events_are_numbered_from_one_in_the_signed_body(runtime: Runtime) -> None:
    ids = ended(runtime.store, channel=True, count=3)
    bodies = payloads(runtime.db)
    assert sorted(bodies[i]["seq"] for i in ids) == [1, 2, 3]
    assert list(bodies[ids[0]]) == ["type", "timestamp", "seq", "data"]
    more = ended(runtime.store, channel=False, count=1)  # the same endpoint: numbered too
    assert payloads(runtime.db)[more[0]]["seq"] == 4


def test_an_endpoint_that_never_asked_gets_no_numbers(runtime: Runtime) -> None:
    (job_id,) = ended(runtime.store, channel=False, url="http://127.0.0.1:9/plain")
    assert "seq" not in payloads(runtime.db)[job_id]
    assert beats(runtime).body(("cli_a", "http://127.0.0.1:9/plain"), T0 + 10) is None


def test_a_heartbeat_tells_pending_from_sent(runtime: Runtime) -> None:
    first, second = ended(runtime.store, channel=True, count=2)
    with runtime.db.writer.begin() as conn:
        conn.execute(
            update(webhook_events).where(webhook_events.c.job_id == first).values(state=DELIVERED)
        )
    body = json.loads(beats(runtime).body(("cli_a", URL), T0 + 10) or "")
    assert body["type"] == "channel.heartbeat"
    data = body["data"]
    assert data["endpoint"] == URL and data["seq"] == 2 and data["interval_s"] == 1.0
    states = {e["job_id"]: (e["seq"], e["state"]) for e in data["events"]}
    assert states == {first: (1, "sent"), second: (2, "pending")}


def test_endpoints_are_active_with_jobs_in_flight_or_a_recent_event(runtime: Runtime) -> None:
    store = runtime.store
    heartbeats = beats(runtime)
    assert heartbeats.active_endpoints(T0) == []
    store.create_job(new_job(callback_url=URL), now=T0, channel=True)
    assert heartbeats.active_endpoints(T0) == [("cli_a", URL)]
    store.claim(now=T0, limit=1)
    store.finish_due(now=T0 + 10, end=attempt_end)
    assert heartbeats.active_endpoints(T0 + 15) == [("cli_a", URL)]  # lingering
    assert heartbeats.active_endpoints(T0 + 21) == []


def test_channel_events_needs_a_boolean_and_a_callback(
    client: FlaskClient, tenant: dict[str, str]
) -> None:
    for body, detail in (
        ({"callback_url": URL, "channel_events": "yes"}, "channel_events: must be true or false"),
        ({"channel_events": True}, "channel_events: needs a callback_url"),
    ):
        resp = client.post("/v1/jobs", json=body, headers=auth(tenant))
        assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
        assert resp.get_json()["detail"].startswith(detail)
    resp = client.post(
        "/v1/jobs", json={"callback_url": URL, "channel_events": True}, headers=auth(tenant)
    )
    assert resp.status_code == 201


def test_a_pinned_estimate_factor_is_what_the_estimator_sees(
    client: FlaskClient, tenant: dict[str, str], runtime: Runtime
) -> None:
    simulate = {"duration_s": 10, "estimate_factor": 1.5}
    resp = client.post("/v1/jobs", json={"simulate": simulate}, headers=auth(tenant))
    assert resp.status_code == 201
    record = runtime.reads.get_job(resp.get_json()["id"])
    assert record is not None and record.estimated_duration == 15.0
    resp = client.post("/v1/jobs", json={"simulate": {"estimate_factor": 9}}, headers=auth(tenant))
    assert resp.status_code == 422
    assert resp.get_json()["detail"] == "simulate.estimate_factor: must be between 0.3 and 5"
