"""How many waitress request threads the translation server should have: measured, not guessed.

``GET /v1/jobs/{id}`` (the same job mix as ``bench_server``) is driven at 16 connections
against the server with 1, 2, 4 and 8 request threads, and against the bare Flask app on
stock waitress with its default 4 threads as the reference, all in one run, taking turns in
rotating order (``--rounds``; medians reported), under three kinds of neighbour on the
machine:

- ``none``: nothing else runs (the load generator aside);
- ``half``: another process busy half the time (4 ms of work, 4 ms asleep), as a callback
  receiver or a client sharing the machine would be;
- ``full``: another process that never sleeps, taking a core for itself;
- ``writes``: no other process, but a client creating jobs on the server being measured, at
  ``--creates-per-s`` (jobs of 0.5 s, so the scheduler starts and ends them too), to show
  how polls and writes share the request threads (the bare app has no writes to take).

With the GIL, a second request thread adds no parallel work, only hand-overs of the GIL; but
a process with more runnable threads is also given more of a contended CPU by the kernel's
scheduler. Which wins depends on the neighbour, so all three are measured.

    .venv/bin/python scripts/bench_threads.py [--rounds 3] [--duration 4] [--neighbours none,full]
        [--creates-per-s 100]

Prints one markdown table per neighbour and writes the raw figures to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import LoadResult, LoadSpec, children, pick_generator, python_executable, run_load
from bench_server import (
    WAITRESS_DEFAULT_THREADS,
    _raise_exit,
    job_request,
    median_of,
    start_bare,
    start_populated_server,
)

ROOT = Path(__file__).resolve().parent.parent
SERVER_THREADS = (1, 2, 4, 8)
BARE = f"bare, waitress defaults ({WAITRESS_DEFAULT_THREADS} threads)"

# The neighbour's loop: busy for ``busy`` seconds, then asleep for ``idle`` (0: never sleeps).
NEIGHBOUR_CODE = """
import sys, time
busy, idle = float(sys.argv[1]), float(sys.argv[2])
while True:
    until = time.perf_counter() + busy
    while time.perf_counter() < until:
        pass
    if idle:
        time.sleep(idle)
"""
NEIGHBOURS = {"none": None, "half": (0.004, 0.004), "full": (1.0, 0.0), "writes": None}
WRITE_JOB_S = 0.5


@dataclasses.dataclass
class Writes:
    """What a creating client got done during one timed run."""

    seconds: float
    latencies_ms: list[float]


class Creator:
    """Creates jobs on one server at a steady rate, from its own thread, until stopped."""

    def __init__(self, url: str, api_key: str, per_s: float) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._interval = 1.0 / per_s
        self._stop = threading.Event()
        self._latencies: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Creator:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def mark(self) -> tuple[float, int]:
        """A point to count from: now, and the creates done so far."""
        return time.perf_counter(), len(self._latencies)

    def since(self, mark: tuple[float, int]) -> Writes:
        """The seconds since ``mark`` and the latencies (ms) of the creates done since."""
        began, done = mark
        return Writes(time.perf_counter() - began, self._latencies[done:])

    def _run(self) -> None:
        session = requests.Session()
        n, next_at = 0, time.monotonic()
        while not self._stop.is_set():
            began = time.perf_counter()
            resp = session.post(
                f"{self._url}/v1/jobs",
                json=job_request(n, WRITE_JOB_S),
                headers=self._headers,
                timeout=30,
            )
            if resp.status_code != 201:
                raise RuntimeError(f"POST /v1/jobs answered {resp.status_code}: {resp.text}")
            self._latencies.append((time.perf_counter() - began) * 1000)
            n += 1
            next_at += self._interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))


@contextmanager
def neighbour(kind: str) -> Iterator[None]:
    """Run the named neighbour process while the block runs; always stop it."""
    duty = NEIGHBOURS[kind]
    if duty is None:
        yield
        return
    proc = subprocess.Popen([python_executable(), "-c", NEIGHBOUR_CODE, *map(str, duty)])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def server_name(threads: int) -> str:
    """A target's name in the tables."""
    return f"server, {threads} thread{'s' if threads > 1 else ''}"


Results = dict[str, dict[str, list[LoadResult]]]
WriteResults = dict[str, dict[str, list[Writes]]]


