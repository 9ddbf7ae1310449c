"""Benchmark webhook delivery of the translation server: dispatch latency and burst throughput.

Issue 3 sets two targets for a healthy local receiver:

- latency: a webhook leaves within 20 ms (p99) of its job becoming final;
- throughput: at least 500 deliveries per second with 1,000 jobs finishing in the same second.

Each scenario starts a fresh translation server (child process, port 0, its own SQLite file)
and a minimal webhook receiver (a bare WSGI app under waitress, also a child process, started
by this script with the hidden ``_receiver`` argument). The receiver stamps ``time.time()`` as
soon as a POST reaches it, keeps the raw body and headers, and answers 204; the parent later
verifies every signature with the reference ``standardwebhooks`` package and reads the job's
``finished_at`` from the body. Same machine, same clock, so arrival minus ``finished_at`` is the
dispatch latency (``finished_at`` has millisecond resolution and is truncated, so a figure can
be up to 1 ms high). The server's own delivery log (``GET /v1/jobs/{id}/deliveries``) splits it
into the wait before the attempt started and the HTTP send.

Jobs are pinned with ``simulate.duration_s`` computed at creation so they end at chosen
wall-clock moments: spread out (``--gap-ms`` apart on average) for latency, all at one instant
for the burst; the server gets enough worker slots that no job queues.

The receiver answers 204, as the project's callback receiver does. waitress 3 closes the
connection after every 204 (it drops the Content-Length of a bodiless answer, then cannot keep
the connection alive), so each delivery opens a new TCP connection; ``--receiver-status 200``
keeps connections alive, for comparison.

    .venv/bin/python scripts/bench_webhooks.py [--jobs 200] [--burst 1000] [--senders 8,16]

Prints markdown tables and writes the raw figures to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from bench_common import (
    ADMIN_TOKEN,
    ChildService,
    children,
    percentile,
    start_child,
    start_translation_server,
    write_ready_file,
)

ROOT = Path(__file__).resolve().parent.parent
RECEIVER_ARG = "_receiver"
RECEIVER_THREADS = 32
CREATE_THREADS = 8
PROBE_JOBS = 40
TARGET_P99_MS = 20.0
TARGET_RATE = 500.0
ARRIVAL_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 10.0
WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


# --- the receiver (runs in its own child process) ---------------------------------------------


class Recorder:
    """A WSGI app: ``POST /webhooks`` is stamped, kept, answered 204; ``GET /_count``, ``/_all``."""

    def __init__(self, status: str) -> None:
        self._status = status
        self._lock = threading.Lock()
        self._arrivals: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """Dispatch on method and path (no framework: the receiver must not be the bottleneck)."""
        at = time.time()
        if environ["REQUEST_METHOD"] == "POST":
            return self._record(at, environ, start_response)
        with self._lock:  # the count is what the parent polls: keep it cheap
            body = json.dumps(
                len(self._arrivals) if environ["PATH_INFO"] == "/_count" else self._arrivals
            ).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    def _record(
        self, at: float, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size).decode()
        headers = {
            h: environ.get("HTTP_" + h.upper().replace("-", "_"), "") for h in WEBHOOK_HEADERS
        }
        with self._lock:
            self._arrivals.append({"at": at, "headers": headers, "body": body})
        start_response(self._status, [("Content-Length", "0")])
        return [b""]


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve_receiver(ready_file: Path, status: int) -> None:
    """Run the recorder under waitress on a free port until SIGTERM."""
    from waitress.server import create_server

    reason = "No Content" if status == 204 else "OK"
    server: Any = create_server(
        Recorder(f"{status} {reason}"),
        host="127.0.0.1",
        port=0,
        threads=RECEIVER_THREADS,
        ident="bench-receiver",
    )
    port = int(server.effective_port)
    write_ready_file(ready_file, f"http://127.0.0.1:{port}", port)
    signal.signal(signal.SIGTERM, _raise_exit)
    try:
        server.run()
    finally:
        server.close()


# --- child processes --------------------------------------------------------------------------


def start_server(workdir: Path, *, workers: int, senders: int) -> ChildService:
    """A translation server with its own database, ``workers`` slots and ``senders`` threads."""
    return start_translation_server(
        workdir, "--seed", "1", "--workers", str(workers), "--webhook-senders", str(senders)
    )


def start_receiver(workdir: Path, status: int) -> ChildService:
    """The recording webhook receiver, answering ``status``."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        RECEIVER_ARG,
        str(workdir / "receiver.ready"),
        str(status),
    ]
    return start_child("receiver", cmd, workdir / "receiver.ready", workdir / "receiver.log")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- talking to the server --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Tenant:
    """The benchmark's client: its auth header and webhook secret."""

    auth: dict[str, str]
    secret: str


