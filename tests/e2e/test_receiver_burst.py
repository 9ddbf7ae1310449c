"""A burst of concurrent webhooks, some sent twice at once, to a real receiver process (and to
two sharing one PostgreSQL database): every one acknowledged, every distinct webhook in the feed
exactly once, in cursor order."""

from __future__ import annotations

import http.client
import random
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.receiver_support import FEED_AUTH, FEED_TOKEN, SECRET, event_body, signed_headers
from tests.support import start_receiver

pytestmark = pytest.mark.timeout(120)

DISTINCT, TWICE, SENDERS = 600, 150, 16


def post_all(ports: list[int], items: list[tuple[bytes, dict[str, str]]]) -> list[int]:
    """POST every item from ``SENDERS`` threads, spread over ``ports``; the statuses."""
    pending, lock, statuses = iter(items), threading.Lock(), []

    def sender(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                break
            conn.request("POST", "/webhooks", body=item[0], headers=item[1])
            resp = conn.getresponse()
            resp.read()
            with lock:
                statuses.append(resp.status)
        conn.close()

    threads = [
        threading.Thread(target=sender, args=(ports[n % len(ports)],)) for n in range(SENDERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def read_feed(url: str) -> list[dict[str, Any]]:
    events, cursor = [], ""
    while True:
        page = requests.get(
            f"{url}/v1/events",
            params={"after": cursor, "limit": 1000},
            headers=FEED_AUTH,
            timeout=10,
        ).json()
        if not page["events"]:
            return events
        events.extend(page["events"])
        cursor = page["cursor"]


def burst_items() -> list[tuple[bytes, dict[str, str]]]:
    """``DISTINCT`` signed webhooks, ``TWICE`` of them twice, shuffled (seeded)."""
    rng = random.Random(16)
    items = []
    for n in range(DISTINCT):
        body = event_body(f"job_{n}")
        items.append((body, signed_headers(body, msg_id=f"msg_{n}")))
    items += rng.sample(items, TWICE)  # copies of one webhook, each from another sender
    rng.shuffle(items)
    return items


def counted(urls: list[str], result: str) -> float:
    """``receiver_webhooks_received_total{result}`` summed over the receivers."""
    total = 0.0
    for url in urls:
        for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
            if line.startswith(f'receiver_webhooks_received_total{{result="{result}"}} '):
                total += float(line.rsplit(" ", 1)[1])
    return total


def check_stored_once(urls: list[str]) -> None:
    for url in urls:
        events = read_feed(url)
        ids = [e["webhook_id"] for e in events]
        assert sorted(ids) == sorted(f"msg_{n}" for n in range(DISTINCT))
        cursors = [int(e["cursor"]) for e in events]
        assert cursors == sorted(set(cursors))
        final = requests.get(f"{url}/v1/events/job_7", headers=FEED_AUTH, timeout=10)
        assert final.json()["webhook_id"] == "msg_7"
    assert counted(urls, "duplicate") == TWICE
    assert counted(urls, "verified") == DISTINCT


def test_a_burst_with_concurrent_copies_is_stored_once_each(tmp_path: Path) -> None:
    items = burst_items()
    args = ("--secret", SECRET, "--feed-token", FEED_TOKEN)
    with start_receiver(tmp_path, *args) as receiver:
        assert post_all([receiver.port], items) == [204] * (DISTINCT + TWICE)
        check_stored_once([receiver.url])


@pytest.mark.parametrize("db_engine", ["postgresql"], indirect=True)
def test_two_receivers_on_one_postgresql_database_store_each_copy_once(
    tmp_path: Path, receiver_database_url: str
) -> None:
    items = burst_items()
    args = ("--secret", SECRET, "--feed-token", FEED_TOKEN, "--database-url", receiver_database_url)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        start_receiver(tmp_path / "a", *args) as first,
        start_receiver(tmp_path / "b", *args) as second,
    ):
        assert post_all([first.port, second.port], items) == [204] * (DISTINCT + TWICE)
        check_stored_once([first.url, second.url])
