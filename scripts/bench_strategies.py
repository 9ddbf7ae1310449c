"""Benchmark the ways of learning that jobs ended: this library against the usual pollers.

Issue 6, section 2. Every strategy runs in turn on a FRESH translation server (child process,
port 0, its own SQLite file) started with the same ``--seed`` and ``--no-demo-job``, and creates
the same number of jobs one after another in the same order, so the server draws the same
durations (5 to 15 s, its defaults; ``simulate.duration_s`` is never pinned) and the same
estimator distortions for job *i* in every run. The JSON records each job's drawn duration and
the script checks that the runs agree. ``simulate.outcome`` is pinned to ``completed``; the
server gets at least as many worker slots as jobs, so nothing queues.

Strategies:

``lib-webhooks``       this library, ``TranslationClient.as_completed`` over every id, with the
                       callback receiver up and webhooks delivered;
``lib-dropped``        the same, the server started with ``--fault-drop-webhook 1.0``;
``lib-receiver-down``  the same, the client's receiver URL (and so every callback URL) is a
                       closed port;
``poll-1s``, ``poll-5s``  a fixed-interval poller;
``backoff``            exponential backoff, 1 s doubling to a 32 s cap, each delay times a
                       uniform 0.5 to 1.5 jitter.

The baselines are what published clients usually do: one thread per job running
``sleep; GET /v1/jobs/{id}`` until the job is final (the create response is the first look),
all threads sharing one keep-alive ``requests.Session`` whose pool holds
``POLL_CONNECTIONS`` connections (one connection per thread would run into waitress's
100-connection limit, which would be unfair to them).

Detection lag is the moment the caller knows (``as_completed`` yields the job, or a poller's
GET returns it final) minus the job's ``finished_at`` on the server; same machine, same clock.
``finished_at`` has millisecond resolution and is truncated, so a lag can read up to 1 ms high.
Status requests are ``GET /v1/jobs/{id}`` and ``GET /v1/jobs?ids=`` (for the library,
``client.stats.status_requests``); job lookups count a bulk request of k ids as k.

    .venv/bin/python scripts/bench_strategies.py [--jobs 200] [--seed 1]
        [--strategies lib-webhooks,backoff] [--out bench-results/strategies.json] [--no-chart]

Prints a markdown table, writes the raw figures to ``--out`` and a chart (p50 lag against
status requests per job) beside it; the library's INFO log of each run goes beside it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import platform
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from bench_common import (
    ChildService,
    children,
    percentile,
    start_callback_receiver,
    start_translation_server,
)
from requests.adapters import HTTPAdapter

from client_lib import TranslationClient
from client_lib.errors import TranslationError, WaitTimeout
from client_lib.models import parse_time
from client_lib.transport import Request, RequestsTransport, Response, Transport

ROOT = Path(__file__).resolve().parent.parent
SIMULATE = {"outcome": "completed"}  # never duration_s: the server draws it from the seed
HTTP_TIMEOUT_S = 10.0
POLL_CONNECTIONS = 32
WAITING_LOGGER = "client_lib.waiting"
TARGET_WEBHOOK_P99_S = 0.050
TARGET_FALLBACK_P50_S = 1.5
TARGET_FALLBACK_REQUESTS = 4.0


@dataclasses.dataclass(frozen=True, slots=True)
class Strategy:
    """One way of waiting, and the server flags and receiver state it runs with."""

    key: str
    label: str
    kind: str  # "library" or "poll"
    receiver: str = "none"  # "up", "down" (a closed port) or "none" (pollers need none)
    server_args: tuple[str, ...] = ()
    delays: Callable[[random.Random], Iterator[float]] | None = None


def fixed(interval: float) -> Callable[[random.Random], Iterator[float]]:
    """Delays of a fixed-interval poller."""
    return lambda _rng: itertools.repeat(interval)


def exponential(rng: random.Random) -> Iterator[float]:
    """1 s doubling to a 32 s cap, each delay times a uniform 0.5 to 1.5 jitter."""
    base = 1.0
    while True:
        yield base * rng.uniform(0.5, 1.5)
        base = min(base * 2, 32.0)


STRATEGIES = (
    Strategy("lib-webhooks", "library, webhooks working", "library", receiver="up"),
    Strategy(
        "lib-dropped",
        "library, every webhook dropped",
        "library",
        receiver="up",
        server_args=("--fault-drop-webhook", "1.0"),
    ),
    Strategy("lib-receiver-down", "library, receiver down", "library", receiver="down"),
    Strategy("poll-1s", "fixed 1 s poller", "poll", delays=fixed(1.0)),
    Strategy("poll-5s", "fixed 5 s poller", "poll", delays=fixed(5.0)),
    Strategy("backoff", "exp. backoff 1-32 s, jitter", "poll", delays=exponential),
)


@dataclasses.dataclass(slots=True)
class Seen:
    """One job as the caller finally saw it."""

    job_id: str
    seen_at: float | None  # None: never seen final before the deadline
    finished_at: float | None
    started_at: float | None
    status: str | None


@dataclasses.dataclass(slots=True)
class RunResult:
    """The figures of one strategy's run."""

    key: str
    label: str
    jobs: int
    resolved: int
    completed: int
    lag_p50_s: float
    lag_p95_s: float
    lag_p99_s: float
    lag_max_s: float
    status_requests: int
    job_lookups: int
    requests_per_job: float
    lookups_per_job: float
    wall_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    server_args: list[str]
    durations_s: list[float | None]
    lags_s: list[float]
    library: dict[str, Any] | None = None
    log_file: str | None = None
    webhook_split: dict[str, Any] | None = None


