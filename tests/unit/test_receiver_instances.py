"""Several receivers on one PostgreSQL database: one copy of each webhook, and a long-poll on
one receiver woken by an event another stored (LISTEN/NOTIFY)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from callback_receiver.migrations import SCHEMA_VERSION, SchemaVersionError
from callback_receiver.receiver import get_receiver
from callback_receiver.store import Store
from tests.pgsupport import query
from tests.receiver_support import event_body, receiver_app, signed_headers
from tests.support import ROOT, wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.parametrize("db_engine", ["postgresql"], indirect=True),
]


@pytest.fixture
def pair(tmp_path: Path, receiver_database_url: str) -> Iterator[tuple[Flask, Flask]]:
    url = receiver_database_url
    with (
        receiver_app(tmp_path, database_url=url) as one,
        receiver_app(tmp_path, database_url=url) as two,
    ):
        for app in (one, two):
            listener = get_receiver(app).listener
            assert listener is not None
            wait_until(listener.listening.is_set, timeout=10, message="LISTEN in force")
        yield one, two


def deliver(app: Flask, job_id: str, msg_id: str) -> int:
    body = event_body(job_id)
    headers = signed_headers(body, msg_id=msg_id)
    return app.test_client().post("/webhooks", data=body, headers=headers).status_code


def test_a_long_poll_on_one_receiver_wakes_for_an_event_stored_by_another(
    pair: tuple[Flask, Flask],
) -> None:
    one, two = pair
    answer: dict[str, Any] = {}

    def poll() -> None:
        resp = one.test_client().get("/v1/events?after=latest&wait=20")
        answer.update(status=resp.status_code, body=resp.get_json())

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    wait_until(lambda: get_receiver(one).feed.waiters >= 1, timeout=5, message="a parked poll")
    assert deliver(two, "job_far", "msg_far") == 204
    poller.join(timeout=15)
    assert not poller.is_alive(), "the long-poll was not woken by the other receiver's event"
    assert answer["status"] == 200
    assert [e["webhook_id"] for e in answer["body"]["events"]] == ["msg_far"]


def test_a_webhook_delivered_to_two_receivers_is_stored_once(
    pair: tuple[Flask, Flask], receiver_database_url: str
) -> None:
    one, two = pair
    codes: list[int] = []
    threads = [
        threading.Thread(target=lambda app=app: codes.append(deliver(app, "job_1", "msg_twice")))
        for app in (one, two, one, two)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert codes == [204] * 4
    rows = query(receiver_database_url, "SELECT webhook_id FROM events")
    assert rows == [("msg_twice",)]


def test_a_newer_schema_is_refused_naming_both_versions(receiver_database_url: str) -> None:
    Store(receiver_database_url).close()
    query(receiver_database_url, "UPDATE schema_version SET version = version + 1")
    with pytest.raises(SchemaVersionError) as caught:
        Store(receiver_database_url)
    assert f"version {SCHEMA_VERSION + 1}, newer than this receiver's {SCHEMA_VERSION}" in str(
        caught.value
    )


def test_the_receiver_refuses_a_newer_schema_at_start_with_a_clear_message(
    tmp_path: Path, receiver_database_url: str
) -> None:
    Store(receiver_database_url).close()
    query(receiver_database_url, "UPDATE schema_version SET version = version + 1")
    command = [sys.executable, "-m", "callback_receiver", "--database-url", receiver_database_url]
    done = subprocess.run(
        [*command, "--port", "0", "--credentials-file", str(tmp_path / "none.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"newer than this receiver's {SCHEMA_VERSION}" in done.stderr
    assert "Traceback" not in done.stderr
