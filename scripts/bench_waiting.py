"""How fast and how cheaply a caller learns that a job ended: this library and the usual pollers.

One run measures every cell of a matrix, with the same seeded jobs for every strategy:

shapes (ways users write code)
    ``one job``       K independent callers, each its own client, creating ONE job and waiting
                      for it (``create_job``, then ``wait``), in concurrent threads;
    ``sequential``    one caller creates 10 jobs, then waits on each in turn;
    ``as_completed``  one caller creates N jobs and iterates ``as_completed`` over them;
    ``processes``     P client processes (spawned), each creating M jobs, then ``as_completed``.

faults (of the webhook path; only the library uses webhooks)
    ``none``; ``drop 1/10`` (jobs 0, 10, 20, ... of a shape: the server never sends their
    webhook); ``drop all``; ``receiver down`` (the library's receiver URL, and so every callback
    URL, is a closed port); ``receiver flapping`` (a TCP proxy in front of the receiver refuses
    connections and drops open ones 3 s in every 10 s: webhooks and the client's feed requests
    alike); ``duplicates`` (every webhook sent twice); ``503 then retry`` (an HTTP proxy answers
    the first ``POST /webhooks`` of each job event 503, without ``Retry-After``, and passes
    everything else through; the server retries on its schedule).

strategies
    ``library``     this project's ``TranslationClient`` (its requests counted by a transport);
    ``poll 1s``, ``poll 5s``  fixed-interval pollers;
    ``backoff``     1 s doubling to a 32 s cap, each delay times a uniform 0.5-1.5 jitter;
    ``doubling``    1 s doubling, no cap, no jitter;
    ``heygen-cli``  2 s doubling to a 30 s cap, each delay times a uniform 0.75-1.25 jitter.
    A poller runs ``GET /v1/jobs/{id}`` until the job is final, one thread per job sharing a
    keep-alive ``requests.Session`` (one per process in ``processes``; a cell's sessions hold
    at most 32 connections together); the create response is its first look, except in
    ``sequential``, where it starts polling a job (with a GET) when the caller starts waiting
    on it. Pollers create their jobs without a callback URL, so no fault touches them: they run
    once per shape and their figures are shown under every fault.

Job i of a shape has the same duration (uniform 5-15 s), estimator factor (``max(0.3,
gauss(1, 0.2))``, the distortion the server's estimator applies) and webhook fault for every
strategy, all pinned through ``simulate``. Every cell has its own translation server (seeded,
``--workers 2000`` so nothing queues) and, for the library, its own callback receiver. The
library runs first, one fault at a time with its four shapes at once; the pollers run after it,
every shape and strategy at once, so their load never overlaps the library's cells.

Lag of a job: the moment the caller knows it ended (``wait``/``as_completed`` returned it, or a
poller's GET returned it final) minus the later of the job's ``finished_at`` (as the server
reports it, truncated to the millisecond) and the moment the caller started asking about it;
same machine, same clock. Status requests: ``GET /v1/jobs/{id}`` and ``GET /v1/jobs?ids=``,
each request counting 1, per job of the cell; feed requests: the library's requests to the
receiver's ``/v1/events``, per job.

    .venv/bin/python scripts/bench_waiting.py [--quick] [--seed 1] [--timeout 120]
        [--faults none,drop-all] [--shapes one-job,sequential]
        [--out bench-results/waiting.json] [--docs-dir docs]

Prints one table per fault and the goal checks (PASS/MISS), writes ``docs/waiting-benchmark.md``
and ``docs/waiting-benchmark.png``, and the raw figures to ``--out``. A missed goal is reported,
not an error: the exit status is non-zero only when a cell crashed or a job was not resolved.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import http.client
import itertools
import json
import multiprocessing
import queue
import random
import re
import select
import shlex
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from bench import machine
from bench_common import (
    ChildService,
    children,
    percentile,
    start_callback_receiver,
    start_translation_server,
)
from requests.adapters import HTTPAdapter

from client_lib import TranslationClient
from client_lib.errors import WaitTimeout
from client_lib.transport import Request, RequestsTransport, Response, Transport

ROOT = Path(__file__).resolve().parent.parent

SHAPES = ("one job", "sequential", "as_completed", "processes")
FAULTS = (
    "none",
    "drop 1/10",
    "drop all",
    "receiver down",
    "receiver flapping",
    "duplicates",
    "503 then retry",
)
LIBRARY = "library"
PEERS = ("poll 1s", "poll 5s", "backoff", "doubling", "heygen-cli")
STRATEGIES = (LIBRARY, *PEERS)

FAULT_NOTES = {
    "none": "webhooks delivered.",
    "drop 1/10": "jobs 0, 10, 20, ... of each shape are created with `simulate.webhook = "
    '"drop"`: the server never sends their webhook.',
    "drop all": 'every job is created with `simulate.webhook = "drop"`.',
    "receiver down": "the library's `receiver_url`, and so every callback URL, is a closed "
    "port on 127.0.0.1.",
    "receiver flapping": "the library's `receiver_url` is a TCP proxy in front of the receiver "
    "that refuses new connections and drops open ones 3 s in every 10 s (from 7 s to 10 s "
    "after the cell starts, and every 10 s after): webhooks and feed requests alike.",
    "duplicates": 'every job is created with `simulate.webhook = "duplicate"`: its webhook '
    "is sent twice.",
    "503 then retry": "the library's `receiver_url` is an HTTP proxy in front of the receiver "
    "that answers the first `POST /webhooks` of each `job.*` event (by `webhook-id`) 503, "
    "without `Retry-After`, and passes everything else through; the server retries on its "
    "schedule.",
}
HEALTHY = ("none", "duplicates", "503 then retry")
DEGRADED = ("drop all", "receiver down", "receiver flapping")
DROP_EVERY = 10

WORKERS = 2000  # worker slots of every server: no job ever queues
HTTP_TIMEOUT_S = 10.0
POOL_MAX = 32  # keep-alive connections of a poller cell, its processes' together (waitress
# serves 100 at once: more would wait, idle, for one to close)
READY_TIMEOUT_S = 120.0  # services started and client processes spawned, per fault
FLAP_PERIOD_S = 10.0
FLAP_DOWN_S = 3.0

HEALTHY_P50_S = 0.015
HEALTHY_P99_S = 0.050
LOST_P50_S = 1.5
LOST_P99_S = 3.0
LOST_REQUESTS = 2.0
DEGRADED_P50_S = 1.0
DEGRADED_REQUESTS = 3.0


@dataclasses.dataclass(frozen=True, slots=True)
class Sizes:
    """Jobs per cell."""

    callers: int  # one job: independent callers
    sequential: int
    as_completed: int
    processes: int
    jobs_per_process: int

    def jobs(self, shape: str) -> int:
        """How many jobs a cell of this shape has."""
        return {
            "one job": self.callers,
            "sequential": self.sequential,
            "as_completed": self.as_completed,
            "processes": self.processes * self.jobs_per_process,
        }[shape]

    def describe(self, shape: str) -> str:
        """The shape's size, as the tables name it."""
        return {
            "one job": f"{self.callers} callers",
            "sequential": f"{self.sequential} jobs",
            "as_completed": f"{self.as_completed} jobs",
            "processes": f"{self.processes} x {self.jobs_per_process} jobs",
        }[shape]


QUICK = Sizes(callers=5, sequential=10, as_completed=50, processes=4, jobs_per_process=5)
FULL = Sizes(callers=20, sequential=10, as_completed=200, processes=10, jobs_per_process=20)