# --- child processes --------------------------------------------------------------------------


def start_server(workdir: Path, args: argparse.Namespace, extra: Sequence[str]) -> ChildService:
    """A fresh translation server: seeded, enough slots for every job, quiet logs."""
    return start_translation_server(
        workdir,
        "--seed",
        str(args.seed),
        "--workers",
        str(max(200, args.jobs)),
        "--estimate-noise",
        "0.2",
        *extra,
    )


def closed_port_url() -> str:
    """A URL on which nothing listens (a port the OS just handed out and took back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def api_key(workdir: Path) -> str:
    """The demo client's API key, as the server wrote it to the local set-up file."""
    return str(json.loads((workdir / "local.json").read_text())["api_key"])


# --- the library ------------------------------------------------------------------------------


class CountingTransport:
    """The library's real transport, counting the job lookups its status requests make."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.lookups = 0

    def send(self, request: Request) -> Response:
        """Count, then send."""
        n = 0
        path = request.url.split("/v1/jobs", 1)[1] if "/v1/jobs" in request.url else None
        if request.method == "GET" and path is not None:
            if request.params and "ids" in request.params:
                n = len([i for i in request.params["ids"].split(",") if i])
            elif path.count("/") == 1 and path != "/":  # /v1/jobs/{id}, not a sub-resource
                n = 1
        with self._lock:
            self.lookups += n
        return self._inner.send(request)

    def close(self) -> None:
        """Close the real transport."""
        self._inner.close()


class LogCapture(logging.Handler):
    """Keeps the library's log lines of one run, with wall-clock times."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(message)s", "%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted line."""
        self.lines.append(self.format(record))


def run_library(
    server_url: str, receiver_url: str, workdir: Path, args: argparse.Namespace
) -> tuple[list[Seen], dict[str, Any], int]:
    """Create the jobs with the library, then ``as_completed`` over all of them."""
    transport = CountingTransport(RequestsTransport())
    seen: dict[str, Seen] = {}
    with TranslationClient(
        base_url=server_url,
        receiver_url=receiver_url,
        credentials_file=str(workdir / "local.json"),
        transport=transport,
        seed=args.seed,
    ) as client:
        ids = [
            client.create_job(target_language="es", simulate=SIMULATE).id for _ in range(args.jobs)
        ]
        try:
            for job in client.as_completed(ids, timeout=args.timeout):
                now = time.time()
                seen[job.id] = Seen(
                    job.id,
                    now,
                    parse_time(job.finished_at),
                    parse_time(job.started_at),
                    job.status.value,
                )
        except WaitTimeout as exc:
            print(f"  as_completed timed out: {exc}", file=sys.stderr)
        stats = library_summary(client)
    out = [seen.get(i) or Seen(i, None, None, None, None) for i in ids]
    return out, stats, transport.lookups


