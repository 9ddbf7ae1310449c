"""Webhook delivery of the translation server: dispatch latency and burst throughput.

Each scenario starts a fresh translation server (its own SQLite file, enough worker slots that
no job queues) and the webhook recorder of ``scripts.stubs``, which stamps ``time.time()`` as a
POST reaches it and answers 204, as the project's receiver does (waitress then closes the
connection, so each delivery opens a new one). The parent verifies every signature with the
reference ``standardwebhooks`` package and reads the job's ``finished_at`` from the body: same
machine, same clock, so arrival minus ``finished_at`` is the dispatch latency (``finished_at``
is truncated to the millisecond: a figure may be up to 1 ms high). The server's delivery log
(``GET /v1/jobs/{id}/deliveries``) splits it into the wait before the attempt and the send.

Jobs are pinned with ``simulate.duration_s`` computed at creation so that they end at chosen
moments: spread out (``--gap-ms`` apart on average) for latency, all at one instant for a burst.

    .venv/bin/python -m scripts.bench_webhooks [--quick] [--jobs 200] [--burst 1000]

Goals: p99 dispatch latency under 20 ms; at least 1000 deliveries/s in a burst.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from client_lib.models import parse_time
from scripts.common import anchor, cpu_seconds, definitions, met, parser, save, summary_ms, table
from tests.e2e.servers import new_tenant
from tests.support import start_server, start_service, wait_until

TITLE = "Webhooks: dispatch latency and burst rate"
THREADS, PROBE_JOBS = 8, 40
GOAL_P99_MS, GOAL_RATE = 20.0, 1000.0
DEFINITIONS = {
    "final -> arrival": "the recorder's arrival stamp minus the job's `finished_at`",
    "attempt start": "when the server began the first delivery attempt (its delivery log)",
    "deliveries/s": "webhooks delivered per second in a burst, first arrival to last",
    "CPU s": "CPU seconds each process spent from just before the first job ended until the "
    "last webhook arrived",
}


def parallel(fn: Callable[[requests.Session, Any], Any], items: Iterable[Any]) -> list[Any]:
    """Map ``fn`` over ``items`` in a few threads, each with its own keep-alive session."""
    local = threading.local()

    def call(item: Any) -> Any:
        local.session = getattr(local, "session", None) or requests.Session()
        return fn(local.session, item)

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(call, items))


def create_jobs(url: str, auth: dict[str, str], ends: Sequence[float], callback: str | None):
    """One job per end time, its duration pinned at creation so that it ends then; for each,
    (id, when its POST came back, when it was meant to end)."""

    def create(session: requests.Session, end: float) -> tuple[str, float, float]:
        duration = round(max(0.0, end - time.time()), 4)
        simulate = {"duration_s": duration, "outcome": "completed", "webhook": "deliver"}
        body = {"target_language": "es", "simulate": simulate}
        body |= {"callback_url": callback} if callback else {}
        resp = session.post(f"{url}/v1/jobs", json=body, headers=auth, timeout=10)
        resp.raise_for_status()
        return resp.json()["id"], time.time(), end

    return parallel(create, ends)


def first_attempts(url: str, auth: dict[str, str], ids: Sequence[str]) -> dict[str, float]:
    """When the server began each job's first webhook attempt (its delivery log)."""

    def first(session: requests.Session, job_id: str) -> tuple[str, float | None]:
        resp = session.get(f"{url}/v1/jobs/{job_id}/deliveries", headers=auth, timeout=10)
        log = [a for d in resp.json()["deliveries"] for a in d["attempt_log"]]
        return job_id, parse_time(log[0]["attempted_at"]) if log else None

    return {j: t for j, t in parallel(first, ids) if t is not None}


