"""The callback receiver's arrival-to-feed latency.

Starts a receiver on a free port with a temporary database, keeps one long-poll parked on
``GET /v1/events?wait=30`` and sends signed webhooks one at a time, each only once the
long-poll is parked again (read from the ``receiver_feed_waiters`` gauge).

    .venv/bin/python -m scripts.bench_receiver [--quick] [--count 200]
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import requests
from standardwebhooks import Webhook

from client_lib.models import parse_time
from scripts.common import definitions, metrics, parser, save, summary_ms, table
from tests.support import start_receiver, wait_until

TITLE = "Receiver: from a webhook's arrival to a waiting long-poll"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEFINITIONS = {
    "send to feed": "from just before the POST is sent to the long-poll client holding the event",
    "arrival to feed": "from the receiver's `received_at` stamp (millisecond resolution) to the "
    "long-poll client holding the event",
    "POST /webhooks": "until the 204 is back: verification and a durable SQLite commit",
}


class Feed(threading.Thread):
    """One client's feed connection: long-polls until stopped, stamping each event's arrival."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.seen: dict[str, tuple[float, float, str]] = {}  # id: (perf, wall, received_at)
        self.cond = threading.Condition()

    def run(self) -> None:
        cursor = "0"
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    resp = session.get(
                        f"{self.url}/v1/events?after={cursor}&wait=30", headers=AUTH, timeout=40
                    )
                except requests.RequestException:
                    return  # the receiver stopped
                perf, wall = time.perf_counter(), time.time()
                body = resp.json()
                cursor = body["cursor"]
                with self.cond:
                    for event in body["events"]:
                        self.seen[event["webhook_id"]] = (perf, wall, event["received_at"])
                    self.cond.notify_all()

    def wait_for(self, msg_id: str) -> tuple[float, float, str]:
        """Block until ``msg_id`` reached this client."""
        with self.cond:
            if not self.cond.wait_for(lambda: msg_id in self.seen, 10):
                raise RuntimeError(f"{msg_id} never reached the feed")
            return self.seen[msg_id]


def parked(url: str) -> bool:
    """Whether the receiver reports a blocked long-poll (its ``receiver_feed_waiters``)."""
    return metrics(url, "receiver_feed_waiters ").get("receiver_feed_waiters", 0) >= 1


def send_one(session: requests.Session, url: str, i: int) -> tuple[str, float, float]:
    """POST one signed webhook; its id, when it was sent and when the 204 came back."""
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(tz=UTC)
    body = json.dumps(
        {
            "type": "job.completed",
            "timestamp": "2026-11-23T05:00:00.000Z",
            "data": {"id": f"job_{i}", "status": "completed"},
        }
    )
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body),
        "content-type": "application/json",
    }
    sent = time.perf_counter()
    resp = session.post(f"{url}/webhooks", data=body.encode(), headers=headers, timeout=10)
    if resp.status_code != 204:
        raise RuntimeError(f"webhook {i}: {resp.status_code} {resp.text}")
    return msg_id, sent, time.perf_counter()


def measure(url: str, count: int) -> dict[str, list[float]]:
    """Send ``count`` webhooks to a parked long-poll; the three latencies of each."""
    feed = Feed(url)
    feed.start()
    out: dict[str, list[float]] = {name: [] for name in DEFINITIONS}
    with requests.Session() as session:
        for i in range(count):
            wait_until(lambda: parked(url), timeout=10, message="a parked long-poll")
            msg_id, sent, acked = send_one(session, url, i)
            perf, wall, received_at = feed.wait_for(msg_id)
            out["send to feed"].append(perf - sent)
            out["arrival to feed"].append(wall - (parse_time(received_at) or wall))
            out["POST /webhooks"].append(acked - sent)
    feed.stop.set()
    return out


def main(argv: Sequence[str]) -> int:
    """Start a receiver, measure, stop it; print and save."""
    p = parser(__doc__)
    p.add_argument("--count", type=int, help="webhooks sent [200; quick 50]")
    args = p.parse_args(argv)
    count = args.count or (50 if args.quick else 200)
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_receiver(Path(tmp), "--secret", SECRET, "--feed-token", TOKEN) as rec,
    ):
        figures = {name: summary_ms(values) for name, values in measure(rec.url, count).items()}
    rows = [[name, f["p50"], f["p90"], f["p99"], f["max"]] for name, f in figures.items()]
    text = "\n\n".join(
        [
            f"{count} webhooks, one at a time, to one parked long-poll.",
            definitions(DEFINITIONS),
            table("interval | p50 ms | p90 ms | p99 ms | max ms", rows),
        ]
    )
    save("receiver", argv, TITLE, text, [], {"count": count, "figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