# --- the jobs ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class JobSpec:
    """Job ``index`` of a shape, the same for every strategy."""

    index: int
    duration_s: float
    estimate_factor: float


def job_specs(seed: int, shape: str, count: int) -> list[JobSpec]:
    """Durations uniform in 5-15 s, estimator factors ``max(0.3, gauss(1, 0.2))``, seeded."""
    rng = random.Random(f"waiting/{seed}/{shape}")
    out = []
    for i in range(count):
        duration = rng.uniform(5.0, 15.0)
        factor = max(0.3, rng.gauss(1.0, 0.2))
        out.append(JobSpec(i, round(duration, 3), round(factor, 4)))
    return out


def is_lost(fault: str, index: int) -> bool:
    """Whether the fault drops this job's webhook."""
    return fault == "drop all" or (fault == "drop 1/10" and index % DROP_EVERY == 0)


def simulate(spec: JobSpec, fault: str | None) -> dict[str, Any]:
    """The ``simulate`` body pinning the job; ``fault=None``: no webhook setting (pollers)."""
    body: dict[str, Any] = {
        "duration_s": spec.duration_s,
        "estimate_factor": spec.estimate_factor,
        "outcome": "completed",
    }
    if fault is not None:
        body["webhook"] = (
            "drop"
            if is_lost(fault, spec.index)
            else "duplicate"
            if fault == "duplicates"
            else "deliver"
        )
    return body


def parse_time(value: Any) -> float | None:
    """The wire's RFC 3339 time as Unix seconds."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclasses.dataclass(slots=True)
class Seen:
    """One job as its caller saw it."""

    index: int
    job_id: str = ""
    asked_at: float = 0.0  # when the caller started asking about this job
    seen_at: float | None = None  # when the caller knew it ended (None: never)
    finished_at: float | None = None
    path: str | None = None  # the library's detection path
    lookups: int = 0  # status requests naming this job

    @property
    def lag_s(self) -> float | None:
        """Known minus the later of its end and the first question; None if never known."""
        if self.seen_at is None or self.finished_at is None:
            return None
        return max(0.0, self.seen_at - max(self.finished_at, self.asked_at))


# --- counting requests ------------------------------------------------------------------------

_JOB_PATH = re.compile(r"/v1/jobs/([^/?]+)")


class Counts:
    """Requests by kind, and how often each job was named by a status request (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status = 0
        self.feed = 0
        self.other: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # no HTTP answer, by kind
        self.lookups: Counter[str] = Counter()
        self.client_status = 0  # the library's own count (client.stats.status_requests)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def add_status(self, ids: Sequence[str]) -> None:
        """One status request naming ``ids``."""
        with self._lock:
            self.status += 1
            self.lookups.update(ids)

    def add(self, kind: str) -> None:
        """One request of another kind (``feed`` or a method and path)."""
        with self._lock:
            if kind == "feed":
                self.feed += 1
            else:
                self.other[kind] += 1

    def add_failed(self, kind: str) -> None:
        """A request that got no HTTP answer."""
        with self._lock:
            self.failed[kind] += 1

    def merge(self, other: Counts) -> None:
        """Add another caller's counts."""
        with self._lock:
            self.status += other.status
            self.feed += other.feed
            self.other.update(other.other)
            self.failed.update(other.failed)
            self.lookups.update(other.lookups)
            self.client_status += other.client_status

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (lookups left out: they are per job)."""
        return {
            "status": self.status,
            "feed": self.feed,
            "other": dict(self.other),
            "failed": dict(self.failed),
            "client_stats_status_requests": self.client_status,
        }


class CountingTransport:
    """The library's real transport, counting every request it is asked to send."""

    def __init__(self, inner: Transport, server_url: str, receiver_url: str, counts: Counts):
        self._inner = inner
        self._server = server_url.rstrip("/")
        self._receiver = receiver_url.rstrip("/")
        self._counts = counts

    def _kind(self, request: Request) -> tuple[str, list[str] | None]:
        """``status`` (with the job ids it names), ``feed``, or ``METHOD where path``."""
        url = request.url.split("?", 1)[0]
        if url.startswith(self._receiver + "/"):
            path = url[len(self._receiver) :]
            if path.startswith("/v1/events"):
                return "feed", None
            return f"{request.method} receiver {path}", None
        path = url[len(self._server) :] if url.startswith(self._server + "/") else url
        if request.method == "GET":
            if path == "/v1/jobs" and request.params and "ids" in request.params:
                return "status", [i for i in request.params["ids"].split(",") if i]
            if (m := _JOB_PATH.fullmatch(path)) is not None:
                return "status", [m.group(1)]
        return f"{request.method} {_JOB_PATH.sub('/v1/jobs/{id}', path)}", None

    def send(self, request: Request) -> Response:
        """Count, then send."""
        kind, ids = self._kind(request)
        if ids is not None:
            self._counts.add_status(ids)
        else:
            self._counts.add(kind)
        try:
            return self._inner.send(request)
        except Exception:
            self._counts.add_failed(kind)
            raise

    def close(self) -> None:
        """Close the real transport."""
        self._inner.close()


# --- the services of a cell -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Env:
    """Where a cell's callers send their requests."""

    server_url: str
    api_key: str
    receiver_url: str = ""  # the library's; "" for pollers


RECEIVER_THREADS = 48


def start_services(workdir: Path, seed: int, receiver: bool, started: list[ChildService]):
    """A fresh seeded server (and receiver) in ``workdir``; returns them and the API key."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_translation_server(workdir, "--workers", str(WORKERS), "--seed", str(seed))
    started.append(server)
    key = str(json.loads((workdir / "local.json").read_text())["api_key"])
    rec = None
    if receiver:
        # a long-poll holds a receiver thread: enough for every caller of the largest shape
        rec = start_callback_receiver(workdir, "--threads", str(RECEIVER_THREADS))
        started.append(rec)
    return server, rec, key


def closed_port_url() -> str:
    """A URL on which nothing listens (a port the OS just handed out and took back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


_METRIC = re.compile(r"^vt_http_requests_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")


def server_status_requests(server_url: str) -> int | None:
    """Status requests as the server counted them (its ``/metrics``); None if unreadable."""
    try:
        text = requests.get(f"{server_url}/metrics", timeout=HTTP_TIMEOUT_S).text
    except requests.RequestException:
        return None
    total, found = 0.0, False
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m is None:
            continue
        found = True  # the counter is there: no matching line means none of those requests
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
        if labels.get("method") == "GET" and labels.get("route") in (
            "/v1/jobs",
            "/v1/jobs/<job_id>",
        ):
            total += float(m.group("value"))
    return int(total) if found else None


def _kill(sock: socket.socket) -> None:
    """Drop a connection at once (reset, not an orderly close)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FlappingProxy:
    """A TCP proxy to a local port that is unreachable ``FLAP_DOWN_S`` of every
    ``FLAP_PERIOD_S``: while down it has no listening socket (new connections are refused)
    and it resets every open connection. Up until ``begin`` is called."""

    def __init__(self, upstream_url: str) -> None:
        self._upstream = ("127.0.0.1", int(urlsplit(upstream_url).port or 80))
        self._listener: socket.socket | None = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._t0: float | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self.downs = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="flapping-proxy", daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(256)
        except OSError:
            sock.close()
            raise
        return sock

    def begin(self, t0: float) -> None:
        """Start flapping: down from ``t0 + 7 s`` to ``t0 + 10 s``, and every 10 s after."""
        self._t0 = t0

    def _down(self, now: float) -> bool:
        if self._t0 is None:
            return False
        return (now - self._t0) % FLAP_PERIOD_S >= FLAP_PERIOD_S - FLAP_DOWN_S

    def _loop(self) -> None:
        while not self._stop.is_set():
            down = self._down(time.time())
            if down and self._listener is not None:
                self._listener.close()
                self._listener = None
                self.downs += 1
                self._drop_all()
            elif not down and self._listener is None:
                with contextlib.suppress(OSError):  # the port may linger: retry shortly
                    self._listener = self._listen(self.port)
            if self._listener is None:
                self._stop.wait(0.005)
                continue
            readable, _, _ = select.select([self._listener], [], [], 0.005)
            if readable:
                with contextlib.suppress(OSError):
                    conn, _ = self._listener.accept()
                    self._pipe(conn)
        if self._listener is not None:
            self._listener.close()
        self._drop_all()

    def _pipe(self, downstream: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=HTTP_TIMEOUT_S)
        except OSError:
            _kill(downstream)
            return
        for sock in (downstream, upstream):
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.update((downstream, upstream))
        ended = [0]
        for src, dst in ((downstream, upstream), (upstream, downstream)):
            threading.Thread(
                target=self._pump, args=(src, dst, downstream, upstream, ended), daemon=True
            ).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        down: socket.socket,
        up: socket.socket,
        ended: list[int],
    ) -> None:
        """Copy one direction; an end of stream half-closes the other side, an error drops
        both; once both directions ended, both sockets close."""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            _kill(down)
            _kill(up)
        with self._lock:
            ended[0] += 1
            last = ended[0] == 2
            if last:
                self._open.discard(down)
                self._open.discard(up)
        if last:
            down.close()
            up.close()

    def _drop_all(self) -> None:
        with self._lock:
            victims = list(self._open)
            self._open.clear()
        self.dropped += len(victims) // 2
        for sock in victims:
            _kill(sock)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._stop.set()
        self._thread.join(timeout=5)


_HOP_BY_HOP = frozenset(
    "connection keep-alive proxy-connection te trailer transfer-encoding upgrade "
    "content-length host server date".split()
)


class Reject503Proxy:
    """An HTTP proxy in front of the receiver: the first ``POST /webhooks`` of each ``job.*``
    event (by ``webhook-id``) is answered 503 without ``Retry-After``; every other request,
    that event's retries included, is passed through."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self._lock = threading.Lock()
        self.rejected: set[str] = set()
        self.passed: Counter[str] = Counter()
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def reject(self, method: str, path: str, headers: Any, body: bytes) -> bool:
        """Whether this request is the first delivery of a job event; counts the others."""
        what = f"{method} {path.split('?', 1)[0]}"
        msg_id, event_type = headers.get("webhook-id"), ""
        if what == "POST /webhooks":
            with contextlib.suppress(ValueError, AttributeError):
                event_type = str(json.loads(body).get("type", ""))
            what = f"{what} {event_type or '(no type)'}"
        with self._lock:
            if msg_id and event_type.startswith("job.") and msg_id not in self.rejected:
                self.rejected.add(msg_id)
                return True
            self.passed[what] += 1
            return False

    def upstream(self) -> http.client.HTTPConnection:
        """A new connection to the receiver."""
        return http.client.HTTPConnection(*self._upstream, timeout=120)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    """One downstream connection of ``Reject503Proxy`` (keep-alive), with its own upstream."""

    protocol_version = "HTTP/1.1"
    owner: Reject503Proxy
    _conn: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.owner.reject(self.command, self.path, self.headers, body):
            problem = b'{"title": "Service Unavailable", "status": 503}'
            self._answer(503, [("Content-Type", "application/problem+json")], problem)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed
            if self._conn is None:
                self._conn = self.owner.upstream()
            try:
                self._conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = self._conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    self._answer(502, [], b"")
                    return
        kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        self._answer(resp.status, kept, data)

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def finish(self) -> None:
        if self._conn is not None:
            self._conn.close()
        super().finish()


# --- spawned client processes -----------------------------------------------------------------


def run_processes(
    target: Callable[..., None],
    per_process: Sequence[tuple[Any, ...]],
    ready: Callable[[], None],
    timeout_s: float,
) -> list[tuple[list[Seen], Counts]]:
    """Spawn one process per argument tuple; once all are up, ``ready()`` and start them.

    ``target(*args, start_event, out_queue, index)`` puts ``("ready", i, None)``, waits for the
    event, then puts ``("done", i, (seen, counts))`` or ``("error", i, message)``.
    """
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(*args, start, out, i), daemon=True)
        for i, args in enumerate(per_process)
    ]
    for p in procs:
        p.start()
    try:
        _collect(out, "ready", len(procs), READY_TIMEOUT_S)
        ready()
        start.set()
        done = _collect(out, "done", len(procs), timeout_s + 60)
        return [done[i] for i in range(len(procs))]
    finally:
        start.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()


