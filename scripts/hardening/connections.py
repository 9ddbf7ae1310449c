"""Greedy connections against both services: idle ones and ones trickling a header.

Each service runs as a real process (``tests.support``, its own SQLite file), configured as
shipped. From one source address (loopback), 1,000 connections are opened and left idle, and
100 more send a request's header one byte every 2 s, never finishing it. Meanwhile a probe
asks ``GET /healthz`` on a new connection each time, one request after another; its latency
is from opening the connection to the whole answer.
"""

from __future__ import annotations

import resource
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from scripts.common import fmt_s, percentile
from scripts.hardening import Figure
from tests.support import Service, start_receiver, start_server, wait_until

IDLE, TRICKLING = 1000, 100
TRICKLE_EVERY_S = 2.0
GOAL_S = 0.1
HEADER = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 400


class Greedy:
    """The idle and the trickling connections to one port."""

    def __init__(self, port: int) -> None:
        self.idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE)]
        self.trickling = [socket.create_connection(("127.0.0.1", port)) for _ in range(TRICKLING)]
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while self.sent < len(HEADER) and not self.stop.wait(TRICKLE_EVERY_S):
            for sock in self.trickling:
                sock.send(HEADER[self.sent : self.sent + 1])
            self.sent += 1

    def still_open(self) -> int:
        """How many of the greedy connections the service has not closed."""
        open_ = 0
        for sock in self.idle + self.trickling:
            sock.setblocking(False)
            try:
                open_ += sock.recv(1) != b""
            except BlockingIOError:
                open_ += 1
            except OSError:
                pass
        return open_

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.idle + self.trickling:
            sock.close()


def probe(url: str, count: int) -> list[float]:
    """``count`` probes, each on a new connection; their latencies in seconds, sorted."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        with requests.Session() as session:
            resp = session.get(f"{url}/healthz", timeout=30)
        out.append(time.perf_counter() - started)
        if resp.status_code != 200:
            raise RuntimeError(f"probe answered {resp.status_code}")
    return sorted(out)


def one_service(name: str, start: Callable[[Path], Service], probes: int) -> Figure:
    with tempfile.TemporaryDirectory() as tmp, start(Path(tmp)) as service:
        baseline = probe(service.url, probes)
        greedy = Greedy(service.port)
        try:
            wait_until(lambda: greedy.sent >= 2, timeout=30, message="headers under way")
            latencies = probe(service.url, probes)
            held = greedy.still_open()
        finally:
            greedy.close()
    p99 = percentile(latencies, 99)
    return Figure(
        f"{name}: probe p99 with {IDLE:,} idle and {TRICKLING} trickling connections",
        f"{fmt_s(p99)} (p50 {fmt_s(percentile(latencies, 50))}; alone p99 "
        f"{fmt_s(percentile(baseline, 99))}); {held:,} of {IDLE + TRICKLING:,} still open",
        f"under {fmt_s(GOAL_S)}",
        p99 < GOAL_S,
        f"{probes} sequential GET /healthz on a new connection each, while {IDLE:,} "
        f"connections sat idle and {TRICKLING} sent one header byte every "
        f"{TRICKLE_EVERY_S:g} s, all from 127.0.0.1",
    )


def measure(quick: bool) -> list[Figure]:
    """The probe's p99 against the server, then against the receiver."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    probes = 200 if quick else 1000
    quiet = ("--log-level", "WARNING")
    return [
        one_service("server", lambda w: start_server(w, *quiet), probes),
        one_service(
            "receiver",
            lambda w: start_receiver(w, "--feed-token", "hardening-feed-token-0123456789", *quiet),
            probes,
        ),
    ]