def library_summary(client: TranslationClient) -> dict[str, Any]:
    """The client's own account of the run (per-job detections left out, only their paths)."""
    summary = client.stats.as_dict()
    paths = Counter(d["path"] for d in summary.pop("detections").values())
    summary["detection_paths"] = dict(paths)
    return summary


# --- the baselines ----------------------------------------------------------------------------


class Tally:
    """Thread-safe counters of the poller threads, and the signal that stops them early."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.stop = threading.Event()

    def add(self, name: str) -> None:
        """Count one ``name``."""
        with self._lock:
            self.counts[name] += 1


def poll_session() -> requests.Session:
    """One keep-alive session shared by the poller threads."""
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POLL_CONNECTIONS, pool_block=True)
    session.mount("http://", adapter)
    return session


def poll_until_final(
    session: requests.Session,
    url: str,
    auth: dict[str, str],
    job_id: str,
    delays: Iterator[float],
    deadline: float,
    tally: Tally,
) -> Seen:
    """The usual client loop: sleep, GET the job, stop once it is final."""
    for delay in delays:
        if time.time() + delay > deadline or tally.stop.wait(delay):
            break
        tally.add("requests")
        try:
            resp = session.get(f"{url}/v1/jobs/{job_id}", headers=auth, timeout=HTTP_TIMEOUT_S)
        except requests.RequestException:
            tally.add("errors")
            continue
        if resp.status_code != 200:
            tally.add("errors")
            continue
        body = resp.json()
        if body["status"] != "pending":
            return Seen(
                job_id,
                time.time(),
                parse_time(body["finished_at"]),
                parse_time(body["started_at"]),
                body["status"],
            )
    return Seen(job_id, None, None, None, None)


def run_poller(
    server_url: str, workdir: Path, strategy: Strategy, args: argparse.Namespace
) -> tuple[list[Seen], int]:
    """Create each job, and start its polling thread right after its creation."""
    assert strategy.delays is not None
    auth = {"Authorization": f"Bearer {api_key(workdir)}"}
    session = poll_session()
    tally = Tally()
    deadline = time.time() + args.timeout
    create = {"target_language": "es", "simulate": SIMULATE}
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = []
            try:
                for n in range(args.jobs):
                    resp = session.post(
                        f"{server_url}/v1/jobs", headers=auth, timeout=HTTP_TIMEOUT_S, json=create
                    )
                    resp.raise_for_status()
                    delays = strategy.delays(random.Random(args.seed * 100_003 + n))
                    poll = partial(poll_until_final, session, server_url, auth)
                    futures.append(pool.submit(poll, resp.json()["id"], delays, deadline, tally))
                seen = [f.result() for f in futures]
            except BaseException:
                tally.stop.set()  # a failure or Ctrl-C: do not wait out every sleeping poller
                raise
    finally:
        session.close()
    if tally.counts["errors"]:
        print(f"  {strategy.key}: {tally.counts['errors']} failed status requests", file=sys.stderr)
    return seen, tally.counts["requests"]


def webhook_split(receiver_url: str, seen: Sequence[Seen]) -> dict[str, Any] | None:
    """Split the lag of jobs learned by webhook: server to receiver, receiver to caller.

    Asks the receiver, after the run, when it stored each job's event (``received_at``,
    millisecond resolution); jobs it has no event for are left out.
    """
    delivery, feed = [], []
    with requests.Session() as session:
        for s in seen:
            if s.seen_at is None or s.finished_at is None:
                continue
            resp = session.get(f"{receiver_url}/v1/events/{s.job_id}", timeout=HTTP_TIMEOUT_S)
            if resp.status_code != 200:
                continue
            received = parse_time(resp.json()["received_at"]) or s.finished_at
            delivery.append(max(0.0, received - s.finished_at))
            feed.append(max(0.0, s.seen_at - received))
    if not delivery:
        return None
    return {
        "events": len(delivery),
        "server_to_receiver_s": spread(delivery),
        "receiver_to_caller_s": spread(feed),
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max, rounded to 0.1 ms."""
    v = sorted(values)
    return {f"p{p}": round(percentile(v, p), 4) for p in (50, 95, 99)} | {
        "max": round(v[-1], 4) if v else 0.0
    }


