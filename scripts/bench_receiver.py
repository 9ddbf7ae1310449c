"""The callback receiver: arrival-to-feed latency, and ingestion of a burst.

1. Latency: a receiver on a free port with a temporary database keeps one long-poll parked on
   ``GET /v1/events?wait=30``; signed webhooks are sent one at a time, each only once the
   long-poll is parked again (read from the ``receiver_feed_waiters`` gauge).
2. Burst: ``--connections`` concurrent connections post ``--burst`` distinct webhooks, signed
   and built into request bytes beforehand, as fast as the receiver acknowledges them, to a
   fresh receiver twice: once with ``--ingest-batch-max 1`` (one transaction per webhook) and
   once with the default group commit. Each signature is still verified per request. Every
   webhook must be stored once, or the run fails. The load generator is one thread of this
   process on non-blocking sockets; its CPU time is reported beside the receiver's.

    .venv/bin/python -m scripts.bench_receiver [--quick] [--count 200] [--burst 10000]
        [--connections 16]
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import secrets
import selectors
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from standardwebhooks import Webhook

from client_lib.models import parse_time
from scripts.common import (
    anchor,
    cpu_seconds,
    definitions,
    metrics,
    parser,
    save,
    summary_ms,
    table,
)
from tests.support import start_receiver, wait_until

TITLE = "Receiver: from a webhook's arrival to a waiting long-poll, and a burst"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODES = {  # burst runs: name, receiver arguments
    "one transaction per webhook": ("--ingest-batch-max", "1"),
    "group commit (default)": (),
}
WARMUP = 200
DEFINITIONS = {
    "send to feed": "from just before the POST is sent to the long-poll client holding the event",
    "arrival to feed": "from the receiver's `received_at` stamp (millisecond resolution) to the "
    "long-poll client holding the event",
    "POST /webhooks": "until the 204 is back: verification and a durable SQLite commit",
}
BURST_DEFINITIONS = {
    "webhooks/s": "webhooks acknowledged (204) divided by the time from the first send to the "
    "last acknowledgement",
    "ack": "one POST until its 204",
    "receiver CPU": "the receiver process's user + system CPU time during the burst, per webhook",
    "generator CPU": "the load generator's CPU time (this process, on the same cores), per webhook",
    "batch": "mean writes per transaction (the receiver's `receiver_ingest_batch_size`)",
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


def signed(i: int) -> tuple[str, bytes, dict[str, str]]:
    """A signed webhook: its id, body and headers."""
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
    return msg_id, body.encode(), headers


def send_one(session: requests.Session, url: str, i: int) -> tuple[str, float, float]:
    """POST one signed webhook; its id, when it was sent and when the 204 came back."""
    msg_id, body, headers = signed(i)
    sent = time.perf_counter()
    resp = session.post(f"{url}/webhooks", data=body, headers=headers, timeout=10)
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


def request_bytes(port: int, item: tuple[str, bytes, dict[str, str]]) -> bytes:
    """The whole HTTP request of a signed webhook, built before the clock starts."""
    _msg_id, body, headers = item
    lines = [
        "POST /webhooks HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def post_all(
    port: int, items: list[tuple[str, bytes, dict[str, str]]], connections: int
) -> tuple[float, list[float], float]:
    """Post ``items`` on ``connections`` concurrent connections from one thread (non-blocking
    sockets and a selector, every request built beforehand, so the generator costs little of
    the cores it shares with the receiver); each connection takes the next webhook as soon as
    its last was acknowledged. (wall seconds, ack latencies, generator CPU seconds). A non-204
    answer fails the run."""
    requests_ = [(item[0], request_bytes(port, item)) for item in items]
    pending = iter(requests_)
    acks: list[float] = []
    failures: list[str] = []
    selector = selectors.DefaultSelector()

    def start() -> bool:
        item = next(pending, None)
        if item is None:
            return False
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        state = {"id": item[0], "out": memoryview(item[1]), "in": b"", "sent": time.perf_counter()}
        selector.register(sock, selectors.EVENT_WRITE, state)
        return True

    def finish(sock: socket.socket, state: dict[str, Any], failure: str | None) -> None:
        selector.unregister(sock)
        sock.close()
        if failure is not None:
            failures.append(f"{state['id']}: {failure}")
        else:
            acks.append(time.perf_counter() - state["sent"])
            start()

    cpu, started = time.process_time(), time.perf_counter()
    for _ in range(connections):
        start()
    while selector.get_map() and not failures:
        ready = selector.select(timeout=60)
        if not ready:
            raise RuntimeError("no answer from the receiver within 60 s")
        for key, _mask in ready:
            sock, state = key.fileobj, key.data
            assert isinstance(sock, socket.socket)
            try:
                if state["out"]:
                    state["out"] = state["out"][sock.send(state["out"]) :]
                    if not state["out"]:
                        selector.modify(sock, selectors.EVENT_READ, state)
                    continue
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                finish(sock, state, repr(exc))
                continue
            state["in"] += chunk
            head, sep, rest = state["in"].partition(b"\r\n\r\n")
            if not sep and chunk:
                continue
            status = head.split(b" ", 2)[1:2]
            ok = sep and status == [b"204"]
            finish(sock, state, None if ok else f"{head[:200]!r} {rest[:200]!r}")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    selector.close()
    if failures:
        raise RuntimeError(f"{len(failures)} webhooks failed, first: {failures[0]}")
    return wall, acks, cpu


def burst(mode: str, count: int, connections: int) -> dict[str, Any]:
    """One burst on a fresh receiver in ``mode``: rate, ack latency, CPU, batch size."""
    numbers = itertools.count()
    warmup = [signed(next(numbers)) for _ in range(WARMUP)]
    items = [signed(next(numbers)) for _ in range(count)]
    args = ("--secret", SECRET, "--feed-token", TOKEN, *MODES[mode])
    with tempfile.TemporaryDirectory() as tmp, start_receiver(Path(tmp), *args) as rec:
        post_all(rec.port, warmup, connections)
        before = metrics(rec.url, "receiver_ingest_batch_size_")
        cpu = cpu_seconds(rec.proc.pid)
        wall, acks, generator_cpu = post_all(rec.port, items, connections)
        cpu = cpu_seconds(rec.proc.pid) - cpu
        after = metrics(rec.url, "receiver_")
    stored = after['receiver_webhooks_received_total{result="verified"}']
    if stored != WARMUP + count:
        raise RuntimeError(f"{mode}: {stored:.0f} webhooks stored, {WARMUP + count} sent")
    batches = after["receiver_ingest_batch_size_count"] - before["receiver_ingest_batch_size_count"]
    writes = after["receiver_ingest_batch_size_sum"] - before["receiver_ingest_batch_size_sum"]
    return {
        "mode": mode,
        "webhooks": count,
        "connections": connections,
        "per_s": count / wall,
        "ack": summary_ms(acks),
        "cpu_ms_per_webhook": cpu / count * 1000,
        "cpu_cores": cpu / wall,
        "generator_cpu_ms_per_webhook": generator_cpu / count * 1000,
        "mean_batch": writes / batches if batches else 0.0,
    }


def main(argv: Sequence[str]) -> int:
    """Start a receiver, measure, stop it; then the bursts; print and save."""
    p = parser(__doc__)
    p.add_argument("--count", type=int, help="webhooks sent one at a time [200; quick 50]")
    p.add_argument("--burst", type=int, help="webhooks of each burst [10000; quick 2000]")
    p.add_argument("--connections", type=int, default=16, help="concurrent senders [16]")
    args = p.parse_args(argv)
    count = args.count or (50 if args.quick else 200)
    burst_count = args.burst or (2000 if args.quick else 10000)
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_receiver(Path(tmp), "--secret", SECRET, "--feed-token", TOKEN) as rec,
    ):
        figures = {name: summary_ms(values) for name, values in measure(rec.url, count).items()}
    bursts = [burst(mode, burst_count, args.connections) for mode in MODES]
    rows = [[name, f["p50"], f["p90"], f["p99"], f["max"]] for name, f in figures.items()]
    burst_rows = [
        [
            b["mode"],
            f"{b['per_s']:.0f}",
            b["ack"]["p50"],
            b["ack"]["p99"],
            f"{b['cpu_ms_per_webhook']:.2f}",
            f"{b['generator_cpu_ms_per_webhook']:.2f}",
            f"{b['mean_batch']:.1f}",
        ]
        for b in bursts
    ]
    text = "\n\n".join(
        [
            f"{count} webhooks, one at a time, to one parked long-poll.",
            definitions(DEFINITIONS),
            table("interval | p50 ms | p90 ms | p99 ms | max ms", rows),
            f"A burst: {burst_count} webhooks from {args.connections} concurrent senders "
            f"(after {WARMUP} to warm up), to a fresh receiver in each mode, in this run.",
            definitions(BURST_DEFINITIONS),
            table(
                "ingestion | webhooks/s | ack p50 ms | ack p99 ms | receiver CPU ms "
                "| generator CPU ms | batch",
                burst_rows,
            ),
        ]
    )
    link = f"benchmarks.md#{anchor(TITLE)}"
    headline = [
        (f"Receiver ingestion, {b['mode']}", f"{b['per_s']:.0f} webhooks/s", link) for b in bursts
    ]
    raw = {"count": count, "figures": figures, "bursts": bursts}
    save("receiver", argv, TITLE, text, headline, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
