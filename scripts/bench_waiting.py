"""How fast and how cheaply a caller learns that a job ended: this library and the usual pollers.

One run measures every cell of a matrix, with the same seeded jobs for every strategy:

- shapes of calling code: ``one job`` (K callers in threads, each its own client: create one
  job, ``wait``), ``sequential`` (one caller creates 10 jobs, then waits on each in turn),
  ``as_completed`` (one caller, N jobs), ``processes`` (P spawned processes, M jobs each, then
  ``as_completed``);
- webhook faults (only the library uses webhooks): none, drop 1/10, drop all, receiver down,
  receiver flapping, duplicates, 503 then retry (``waiting.matrix.FAULT_NOTES`` says how each
  is made);
- strategies: ``library`` (``TranslationClient``, its requests counted by a transport),
  ``poll 1s``, ``poll 5s``, ``backoff`` (1 s doubling to 32 s, jitter 0.5-1.5), ``doubling``
  (from 1 s, no cap, no jitter), ``heygen-cli`` (2 s doubling to 30 s, jitter 0.75-1.25). A
  poller GETs ``/v1/jobs/{id}`` until the job is final, a thread per job on one keep-alive
  session (one per process; a cell's sessions hold at most 32 connections); the create answer
  is its first look, except in ``sequential``, where it starts (with a GET) when the caller
  starts waiting on the job. Pollers create their jobs without a callback URL, so no fault
  touches them: they run once per shape, and their figures stand under every fault.

Job i of a shape has the same duration (uniform 5-15 s), estimator factor (``max(0.3,
gauss(1, 0.2))``) and webhook fault for every strategy, pinned through ``simulate``. Every cell
has its own seeded server (``--workers 2000``: nothing queues) and, for the library, its own
receiver. The library runs first, one cell at a time (in quick mode a fault's four shapes at
once); then the pollers, every shape and strategy at once: their load never overlaps the
library's cells.
Lag, status and feed requests are defined in the document; the server's count of status
requests (its ``/metrics``) and the client's (``client.stats``) stand beside the transport's.

    .venv/bin/python -m scripts.bench_waiting [--quick] [--seed 1] [--timeout 120]
        [--faults none,drop-all] [--shapes one-job,sequential] [--no-pollers]

Writes docs/waiting-benchmark.md (a table per fault, PASS/MISS per goal) and its chart, and
bench-results/waiting.json. A missed goal is reported, not an error: the exit status is
non-zero only when a cell crashed or a job was not resolved.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from scripts.common import ROOT, command, fmt_s, machine, parser, save
from scripts.waiting.cells import CellRun, run_matrix
from scripts.waiting.chart import write_chart
from scripts.waiting.matrix import FAULTS, FULL, QUICK, SHAPES, job_specs, jobs
from scripts.waiting.report import DEFINITIONS, Figures, Report


def names(known: Sequence[str]) -> Callable[[str], list[str]]:
    """A parser of comma-separated names, in ``known``'s order; dashes for spaces."""
    slugs = {re.sub(r"[^a-z0-9/_]+", "-", k): k for k in known}

    def parse(value: str) -> list[str]:
        if unknown := set(value.split(",")) - set(slugs):
            raise argparse.ArgumentTypeError(f"unknown {sorted(unknown)}; known: {list(slugs)}")
        return [name for slug, name in slugs.items() if slug in value.split(",")]

    return parse


def progress(run: CellRun) -> None:
    """One line per cell as it ends (stderr)."""
    text = f"crashed: {run.error}"
    if not run.error:
        fig = Figures.of(run)
        text = (
            f"{fig.resolved}/{fig.jobs} resolved, p50 {fmt_s(fig.lag_p50)}, p99 "
            f"{fmt_s(fig.lag_p99)}, {fig.status:.2f} status requests/job, {run.wall_s:.1f} s"
        )
    print(f"  {run.fault} / {run.shape} / {run.strategy}: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str]) -> int:
    """Run the matrix; write the document, the chart and the raw figures."""
    p = parser(__doc__)
    p.add_argument("--seed", type=int, default=1, help="jobs' and servers' seed")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a cell may wait")
    p.add_argument("--faults", type=names(FAULTS), default=list(FAULTS), help="a subset")
    p.add_argument("--shapes", type=names(SHAPES), default=list(SHAPES), help="a subset")
    p.add_argument("--no-pollers", action="store_true", help="the library's cells only")
    p.add_argument("--docs-dir", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    args.sizes = QUICK if args.quick else FULL
    started, info = time.monotonic(), machine()
    specs = {shape: job_specs(args.seed, shape, jobs(args.sizes, shape)) for shape in args.shapes}
    runs = run_matrix(args, specs, progress)
    report = Report(args, info, command("scripts.bench_waiting", argv), runs)
    args.docs_dir.mkdir(parents=True, exist_ok=True)
    (args.docs_dir / "waiting-benchmark.md").write_text(report.markdown(time.monotonic() - started))
    print(write_chart(report, args.docs_dir / "waiting-benchmark.png"), file=sys.stderr)
    missed = sum(not ok for *_, ok, _ in report.checks)
    text = (
        "The whole matrix, with every goal and the chart: [waiting-benchmark.md]"
        f"(waiting-benchmark.md). {DEFINITIONS}\n\nEach cell: lag p50, then status requests per "
        f"job; goals met of those checked ({missed} missed in all).\n\n{report.summary()}"
    )
    raw = {
        "sizes": args.sizes,
        "checks": report.checks,
        "cells": [r.as_dict() for r in runs],
    }
    save("waiting", argv, "Waiting: learning that a job ended", text, report.headline(), raw)
    failed = [r for r in runs if r.error or any(s.lag_s is None for s in r.seen)]
    for r in failed:
        what = f"crashed: {r.error}" if r.error else "jobs not resolved"
        print(f"FAILED {r.fault} / {r.shape} / {r.strategy}: {what}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
