"""Measure the callback receiver's arrival-to-feed latency.

Starts a receiver on a free port with a temporary database, keeps one long-poll parked on
``GET /v1/events?wait=30`` and sends N signed webhooks one at a time, each only once the
long-poll is parked again (read from the ``receiver_feed_waiters`` gauge). For each webhook
it records:

- send-to-feed: from just before the POST is sent to the long-poll client holding the event;
- arrival-to-feed: from the receiver's ``received_at`` stamp to the long-poll client holding
  it (same machine, same clock; ``received_at`` has millisecond resolution);
- POST round trip: until the 204 is back (verification plus a durable SQLite commit).

Usage: ``.venv/bin/python scripts/bench_receiver.py [--count 200]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
from standardwebhooks import Webhook

from client_lib.models import parse_time

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def start_receiver(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m callback_receiver`` on a free port; return it and its URL."""
    ready = workdir / "ready.json"
    cmd = [
        sys.executable,
        "-m",
        "callback_receiver",
        "--port",
        "0",
        "--ready-file",
        str(ready),
        "--database-url",
        f"sqlite:///{workdir / 'bench.db'}",
        "--credentials-file",
        "",
        "--secret",
        SECRET,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    log = (workdir / "receiver.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"receiver exited: {(workdir / 'receiver.log').read_text()}")
        try:
            return proc, json.loads(ready.read_text())["url"]
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.02)
    raise SystemExit("receiver did not start")


class Poller(threading.Thread):
    """One client's feed connection: long-polls forever, stamping each event's arrival."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, tuple[float, float, str]] = {}  # id: (perf, wall, received_at)
        self.cond = threading.Condition()
        self.stop = threading.Event()

    def run(self) -> None:
        cursor = "0"
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    resp = session.get(f"{self.url}/v1/events?after={cursor}&wait=30", timeout=40)
                except requests.RequestException:
                    return  # the receiver stopped
                perf, wall = time.perf_counter(), time.time()
                body = resp.json()
                cursor = body["cursor"]
                with self.cond:
                    for event in body["events"]:
                        self.seen[event["webhook_id"]] = (perf, wall, event["received_at"])
                    self.cond.notify_all()

    def wait_for(self, msg_id: str, timeout: float = 10.0) -> tuple[float, float, str]:
        """Block until ``msg_id`` reached this client."""
        with self.cond:
            if not self.cond.wait_for(lambda: msg_id in self.seen, timeout):
                raise SystemExit(f"{msg_id} never reached the feed")
            return self.seen[msg_id]


def parked(session: requests.Session, url: str) -> bool:
    """True once the receiver reports a blocked long-poll."""
    for line in session.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("receiver_feed_waiters "):
            return float(line.split()[1]) >= 1
    return False


def send_one(session: requests.Session, url: str, i: int) -> tuple[str, float, float]:
    """POST one signed webhook; returns its id, send time and 204 time (perf_counter)."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = json.dumps(
        {
            "type": "job.completed",
            "timestamp": "2026-11-23T05:00:00.000Z",
            "data": {"id": f"job_{i}", "status": "completed"},
        }
    )
    now = datetime.now(tz=UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body),
        "content-type": "application/json",
    }
    sent = time.perf_counter()
    resp = session.post(f"{url}/webhooks", data=body.encode(), headers=headers, timeout=10)
    acked = time.perf_counter()
    if resp.status_code != 204:
        raise SystemExit(f"webhook {i}: {resp.status_code} {resp.text}")
    return msg_id, sent, acked


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def report(name: str, values_s: list[float]) -> None:
    """Print p50/p99/max in milliseconds."""
    ms = [v * 1000 for v in values_s]
    print(
        f"{name:<22} p50 {percentile(ms, 0.5):7.2f} ms   p99 {percentile(ms, 0.99):7.2f} ms"
        f"   max {max(ms):7.2f} ms   mean {statistics.fmean(ms):6.2f} ms"
    )


def bench(url: str, count: int) -> None:
    """Send ``count`` webhooks to a parked long-poll and print the latencies."""
    poller = Poller(url)
    poller.start()
    send_to_feed, arrival_to_feed, post_rtt = [], [], []
    with requests.Session() as session:
        for i in range(count):
            deadline = time.monotonic() + 10
            while not parked(session, url):
                if time.monotonic() > deadline:
                    raise SystemExit("the long-poll never parked")
            msg_id, sent, acked = send_one(session, url, i)
            perf, wall, received_at = poller.wait_for(msg_id)
            send_to_feed.append(perf - sent)
            arrival_to_feed.append(wall - (parse_time(received_at) or wall))
            post_rtt.append(acked - sent)
    poller.stop.set()
    print(f"{count} webhooks, one parked long-poll, receiver at {url}")
    report("send-to-feed", send_to_feed)
    report("arrival-to-feed", arrival_to_feed)
    report("POST /webhooks (204)", post_rtt)


def main() -> None:
    """Parse arguments, start a receiver, run the benchmark, stop the receiver."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_receiver(Path(tmp))
        try:
            bench(url, args.count)
        finally:
            proc.terminate()
            print(f"receiver exited with {proc.wait(timeout=15)}")


if __name__ == "__main__":
    main()