def scenario(jobs: int, senders: int, ends: Callable[[float], list[float]]) -> dict[str, Any]:
    """Both services; jobs ending at ``ends(creation rate)``; every webhook waited for."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        opts = ["--seed", "1", "--log-level", "WARNING", "--workers", str(jobs + PROBE_JOBS + 10)]
        server = stack.enter_context(
            start_server(Path(tmp), *opts, "--webhook-senders", str(senders))
        )
        rec = stack.enter_context(start_service("scripts.stubs", ["recorder"], Path(tmp)))
        tenant = new_tenant(server.url)
        started = time.perf_counter()
        create_jobs(server.url, tenant["auth"], [time.time()] * PROBE_JOBS, None)
        rate = PROBE_JOBS / (time.perf_counter() - started)
        created = create_jobs(server.url, tenant["auth"], ends(rate), f"{rec.url}/webhooks")
        time.sleep(max(0.0, min(c[2] for c in created) - 0.2 - time.time()))
        pids = (server.proc.pid, rec.proc.pid)
        cpu = [cpu_seconds(pid) for pid in pids]
        with contextlib.suppress(AssertionError):  # the figures tell how many are missing
            last = max(c[2] for c in created)
            count = f"{rec.url}/_count"
            wait_until(
                lambda: requests.get(count, timeout=10).json() >= jobs,
                timeout=last + 60 - time.time(),
            )
        cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True)]
        arrivals = requests.get(f"{rec.url}/_all", timeout=10).json()
        starts = first_attempts(server.url, tenant["auth"], [c[0] for c in created])
    late = sum(c[1] > c[2] for c in created)
    figures = arrival_figures(arrivals, tenant["webhook_secret"], starts, jobs)
    return {"jobs": jobs, "senders": senders, "created_late": late, "cpu_s": cpu, **figures}


def arrival_figures(
    arrivals: list[dict[str, Any]], secret: str, starts: dict[str, float], jobs: int
) -> dict[str, Any]:
    """Signatures checked; latency from final to arrival, split at the attempt's start; how
    fast the deliveries came, first arrival to last."""
    verifier, unverified, first = Webhook(secret), 0, dict[str, tuple[float, str, float]]()
    for a in sorted(arrivals, key=lambda a: a["at"]):
        try:
            verifier.verify(a["body"], a["headers"])
        except WebhookVerificationError:
            unverified += 1
        job = json.loads(a["body"])["data"]
        end = parse_time(job["finished_at"]) or 0.0
        first.setdefault(a["headers"]["webhook-id"], (a["at"], job["id"], end))
    hooks = list(first.values())
    timed = [(at, starts[j], end) for at, j, end in hooks if j in starts]
    ats, ends = sorted(h[0] for h in hooks) or [0.0], sorted(h[2] for h in hooks) or [0.0]
    return {
        "webhooks": len(hooks),
        "missing": jobs - len(hooks),
        "unverified": unverified,
        "duplicates": len(arrivals) - len(hooks),
        "final -> arrival": summary_ms(at - end for at, _, end in hooks),
        "final -> attempt start": summary_ms(start - end for _, start, end in timed),
        "attempt start -> arrival": summary_ms(at - start for at, start, _ in timed),
        "deliveries_per_s": round((len(ats) - 1) / max(ats[-1] - ats[0], 1e-9), 1),
        "all_arrived_s": round(ats[-1] - ends[0], 3),
        "spread_ms": round((ends[-1] - ends[0]) * 1000, 1),
    }


def report(args: Any, latency: dict[str, Any], bursts: list[dict[str, Any]]) -> str:
    """Definitions, the latency table, the burst table, the goals."""
    intervals = ("final -> arrival", "final -> attempt start", "attempt start -> arrival")
    rows = [[name, *latency[name].values()] for name in intervals]
    burst = [
        f"{b['senders']} | {b['jobs']} | {b['webhooks']} | {b['deliveries_per_s']} | "
        f"{b['all_arrived_s']} | "
        + "{p50} / {p99} / {max}".format(**b["final -> arrival"])
        + f" | {b['spread_ms']} | {b['cpu_s'][0]:.2f} | {b['cpu_s'][1]:.2f}"
        for b in bursts
    ]
    p99, rate = latency["final -> arrival"]["p99"], max(b["deliveries_per_s"] for b in bursts)
    return "\n\n".join(
        [
            definitions(DEFINITIONS),
            f"### Latency: {args.jobs} jobs ending about {args.gap_ms:g} ms apart, "
            f"{args.latency_senders} senders",
            table("interval | n | p50 ms | p90 ms | p99 ms | max ms", rows),
            f"Missing {latency['missing']}, duplicates {latency['duplicates']}, unverified "
            f"{latency['unverified']}, created after their end {latency['created_late']}.",
            "### Burst: jobs ending at the same instant",
            table(
                "senders | jobs | arrived | deliveries/s | all arrived after final s | latency p50 "
                "/ p99 / max ms | finish spread ms | server CPU s | receiver CPU s",
                burst,
            ),
            f"Goals: dispatch p99 {p99} ms (< {GOAL_P99_MS:g} ms): {met(p99 < GOAL_P99_MS)}; "
            f"burst {rate} deliveries/s (>= {GOAL_RATE:g}): {met(rate >= GOAL_RATE)}.",
        ]
    )


def main(argv: Sequence[str]) -> int:
    """The latency scenario, then one burst per sender count; print and save."""
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, help="jobs in the latency run [200; quick 50]")
    p.add_argument("--burst", type=int, help="jobs ending together [1000; quick 300]")
    p.add_argument("--senders", help="--webhook-senders of each burst [8,16; quick 8]")
    p.add_argument("--latency-senders", type=int, default=8)
    p.add_argument("--gap-ms", type=float, default=25.0, help="mean gap between job ends")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    args.jobs = args.jobs or (50 if args.quick else 200)
    args.burst = args.burst or (300 if args.quick else 1000)
    args.senders = args.senders or ("8" if args.quick else "8,16")
    rng = random.Random(args.seed)
    gaps = [0.0] + [rng.uniform(0.4, 1.6) * args.gap_ms / 1000 for _ in range(args.jobs - 1)]
    offsets = list(itertools.accumulate(gaps))

    def first_end(jobs: int, rate: float) -> float:
        """Once every job is created (at the probe's rate), with a margin."""
        return time.time() + 1 + 1.5 * jobs / rate

    latency = scenario(
        args.jobs,
        args.latency_senders,
        lambda rate: [first_end(args.jobs, rate) + o for o in offsets],
    )
    bursts = [
        scenario(args.burst, int(n), lambda r: [first_end(args.burst, r)] * args.burst)
        for n in args.senders.split(",")
    ]
    best, hook = max(bursts, key=lambda b: b["deliveries_per_s"]), latency["final -> arrival"]
    value = f"dispatch p50 {hook['p50']:.1f} ms, p99 {hook['p99']:.1f} ms; "
    value += f"{best['deliveries_per_s']:,.0f} delivered per second in a burst of {best['jobs']}"
    headline = [("Webhooks", value, f"benchmarks.md#{anchor(TITLE)}")]
    raw = {"args": vars(args), "latency": latency, "bursts": bursts}
    save("webhooks", argv, TITLE, report(args, latency, bursts), headline, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