@dataclasses.dataclass(frozen=True, slots=True)
class Created:
    """One created job: its id, when the POST came back, when it was meant to end."""

    job_id: str
    created_at: float
    finish_at: float


def new_tenant(url: str) -> Tenant:
    """Create a client through the admin endpoint."""
    resp = requests.post(
        f"{url}/v1/clients",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=HTTP_TIMEOUT_S,
    )
    resp.raise_for_status()
    body = resp.json()
    return Tenant({"Authorization": f"Bearer {body['api_key']}"}, body["webhook_secret"])


def _parallel(fn: Callable[[requests.Session, Any], Any], items: Iterable[Any]) -> list[Any]:
    """Map ``fn`` over ``items`` with a few threads, each with its own keep-alive session."""
    local = threading.local()

    def call(item: Any) -> Any:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = False
        return fn(local.session, item)

    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        return list(pool.map(call, items))


def create_jobs(
    url: str, tenant: Tenant, finish_times: Sequence[float], callback_url: str | None
) -> list[Created]:
    """Create one job per finish time, its duration pinned so it ends at that moment."""

    def create(session: requests.Session, finish_at: float) -> Created:
        body: dict[str, Any] = {
            "target_language": "es",
            "simulate": {
                "duration_s": round(max(0.0, finish_at - time.time()), 4),
                "outcome": "completed",
                "webhook": "deliver",
            },
        }
        if callback_url:
            body["callback_url"] = callback_url
        resp = session.post(
            f"{url}/v1/jobs", json=body, headers=tenant.auth, timeout=HTTP_TIMEOUT_S
        )
        resp.raise_for_status()
        return Created(resp.json()["id"], time.time(), finish_at)

    return _parallel(create, finish_times)


def creation_rate(url: str, tenant: Tenant) -> float:
    """Jobs created per second with the benchmark's threads (jobs without a callback)."""
    started = time.perf_counter()
    create_jobs(url, tenant, [time.time()] * PROBE_JOBS, None)
    return PROBE_JOBS / (time.perf_counter() - started)


def attempt_starts(url: str, tenant: Tenant, job_ids: Sequence[str]) -> dict[str, float]:
    """When the server began each job's first webhook attempt (its delivery log)."""

    def first_attempt(session: requests.Session, job_id: str) -> tuple[str, float | None]:
        resp = session.get(
            f"{url}/v1/jobs/{job_id}/deliveries", headers=tenant.auth, timeout=HTTP_TIMEOUT_S
        )
        resp.raise_for_status()
        log = [a for d in resp.json()["deliveries"] for a in d["attempt_log"]]
        return job_id, parse_time(log[0]["attempted_at"]) if log else None

    return {j: t for j, t in _parallel(first_attempt, job_ids) if t is not None}