def _collect(out: Any, kind: str, count: int, timeout_s: float) -> dict[int, Any]:
    deadline = time.monotonic() + timeout_s
    got: dict[int, Any] = {}
    while len(got) < count:
        try:
            what, index, payload = out.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            missing = count - len(got)
            raise RuntimeError(f"{missing} client processes never reported {kind}") from None
        if what == "error":
            raise RuntimeError(f"client process {index}: {payload}")
        if what == kind:
            got[index] = payload
    return got


def _in_process(
    body: Callable[[Any], tuple[list[Seen], Counts]],
    make: Callable[[], Any],
    start: Any,
    out: Any,
    index: int,
) -> None:
    """A spawned caller: ``make()`` before the start, ``body(made)`` after it."""
    try:
        made = make()
        out.put(("ready", index, None))
        start.wait()
        out.put(("done", index, body(made)))
    except BaseException as exc:  # the parent must hear of it, whatever it is
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))


# --- the library ------------------------------------------------------------------------------


def library_client(env: Env, counts: Counts) -> TranslationClient:
    """A ``TranslationClient`` on the cell's services, its requests counted."""
    transport = CountingTransport(RequestsTransport(), env.server_url, env.receiver_url, counts)
    return TranslationClient(
        base_url=env.server_url,
        api_key=env.api_key,
        receiver_url=env.receiver_url,
        transport=transport,
    )


def _finish(client: TranslationClient, counts: Counts, seen: Sequence[Seen]) -> None:
    """After a caller's run: each job's detection path and lookups, the client's own count."""
    for s in seen:
        detection = client.detection(s.job_id) if s.job_id else None
        s.path = getattr(detection, "path", None)
    counts.client_status += int(client.stats.status_requests)
    client.close()


def _record(s: Seen, job: Any, now: float) -> None:
    s.seen_at = now
    s.finished_at = parse_time(job.finished_at)


def library_as_completed(
    client: TranslationClient, specs: Sequence[JobSpec], fault: str, timeout: float
) -> list[Seen]:
    """Create every job, then ``as_completed`` over them."""
    seen = [Seen(spec.index) for spec in specs]
    by_id: dict[str, Seen] = {}
    for s, spec in zip(seen, specs, strict=True):
        s.job_id = client.create_job(target_language="es", simulate=simulate(spec, fault)).id
        by_id[s.job_id] = s
    asked = time.time()
    for s in seen:
        s.asked_at = asked
    with contextlib.suppress(WaitTimeout):
        for job in client.as_completed(list(by_id), timeout=timeout):
            _record(by_id[job.id], job, time.time())
    return seen


