"""``GET /v1/jobs/{id}`` of the translation server against a bare Flask app, on stock waitress.

Both targets run as child processes with the same number of waitress request threads (the
server's default) and are driven, in turns, by the same load generator (``scripts.common``):

- ``server``: the translation server, its access log off (``--log-level WARNING``), on a fresh
  SQLite database with one client and ``--jobs`` jobs: half completed, half pending for an hour
  (queued behind the worker slots, so their estimates are computed on every read);
- ``bare``: a bare Flask app answering the same paths with a fixed JSON body, copied from the
  server's answer for a pending job: the baseline.

Requests rotate over the job ids with the client's ``Authorization`` header. With two CPUs or
more, the targets run on the first half and the load generator on the rest
(``common.split_cpus``), so that neither's figures are the other's scheduling. The machine's
speed drifts from minute to minute, so the targets take turns ``--rounds`` times, in
alternating order, each after a short warm-up; the figures are medians over the rounds, and
the ratio is the median of each round's ratio.

    .venv/bin/python -m scripts.bench_server [--quick] [--rounds 5] [--duration 5]

The goal: the server reaches >= 60 % of the bare app's requests/s, with p99 under 25 ms at 16
connections.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from scripts.common import (
    CpuSplit,
    Load,
    anchor,
    definitions,
    met,
    parser,
    run_load,
    save,
    split_cpus,
    table,
)
from tests.e2e.servers import new_tenant, wait_final
from tests.support import start_server, start_service
from translation_server.config import Settings

TITLE = "Server: GET /v1/jobs/{id} against a bare Flask app"
GOAL_RATIO, GOAL_P99_MS = 0.60, 25.0
KEYS = ("requests_per_s", "p50_ms", "p99_ms")
DEFINITIONS = {
    "requests/s": "requests answered per second; the median over the rounds",
    "p50, p99": "a request's latency, from its send to its answer; the median over the rounds",
    "errors": "requests with no answer or an error status, in every round together",
    "ratio to bare": "the server's requests/s over the bare app's in the same round: the "
    "median (lowest-highest) over the rounds",
}


def populate(url: str, jobs: int) -> tuple[dict[str, str], list[str]]:
    """A client and its jobs: half completed, then half pending for an hour (created last, so
    that the instant ones do not queue behind them); its auth header and the ids, alternating
    completed and pending."""
    auth, session = new_tenant(url)["auth"], requests.Session()

    def create(n: int, duration_s: float) -> str:
        simulate = {"duration_s": duration_s, "outcome": "completed"}
        body = {
            "target_language": "es",
            "source_url": f"https://videos.example/{n}.mp4",
            "metadata": {"bench": n},
            "simulate": simulate,
        }
        resp = session.post(f"{url}/v1/jobs", json=body, headers=auth, timeout=10)
        resp.raise_for_status()
        return str(resp.json()["id"])

    done = [create(n, 0) for n in range((jobs + 1) // 2)]
    wait_final(url, done, auth, timeout=30)
    pending = [create(n, 3600) for n in range(len(done), jobs)]
    mixed = [j for pair in zip(done, pending, strict=False) for j in pair]
    return auth, mixed + done[len(pending) :]


def measure(args: Any, cpus: CpuSplit | None) -> dict[str, list[dict[str, Any]]]:
    """Start both targets (on ``cpus.targets``), load them in turns for ``args.rounds``
    rounds (from ``cpus.load``), stop both."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if cpus is not None:  # the targets, started now, inherit this; the load takes the rest
            os.sched_setaffinity(0, cpus.targets)
            stack.callback(os.sched_setaffinity, 0, cpus.targets | cpus.load)
        workdir, threads = Path(tmp), str(args.threads)
        quiet = ("--threads", threads, "--log-level", "WARNING")
        server = stack.enter_context(start_server(workdir, *quiet))
        auth, ids = populate(server.url, args.jobs)
        paths = tuple(f"/v1/jobs/{j}" for j in ids)
        body = workdir / "body.json"
        body.write_bytes(requests.get(server.url + paths[1], headers=auth, timeout=10).content)
        bare_args = ["bare", "--body-file", str(body), "--threads", threads]
        bare = stack.enter_context(start_service("scripts.stubs", bare_args, workdir))
        targets = {"server": server, "bare": bare}
        if cpus is not None:
            os.sched_setaffinity(0, cpus.load)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for n in range(args.rounds):
            for name in list(targets)[:: 1 - 2 * (n % 2)]:  # alternate: drift hits both alike
                print(f"round {n + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                load = Load(targets[name].url, paths, tuple(auth.items()), args.connections, 0)
                run_load(load._replace(duration_s=args.warmup))
                results[name].append(run_load(load._replace(duration_s=args.duration)))
                if targets[name].proc.poll() is not None:
                    raise RuntimeError(f"{name} died under load:\n{targets[name].log()[-2000:]}")
        return results


def placement(cpus: CpuSplit | None) -> str:
    """Where the targets and the load ran, in words."""
    if cpus is None:
        return "targets and load on the one CPU"
    return f"targets on CPU {_names(cpus.targets)}, the load on CPU {_names(cpus.load)}"


def _names(cpus: frozenset[int]) -> str:
    return ", ".join(map(str, sorted(cpus)))


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; print and save the figures."""
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, help="turns each target takes [5; quick 2]")
    p.add_argument("--duration", type=float, help="timed seconds per turn [5; quick 2]")
    p.add_argument("--warmup", type=float, default=1.0, help="discarded seconds before each")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=Settings().threads)
    p.add_argument("--jobs", type=int, default=50, help="jobs to rotate over (half pending)")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    cpus = split_cpus()
    results = measure(args, cpus)
    rounds = zip(results["server"], results["bare"], strict=True)
    ratios = [s["requests_per_s"] / b["requests_per_s"] for s, b in rounds]
    rows = []
    for name, runs in results.items():
        rps, p50, p99 = (statistics.median(r[k] for r in runs) for k in KEYS)
        r, errors = ratios if name == "server" else [1.0], sum(x["errors"] for x in runs)
        ratio = f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"
        rows.append(f"{name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} | {ratio}")
    ratio, first = statistics.median(ratios), results["server"][0]
    rps, _, p99 = (statistics.median(r[k] for r in results["server"]) for k in KEYS)
    text = "\n\n".join(
        [
            f"{args.rounds} rounds of {args.duration:g} s per target, each after a "
            f"{args.warmup:g} s warm-up; {first['generator']}, {first['connections']} "
            f"connections, {args.threads} waitress threads each, {args.jobs} jobs; "
            f"{placement(cpus)}; medians over the rounds.",
            definitions(DEFINITIONS),
            table("target | requests/s | p50 ms | p99 ms | errors | ratio to bare", rows),
            f"Goals: the server's requests/s {ratio:.0%} of bare's (>= {GOAL_RATIO:.0%}): "
            f"{met(ratio >= GOAL_RATIO)}; its p99 {p99:.2f} ms (< {GOAL_P99_MS:g} ms): "
            f"{met(p99 < GOAL_P99_MS)}.",
        ]
    )
    value = f"{rps:,.0f} requests/s ({ratio:.0%} of a bare Flask app's), p99 {p99:.1f} ms"
    headline = [("Server, `GET /v1/jobs/{id}`", value, f"benchmarks.md#{anchor(TITLE)}")]
    save("server", argv, TITLE, text, headline, {"args": vars(args), "rounds": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
