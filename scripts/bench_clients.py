"""The sync and the asyncio client side by side: the same jobs awaited three ways.

One server and one receiver; for each way, the same jobs (durations 5-15 s and estimate
distortions drawn from one seed, pinned with ``simulate``), created then awaited:

- ``sync as_completed``: ``TranslationClient.as_completed(ids)``;
- ``async gather``: ``asyncio.gather(*(client.wait(id) for id in ids))``;
- ``async as_completed``: ``async for job in AsyncTranslationClient.as_completed(ids)``.

Lag is from a job's ``finished_at`` to the moment the caller holds it; status and feed
requests are the client's own counts.

    .venv/bin/python -m scripts.bench_clients [--quick] [--jobs 200]
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client_lib import AsyncTranslationClient, Job, TranslationClient
from client_lib.models import parse_time
from scripts.common import anchor, definitions, fmt_s, parser, percentile, save, table
from tests.support import start_receiver, start_server

TITLE = "Clients: the sync and the asyncio client awaiting the same jobs"
DEFINITIONS = {
    "lag": "from the job's `finished_at` to the caller holding it",
    "status requests": "`GET /v1/jobs/{id}` and `GET /v1/jobs?ids=` per job",
    "feed requests": "`GET /v1/events` per job",
}


def plans(n: int, seed: int) -> list[dict[str, Any]]:
    """Jobs of 5-15 s with estimates off by ~20 %, the same for every way."""
    rng = random.Random(seed)
    return [
        {
            "duration_s": rng.uniform(5, 15),
            "estimate_factor": max(0.3, rng.gauss(1.0, 0.2)),
            "outcome": "completed",
        }
        for _ in range(n)
    ]


def figures(name: str, held: dict[str, tuple[Job, float]], stats: Any, n: int) -> dict[str, Any]:
    """One way's row: resolved, lag p50/p99, requests per job."""
    lags = sorted(at - (parse_time(job.finished_at) or at) for job, at in held.values())
    requests = stats.requests
    return {
        "way": name,
        "resolved": len(held),
        "lag_p50_s": percentile(lags, 50),
        "lag_p99_s": percentile(lags, 99),
        "status_per_job": stats.status_requests / n,
        "feed_per_job": requests["GET receiver /v1/events"] / n,
    }


def sync_as_completed(kwargs: dict[str, Any], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    with TranslationClient(**kwargs) as client:
        ids = [client.create_job(simulate=p).id for p in jobs]
        held = {job.id: (job, time.time()) for job in client.as_completed(ids, timeout=120)}
        return figures("sync as_completed", held, client.stats, len(jobs))


async def async_ways(kwargs: dict[str, Any], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    async with AsyncTranslationClient(**kwargs) as client:
        ids = [(await client.create_job(simulate=p)).id for p in jobs]

        async def one(job_id: str) -> tuple[Job, float]:
            job = await client.wait(job_id, timeout=120)
            return job, time.time()

        done = await asyncio.gather(*(one(i) for i in ids))
        out.append(figures("async gather", {j.id: (j, t) for j, t in done}, client.stats, len(ids)))
    async with AsyncTranslationClient(**kwargs) as client:
        ids = [(await client.create_job(simulate=p)).id for p in jobs]
        held = {job.id: (job, time.time()) async for job in client.as_completed(ids, timeout=120)}
        out.append(figures("async as_completed", held, client.stats, len(ids)))
    return out


def main(argv: Sequence[str]) -> int:
    """Start the services, await the jobs three ways, print and save."""
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, help="jobs per way [200; quick 50]")
    args = p.parse_args(argv)
    n = args.jobs or (50 if args.quick else 200)
    jobs = plans(n, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with start_server(work, "--workers", str(n + 10), "--seed", "5") as server:
            with start_receiver(work, "--threads", "32") as receiver:
                kwargs = {
                    "base_url": server.url,
                    "receiver_url": receiver.url,
                    "credentials_file": str(work / "local.json"),
                }
                rows = [sync_as_completed(kwargs, jobs), *asyncio.run(async_ways(kwargs, jobs))]
    lines = [
        [r["way"], f"{r['resolved']}/{n}", fmt_s(r["lag_p50_s"]), fmt_s(r["lag_p99_s"]),
         f"{r['status_per_job']:.2f}", f"{r['feed_per_job']:.2f}"]
        for r in rows
    ]  # fmt: skip
    text = "\n\n".join(
        [
            f"{n} jobs of 5-15 s per way, webhooks working, the ways one after another.",
            definitions(DEFINITIONS),
            table(
                "way | resolved | lag p50 | lag p99 | status requests/job | feed requests/job",
                lines,
            ),
        ]
    )
    gather = next(r for r in rows if r["way"] == "async gather")
    value = (
        f"lag p50 {fmt_s(gather['lag_p50_s'])}, p99 {fmt_s(gather['lag_p99_s'])}, "
        f"{gather['status_per_job']:.2f} status requests/job"
    )
    headline = [(f"{n} jobs, asyncio.gather", value, f"benchmarks.md#{anchor(TITLE)}")]
    save("clients", argv, TITLE, text, headline, {"jobs": n, "rows": rows})
    return 0 if all(r["resolved"] == n for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