# --- one strategy, start to finish ------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class RawRun:
    """What a run produced before any figure is computed."""

    seen: list[Seen]
    status_requests: int
    job_lookups: int
    wall_s: float
    library: dict[str, Any] | None = None
    log_lines: list[str] | None = None
    split: dict[str, Any] | None = None


def drive(
    strategy: Strategy, server_url: str, receiver_url: str, workdir: Path, args: argparse.Namespace
) -> RawRun:
    """Run the strategy against running services (the library's INFO log captured)."""
    started = time.time()
    if strategy.kind == "poll":
        seen, n = run_poller(server_url, workdir, strategy, args)
        return RawRun(seen, n, n, time.time() - started)
    capture = LogCapture()
    logger = logging.getLogger(WAITING_LOGGER)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(capture)
    try:
        seen, stats, lookups = run_library(server_url, receiver_url, workdir, args)
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
    return RawRun(
        seen,
        int(stats["status_requests"]),
        lookups,
        time.time() - started,
        library=stats,
        log_lines=capture.lines,
    )


def run_strategy(strategy: Strategy, args: argparse.Namespace) -> RunResult:
    """Fresh services, the jobs, the waiting; every child process is stopped on the way out."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix=f"bench-{strategy.key}-") as tmp, children() as started:
        workdir = Path(tmp)
        server = start_server(workdir, args, strategy.server_args)
        started.append(server)
        receiver_url = ""
        if strategy.receiver == "up":
            receiver = start_callback_receiver(workdir)
            started.append(receiver)
            receiver_url = receiver.url
        elif strategy.receiver == "down":
            receiver_url = closed_port_url()
        raw = drive(strategy, server.url, receiver_url, workdir, args)
        if strategy.receiver == "up":
            raw.split = webhook_split(receiver_url, raw.seen)
    result = figures(strategy, raw, args, load_before)
    if raw.log_lines is not None:
        log_file = args.out.parent / f"strategies-{strategy.key}.log"
        log_file.write_text("\n".join(raw.log_lines) + "\n")
        result.log_file = str(log_file)
    return result


def figures(
    strategy: Strategy,
    raw: RawRun,
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
) -> RunResult:
    """Lag percentiles, requests per job and the drawn durations of one run."""
    done = [s for s in raw.seen if s.seen_at is not None and s.finished_at is not None]
    lags = sorted(max(0.0, (s.seen_at or 0.0) - (s.finished_at or 0.0)) for s in done)
    durations = [
        None
        if s.finished_at is None or s.started_at is None
        else round(s.finished_at - s.started_at, 3)
        for s in raw.seen
    ]
    jobs = len(raw.seen)
    return RunResult(
        key=strategy.key,
        label=strategy.label,
        jobs=jobs,
        resolved=len(done),
        completed=sum(1 for s in done if s.status == "completed"),
        lag_p50_s=percentile(lags, 50),
        lag_p95_s=percentile(lags, 95),
        lag_p99_s=percentile(lags, 99),
        lag_max_s=lags[-1] if lags else 0.0,
        status_requests=raw.status_requests,
        job_lookups=raw.job_lookups,
        requests_per_job=raw.status_requests / jobs if jobs else 0.0,
        lookups_per_job=raw.job_lookups / jobs if jobs else 0.0,
        wall_s=raw.wall_s,
        load_before=load_before,
        load_after=os.getloadavg(),
        server_args=list(strategy.server_args),
        durations_s=durations,
        lags_s=[round(x, 4) for x in lags],
        library=raw.library,
        webhook_split=raw.split,
    )


# --- verdicts ---------------------------------------------------------------------------------


def _check(name: str, ok: bool, detail: str, *, target: bool = True) -> dict[str, Any]:
    """One verdict; ``target=False``: a stricter reading, reported but not an issue's target."""
    return {"target": name, "ok": ok, "detail": detail, "issue_target": target}


