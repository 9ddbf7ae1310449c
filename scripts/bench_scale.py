"""10,000 jobs in flight at once, all resolved by ONE client.

One translation server (as many worker slots as jobs, error rate 0) and the project's callback
receiver, sharing the server's credentials file. Then:

1. calibrate: a few throw-away jobs measure one creation's cost; creating N jobs is predicted
   to take ``--growth`` x N x that cost (creation slows as jobs pile up), since a job's pinned
   end cannot move once it is created;
2. create ``--jobs`` jobs from 8 threads through one ``TranslationClient`` (callback: the
   receiver), each with ``simulate.duration_s`` pinned so that it ends inside a window that
   opens after the predicted end of creation and the side load: every job is in flight at once;
3. while all are in flight, ``client.as_completed`` (the library under test) waits in a thread,
   and a side load of ``GET /v1/jobs/{id}`` (random ids, ``scripts.common``'s generator)
   measures status latency at that load;
4. the window opens; ``as_completed`` resolves every job; its detection paths, lag and status
   requests are counted.

Memory: each process's VmRSS at the end of each phase, and its VmHWM (peak) at the end; CPU
per phase, from ``/proc``.

    .venv/bin/python -m scripts.bench_scale [--quick] [--jobs 10000] [--side-load-seconds 10]

Exits 1 unless every job was in a worker slot at once and every one was resolved.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from client_lib import TranslationClient
from client_lib.models import parse_time
from scripts.common import (
    Load,
    anchor,
    cpu_seconds,
    definitions,
    memory_mb,
    metrics,
    parser,
    received_times,
    run_load,
    save,
    summary_ms,
    table,
)
from tests.support import start_receiver, start_server

TITLE = "Scale: jobs in flight at once, one client"
THREADS, PROBE_WARMUP, PROBE_ROUNDS, PROBE_JOBS = 8, 30, 3, 100
SAFETY, SETTLE_S = 1.1, 3.0  # margin on the prediction; side load's end to the first job's end
DRAIN_TIMEOUT_S = 120.0
PHASES = ("start", "created", "side load", "resolved")
DEFINITIONS = {
    "detection lag": "when the client knew a job ended minus its `finished_at`",
    "stored": "the receiver's `received_at` for the job's webhook",
    "peak memory": "the process's VmHWM at the end; RSS: at the end of each phase",
}


class Scale:
    """One run: the services, the client, the rows of the figures' table, the phase marks."""

    def __init__(self, args: Any, client: TranslationClient, pids: dict[str, int]) -> None:
        self.args, self.client, self.pids = args, client, pids
        self.rows: dict[str, Any] = {}
        self.resolved, self.per_job = 0, 0.0
        self.marks: list[tuple[float, dict[str, dict[str, float]]]] = []
        self.mark()

    def mark(self) -> None:
        """The end of a phase: each process's memory and CPU seconds so far."""
        procs = {k: {**memory_mb(pid), "cpu": cpu_seconds(pid)} for k, pid in self.pids.items()}
        self.marks.append((time.monotonic(), procs))

    def in_threads(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """Map ``fn`` over ``items`` in ``THREADS`` threads (the client is thread-safe)."""
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(fn, items))

    def calibrate(self) -> float:
        """Seconds per creation with nothing in flight: the median of a few rounds of
        throw-away jobs that end at once, after a warm-up that opens the connections."""

        def create(_: int) -> None:
            self.client.create_job(
                callback_url=None, simulate={"duration_s": 0, "outcome": "completed"}
            )

        self.in_threads(create, range(PROBE_WARMUP))
        rounds = []
        for _ in range(PROBE_ROUNDS):
            started = time.perf_counter()
            self.in_threads(create, range(PROBE_JOBS))
            rounds.append((time.perf_counter() - started) / PROBE_JOBS)
        return sorted(rounds)[len(rounds) // 2]

    def create_all(self, callback: str) -> tuple[list[str], float]:
        """Probe, predict, then create every job to end in the window; the ids, and when the
        window opens."""
        args, per_job = self.args, self.calibrate()
        predicted, started = args.growth * args.jobs * per_job, time.time()
        opens = started + SAFETY * predicted + args.side_load_seconds + SETTLE_S
        rng = random.Random(args.seed)
        ends = [opens + rng.uniform(0, args.spread_seconds) for _ in range(args.jobs)]

        def create(end: float) -> tuple[str, float]:
            pinned = {"duration_s": round(max(0.0, end - time.time()), 3), "webhook": "deliver"}
            simulate = {**pinned, "outcome": "completed"}
            job = self.client.create_job(
                callback_url=callback, target_language="es", simulate=simulate
            )
            return job.id, time.time()

        created = self.in_threads(create, ends)
        returned = sorted(at for _, at in created)
        tenths = [started] + [returned[k * len(returned) // 10 - 1] for k in range(1, 11)]
        rates = [
            f"{len(returned) / 10 / max(b - a, 1e-9):.0f}" for a, b in itertools.pairwise(tenths)
        ]
        seconds = returned[-1] - started
        self.rows[f"creation ({THREADS} threads, one client)"] = (
            f"{seconds:.1f} s, {args.jobs / seconds:.0f} jobs/s (predicted {predicted:.1f} s from "
            f"a probe of {per_job * 1000:.2f} ms/job)"
        )
        self.rows["creation jobs/s by tenth of the run"] = " ".join(rates)
        return [job_id for job_id, _ in created], opens

    def resolve(self, ids: list[str], url: str, opens: float) -> bool:
        """``as_completed`` over every id in a thread, the side load meanwhile; whether every
        job was in a worker slot at once and every one was resolved."""
        args, statuses, end = self.args, Counter[str](), dict[str, Any]()

        def wait_all() -> None:
            try:
                budget = opens + args.spread_seconds + DRAIN_TIMEOUT_S - time.time()
                for job in self.client.as_completed(ids, timeout=budget):
                    statuses[job.status.value] += 1
            except Exception as exc:  # a thread's boundary: report it, never hide it
                end["error"] = f" **{type(exc).__name__}: {exc}**"
            end.update(at=time.time(), cpu=time.thread_time())

        waiter = threading.Thread(target=wait_all, daemon=True)
        waiter.start()

        def processing() -> int:
            """Jobs in a worker slot now (the server's ``vt_jobs`` gauge)."""
            return int(metrics(url, "vt_jobs{").get('vt_jobs{state="processing"}', 0))

        rng, auth = random.Random(args.seed), (("Authorization", f"Bearer {self.client.api_key}"),)
        paths = tuple(f"/v1/jobs/{rng.choice(ids)}" for _ in range(2000))
        before = processing()
        load = run_load(Load(url, paths, auth, 8, args.side_load_seconds))
        after = processing()
        self.mark()
        waiter.join()
        resolved = self.resolved = sum(statuses.values())
        rows = self.rows
        rows["jobs created / resolved"] = (
            f"{args.jobs} / {resolved} {dict(statuses)}{end.get('error', '')}"
        )
        rows["in a worker slot before / after the side load"] = (
            f"{before} / {after} (of {args.jobs})"
        )
        rows[
            f"status side load ({load['generator']}, 8 connections, {load['duration_s']:.0f} s)"
        ] = (
            f"{load['requests_per_s']:.0f} requests/s, p50 {load['p50_ms']:.1f} ms, p99 "
            f"{load['p99_ms']:.1f} ms, max {load['max_ms']:.0f} ms, errors {load['errors']}"
        )
        spread = f"pinned ends span {args.spread_seconds:g} s"
        rows["last job resolved after the window opened"] = f"{end['at'] - opens:.1f} s ({spread})"
        rows["CPU of the thread in as_completed"] = f"{end['cpu']:.2f} s"
        return before == args.jobs and resolved == args.jobs

    def detections(self, ids: Sequence[str], received: dict[str, float]) -> None:
        """How the client learned of each end (path), how late, where a webhook's lag went."""
        found = [d for i in ids if (d := self.client.detection(i)) is not None]
        hooked = [
            (d, received[d.job.id], parse_time(d.job.finished_at) or 0.0)
            for d in found
            if d.path == "webhook" and d.job.id in received
        ]
        paths = Counter(d.path for d in found) | {"unresolved": len(ids) - len(found)}
        stats, rows = self.client.stats, self.rows
        rows["detection paths"] = ", ".join(f"{k} {v}" for k, v in sorted(paths.items()))
        rows["detection lag"] = dist(d.lag_s for d in found if d.lag_s is not None)
        rows["webhook: job end to stored by the receiver"] = dist(at - e for _, at, e in hooked)
        rows["webhook: stored to detected by the client"] = dist(
            d.detected_at - at for d, at, _ in hooked
        )
        per_job = self.per_job = stats.status_requests / len(ids)
        rows["status requests (per job)"] = f"{stats.status_requests} ({per_job:.4f})"
        rows["feed requests"] = stats.waiting.feed_requests
        rows["client mode changes"] = (
            " -> ".join(m for _, m, _ in stats.waiting.mode_changes) or "none"
        )

    def process_rows(self) -> list[str]:
        """Per process: peak memory, RSS at the end of each phase, CPU seconds (%) in each."""
        rows, marks = [], self.marks
        for name in self.pids:
            cpu = []
            for phase, (t0, a), (t1, b) in zip(PHASES[1:], marks, marks[1:], strict=False):
                used = b[name]["cpu"] - a[name]["cpu"]
                cpu.append(f"{phase} {used:.1f} s ({100 * used / (t1 - t0):.0f} %)")
            rss = " / ".join(f"{m[name]['VmRSS']:.0f}" for _, m in marks)
            rows.append(
                f"{name} | {marks[-1][1][name]['VmHWM']:.0f} MB | {rss} MB | {', '.join(cpu)}"
            )
        return rows


def dist(values_s: Iterable[float]) -> str:
    """p50, p99 and max of durations in seconds, in ms."""
    return "p50 {p50:.1f} / p99 {p99:.1f} / max {max:.1f} ms".format(**summary_ms(values_s))


def run(args: Any) -> tuple[Scale, bool]:
    """Start both services, create, resolve, always stop them; the run, and whether every
    job was in flight at once and resolved."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        workdir, workers = Path(tmp), str(args.jobs + PROBE_JOBS + 100)
        opts = ["--seed", str(args.seed), "--workers", workers, "--error-rate", "0"]
        opts += ["--duration-min", "30", "--duration-max", "40", "--log-level", "WARNING"]
        server = stack.enter_context(start_server(workdir, *opts))
        receiver = stack.enter_context(start_receiver(workdir, "--log-level", "warning"))
        creds = str(workdir / "local.json")
        client = TranslationClient(
            base_url=server.url, receiver_url=receiver.url, credentials_file=creds, seed=args.seed
        )
        pids = {
            "server": server.proc.pid,
            "receiver": receiver.proc.pid,
            "bench (client)": os.getpid(),
        }
        scale = Scale(args, stack.enter_context(client), pids)
        ids, opens = scale.create_all(f"{receiver.url}/webhooks")
        scale.mark()
        ok = scale.resolve(ids, server.url, opens)
        scale.mark()
        scale.detections(ids, received_times(receiver.url, client.receiver_token))
        hooks = metrics(server.url, "vt_webhook_attempts_total{")
        hooks |= metrics(receiver.url, "receiver_webhooks_received_total{")
        counts = ", ".join(f"{k.split('{')[1].rstrip('}')} {v:.0f}" for k, v in hooks.items())
        scale.rows["webhooks (server attempts; receiver)"] = counts
    return scale, ok


def main(argv: Sequence[str]) -> int:
    """Run the scenario; print and save."""
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, help="jobs in flight at once [10000; quick 1000]")
    p.add_argument("--side-load-seconds", type=float, help="GET side load [10; quick 3]")
    p.add_argument("--spread-seconds", type=float, help="window of the pinned ends [30; quick 10]")
    p.add_argument(
        "--growth",
        type=float,
        default=2.5,
        help="creation time / (jobs x a probe's "
        "cost); raise it if fewer than --jobs are in a slot at once",
    )
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    args.jobs = args.jobs or (1000 if args.quick else 10_000)
    args.side_load_seconds = args.side_load_seconds or (3.0 if args.quick else 10.0)
    args.spread_seconds = args.spread_seconds or (10.0 if args.quick else 30.0)
    scale, ok = run(args)
    rows, procs = scale.rows, scale.process_rows()
    text = (
        f"{args.jobs:,} jobs in flight at once.\n\n{definitions(DEFINITIONS)}\n\n"
        f"{table('figure | value', rows.items())}\n\n"
        + table(f"process | peak memory | RSS {' / '.join(PHASES)} | CPU by phase", procs)
    )
    peak = scale.marks[-1][1]["server"]["VmHWM"]
    value = f"{scale.resolved:,} resolved; {scale.per_job:.4f} status requests per job; "
    value += f"server peak memory {peak:.0f} MB"
    headline = [
        (f"{args.jobs:,} jobs in flight, one client", value, f"benchmarks.md#{anchor(TITLE)}")
    ]
    save("scale", argv, TITLE, text, headline, {"args": vars(args), "rows": rows, "procs": procs})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
