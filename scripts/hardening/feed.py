"""The receiver's feed under load: parked long-polls, webhooks meanwhile, and fan-out.

A real receiver (``tests.support.start_receiver``, its own SQLite file) runs as shipped
(544 threads, 512 parking slots). Then:

- 520 long-polls ``GET /v1/events?job_id=...&wait=60`` are sent on as many connections, each
  for a job of its own that never ends; the receiver's ``receiver_feed_waiters`` gauge says
  how many it holds parked, and the answers that came back at once are counted (503);
- while they are parked, signed webhooks for other jobs are posted one after another; each
  one's acknowledgement latency is from sending it to the 204;
- 20 clients long-poll for one job, a webhook for that job is posted, and the time from
  sending it to the first byte of each client's answer is taken, for 20 jobs in turn.
"""

from __future__ import annotations

import secrets
import selectors
import socket
import tempfile
import time
import uuid
from pathlib import Path

import requests

from scripts.common import fmt_s, metrics, percentile
from scripts.hardening import Figure
from tests.receiver_support import SECRET, event_body, signed_headers
from tests.support import start_receiver, wait_until

PARKED, EXTRA = 512, 8
FANOUT, FANOUT_JOBS = 20, 20
GOAL_PARKED = 500
GOAL_ACK_S = 0.05
GOAL_FANOUT_S = 0.015
TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def gauge(url: str, name: str) -> float:
    return metrics(url, f"{name} ").get(name, 0.0)


def park(port: int, count: int) -> list[socket.socket]:
    """``count`` long-polls, each for a job of its own, their answers left unread."""
    out = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            f"GET /v1/events?job_id=job_parked_{i}&wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        out.append(sock)
    return out


def answered_at_once(socks: list[socket.socket]) -> int:
    """How many of the long-polls were answered 503 at once (no slot left for them), once
    every one beyond the slots has its answer; 0 until then."""
    answered = []
    for sock in socks:
        sock.setblocking(False)
        try:
            answered.append(sock.recv(12, socket.MSG_PEEK))
        except BlockingIOError:
            pass
    if len(answered) < EXTRA:
        return 0
    return sum(a.startswith(b"HTTP/1.1 503") for a in answered)


def post(session: requests.Session, url: str, job_id: str) -> float:
    """Post one signed webhook; seconds until its 204."""
    body = event_body(job_id)
    headers = signed_headers(body, msg_id=f"msg_{uuid.uuid4().hex}")
    started = time.perf_counter()
    resp = session.post(f"{url}/webhooks", data=body, headers=headers, timeout=10)
    elapsed = time.perf_counter() - started
    if resp.status_code != 204:
        raise RuntimeError(f"webhook answered {resp.status_code}: {resp.text}")
    return elapsed


def fanout(url: str, port: int, job_id: str) -> list[float]:
    """``FANOUT`` clients long-polling for ``job_id``; from posting its webhook to the first
    byte of each one's answer, in seconds (one thread watches every client's socket, so the
    clients' own parsing is not counted)."""
    before = gauge(url, "receiver_feed_waiters")
    socks = []
    for _ in range(FANOUT):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            f"GET /v1/events?job_id={job_id}&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        socks.append(sock)
    try:
        wait_until(
            lambda: gauge(url, "receiver_feed_waiters") >= before + FANOUT,
            timeout=20,
            message="the fan-out clients parked",
        )
        with selectors.DefaultSelector() as selector, requests.Session() as session:
            for sock in socks:
                selector.register(sock, selectors.EVENT_READ)
            sent = time.perf_counter()
            post(session, url, job_id)
            lags: list[float] = []
            while len(lags) < FANOUT:
                ready = selector.select(timeout=10)
                if not ready:
                    raise RuntimeError(f"{len(lags)} of {FANOUT} clients got {job_id}'s event")
                at = time.perf_counter()
                for key, _ in ready:
                    selector.unregister(key.fileobj)
                    lags.append(at - sent)
        for sock in socks:
            sock.settimeout(10)
            answer = sock.recv(65536)
            while job_id.encode() not in answer and (more := sock.recv(65536)):
                answer += more
            if not answer.startswith(b"HTTP/1.1 200") or job_id.encode() not in answer:
                raise RuntimeError(f"a fan-out client got {answer[:80]!r}")
        return lags
    finally:
        for sock in socks:
            sock.close()


def measure(quick: bool) -> list[Figure]:
    """Parked long-polls held, webhook acknowledgement meanwhile, fan-out to 20 clients."""
    webhooks = 300 if quick else 1500
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_receiver(
            Path(tmp), "--secret", SECRET, "--feed-token", TOKEN, "--log-level", "WARNING"
        ) as receiver,
    ):
        url = receiver.url
        socks = park(receiver.port, PARKED + EXTRA)
        try:
            wait_until(
                lambda: gauge(url, "receiver_feed_waiters") >= PARKED,
                timeout=30,
                message="the long-polls parked",
            )
            held = int(gauge(url, "receiver_feed_waiters"))
            refused = wait_until(lambda: answered_at_once(socks), timeout=10, message="a 503")
            with requests.Session() as session:
                acks = sorted(post(session, url, f"job_other_{i}") for i in range(webhooks))
            still = int(gauge(url, "receiver_feed_waiters"))
        finally:
            for sock in socks:
                sock.close()
        wait_until(lambda: gauge(url, "receiver_feed_waiters") == 0, timeout=70)
        lags = sorted(
            lag for j in range(FANOUT_JOBS) for lag in fanout(url, receiver.port, f"job_fan_{j}")
        )
    ack_p99 = percentile(acks, 99)
    fan_p50 = percentile(lags, 50)
    return [
        Figure(
            "feed: long-polls held parked at once",
            f"{held} of {PARKED + EXTRA} asked ({refused} answered 503 at once)",
            f"at least {GOAL_PARKED}",
            held >= GOAL_PARKED,
            f"{PARKED + EXTRA} long-polls (wait=60, each for a job that never ends) on as many "
            "connections; the receiver's receiver_feed_waiters gauge",
        ),
        Figure(
            f"feed: webhook acknowledgement p99 with {held} long-polls parked",
            f"{fmt_s(ack_p99)} (p50 {fmt_s(percentile(acks, 50))}; {still} still parked after)",
            f"under {fmt_s(GOAL_ACK_S)}",
            ack_p99 < GOAL_ACK_S,
            f"{webhooks} signed webhooks for other jobs posted one after another, from "
            "sending to the 204 (each a new connection: waitress closes after a 204)",
        ),
        Figure(
            f"feed: a webhook to {FANOUT} clients waiting on its job, p50",
            f"{fmt_s(fan_p50)} (p99 {fmt_s(percentile(lags, 99))})",
            f"about {fmt_s(GOAL_FANOUT_S)}",
            fan_p50 <= GOAL_FANOUT_S,
            f"{FANOUT} long-polls for one job, its webhook posted, from sending it to the "
            f"first byte of each client's answer; {FANOUT_JOBS} jobs in turn",
        ),
    ]