def _resolved(key: str, r: RunResult) -> dict[str, Any]:
    return _check(f"{key}: every job resolved", r.resolved == r.jobs, f"{r.resolved}/{r.jobs}")


def _beats_backoff(r: RunResult, b: RunResult) -> list[dict[str, Any]]:
    """Lag (p50 and p99) and status requests per job; then job lookups, the stricter count."""
    lag_ok = r.lag_p50_s < b.lag_p50_s and r.lag_p99_s < b.lag_p99_s
    detail = (
        f"p50 {fmt_lag(r.lag_p50_s)} vs {fmt_lag(b.lag_p50_s)}, "
        f"p99 {fmt_lag(r.lag_p99_s)} vs {fmt_lag(b.lag_p99_s)}, "
        f"status requests/job {r.requests_per_job:.2f} vs {b.requests_per_job:.2f}"
    )
    return [
        _check(
            f"{r.key}: strictly better than backoff on lag AND status requests",
            lag_ok and r.requests_per_job < b.requests_per_job,
            detail,
        ),
        _check(
            f"{r.key}: fewer job lookups per job than backoff (?ids= of k counts k)",
            r.lookups_per_job < b.lookups_per_job,
            f"{r.lookups_per_job:.2f} vs {b.lookups_per_job:.2f}",
            target=False,
        ),
    ]


def _webhook_checks(r: RunResult) -> list[dict[str, Any]]:
    p99 = r.lag_p99_s
    return [
        _check("lib-webhooks: p99 lag < 50 ms", p99 < TARGET_WEBHOOK_P99_S, f"p99 {fmt_lag(p99)}"),
        _check(
            "lib-webhooks: 0 status requests per job",
            r.status_requests == 0,
            f"{r.status_requests} status requests",
        ),
        _resolved("lib-webhooks", r),
    ]


def _fallback_checks(key: str, r: RunResult) -> list[dict[str, Any]]:
    return [
        _check(
            f"{key}: p50 lag < 1.5 s", r.lag_p50_s < TARGET_FALLBACK_P50_S, fmt_lag(r.lag_p50_s)
        ),
        _check(
            f"{key}: <= 4 status requests per job",
            r.requests_per_job <= TARGET_FALLBACK_REQUESTS,
            f"{r.requests_per_job:.2f} requests/job ({r.lookups_per_job:.2f} job lookups/job)",
        ),
        _resolved(key, r),
    ]


def verdicts(results: dict[str, RunResult]) -> list[dict[str, Any]]:
    """The issues' targets, each with the figures it was judged on."""
    out: list[dict[str, Any]] = []
    if (r := results.get("lib-webhooks")) is not None:
        out += _webhook_checks(r)
    for key in ("lib-dropped", "lib-receiver-down"):
        if (r := results.get(key)) is not None:
            out += _fallback_checks(key, r)
    if (backoff := results.get("backoff")) is not None:
        for key in ("lib-webhooks", "lib-dropped", "lib-receiver-down"):
            if (r := results.get(key)) is not None:
                out += _beats_backoff(r, backoff)
    return out


def duration_check(results: dict[str, RunResult]) -> dict[str, Any]:
    """Whether every run drew the same durations for job i (same seed, same order)."""
    runs = list(results.values())
    worst = 0.0
    for other in runs[1:]:
        for a, b in zip(runs[0].durations_s, other.durations_s, strict=False):
            if a is not None and b is not None:
                worst = max(worst, abs(a - b))
    first = [d for d in runs[0].durations_s if d is not None] if runs else []
    return {
        "max_abs_diff_s": round(worst, 3),
        "min_s": min(first, default=0.0),
        "max_s": max(first, default=0.0),
    }


