"""Group commit on ingestion: batches form while the writer is busy, de-duplication stays exact
inside a batch, a failed batch answers 503 to each of its webhooks and loses nothing
acknowledged, and a batch of at most one is one transaction per webhook."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, update

from callback_receiver.app import close_app, create_app
from callback_receiver.config import Settings
from callback_receiver.receiver import get_receiver
from callback_receiver.store import feed_lock
from tests.receiver_support import event_body, receiver_app, settings_for, signed_headers
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)


def post(app: Flask, msg_id: str, job_id: str) -> Any:
    body = event_body(job_id)
    return app.test_client().post(
        "/webhooks", data=body, headers=signed_headers(body, msg_id=msg_id)
    )


def metric(app: Flask, name: str) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@contextmanager
def write_lock_held(url: str) -> Iterator[None]:
    """Another connection holds the store's write lock (SQLite's, or the feed_lock row on
    PostgreSQL) until the block ends: the receiver's writer blocks on its next batch."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(update(feed_lock).values(writes=feed_lock.c.writes))
            yield
    finally:
        engine.dispose()


class Senders:
    """Webhooks posted from threads of their own; their answers by webhook id."""

    def __init__(self, app: Flask) -> None:
        self.app, self.threads, self.answers = app, [], []
        self.lock = threading.Lock()

    def send(self, msg_id: str, job_id: str) -> None:
        def run() -> None:
            resp = post(self.app, msg_id, job_id)
            with self.lock:
                self.answers.append((msg_id, resp.status_code, resp.headers, resp.get_json()))

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def join(self) -> list[tuple[str, int, Any, Any]]:
        for thread in self.threads:
            thread.join(30)
        return sorted(self.answers, key=lambda a: a[0])


@pytest.mark.both_engines
def test_webhooks_queued_while_a_batch_commits_form_one_batch_and_copies_in_it_are_duplicates(
    tmp_path: Path, receiver_database_url: str
) -> None:
    with receiver_app(tmp_path, database_url=receiver_database_url) as app:
        ingest = get_receiver(app).ingest
        senders = Senders(app)
        with write_lock_held(receiver_database_url):
            senders.send("msg_first", "job_first")
            wait_until(lambda: ingest.queued == 0 and ingest.committing, message="a batch")
            for msg_id, job_id in [("msg_dup", "job_dup"), ("msg_dup", "job_dup"),
                                   ("msg_a", "job_a"), ("msg_b", "job_b")]:  # fmt: skip
                senders.send(msg_id, job_id)
            wait_until(lambda: ingest.queued == 4, message="four webhooks queued")
        answers = senders.join()
        assert [(m, status) for m, status, _, _ in answers] == [
            ("msg_a", 204),
            ("msg_b", 204),
            ("msg_dup", 204),
            ("msg_dup", 204),
            ("msg_first", 204),
        ]
        # two transactions: the first webhook alone, then the four queued behind it
        assert metric(app, "receiver_ingest_batch_size_count") == 2
        assert metric(app, "receiver_ingest_batch_size_sum") == 5
        store = get_receiver(app).store
        stored = [e.webhook_id for e in store.events_after(0, limit=100)]
        assert stored[0] == "msg_first"
        assert sorted(stored[1:]) == ["msg_a", "msg_b", "msg_dup"]
        dup_receipts = [r.duplicate for r in store.receipts() if r.webhook_id == "msg_dup"]
        assert sorted(dup_receipts) == [False, True]
        assert store.final_event("job_dup") is not None
        assert metric(app, 'receiver_webhooks_received_total{result="duplicate"}') == 1


def test_a_failed_batch_answers_503_to_each_webhook_in_it_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    with receiver_app(tmp_path) as app:
        assert post(app, "msg_kept", "job_kept").status_code == 204
        database = sqlite3.connect(tmp_path / "receiver.db")
        database.execute("ALTER TABLE events RENAME TO events_away")  # every write now fails
        database.commit()
        senders = Senders(app)
        for n in range(3):
            senders.send(f"msg_{n}", f"job_{n}")
        answers = senders.join()
        assert [status for _, status, _, _ in answers] == [503, 503, 503]
        for _, _, headers, problem in answers:
            assert headers["Content-Type"] == "application/problem+json"
            assert headers["Retry-After"] == "1"
            assert problem["status"] == 503
            assert problem["code"] == "database_unavailable"
            assert "retry after 1 s" in problem["detail"]
        assert metric(app, 'receiver_webhooks_received_total{result="not_stored"}') == 3
        database.execute("ALTER TABLE events_away RENAME TO events")
        database.commit()
        database.close()
        # the sender retries: each is stored now, and the acknowledged one is still there
        assert [post(app, f"msg_{n}", f"job_{n}").status_code for n in range(3)] == [204] * 3
        store = get_receiver(app).store
        assert [e.webhook_id for e in store.events_after(0, limit=100)] == [
            "msg_kept",
            "msg_0",
            "msg_1",
            "msg_2",
        ]


def test_batch_max_one_commits_each_webhook_alone(tmp_path: Path) -> None:
    with receiver_app(tmp_path, ingest_batch_max=1) as app:
        ingest = get_receiver(app).ingest
        senders = Senders(app)
        with write_lock_held(f"sqlite:///{tmp_path / 'receiver.db'}"):
            for n in range(4):
                senders.send(f"msg_{n}", f"job_{n}")
            wait_until(lambda: ingest.queued == 3, message="three queued behind the first")
        assert {status for _, status, _, _ in senders.join()} == {204}
        assert metric(app, "receiver_ingest_batch_size_count") == 4
        assert metric(app, "receiver_ingest_batch_size_sum") == 4
        assert get_receiver(app).store.count_events() == 4


def test_a_webhook_after_the_receiver_stopped_is_503(tmp_path: Path) -> None:
    with receiver_app(tmp_path) as app:
        get_receiver(app).ingest.close()
        resp = post(app, "msg_late", "job_late")
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "1"
        assert resp.get_json()["code"] == "database_unavailable"
        assert "stopping" in resp.get_json()["detail"]


def test_closing_commits_what_is_queued(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path))
    ingest = get_receiver(app).ingest
    senders = Senders(app)
    try:
        with write_lock_held(f"sqlite:///{tmp_path / 'receiver.db'}"):
            for n in range(3):
                senders.send(f"msg_{n}", f"job_{n}")
            wait_until(lambda: ingest.queued + ingest.committing == 3, message="three taken")
            closing = threading.Thread(target=close_app, args=(app,))
            closing.start()
            # stopping: a webhook arriving now is refused; the three taken are still stored
            wait_until(lambda: post(app, "msg_late", "job_late").status_code == 503)
        closing.join(30)
        assert {status for _, status, _, _ in senders.join()} == {204}
    finally:
        close_app(app)
    database = sqlite3.connect(tmp_path / "receiver.db")
    assert database.execute("SELECT count(*) FROM events").fetchone() == (3,)
    database.close()


@pytest.mark.parametrize("value", [0, -1, 1001])
def test_batch_max_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="ingest-batch-max must be within"):
        Settings(ingest_batch_max=value, credentials_file=None, feed_token="x" * 20)