def run(args: argparse.Namespace, generator: str) -> tuple[Results, WriteResults]:
    """Start every target once; load them in turns under each neighbour; stop all (always)."""
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp, children() as started:
        workdir = Path(tmp)
        specs: dict[str, LoadSpec] = {}
        keys: dict[str, str] = {}
        sample = b""
        for threads in SERVER_THREADS:
            name = server_name(threads)
            server = start_populated_server(
                started, workdir / f"server-{threads}", threads, "WARNING", args
            )
            specs[name], keys[name], sample = server.spec, server.api_key, server.pending_body
        started.append(start_bare("bare", workdir, WAITRESS_DEFAULT_THREADS, sample))
        specs[BARE] = dataclasses.replace(next(iter(specs.values())), url=started[-1].url)
        names = list(specs)
        results: Results = {}
        writes: WriteResults = {}
        for kind in args.neighbours:
            results[kind] = {name: [] for name in names}
            writes[kind] = {name: [] for name in keys} if kind == "writes" else {}
            with neighbour(kind):
                for round_no in range(args.rounds):
                    print(f" {kind}: round {round_no + 1}/{args.rounds}", file=sys.stderr)
                    turn = round_no % len(names)
                    for name in names[turn:] + names[:turn]:
                        spec = specs[name]
                        if name not in writes[kind]:
                            run_load(dataclasses.replace(spec, duration_s=args.warmup), generator)
                            results[kind][name].append(run_load(spec, generator))
                            continue
                        with Creator(spec.url, keys[name], args.creates_per_s) as creator:
                            run_load(dataclasses.replace(spec, duration_s=args.warmup), generator)
                            mark = creator.mark()
                            results[kind][name].append(run_load(spec, generator))
                            writes[kind][name].append(creator.since(mark))
        return results, writes


def write_figures(runs: list[Writes]) -> dict[str, float]:
    """Creates done per second and their latency (p50, p99 in ms), over all rounds."""
    latencies = sorted(ms for w in runs for ms in w.latencies_ms)
    seconds = sum(w.seconds for w in runs)
    if not latencies:
        return {"creates_per_s": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "creates_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def table(
    kind: str, by_target: dict[str, list[LoadResult]], writes: dict[str, list[Writes]]
) -> str:
    """One neighbour's markdown table (with the creates, for ``writes``)."""
    first = next(iter(by_target.values()))[0]
    lines = [
        f"\n### Neighbour: {kind} ({len(by_target[BARE])} rounds of "
        f"{first.duration_s:.0f} s, {first.generator}, {first.connections} connections)\n",
        "| target | requests/s | p50 ms | p99 ms | errors | creates/s | create p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in by_target.items():
        m = median_of(runs)
        w = write_figures(writes[name]) if name in writes else None
        creates = (
            f"{w['creates_per_s']:.0f} | {w['p50_ms']:.1f} / {w['p99_ms']:.1f}" if w else "- | -"
        )
        lines.append(
            f"| {name} | {m['requests_per_s']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
            f"| {m['errors']:.0f} | {creates} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="turns each target takes")
    p.add_argument("--duration", type=float, default=4.0, help="timed seconds per turn")
    p.add_argument("--warmup", type=float, default=1.0, help="discarded seconds before each")
    p.add_argument("--connections", type=int, default=16, help="concurrent connections")
    p.add_argument("--jobs", type=int, default=50, help="jobs to rotate over (half pending)")
    p.add_argument(
        "--neighbours",
        type=lambda text: text.split(","),
        default=list(NEIGHBOURS),
        help="comma-separated: none, half, full, writes",
    )
    p.add_argument(
        "--creates-per-s", type=float, default=100.0, help="the writes neighbour's create rate"
    )
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument(
        "--out", type=Path, default=ROOT / "bench-results" / "threads.json", help="raw figures"
    )
    args = p.parse_args(argv)
    unknown = set(args.neighbours) - set(NEIGHBOURS)
    if unknown:
        p.error(f"--neighbours: unknown {', '.join(sorted(unknown))}; use {', '.join(NEIGHBOURS)}")
    if args.jobs < 2 or min(args.rounds, args.duration, args.connections, args.creates_per_s) <= 0:
        p.error("--jobs must be >= 2; --rounds, --duration, --connections, --creates-per-s > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the tables, write the JSON."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    generator = pick_generator(args.generator)
    signal.signal(signal.SIGTERM, _raise_exit)  # so the finally blocks stop the children
    results, writes = run(args, generator)
    for kind, by_target in results.items():
        print(table(kind, by_target, writes[kind]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "GET /v1/jobs/{id}: the server's request threads under three neighbours",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "medians": {
            kind: {name: median_of(runs) for name, runs in by_target.items()}
            for kind, by_target in results.items()
        },
        "writes": {
            kind: {name: write_figures(runs) for name, runs in by_target.items()}
            for kind, by_target in writes.items()
            if by_target
        },
        "rounds": {
            kind: {name: [dataclasses.asdict(r) for r in runs] for name, runs in by_target.items()}
            for kind, by_target in results.items()
        },
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\nraw figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