# --- output -----------------------------------------------------------------------------------


def fmt_lag(seconds: float) -> str:
    """Milliseconds below a second, seconds above."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def markdown_table(results: Sequence[RunResult]) -> str:
    """One row per strategy."""
    out = [
        "| strategy | resolved | lag p50 | lag p95 | lag p99 | status requests/job "
        "| job lookups/job | wall | load 1 min (before, after) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        out.append(
            f"| {r.label} | {r.resolved}/{r.jobs} | {fmt_lag(r.lag_p50_s)} "
            f"| {fmt_lag(r.lag_p95_s)} | {fmt_lag(r.lag_p99_s)} | {r.requests_per_job:.2f} "
            f"| {r.lookups_per_job:.2f} | {r.wall_s:.1f} s "
            f"| {r.load_before[0]:.2f}, {r.load_after[0]:.2f} |"
        )
    return "\n".join(out)


def verdict_lines(checks: Sequence[dict[str, Any]]) -> str:
    """The targets as a markdown list (stricter readings marked as such)."""
    lines = []
    for c in checks:
        mark = "PASS" if c["ok"] else "MISS"
        note = "" if c["issue_target"] else " (stricter reading, not an issue target)"
        lines.append(f"- {mark}{note} {c['target']}: {c['detail']}")
    return "\n".join(lines)


def detail_lines(results: Sequence[RunResult]) -> str:
    """Where the library's lag went, and what it asked the receiver."""
    out = []
    for r in results:
        if r.webhook_split:
            d, f = r.webhook_split["server_to_receiver_s"], r.webhook_split["receiver_to_caller_s"]
            out.append(
                f"- {r.key}: {r.webhook_split['events']} webhooks; server to receiver p50/p95/p99 "
                f"{fmt_lag(d['p50'])}/{fmt_lag(d['p95'])}/{fmt_lag(d['p99'])}, receiver to "
                f"caller {fmt_lag(f['p50'])}/{fmt_lag(f['p95'])}/{fmt_lag(f['p99'])}"
            )
        if r.library:
            feed = r.library["requests"].get("GET receiver /v1/events", 0)
            out.append(
                f"- {r.key}: detected by {r.library['detection_paths']}, {feed} feed requests "
                f"(long-polls to the receiver, failed ones included), mode changes "
                f"{[m['mode'] for m in r.library['mode_changes']]}"
            )
    return "\n".join(out)


def show_failing_logs(results: dict[str, RunResult], checks: Sequence[dict[str, Any]]) -> None:
    """For a library strategy that missed a target, the start of its INFO log."""
    failing = {c["target"].split(":", 1)[0] for c in checks if not c["ok"] and c["issue_target"]}
    for key in sorted(failing):
        r = results.get(key)
        if r is None or r.log_file is None:
            continue
        lines = Path(r.log_file).read_text().splitlines()
        print(
            f"\n{key} missed a target; its {WAITING_LOGGER} log ({len(lines)} lines, "
            f"{r.log_file}), first 25 and last 5:"
        )
        shown = lines if len(lines) <= 30 else [*lines[:25], "...", *lines[-5:]]
        print("\n".join(f"    {line}" for line in shown))


def _plot_point(ax: Any, r: RunResult) -> None:
    """One strategy: filled at its status requests per job, hollow at its job lookups."""
    colour = "tab:blue" if r.key.startswith("lib-") else "tab:grey"
    y = max(r.lag_p50_s, 1e-3)
    ax.scatter([r.requests_per_job], [y], color=colour, s=60, zorder=3)
    if abs(r.lookups_per_job - r.requests_per_job) > 1e-9:
        ax.scatter([r.lookups_per_job], [y], facecolors="none", edgecolors=colour, s=60, zorder=3)
        ax.plot([r.requests_per_job, r.lookups_per_job], [y, y], color=colour, ls=":", lw=1)
    # the label sits right of the rightmost marker, on the point's own line: close
    # neighbours (the two fallback runs) cannot swap labels
    x = max(r.requests_per_job, r.lookups_per_job)
    ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(8, 0), va="center", fontsize=8)