def in_threads(calls: Sequence[Callable[[], None]], ready: Callable[[], None]) -> None:
    """``ready()``, then every call in a thread of its own, all at once; the first failure
    is raised once every thread has ended."""
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    ready()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def library_one_job(
    env: Env, specs: Sequence[JobSpec], fault: str, timeout: float, ready: Callable[[], None]
) -> tuple[list[Seen], Counts]:
    """K callers in threads, each its own client: create one job, ``wait`` for it."""
    counts = Counts()
    clients = [library_client(env, counts) for _ in specs]
    seen = [Seen(spec.index) for spec in specs]

    def caller(client: TranslationClient, spec: JobSpec, s: Seen) -> None:
        s.job_id = client.create_job(target_language="es", simulate=simulate(spec, fault)).id
        s.asked_at = time.time()
        with contextlib.suppress(WaitTimeout):
            job = client.wait(s.job_id, timeout=timeout)
            _record(s, job, time.time())
        _finish(client, counts, [s])

    in_threads(
        [functools.partial(caller, *args) for args in zip(clients, specs, seen, strict=True)],
        ready,
    )
    return seen, counts


def library_wait_each(
    client: TranslationClient, specs: Sequence[JobSpec], fault: str, timeout: float
) -> list[Seen]:
    """Create every job, then ``wait`` on each in turn."""
    seen = [Seen(spec.index) for spec in specs]
    deadline = time.time() + timeout
    for s, spec in zip(seen, specs, strict=True):
        s.job_id = client.create_job(target_language="es", simulate=simulate(spec, fault)).id
    for s in seen:
        s.asked_at = time.time()
        with contextlib.suppress(WaitTimeout):
            job = client.wait(s.job_id, timeout=max(0.01, deadline - s.asked_at))
            _record(s, job, time.time())
    return seen


def one_caller(
    body: Callable[[TranslationClient, Sequence[JobSpec], str, float], list[Seen]],
) -> Callable[..., tuple[list[Seen], Counts]]:
    """A shape run by one caller, with one client, in this process."""

    def run(
        env: Env, specs: Sequence[JobSpec], fault: str, timeout: float, ready: Callable[[], None]
    ) -> tuple[list[Seen], Counts]:
        counts = Counts()
        client = library_client(env, counts)
        ready()
        seen = body(client, specs, fault, timeout)
        _finish(client, counts, seen)
        return seen, counts

    return run


class _LibraryCaller:
    """What a spawned library process runs (picklable)."""

    def __init__(self, env: Env, specs: Sequence[JobSpec], fault: str, timeout: float):
        self.env, self.specs, self.fault, self.timeout = env, list(specs), fault, timeout

    def make(self) -> tuple[TranslationClient, Counts]:
        counts = Counts()
        return library_client(self.env, counts), counts

    def body(self, made: tuple[TranslationClient, Counts]) -> tuple[list[Seen], Counts]:
        client, counts = made
        seen = library_as_completed(client, self.specs, self.fault, self.timeout)
        _finish(client, counts, seen)
        return seen, counts


def _library_process(caller: _LibraryCaller, start: Any, out: Any, index: int) -> None:
    _in_process(caller.body, caller.make, start, out, index)


def _merge(parts: Sequence[tuple[list[Seen], Counts]]) -> tuple[list[Seen], Counts]:
    counts = Counts()
    seen: list[Seen] = []
    for part_seen, part_counts in parts:
        seen += part_seen
        counts.merge(part_counts)
    return seen, counts


def _split(specs: Sequence[JobSpec], parts: int) -> list[list[JobSpec]]:
    size = len(specs) // parts
    return [list(specs[i * size : (i + 1) * size]) for i in range(parts)]


def library_processes(
    env: Env,
    specs: Sequence[JobSpec],
    fault: str,
    timeout: float,
    ready: Callable[[], None],
    processes: int,
) -> tuple[list[Seen], Counts]:
    """P spawned processes, each creating its jobs, then ``as_completed``."""
    callers = [(_LibraryCaller(env, part, fault, timeout),) for part in _split(specs, processes)]
    return _merge(run_processes(_library_process, callers, ready, timeout))


# --- the pollers ------------------------------------------------------------------------------


def fixed(interval: float) -> Callable[[random.Random], Iterator[float]]:
    """A fixed-interval poller's delays."""
    return lambda _rng: itertools.repeat(interval)


def exponential(
    first: float, cap: float | None, jitter: tuple[float, float] | None
) -> Callable[[random.Random], Iterator[float]]:
    """Doubling delays from ``first``, capped at ``cap``, each times a uniform jitter."""

    def delays(rng: random.Random) -> Iterator[float]:
        base = first
        while True:
            yield base * (rng.uniform(*jitter) if jitter else 1.0)
            base = base * 2 if cap is None else min(base * 2, cap)

    return delays


DELAYS: dict[str, Callable[[random.Random], Iterator[float]]] = {
    "poll 1s": fixed(1.0),
    "poll 5s": fixed(5.0),
    "backoff": exponential(1.0, 32.0, (0.5, 1.5)),
    "doubling": exponential(1.0, None, None),
    "heygen-cli": exponential(2.0, 30.0, (0.75, 1.25)),
}


