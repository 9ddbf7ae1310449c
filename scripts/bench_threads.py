"""How many waitress request threads the translation server should have: measured, not guessed.

``GET /v1/jobs/{id}`` (the same job mix as ``bench_server``) is driven at 16 connections
against the server with 1, 2, 4 and 8 request threads, and against the bare Flask app on
stock waitress with its default 4 threads as the reference, all in one run, taking turns in
rotating order (``--rounds``; medians reported), under three kinds of neighbour on the
machine:

- ``none``: nothing else runs (the load generator aside);
- ``half``: another process busy half the time (4 ms of work, 4 ms asleep), as a callback
  receiver or a client sharing the machine would be;
- ``full``: another process that never sleeps, taking a core for itself.

With the GIL, a second request thread adds no parallel work, only hand-overs of the GIL; but
a process with more runnable threads is also given more of a contended CPU by the kernel's
scheduler. Which wins depends on the neighbour, so all three are measured.

    .venv/bin/python scripts/bench_threads.py [--rounds 3] [--duration 4] [--neighbours none,full]

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
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import LoadResult, LoadSpec, children, pick_generator, python_executable, run_load
from bench_server import (
    WAITRESS_DEFAULT_THREADS,
    _raise_exit,
    http_client,
    median_of,
    populate,
    start_bare,
    start_server,
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
NEIGHBOURS = {"none": None, "half": (0.004, 0.004), "full": (1.0, 0.0)}


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


def run(args: argparse.Namespace, generator: str) -> dict[str, dict[str, list[LoadResult]]]:
    """Start every target once; load them in turns under each neighbour; stop all (always)."""
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp, children() as started:
        workdir = Path(tmp)
        specs: dict[str, LoadSpec] = {}
        sample = b""
        for threads in SERVER_THREADS:
            name = server_name(threads)
            started.append(start_server(workdir / f"server-{threads}", threads, "WARNING"))
            post, get = http_client(started[-1].url)
            api_key, ids = populate(post, get, args.jobs)
            headers = (("Authorization", f"Bearer {api_key}"),)
            paths = tuple(f"/v1/jobs/{j}" for j in ids)
            specs[name] = LoadSpec(started[-1].url, paths, headers, args.connections, args.duration)
            _, sample = get(paths[1], dict(headers))  # a pending job: the larger body
        started.append(start_bare("bare", workdir, WAITRESS_DEFAULT_THREADS, sample))
        specs[BARE] = dataclasses.replace(next(iter(specs.values())), url=started[-1].url)
        names = list(specs)
        results: dict[str, dict[str, list[LoadResult]]] = {}
        for kind in args.neighbours:
            results[kind] = {name: [] for name in names}
            with neighbour(kind):
                for round_no in range(args.rounds):
                    print(f" {kind}: round {round_no + 1}/{args.rounds}", file=sys.stderr)
                    turn = round_no % len(names)
                    for name in names[turn:] + names[:turn]:
                        run_load(
                            dataclasses.replace(specs[name], duration_s=args.warmup), generator
                        )
                        results[kind][name].append(run_load(specs[name], generator))
        return results


def table(kind: str, by_target: dict[str, list[LoadResult]]) -> str:
    """One neighbour's markdown table."""
    first = next(iter(by_target.values()))[0]
    lines = [
        f"\n### Neighbour: {kind} ({len(by_target[BARE])} rounds of "
        f"{first.duration_s:.0f} s, {first.generator}, {first.connections} connections)\n",
        "| target | requests/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in by_target.items():
        m = median_of(runs)
        lines.append(
            f"| {name} | {m['requests_per_s']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
            f"| {m['errors']:.0f} |"
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
        help="comma-separated: none, half, full",
    )
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument(
        "--out", type=Path, default=ROOT / "bench-results" / "threads.json", help="raw figures"
    )
    args = p.parse_args(argv)
    unknown = set(args.neighbours) - set(NEIGHBOURS)
    if unknown:
        p.error(f"--neighbours: unknown {', '.join(sorted(unknown))}; use none, half, full")
    if args.jobs < 2 or min(args.rounds, args.duration, args.connections) <= 0:
        p.error("--jobs must be >= 2; --rounds, --duration and --connections positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the tables, write the JSON."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    generator = pick_generator(args.generator)
    signal.signal(signal.SIGTERM, _raise_exit)  # so the finally blocks stop the children
    results = run(args, generator)
    for kind, by_target in results.items():
        print(table(kind, by_target))
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