def write_chart(results: Sequence[RunResult], path: Path) -> str:
    """p50 lag (log scale) against status requests per job, one labelled point per strategy."""
    try:
        import matplotlib
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -r requirements-bench.txt)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for r in results:
        _plot_point(ax, r)
    ax.margins(x=0.25)
    ax.set_xlim(left=-0.3)  # requests per job are never negative; 0 stays visible
    ax.set_yscale("log")
    ax.set_xlabel("status requests per job (hollow: job lookups per job, ?ids= of k counts k)")
    ax.set_ylabel("detection lag p50, seconds (log)")
    jobs = results[0].jobs if results else 0
    ax.set_title(f"Learning that {jobs} jobs ended: lag against cost (lower left is better)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"chart: {path}"


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_json(
    path: Path,
    args: argparse.Namespace,
    results: dict[str, RunResult],
    checks: list[dict[str, Any]],
) -> None:
    """The raw figures, per-job lags and durations included."""
    body = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "server": {
            "workers": max(200, args.jobs),
            "estimate_noise": 0.2,
            "seed": args.seed,
            "simulate": SIMULATE,
            "poll_connections": POLL_CONNECTIONS,
        },
        "durations": duration_check(results),
        "targets": checks,
        "strategies": {k: dataclasses.asdict(r) for k, r in results.items()},
    }
    path.write_text(json.dumps(body, indent=2) + "\n")


# --- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    keys = [s.key for s in STRATEGIES]
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--jobs", type=int, default=200, help="jobs per strategy")
    p.add_argument("--seed", type=int, default=1, help="the server's --seed (same every run)")
    p.add_argument(
        "--strategies", default=",".join(keys), help=f"comma-separated subset of: {', '.join(keys)}"
    )
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds a strategy may wait for its jobs"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench-results" / "strategies.json",
        help="raw JSON; the chart and logs go beside it",
    )
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    args = p.parse_args(argv)
    unknown = set(args.strategies.split(",")) - set(keys)
    if unknown:
        p.error(f"unknown strategies: {', '.join(sorted(unknown))}")
    return args


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str]) -> int:
    """Run the chosen strategies one after another; print, save, chart."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_exit)  # so the finally blocks stop the children
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in STRATEGIES if s.key in args.strategies.split(",")]
    results: dict[str, RunResult] = {}
    for strategy in chosen:
        print(
            f"running {strategy.key} ({args.jobs} jobs, load {os.getloadavg()[0]:.2f}) ...",
            file=sys.stderr,
            flush=True,
        )
        try:
            results[strategy.key] = r = run_strategy(strategy, args)
        except (TranslationError, requests.RequestException, RuntimeError) as exc:
            print(f"  {strategy.key} failed: {exc}", file=sys.stderr)
            continue
        print(
            f"  {r.resolved}/{r.jobs} resolved, p50 {fmt_lag(r.lag_p50_s)}, "
            f"{r.requests_per_job:.2f} requests/job, {r.wall_s:.1f} s",
            file=sys.stderr,
        )
    checks = verdicts(results)
    m = machine()
    print(
        f"\n{args.jobs} jobs per strategy, seed {args.seed}, {m['cpus']} CPUs, "
        f"Python {m['python']}, {m['at']}; durations drawn by the server "
        f"({duration_check(results)})\n"
    )
    print(markdown_table(list(results.values())))
    print("\nTargets:\n" + verdict_lines(checks))
    print("\nThe library's runs:\n" + detail_lines(list(results.values())))
    show_failing_logs(results, checks)
    write_json(args.out, args, results, checks)
    print(f"\nraw figures: {args.out}")
    if not args.no_chart and results:
        print(write_chart(list(results.values()), args.out.with_suffix(".png")))
    return 0 if all(c["ok"] for c in checks if c["issue_target"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