class Poller:
    """A polling caller: one keep-alive session, shared by its threads."""

    def __init__(self, env: Env, strategy: str, rng_key: str, pool: int, timeout: float):
        self.env = env
        self.strategy = strategy
        self.rng_key = rng_key
        self.timeout = timeout
        self.deadline = time.time() + timeout
        self.counts = Counts()
        self.session = requests.Session()
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool), pool_block=True)
        self.session.mount("http://", adapter)
        self.auth = {"Authorization": f"Bearer {env.api_key}"}

    def start_clock(self) -> None:
        """The run begins: the deadline counts from now."""
        self.deadline = time.time() + self.timeout

    def create(self, spec: JobSpec) -> dict[str, Any]:
        """Create the job without a callback URL."""
        self.counts.add("POST /v1/jobs")
        resp = self.session.post(
            f"{self.env.server_url}/v1/jobs",
            headers=self.auth,
            json={"target_language": "es", "simulate": simulate(spec, None)},
            timeout=HTTP_TIMEOUT_S,
        )
        resp.raise_for_status()
        return dict(resp.json())

    def get(self, job_id: str) -> dict[str, Any] | None:
        """One status request (None when it failed)."""
        self.counts.add_status([job_id])
        try:
            resp = self.session.get(
                f"{self.env.server_url}/v1/jobs/{job_id}", headers=self.auth, timeout=HTTP_TIMEOUT_S
            )
        except requests.RequestException:
            self.counts.add_failed("status")
            return None
        if resp.status_code != 200:
            self.counts.add_failed("status")
            return None
        return dict(resp.json())

    def wait(self, s: Seen, first: dict[str, Any] | None) -> None:
        """Look (``first``, else a GET), sleep the next delay, look again, until final."""
        delays = DELAYS[self.strategy](random.Random(f"{self.rng_key}/{s.index}"))
        body = first if first is not None else self.get(s.job_id)
        at = time.time()
        for delay in delays:
            if body is not None and body["status"] != "pending":
                s.seen_at = at
                s.finished_at = parse_time(body["finished_at"])
                return
            if time.time() + delay > self.deadline:
                return
            time.sleep(delay)
            body = self.get(s.job_id)
            at = time.time()

    def poll_many(self, specs: Sequence[JobSpec]) -> tuple[list[Seen], Counts]:
        """Create each job and start its polling thread at once."""
        seen = [Seen(spec.index) for spec in specs]
        threads = []
        for s, spec in zip(seen, specs, strict=True):
            job = self.create(spec)
            s.job_id, s.asked_at = str(job["id"]), time.time()
            t = threading.Thread(target=self.wait, args=(s, job), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        self.session.close()
        return seen, self.counts


def peer_one_job(
    env: Env, specs: Sequence[JobSpec], strategy: str, key: str, timeout: float, ready: Any
) -> tuple[list[Seen], Counts]:
    """K callers in threads, each its own session: create one job, poll it."""
    pollers = [Poller(env, strategy, key, 1, timeout) for _ in specs]
    seen = [Seen(spec.index) for spec in specs]

    def caller(p: Poller, spec: JobSpec, s: Seen) -> None:
        p.start_clock()
        job = p.create(spec)
        s.job_id, s.asked_at = str(job["id"]), time.time()
        p.wait(s, job)
        p.session.close()

    in_threads(
        [functools.partial(caller, *args) for args in zip(pollers, specs, seen, strict=True)],
        ready,
    )
    counts = Counts()
    for p in pollers:
        counts.merge(p.counts)
    return seen, counts


def peer_sequential(
    env: Env, specs: Sequence[JobSpec], strategy: str, key: str, timeout: float, ready: Any
) -> tuple[list[Seen], Counts]:
    """One caller: create every job, then poll each in turn from the moment it waits on it."""
    p = Poller(env, strategy, key, 1, timeout)
    seen = [Seen(spec.index) for spec in specs]
    ready()
    p.start_clock()
    for s, spec in zip(seen, specs, strict=True):
        s.job_id = str(p.create(spec)["id"])
    for s in seen:
        s.asked_at = time.time()
        p.wait(s, None)
    p.session.close()
    return seen, p.counts


def peer_many(
    env: Env, specs: Sequence[JobSpec], strategy: str, key: str, timeout: float, ready: Any
) -> tuple[list[Seen], Counts]:
    """One caller: each job polled by its own thread, all sharing the session."""
    p = Poller(env, strategy, key, min(len(specs), POOL_MAX), timeout)
    ready()
    p.start_clock()
    return p.poll_many(specs)


class _PeerCaller:
    """What a spawned polling process runs (picklable)."""

    def __init__(
        self, env: Env, specs: Sequence[JobSpec], strategy: str, key: str, timeout: float, pool: int
    ):
        self.env, self.specs, self.strategy, self.key = env, list(specs), strategy, key
        self.timeout, self.pool = timeout, pool

    def make(self) -> Poller:
        return Poller(self.env, self.strategy, self.key, self.pool, 0)

    def body(self, p: Poller) -> tuple[list[Seen], Counts]:
        p.timeout = self.timeout
        p.start_clock()
        return p.poll_many(self.specs)


def _peer_process(caller: _PeerCaller, start: Any, out: Any, index: int) -> None:
    _in_process(caller.body, caller.make, start, out, index)


def peer_processes(
    env: Env,
    specs: Sequence[JobSpec],
    strategy: str,
    key: str,
    timeout: float,
    ready: Callable[[], None],
    processes: int,
) -> tuple[list[Seen], Counts]:
    """P spawned processes, each polling its own jobs."""
    pool = max(1, POOL_MAX // processes)  # the cell's processes hold POOL_MAX together
    parts = _split(specs, processes)
    callers = [(_PeerCaller(env, part, strategy, key, timeout, pool),) for part in parts]
    return _merge(run_processes(_peer_process, callers, ready, timeout))


# --- cells ------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class CellRun:
    """One cell's outcome."""

    fault: str  # "*" for the pollers: the same under every fault
    shape: str
    strategy: str
    seen: list[Seen] = dataclasses.field(default_factory=list)
    counts: Counts = dataclasses.field(default_factory=Counts)
    wall_s: float = 0.0
    server_status_requests: int | None = None
    proxy: dict[str, Any] | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Cell:
    """A cell to run, and the folder of its services."""

    fault: str  # "*" for a poller
    shape: str
    strategy: str
    specs: list[JobSpec]
    workdir: Path


Runner = Callable[[Env, Callable[[], None]], tuple[list[Seen], Counts]]


def _runner(cell: Cell, args: argparse.Namespace) -> Runner:
    """What runs the cell's callers, given its services and the start signal."""
    specs, timeout, processes = cell.specs, args.timeout, args.sizes.processes
    if cell.strategy == LIBRARY:
        fault = cell.fault
        if cell.shape == "one job":
            return lambda env, ready: library_one_job(env, specs, fault, timeout, ready)
        if cell.shape == "sequential":
            return lambda env, ready: one_caller(library_wait_each)(
                env, specs, fault, timeout, ready
            )
        if cell.shape == "as_completed":
            return lambda env, ready: one_caller(library_as_completed)(
                env, specs, fault, timeout, ready
            )
        return lambda env, ready: library_processes(env, specs, fault, timeout, ready, processes)
    strategy, key = cell.strategy, f"{args.seed}/{cell.shape}/{cell.strategy}"
    if cell.shape == "processes":
        return lambda env, ready: peer_processes(
            env, specs, strategy, key, timeout, ready, processes
        )
    peer = {"one job": peer_one_job, "sequential": peer_sequential}.get(cell.shape, peer_many)
    return lambda env, ready: peer(env, specs, strategy, key, timeout, ready)


def run_cell(
    cell: Cell, args: argparse.Namespace, started: list[ChildService], barrier: threading.Barrier
) -> CellRun:
    """Fresh services (for the library: a receiver, and the fault's proxy), then the callers,
    released by ``barrier`` together with the other cells."""
    run = CellRun(cell.fault, cell.shape, cell.strategy)
    library = cell.strategy == LIBRARY
    receives = library and cell.fault != "receiver down"
    server, receiver, key = start_services(cell.workdir, args.seed, receives, started)
    with contextlib.ExitStack() as stack:
        proxy: FlappingProxy | Reject503Proxy | None = None
        receiver_url = closed_port_url() if library else ""
        if receiver is not None:
            receiver_url = receiver.url
            if cell.fault == "receiver flapping":
                proxy = FlappingProxy(receiver.url)
            elif cell.fault == "503 then retry":
                proxy = Reject503Proxy(receiver.url)
            if proxy is not None:
                stack.callback(proxy.close)
                receiver_url = proxy.url
        began = [0.0]

        def ready() -> None:
            barrier.wait(timeout=READY_TIMEOUT_S)
            began[0] = time.time()
            if isinstance(proxy, FlappingProxy):
                proxy.begin(began[0])

        run.seen, run.counts = _runner(cell, args)(Env(server.url, key, receiver_url), ready)
        run.wall_s = time.time() - began[0]
        if isinstance(proxy, FlappingProxy):
            run.proxy = {"down_windows": proxy.downs, "connections_dropped": proxy.dropped}
        elif isinstance(proxy, Reject503Proxy):
            run.proxy = {"rejected_503": len(proxy.rejected), "passed": dict(proxy.passed)}
    run.server_status_requests = server_status_requests(server.url)
    return run


def run_together(cells: Sequence[Cell], args: argparse.Namespace) -> list[CellRun]:
    """Run cells in threads, released together (a barrier) once every one of them is ready;
    every child service is stopped on the way out."""
    barrier = threading.Barrier(len(cells))
    results = [CellRun(c.fault, c.shape, c.strategy, error="did not run") for c in cells]

    def one(i: int, cell: Cell, started: list[ChildService]) -> None:
        try:
            results[i] = run_cell(cell, args, started, barrier)
        except BaseException as exc:
            barrier.abort()
            if not isinstance(exc, threading.BrokenBarrierError):
                traceback.print_exc(file=sys.stderr)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            results[i] = CellRun(cell.fault, cell.shape, cell.strategy, error=detail)

    with children() as started:
        threads = [
            threading.Thread(target=one, args=(i, cell, started), daemon=True)
            for i, cell in enumerate(cells)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return results


def _slug(*parts: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "_", p.lower()) for p in parts)


def library_phase(
    fault: str, args: argparse.Namespace, specs: dict[str, list[JobSpec]]
) -> list[CellRun]:
    """The library under one fault: every shape at once, each on its own services."""
    with tempfile.TemporaryDirectory(prefix="bench-waiting-") as tmp:
        cells = [
            Cell(fault, shape, LIBRARY, specs[shape], Path(tmp) / _slug(shape))
            for shape in args.shapes
        ]
        return run_together(cells, args)


def peers_phase(args: argparse.Namespace, specs: dict[str, list[JobSpec]]) -> list[CellRun]:
    """Every poller in every shape at once, each cell on its own server."""
    with tempfile.TemporaryDirectory(prefix="bench-waiting-") as tmp:
        cells = [
            Cell("*", shape, strategy, specs[shape], Path(tmp) / _slug(shape, strategy))
            for shape in args.shapes
            for strategy in PEERS
        ]
        return run_together(cells, args)


# --- figures and goals ------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Figures:
    """What a cell's table row shows."""

    jobs: int
    resolved: int
    lag_p50_s: float | None
    lag_p99_s: float | None
    lag_max_s: float | None
    status_per_job: float
    feed_per_job: float
    paths: dict[str, int]
    lost: dict[str, Any] | None = None


def _spread(lags: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    v = sorted(lags)
    if not v:
        return None, None, None
    return percentile(v, 50), percentile(v, 99), v[-1]


def figures(run: CellRun) -> Figures:
    """Resolved jobs, lag percentiles, requests per job; for a drop fault, the lost jobs."""
    lags = [lag for s in run.seen if (lag := s.lag_s) is not None]
    p50, p99, worst = _spread(lags)
    jobs = len(run.seen) or 1
    fig = Figures(
        jobs=len(run.seen),
        resolved=len(lags),
        lag_p50_s=p50,
        lag_p99_s=p99,
        lag_max_s=worst,
        status_per_job=run.counts.status / jobs,
        feed_per_job=run.counts.feed / jobs,
        paths=dict(Counter(s.path for s in run.seen if s.path)),
    )
    lost = [s for s in run.seen if is_lost(run.fault, s.index)]
    if run.strategy == LIBRARY and lost:
        lost_lags = [lag for s in lost if (lag := s.lag_s) is not None]
        lp50, lp99, _ = _spread(lost_lags)
        fig.lost = {
            "jobs": len(lost),
            "resolved": len(lost_lags),
            "lag_p50_s": lp50,
            "lag_p99_s": lp99,
            "status_per_lost_job": run.counts.status / len(lost),
            "lookups_of_others": sum(
                s.lookups for s in run.seen if not is_lost(run.fault, s.index)
            ),
            "per_job": [
                {"index": s.index, "lag_s": s.lag_s, "lookups": s.lookups, "path": s.path}
                for s in lost
            ],
        }
    return fig


def fmt_lag(seconds: float | None) -> str:
    """Milliseconds below a second, seconds above; a dash when nothing was measured."""
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One goal of one library cell, met or missed."""

    fault: str
    shape: str
    ok: bool
    text: str

    def line(self) -> str:
        """``PASS shape: text`` or ``MISS ...``."""
        return f"{'PASS' if self.ok else 'MISS'} {self.shape}: {self.text}"


def _at_most(value: float | None, limit: float, what: str) -> tuple[bool, str]:
    ok = value is not None and value <= limit
    return ok, f"{what} {fmt_lag(value)} <= {fmt_lag(limit)}"


def checks_for(
    fault: str, shape: str, lib: Figures, peers: dict[str, Figures]
) -> list[tuple[bool, str]]:
    """The goals of one library cell."""
    out = [(lib.resolved == lib.jobs, f"every job resolved ({lib.resolved}/{lib.jobs})")]
    if fault in HEALTHY:
        out.append(_at_most(lib.lag_p50_s, HEALTHY_P50_S, "lag p50"))
        out.append(_at_most(lib.lag_p99_s, HEALTHY_P99_S, "lag p99"))
        out.append(
            (lib.status_per_job == 0, f"status requests {lib.status_per_job:.2f}/job = 0.00")
        )
    lost = lib.lost
    if lost is not None and (fault == "drop 1/10" or shape == "one job"):
        ok, text = _at_most(lost["lag_p50_s"], LOST_P50_S, "lost jobs' lag p50")
        out.append((ok and lost["resolved"] == lost["jobs"], text))
        out.append(_at_most(lost["lag_p99_s"], LOST_P99_S, "lost jobs' lag p99"))
        per_lost = lost["status_per_lost_job"]
        out.append(
            (
                per_lost <= LOST_REQUESTS,
                f"status requests per lost job {per_lost:.2f} <= {LOST_REQUESTS:.0f} "
                f"({lost['jobs']} lost)",
            )
        )
        others = lost["lookups_of_others"]
        if lost["jobs"] < lib.jobs:
            out.append((others == 0, f"status lookups of the other jobs {others} = 0"))
    if fault in DEGRADED:
        out.append(_at_most(lib.lag_p50_s, DEGRADED_P50_S, "lag p50"))
        out.append(
            (
                lib.status_per_job <= DEGRADED_REQUESTS,
                f"status requests {lib.status_per_job:.2f}/job <= {DEGRADED_REQUESTS:.0f}",
            )
        )
    if peers:
        cheapest = min(peers, key=lambda k: peers[k].status_per_job)
        low = peers[cheapest].status_per_job
        out.append(
            (
                lib.status_per_job <= low,
                f"status requests {lib.status_per_job:.2f}/job <= every poller's "
                f"(lowest: {cheapest} {low:.2f})",
            )
        )
    for name in ("backoff", "heygen-cli"):
        if (peer := peers.get(name)) is None:
            continue
        ok = (
            lib.lag_p50_s is not None
            and peer.lag_p50_s is not None
            and lib.lag_p50_s < peer.lag_p50_s
        )
        out.append((ok, f"lag p50 {fmt_lag(lib.lag_p50_s)} < {name}'s {fmt_lag(peer.lag_p50_s)}"))
    return out


# --- output -----------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Report:
    """Every cell's run and figures, and the goal checks."""

    args: argparse.Namespace
    info: dict[str, Any]
    command: str
    wall_s: float
    runs: list[CellRun]
    figs: dict[tuple[str, str, str], Figures]
    checks: list[Check]

    def cell(self, fault: str, shape: str, strategy: str) -> tuple[CellRun, Figures] | None:
        """A cell's run and figures (pollers: the one run of the shape)."""
        key = (fault if strategy == LIBRARY else "*", shape, strategy)
        for run in self.runs:
            if (run.fault, run.shape, run.strategy) == key:
                return run, self.figs[key]
        return None


def build_report(
    args: argparse.Namespace, info: dict[str, Any], command: str, wall: float, runs: list[CellRun]
) -> Report:
    """Figures for every cell, goal checks for every library cell."""
    figs = {(r.fault, r.shape, r.strategy): figures(r) for r in runs}
    report = Report(args, info, command, wall, runs, figs, [])
    for fault in args.faults:
        for shape in args.shapes:
            lib = report.cell(fault, shape, LIBRARY)
            if lib is None or lib[0].error:
                continue
            peers = {
                name: got[1]
                for name in PEERS
                if (got := report.cell(fault, shape, name)) is not None and not got[0].error
            }
            report.checks += [
                Check(fault, shape, ok, text)
                for ok, text in checks_for(fault, shape, lib[1], peers)
            ]
    return report


def _found_by(fig: Figures, strategy: str) -> str:
    if strategy != LIBRARY:
        return "poll"
    return ", ".join(f"{k} {v}" for k, v in sorted(fig.paths.items())) or "-"


def fault_table(report: Report, fault: str) -> str:
    """One row per shape and strategy."""
    sizes = report.args.sizes
    out = [
        "| shape | strategy | resolved | lag p50 | lag p99 | status requests/job "
        "| feed requests/job | found by |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for shape in report.args.shapes:
        label = f"{shape} ({sizes.describe(shape)})"
        for strategy in STRATEGIES:
            got = report.cell(fault, shape, strategy)
            if got is None:
                continue
            run, fig = got
            name = strategy if strategy == LIBRARY else f"{strategy} *"
            if run.error:
                out.append(f"| {label} | {name} | crashed: {run.error} | | | | | |")
                continue
            feed = f"{fig.feed_per_job:.2f}" if strategy == LIBRARY else "-"
            out.append(
                f"| {label} | {name} | {fig.resolved}/{fig.jobs} | {fmt_lag(fig.lag_p50_s)} "
                f"| {fmt_lag(fig.lag_p99_s)} | {fig.status_per_job:.2f} | {feed} "
                f"| {_found_by(fig, strategy)} |"
            )
    return "\n".join(out)


def lost_lines(report: Report, fault: str) -> list[str]:
    """For a drop fault: the library's lost jobs, each with its lag and lookups."""
    out = []
    for shape in report.args.shapes:
        got = report.cell(fault, shape, LIBRARY)
        if got is None or got[1].lost is None:
            continue
        lost = got[1].lost
        each = ", ".join(
            f"#{j['index']} {fmt_lag(j['lag_s'])} ({j['lookups']} lookups, {j['path'] or '-'})"
            for j in lost["per_job"]
        )
        if len(lost["per_job"]) > 12:
            each = f"{each.split(', #')[0]}, ... ({len(lost['per_job'])} jobs, in the JSON)"
        out.append(
            f"- {shape}: {lost['resolved']}/{lost['jobs']} lost jobs found, lag p50 "
            f"{fmt_lag(lost['lag_p50_s'])}, p99 {fmt_lag(lost['lag_p99_s'])}, "
            f"{lost['status_per_lost_job']:.2f} status requests per lost job, "
            f"{lost['lookups_of_others']} lookups of the other jobs; per lost job: {each}"
        )
    return out


def counts_lines(report: Report, fault: str) -> list[str]:
    """The library's cells: request counts the server saw, failures, what a proxy did."""
    out = []
    for shape in report.args.shapes:
        got = report.cell(fault, shape, LIBRARY)
        if got is None or got[0].error:
            continue
        run = got[0]
        parts = [
            f"{run.counts.status} status requests (the client's own count "
            f"{run.counts.client_status}, the server's {run.server_status_requests})",
            f"{run.counts.feed} feed requests",
        ]
        if run.counts.failed:
            parts.append(f"unanswered: {dict(run.counts.failed)}")
        if run.proxy:
            parts.append(f"proxy: {run.proxy}")
        parts.append(f"{run.wall_s:.1f} s")
        out.append(f"- {shape}: " + "; ".join(parts))
    return out


def fault_section(report: Report, fault: str) -> str:
    """The markdown of one fault: description, table, lost jobs, goal checks."""
    checks = [c for c in report.checks if c.fault == fault]
    lines = [f"## Fault: {fault}", "", FAULT_NOTES[fault], "", fault_table(report, fault), ""]
    lines.append(
        "\\* pollers create their jobs without a callback URL: one run per shape, the same "
        "figures under every fault."
    )
    if lost := lost_lines(report, fault):
        lines += ["", "Lost jobs (webhook dropped), the library:", "", *lost]
    lines += ["", "The library's requests:", "", *counts_lines(report, fault)]
    if checks:
        lines += ["", "Goals:", "", *[f"- {c.line()}" for c in checks]]
    return "\n".join(lines)


DEFINITIONS = (
    "Lag: the moment the caller knows a job ended (`wait`/`as_completed` returned it, or a "
    "poller's GET returned it final) minus the later of the job's `finished_at` (as the server "
    "reports it) and the moment the caller started asking about it. Status requests: "
    "`GET /v1/jobs/{id}` and `GET /v1/jobs?ids=`, each request counting 1, per job of the "
    "cell; feed requests: the library's requests to the receiver's `/v1/events`, per job."
)


def markdown(report: Report) -> str:
    """The whole document: header, definitions, one section per fault, the goal summary."""
    info, args = report.info, report.args
    missed = sum(1 for c in report.checks if not c.ok)
    sizes = ", ".join(f"{s} {args.sizes.describe(s)}" for s in args.shapes)
    head = [
        "# Waiting benchmark: how fast and how cheaply a caller learns that a job ended",
        "",
        "Generated by `scripts/bench_waiting.py`; every figure below is what this run measured.",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"load average at the start {', '.join(f'{x:.2f}' for x in info['load_avg'])}",
        f"- date: {info['date']}",
        f"- command: `{report.command}`",
        f"- {'quick' if args.quick else 'full'} mode: {sizes}; seed {args.seed}; "
        f"the run took {report.wall_s:.0f} s",
        f"- goals: {len(report.checks) - missed} met, {missed} missed",
        "",
        DEFINITIONS,
        "",
        "Every cell has its own translation server (seeded, `--workers 2000`) and, for the "
        "library, its own callback receiver; job i of a shape has the same duration, estimator "
        "factor and webhook fault for every strategy. The library's four shapes of a fault run "
        "at once; the pollers run after the library, every shape and strategy at once.",
        "",
        "![lag p50 against status requests per job](waiting-benchmark.png)",
        "",
        "(The chart draws a lag p50 below 0.1 ms at 0.1 ms.)",
    ]
    if missed:
        head += ["", "## Goals missed", ""]
        head += [f"- {c.fault} / {c.shape}: {c.text}" for c in report.checks if not c.ok]
    sections = [fault_section(report, fault) for fault in args.faults]
    return "\n".join(head) + "\n\n" + "\n\n".join(sections) + "\n"


COLOURS = {
    "library": "tab:blue",
    "poll 1s": "tab:orange",
    "poll 5s": "tab:green",
    "backoff": "tab:red",
    "doubling": "tab:purple",
    "heygen-cli": "tab:brown",
}
MARKERS = {"one job": "o", "sequential": "s", "as_completed": "^", "processes": "D"}


def _points(report: Report, fault: str) -> Iterator[tuple[str, str, float, float]]:
    """(shape, strategy, status requests per job, lag p50) of a fault's measured cells."""
    for shape in report.args.shapes:
        for strategy in STRATEGIES:
            got = report.cell(fault, shape, strategy)
            if got is not None and not got[0].error and got[1].lag_p50_s is not None:
                yield shape, strategy, got[1].status_per_job, max(got[1].lag_p50_s, 1e-4)


def write_chart(report: Report, path: Path) -> str:
    """One panel per fault: lag p50 (log) against status requests per job (symlog); the same
    axes in every panel."""
    try:
        import matplotlib
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -r requirements-bench.txt)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    faults = list(report.args.faults)
    every = [p for fault in faults for p in _points(report, fault)]
    if not every:
        return "chart skipped: no cell was measured"
    x_max = max(p[2] for p in every) * 1.6 + 0.1
    y_min = min(min(p[3] for p in every) / 1.6, 1e-3)
    y_max = max(max(p[3] for p in every) * 1.6, 1.0)
    names = {1e-4: "0.1 ms", 1e-3: "1 ms", 1e-2: "10 ms", 0.1: "100 ms", 1.0: "1 s"}
    names |= {10.0: "10 s", 100.0: "100 s"}
    ticks = [t for t in names if y_min <= t <= y_max]
    cols = min(4, len(faults) + 1)
    rows = -(-(len(faults) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), dpi=110, squeeze=False)
    flat = list(axes.flat)
    for ax, fault in zip(flat, faults, strict=False):
        for shape, strategy, x, y in _points(report, fault):
            ax.scatter(
                [x], [y], color=COLOURS[strategy], marker=MARKERS[shape], s=40, alpha=0.85,
                zorder=3, clip_on=False,
            )  # fmt: skip
        ax.set_title(fault, fontsize=10)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(0, x_max)
        ax.set_yscale("log")
        ax.set_ylim(y_min, y_max)
        ax.set_yticks(ticks, [names[t] for t in ticks])
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("status requests per job", fontsize=8)
        ax.set_ylabel("lag p50", fontsize=8)
        ax.tick_params(labelsize=7)
    legend_ax = flat[len(faults)]
    legend_ax.axis("off")
    handles = [
        Line2D([], [], color=c, marker="o", ls="", label=s + ("" if s == LIBRARY else " (poller)"))
        for s, c in COLOURS.items()
    ] + [
        Line2D([], [], color="black", marker=m, ls="", fillstyle="none", label=shape)
        for shape, m in MARKERS.items()
        if shape in report.args.shapes
    ]
    legend_ax.legend(handles=handles, loc="center", fontsize=8, frameon=False)
    for ax in flat[len(faults) + 1 :]:
        ax.axis("off")
    fig.suptitle(
        "Learning that a job ended: lag p50 against status requests per job "
        "(lower left is better; the pollers are the same run in every panel)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"chart: {path}"


def write_json(report: Report, path: Path, specs: dict[str, list[JobSpec]]) -> None:
    """Every cell's figures and per-job observations."""
    cells = []
    for run in report.runs:
        fig = report.figs[(run.fault, run.shape, run.strategy)]
        cells.append(
            {
                "fault": run.fault,
                "shape": run.shape,
                "strategy": run.strategy,
                "error": run.error,
                "wall_s": round(run.wall_s, 3),
                "figures": dataclasses.asdict(fig),
                "requests": run.counts.as_dict(),
                "server_status_requests": run.server_status_requests,
                "proxy": run.proxy,
                "jobs": [
                    {
                        "index": s.index,
                        "job_id": s.job_id,
                        "lag_s": None if s.lag_s is None else round(s.lag_s, 4),
                        "path": s.path,
                        "lookups": s.lookups,
                    }
                    for s in run.seen
                ],
            }
        )
    body = {
        "machine": report.info,
        "command": report.command,
        "mode": "quick" if report.args.quick else "full",
        "seed": report.args.seed,
        "sizes": dataclasses.asdict(report.args.sizes),
        "wall_s": round(report.wall_s, 1),
        "specs": {shape: [dataclasses.asdict(s) for s in v] for shape, v in specs.items()},
        "checks": [dataclasses.asdict(c) for c in report.checks],
        "cells": cells,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")


# --- entry point ------------------------------------------------------------------------------


def _names(value: str, known: Sequence[str], what: str) -> list[str]:
    """Comma-separated names; a dash stands for a space (``drop-all``)."""
    by_slug = {re.sub(r"[^a-z0-9/]+", "-", k): k for k in known}
    out = []
    for raw in value.split(","):
        name = by_slug.get(re.sub(r"[^a-z0-9/]+", "-", raw.strip().lower()))
        if name is None:
            raise argparse.ArgumentTypeError(f"unknown {what} {raw!r}; known: {', '.join(known)}")
        out.append(name)
    return [k for k in known if k in out]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="fewer jobs per cell")
    p.add_argument("--seed", type=int, default=1, help="jobs' and servers' seed")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a cell may wait")
    p.add_argument(
        "--faults",
        type=lambda v: _names(v, FAULTS, "fault"),
        default=list(FAULTS),
        help="comma-separated subset (dashes for spaces: drop-all,receiver-down)",
    )
    p.add_argument(
        "--shapes",
        type=lambda v: _names(v, SHAPES, "shape"),
        default=list(SHAPES),
        help="comma-separated subset (one-job,sequential,as_completed,processes)",
    )
    p.add_argument("--no-pollers", action="store_true", help="the library's cells only")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results" / "waiting.json")
    p.add_argument("--docs-dir", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    args.sizes = QUICK if args.quick else FULL
    return args


def _command(argv: Sequence[str]) -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(ROOT)
    return shlex.join([str(exe), "scripts/bench_waiting.py", *argv])


def _progress(run: CellRun) -> str:
    if run.error:
        return f"  {run.shape} / {run.strategy}: crashed: {run.error}"
    fig = figures(run)
    return (
        f"  {run.shape} / {run.strategy}: {fig.resolved}/{fig.jobs} resolved, p50 "
        f"{fmt_lag(fig.lag_p50_s)}, p99 {fmt_lag(fig.lag_p99_s)}, "
        f"{fig.status_per_job:.2f} status requests/job, {run.wall_s:.1f} s"
    )


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str]) -> int:
    """Run the matrix; print, save, chart."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_exit)  # so the finally blocks stop the children
    started = time.monotonic()
    info = machine()
    specs = {shape: job_specs(args.seed, shape, args.sizes.jobs(shape)) for shape in args.shapes}
    runs: list[CellRun] = []
    for fault in args.faults:
        print(f"library, {fault}: {', '.join(args.shapes)} at once", file=sys.stderr, flush=True)
        for run in library_phase(fault, args, specs):
            runs.append(run)
            print(_progress(run), file=sys.stderr, flush=True)
    if not args.no_pollers:
        print("pollers: every shape and strategy at once", file=sys.stderr, flush=True)
        for run in peers_phase(args, specs):
            runs.append(run)
            print(_progress(run), file=sys.stderr, flush=True)
    for run in runs:
        for s in run.seen:
            s.lookups = run.counts.lookups.get(s.job_id, 0)
    report = build_report(args, info, _command(argv), time.monotonic() - started, runs)
    text = markdown(report)
    print(text)
    args.docs_dir.mkdir(parents=True, exist_ok=True)
    (args.docs_dir / "waiting-benchmark.md").write_text(text)
    print(write_chart(report, args.docs_dir / "waiting-benchmark.png"))
    write_json(report, args.out, specs)
    print(f"raw figures: {args.out}; the run took {report.wall_s:.0f} s")
    crashed = [r for r in runs if r.error]
    unresolved = [r for r in runs if not r.error and any(s.lag_s is None for s in r.seen)]
    for r in crashed + unresolved:
        what = f"crashed: {r.error}" if r.error else "jobs not resolved"
        print(f"FAILED {r.fault} / {r.shape} / {r.strategy}: {what}", file=sys.stderr)
    return 1 if crashed or unresolved else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
