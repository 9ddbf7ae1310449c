"""GET /v1/events: cursor semantics, parameter validation, long-polls and their limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from callback_receiver.feed import Feed, FeedBusy, FeedSource
from callback_receiver.receiver import get_receiver
from client_lib.localsetup import LocalSetup
from client_lib.models import Event
from tests.receiver_support import FEED_TOKEN, event_body, receiver_app, signed_headers
from tests.support import wait_until

pytestmark = [pytest.mark.timeout(30), pytest.mark.both_engines]


@pytest.fixture
def app(tmp_path: Path, receiver_database_url: str) -> Iterator[Flask]:
    with receiver_app(
        tmp_path, database_url=receiver_database_url, threads=4, max_waiters=2
    ) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def deliver(client: FlaskClient, job_id: str, msg_id: str | None = None) -> None:
    body = event_body(job_id)
    resp = client.post("/webhooks", data=body, headers=signed_headers(body, msg_id=msg_id))
    assert resp.status_code == 204


def feed(client: FlaskClient, query: str = "") -> dict[str, Any]:
    resp = client.get(f"/v1/events{query}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return dict(resp.get_json())


class Poller(threading.Thread):
    """A long-poll in its own thread, timing when its answer arrived."""

    def __init__(self, app: Flask, query: str) -> None:
        super().__init__(daemon=True)
        self.app, self.query = app, query
        self.result: dict[str, Any] | None = None
        self.returned_at = 0.0

    def run(self) -> None:
        self.result = feed(self.app.test_client(), self.query)
        self.returned_at = time.monotonic()


def start_poller(app: Flask, query: str, waiters: int = 1) -> Poller:
    poller = Poller(app, query)
    poller.start()
    feed_ = get_receiver(app).feed
    wait_until(lambda: feed_.waiters >= waiters, timeout=5, message="the long-poll to block")
    return poller


def test_empty_feed_answers_the_given_cursor(client: FlaskClient) -> None:
    assert feed(client) == {"events": [], "cursor": "0"}
    assert feed(client, "?after=42") == {"events": [], "cursor": "42"}


def test_cursor_returns_only_later_events_in_order(client: FlaskClient) -> None:
    for i in range(3):
        deliver(client, f"job_{i}", f"msg_{i}")
    first = feed(client)
    assert [e["webhook_id"] for e in first["events"]] == ["msg_0", "msg_1", "msg_2"]
    assert first["cursor"] == first["events"][-1]["cursor"]
    assert feed(client, f"?after={first['cursor']}") == {"events": [], "cursor": first["cursor"]}
    deliver(client, "job_3", "msg_3")
    later = feed(client, f"?after={first['cursor']}")
    assert [e["webhook_id"] for e in later["events"]] == ["msg_3"]
    middle = feed(client, f"?after={first['events'][0]['cursor']}")
    assert [e["webhook_id"] for e in middle["events"]] == ["msg_1", "msg_2", "msg_3"]


def test_after_latest_starts_from_now(client: FlaskClient) -> None:
    assert feed(client, "?after=latest") == {"events": [], "cursor": "0"}
    for i in range(2):
        deliver(client, f"job_{i}", f"msg_{i}")
    now = feed(client, "?after=latest")
    assert now["events"] == [] and now["cursor"] == feed(client)["cursor"]
    deliver(client, "job_9", "msg_9")
    later = feed(client, f"?after={now['cursor']}")
    assert [e["webhook_id"] for e in later["events"]] == ["msg_9"]


def test_events_match_the_wire_model(client: FlaskClient) -> None:
    deliver(client, "job_w", "msg_w")
    event = Event.from_dict(feed(client)["events"][0])
    assert event.final_job is not None
    assert (event.webhook_id, event.type, event.final_job.id) == (
        "msg_w",
        "job.completed",
        "job_w",
    )
    assert event.received_at.endswith("Z")


def test_job_filter_and_limit(client: FlaskClient) -> None:
    for i in range(4):
        deliver(client, "job_a" if i % 2 == 0 else "job_b", f"msg_{i}")
    only_b = feed(client, "?job_id=job_b")
    assert [e["webhook_id"] for e in only_b["events"]] == ["msg_1", "msg_3"]
    page = feed(client, "?limit=3")
    assert len(page["events"]) == 3
    rest = feed(client, f"?after={page['cursor']}&limit=3")
    assert [e["webhook_id"] for e in rest["events"]] == ["msg_3"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?wait=61", "wait"),
        ("?wait=-1", "wait"),
        ("?wait=abc", "wait"),
        ("?wait=nan", "wait"),
        ("?wait=inf", "wait"),
        ("?after=abc", "after"),
        ("?after=-1", "after"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=x", "limit"),
        ("?job_id=" + "j" * 300, "job_id"),
        ("?jobs=job_a&job_id=job_b", "jobs"),
        ("?jobs=,%20,", "jobs"),
        ("?jobs=" + ",".join(f"job_{i}" for i in range(101)), "jobs"),
    ],
)
def test_invalid_parameters_are_422_naming_the_field(
    client: FlaskClient, query: str, field: str
) -> None:
    resp = client.get(f"/v1/events{query}")
    assert resp.status_code == 422
    problem = resp.get_json()
    assert problem["code"] == "validation_error"
    assert problem["detail"].startswith(f"{field}:")
    assert problem["field"] == field


def test_long_poll_wakes_when_a_webhook_arrives(app: Flask, client: FlaskClient) -> None:
    poller = start_poller(app, "?wait=10")
    sent_at = time.monotonic()
    deliver(client, "job_wake", "msg_wake")
    poller.join(timeout=5)
    assert poller.result is not None
    assert [e["webhook_id"] for e in poller.result["events"]] == ["msg_wake"]
    assert poller.returned_at - sent_at < 1.0  # the wait was 10 s


def test_long_poll_for_one_job_ignores_other_jobs(app: Flask, client: FlaskClient) -> None:
    poller = start_poller(app, "?job_id=job_mine&wait=10")
    deliver(client, "job_other", "msg_other")
    # It woke, found nothing of its own, and went back to waiting.
    wait_until(lambda: get_receiver(app).feed.waiters == 1, timeout=2, message="re-wait")
    assert poller.is_alive()
    deliver(client, "job_mine", "msg_mine")
    poller.join(timeout=5)
    assert poller.result is not None
    assert [e["webhook_id"] for e in poller.result["events"]] == ["msg_mine"]


def test_long_poll_for_some_jobs_wakes_for_theirs_only(app: Flask, client: FlaskClient) -> None:
    poller = start_poller(app, "?jobs=job_x,job_y&wait=10")
    deliver(client, "job_other", "msg_other")
    wait_until(lambda: get_receiver(app).feed.waiters == 1, timeout=2, message="parked")
    assert poller.is_alive()
    deliver(client, "job_y", "msg_y")
    poller.join(timeout=5)
    assert poller.result is not None
    assert [e["webhook_id"] for e in poller.result["events"]] == ["msg_y"]
    assert get_receiver(app).feed.waiters == 0


def test_long_poll_times_out_cleanly(client: FlaskClient) -> None:
    started = time.monotonic()
    result = feed(client, "?after=0&wait=0.3")
    elapsed = time.monotonic() - started
    assert result == {"events": [], "cursor": "0"}
    assert 0.3 <= elapsed < 1.5


def test_waits_beyond_max_waiters_are_refused_at_once(app: Flask, client: FlaskClient) -> None:
    pollers = [start_poller(app, "?wait=10", waiters=n) for n in (1, 2)]
    started = time.monotonic()
    resp = client.get("/v1/events?wait=10")
    assert time.monotonic() - started < 1.0
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "1"
    assert resp.get_json()["code"] == "too_many_waiters"
    # A poll that needs no waiting is still served, and the blocked ones still wake.
    assert client.get("/v1/events?wait=0").status_code == 200
    deliver(client, "job_z")
    for poller in pollers:
        poller.join(timeout=5)
        assert poller.result is not None and len(poller.result["events"]) == 1
    assert "receiver_feed_waits_refused_total 1.0" in client.get("/metrics").get_data(as_text=True)


def test_closing_the_feed_releases_waiters(app: Flask) -> None:
    poller = start_poller(app, "?wait=20")
    get_receiver(app).feed.close()
    poller.join(timeout=5)
    assert not poller.is_alive()
    assert poller.result == {"events": [], "cursor": "0"}


class CountingStore:
    """The receiver's real store, counting the feed's reads of it."""

    def __init__(self, store: FeedSource) -> None:
        self.store = store
        self.reads = 0

    def events_after(self, after: int, *, jobs: Any = None, limit: int = 100) -> Any:
        self.reads += 1
        return self.store.events_after(after, jobs=jobs, limit=limit)

    def tail_after(self, after: int, *, limit: int) -> Any:
        self.reads += 1
        return self.store.tail_after(after, limit=limit)

    def last_cursor(self) -> int:
        return self.store.last_cursor()

    def channels(self, now: float) -> Any:
        return self.store.channels(now)


def test_feed_refuses_a_waiter_over_its_limit(app: Flask, client: FlaskClient) -> None:
    feed_ = Feed(get_receiver(app).store, max_waiters=0)
    try:
        with pytest.raises(FeedBusy):
            feed_.read(0, jobs=None, limit=10, wait=5)
        assert feed_.waiters == 0
        deliver(client, "job_1", "msg_1")
        page = feed_.read(0, jobs=None, limit=10, wait=5)  # found at once: no slot needed
        assert [e["webhook_id"] for e in page.events] == ["msg_1"]
    finally:
        feed_.close()


def test_one_event_wakes_many_waiters_with_one_read(app: Flask, client: FlaskClient) -> None:
    counted = CountingStore(get_receiver(app).store)
    feed_ = Feed(counted, max_waiters=40)
    pages: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: pages.append(feed_.read(0, jobs=None, limit=10, wait=20)),
            daemon=True,
        )
        for _ in range(30)
    ]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: feed_.waiters == 30, timeout=5, message="30 parked waiters")
        reads_before = counted.reads
        deliver(client, "job_all", "msg_all")
        feed_.notify()
        for t in threads:
            t.join(timeout=5)
        assert [p.events[0]["webhook_id"] for p in pages] == ["msg_all"] * 30
        assert counted.reads - reads_before == 1  # one query for thirty waiters
    finally:
        feed_.close()


def test_a_committed_batch_wakes_its_waiters_without_a_query_and_a_gap_syncs(
    app: Flask, client: FlaskClient
) -> None:
    store = get_receiver(app).store
    counted = CountingStore(store)
    feed_ = Feed(counted, max_waiters=4)
    pages: list[Any] = []

    def park() -> threading.Thread:
        thread = threading.Thread(
            target=lambda: pages.append(feed_.read(feed_.latest(), jobs=None, limit=10, wait=20)),
            daemon=True,
        )
        thread.start()
        wait_until(lambda: feed_.waiters == 1, timeout=5, message="a parked waiter")
        return thread

    try:
        waiter = park()
        reads = counted.reads
        deliver(client, "job_1", "msg_1")  # transaction 1 of this database's writes
        feed_.committed(store.tail_after(0, limit=1)[0], store.events_after(0))
        waiter.join(timeout=5)
        assert [e["webhook_id"] for e in pages[0].events] == ["msg_1"]
        assert counted.reads == reads  # from the batch itself: no query
        feed_.committed(store.tail_after(0, limit=1)[0], store.events_after(0))  # known: nothing
        waiter = park()
        reads = counted.reads
        deliver(client, "job_2", "msg_2")
        deliver(client, "job_3", "msg_3")  # two transactions this feed was not given
        feed_.committed(store.tail_after(0, limit=1)[0], store.events_after(1)[1:])
        waiter.join(timeout=5)  # the gap: a sync reads both back
        assert [e["webhook_id"] for e in pages[1].events] == ["msg_2", "msg_3"]
        assert counted.reads > reads
    finally:
        feed_.close()


def test_a_cursor_older_than_the_tail_is_read_from_the_database(
    app: Flask, client: FlaskClient
) -> None:
    feed_ = Feed(get_receiver(app).store, max_waiters=4, tail_size=2)
    try:
        for i in range(5):
            deliver(client, f"job_{i % 2}", f"msg_{i}")
        assert feed_.latest() == 5
        every = feed_.read(0, jobs=None, limit=100, wait=0)
        assert [e["webhook_id"] for e in every.events] == [f"msg_{i}" for i in range(5)]
        mine = feed_.read(0, jobs=frozenset({"job_1"}), limit=100, wait=0)
        assert [e["webhook_id"] for e in mine.events] == ["msg_1", "msg_3"]
        recent = feed_.read(3, jobs=None, limit=1, wait=0)  # from the tail
        assert ([e["webhook_id"] for e in recent.events], recent.last_seq) == (["msg_3"], 4)
    finally:
        feed_.close()


def test_the_feed_needs_its_token(app: Flask) -> None:
    client = app.test_client()
    client.environ_base.pop("HTTP_AUTHORIZATION")
    for path in ("/v1/events", "/v1/events?wait=5", "/v1/events/job_1"):
        missing = client.get(path)
        assert missing.status_code == 401, path
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="vt-receiver"'
        assert missing.content_type == "application/problem+json"
        body = missing.get_json()
        assert (body["code"], body["field"], body["status"]) == (
            "unauthorized",
            "Authorization",
            401,
        )
        for wrong in (f"Bearer {FEED_TOKEN}x", f"Basic {FEED_TOKEN}", "Bearer ", FEED_TOKEN):
            refused = client.get(path, headers={"Authorization": wrong})
            assert refused.status_code == 401, (path, wrong)
            assert refused.get_json()["code"] == "invalid_feed_token"
            assert refused.get_json()["field"] == "Authorization"
            assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    ok = client.get("/v1/events", headers={"Authorization": f"bearer {FEED_TOKEN}"})
    assert ok.status_code == 200
    deliver(client, "job_open")  # webhooks need no token: their signature is their proof


def test_the_token_comes_from_the_local_setup_file(tmp_path: Path) -> None:
    creds = tmp_path / "local.json"
    with receiver_app(tmp_path, credentials_file=creds, feed_token=None) as app:
        client = app.test_client()
        refused = client.get("/v1/events")
        assert refused.status_code == 401
        assert refused.get_json()["code"] == "no_feed_token_configured"
        LocalSetup(receiver_token="file-token-0123456789abcdef").write(creds)
        auth = {"Authorization": "Bearer file-token-0123456789abcdef"}
        assert client.get("/v1/events", headers=auth).status_code == 200
        assert client.get("/v1/events").get_json()["code"] == "invalid_feed_token"