def parse_time(value: str) -> float:
    """The wire's RFC 3339 time (``...123Z``) as Unix seconds."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- the receiver's record --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Arrival:
    """One webhook as the receiver got it."""

    at: float
    webhook_id: str
    job_id: str
    finished_at: float
    verified: bool


def fetch_arrivals(receiver_url: str, secret: str) -> list[Arrival]:
    """Every webhook the receiver recorded, signatures verified here with the reference code."""
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    verifier = Webhook(secret)
    out = []
    for raw in requests.get(f"{receiver_url}/_all", timeout=HTTP_TIMEOUT_S).json():
        try:
            verifier.verify(raw["body"], raw["headers"])
            verified = True
        except WebhookVerificationError:
            verified = False
        data = json.loads(raw["body"])["data"]
        out.append(
            Arrival(
                raw["at"],
                raw["headers"]["webhook-id"],
                data["id"],
                parse_time(data["finished_at"]),
                verified,
            )
        )
    return out


def wait_for_arrivals(receiver_url: str, count: int, deadline: float) -> int:
    """Poll the receiver until ``count`` webhooks arrived or the deadline passed."""
    seen = 0
    while time.time() < deadline:
        seen = int(requests.get(f"{receiver_url}/_count", timeout=HTTP_TIMEOUT_S).json())
        if seen >= count:
            break
        time.sleep(0.1)
    return seen


# --- figures ----------------------------------------------------------------------------------


def distribution(values_s: Iterable[float]) -> dict[str, float]:
    """p50, p90, p99 and max of durations in seconds, as milliseconds."""
    ms = sorted(v * 1000 for v in values_s)
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2) if ms else 0.0,
    }


def delivery_figures(arrivals: Sequence[Arrival], starts: dict[str, float]) -> dict[str, Any]:
    """Latency from final to arrival, split into the wait before sending and the send."""
    first: dict[str, Arrival] = {}
    for a in sorted(arrivals, key=lambda a: a.at):
        first.setdefault(a.webhook_id, a)
    firsts = list(first.values())
    timed = [a for a in firsts if a.job_id in starts]
    return {
        "webhooks": len(firsts),
        "duplicates": len(arrivals) - len(firsts),
        "unverified": sum(not a.verified for a in arrivals),
        "final_to_arrival": distribution(a.at - a.finished_at for a in firsts),
        "final_to_attempt": distribution(starts[a.job_id] - a.finished_at for a in timed),
        "attempt_to_arrival": distribution(a.at - starts[a.job_id] for a in timed),
    }


def burst_figures(arrivals: Sequence[Arrival]) -> dict[str, float]:
    """How fast a burst drained: deliveries per second, first arrival to last."""
    if not arrivals:
        return {}
    ats = sorted(a.at for a in arrivals)
    finished = sorted(a.finished_at for a in arrivals)
    span = ats[-1] - ats[0]
    return {
        "finish_spread_ms": round((finished[-1] - finished[0]) * 1000, 1),
        "first_arrival_after_final_ms": round((ats[0] - finished[0]) * 1000, 1),
        "all_arrived_after_final_s": round(ats[-1] - finished[0], 3),
        "first_to_last_s": round(span, 3),
        "deliveries_per_s": round((len(ats) - 1) / span, 1) if span > 0 else 0.0,
        "deliveries_per_s_from_final": round(len(ats) / (ats[-1] - finished[0]), 1),
    }


# --- scenarios --------------------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    """One server and one receiver, and the figures of what ran against them."""

    name: str
    senders: int
    jobs: int
    receiver_status: int
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)


def spread_finish_times(start: float, jobs: int, gap_ms: float, seed: int) -> list[float]:
    """``jobs`` moments from ``start``, gaps uniform in [0.4, 1.6] x ``gap_ms``."""
    rng = random.Random(seed)
    times, at = [], start
    for _ in range(jobs):
        times.append(at)
        at += rng.uniform(0.4, 1.6) * gap_ms / 1000
    return times


def run_scenario(scenario: Scenario, plan: Callable[[float, float], list[float]]) -> None:
    """Start both services, create jobs ending at ``plan(now, creation_rate)``, measure."""
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp, children() as started:
        workdir = Path(tmp)
        server = start_server(
            workdir, workers=scenario.jobs + PROBE_JOBS + 10, senders=scenario.senders
        )
        started.append(server)
        receiver = start_receiver(workdir, scenario.receiver_status)
        started.append(receiver)
        tenant = new_tenant(server.url)
        rate = creation_rate(server.url, tenant)
        finish_times = plan(time.time(), rate)
        created = create_jobs(server.url, tenant, finish_times, f"{receiver.url}/webhooks")
        scenario.figures["creation_jobs_per_s"] = round(rate, 1)
        scenario.figures["created_late"] = sum(c.created_at > c.finish_at for c in created)
        _measure(scenario, server, receiver, tenant, created)


def _measure(
    scenario: Scenario,
    server: ChildService,
    receiver: ChildService,
    tenant: Tenant,
    created: Sequence[Created],
) -> None:
    """Wait for every webhook, with the CPU both processes spent meanwhile."""
    first_finish = min(c.finish_at for c in created)
    time.sleep(max(0.0, first_finish - 0.2 - time.time()))
    cpu_before = cpu_seconds(server.proc.pid), cpu_seconds(receiver.proc.pid)
    wall_before = time.time()
    seen = wait_for_arrivals(
        receiver.url, len(created), max(c.finish_at for c in created) + ARRIVAL_TIMEOUT_S
    )
    wall = time.time() - wall_before
    scenario.figures["cpu"] = {
        "window_s": round(wall, 2),
        "server_s": round(cpu_seconds(server.proc.pid) - cpu_before[0], 2),
        "receiver_s": round(cpu_seconds(receiver.proc.pid) - cpu_before[1], 2),
    }
    arrivals = fetch_arrivals(receiver.url, tenant.secret)
    starts = attempt_starts(server.url, tenant, [c.job_id for c in created])
    scenario.figures["missing"] = len(created) - min(seen, len(created))
    scenario.figures.update(delivery_figures(arrivals, starts))
    scenario.figures.update(burst_figures(arrivals))


def latency_scenario(jobs: int, senders: int, status: int, *, gap_ms: float, seed: int) -> Scenario:
    """Jobs ending one by one, ``gap_ms`` apart on average."""
    scenario = Scenario("latency", senders, jobs, status)

    def plan(now: float, rate: float) -> list[float]:
        return spread_finish_times(now + 1.0 + 1.5 * jobs / rate, jobs, gap_ms, seed)

    run_scenario(scenario, plan)
    return scenario


def burst_scenario(jobs: int, senders: int, status: int) -> Scenario:
    """Every job ending at the same instant."""
    scenario = Scenario("burst", senders, jobs, status)

    def plan(now: float, rate: float) -> list[float]:
        return [now + 1.0 + 1.5 * jobs / rate] * jobs

    run_scenario(scenario, plan)
    return scenario


# --- report -----------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def latency_table(s: Scenario) -> str:
    """Markdown: dispatch latency, and where it goes."""
    f = s.figures
    rows = [
        ("final -> arrival", f["final_to_arrival"]),
        ("final -> attempt start (server log)", f["final_to_attempt"]),
        ("attempt start -> arrival", f["attempt_to_arrival"]),
    ]
    out = [
        f"### Dispatch latency: {s.jobs} jobs ending ~spread out, {s.senders} senders",
        "",
        "| interval | n | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    out += [
        f"| {name} | {d['count']} | {d['p50_ms']} | {d['p90_ms']} | {d['p99_ms']} | {d['max_ms']} |"
        for name, d in rows
    ]
    p99 = f["final_to_arrival"]["p99_ms"]
    out += [
        "",
        f"Target p99 < {TARGET_P99_MS:g} ms: {_mark(p99 < TARGET_P99_MS)} ({p99} ms). "
        f"Missing: {f['missing']}, duplicates: {f['duplicates']}, "
        f"unverified: {f['unverified']}, created late: {f['created_late']}.",
    ]
    return "\n".join(out)


def burst_table(bursts: Sequence[Scenario]) -> str:
    """Markdown: one row per sender count."""
    out = [
        "### Throughput: jobs ending at the same instant",
        "",
        "| senders | jobs | arrived | deliveries/s (first->last) | all arrived after final s "
        "| latency p50 / p99 / max ms | finish spread ms | server CPU s | receiver CPU s "
        "| >= 500/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in bursts:
        f, lat = s.figures, s.figures["final_to_arrival"]
        out.append(
            f"| {s.senders} | {s.jobs} | {f['webhooks']} | {f.get('deliveries_per_s', 0)} | "
            f"{f.get('all_arrived_after_final_s', '-')} | {lat['p50_ms']} / {lat['p99_ms']} / "
            f"{lat['max_ms']} | {f.get('finish_spread_ms', '-')} | {f['cpu']['server_s']} | "
            f"{f['cpu']['receiver_s']} | {_mark(f.get('deliveries_per_s', 0) >= TARGET_RATE)} |"
        )
    return "\n".join(out)


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# --- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--jobs", type=int, default=200, help="jobs in the latency run")
    p.add_argument("--burst", type=int, default=1000, help="jobs ending together in a burst")
    p.add_argument(
        "--senders",
        default="8,16",
        help="comma-separated --webhook-senders values, one burst run each",
    )
    p.add_argument(
        "--latency-senders", type=int, default=8, help="--webhook-senders of the latency run"
    )
    p.add_argument(
        "--gap-ms",
        type=float,
        default=25.0,
        help="mean gap between finishing jobs in the latency run",
    )
    p.add_argument(
        "--receiver-status",
        type=int,
        choices=(200, 204),
        default=204,
        help="the receiver's answer (waitress closes the connection after a 204)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench-results" / "webhooks.json")
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Run the latency scenario, then one burst per sender count; print and save."""
    if argv[:1] == [RECEIVER_ARG]:
        serve_receiver(Path(argv[1]), int(argv[2]))
        return 0
    args = parse_args(argv)
    latency = latency_scenario(
        args.jobs, args.latency_senders, args.receiver_status, gap_ms=args.gap_ms, seed=args.seed
    )
    print(latency_table(latency), flush=True)
    bursts = [
        burst_scenario(args.burst, int(n), args.receiver_status)
        for n in args.senders.split(",")
        if n.strip()
    ]
    print("\n" + burst_table(bursts))
    result = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "latency": dataclasses.asdict(latency),
        "bursts": [dataclasses.asdict(b) for b in bursts],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nraw figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
