"""Each cell's figures, the goal checks of the library's cells, and the markdown."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

from scripts.common import describe_machine, fmt_s, percentile, table

from .cells import CellRun
from .matrix import FAULT_NOTES, LIBRARY, PEERS, STRATEGIES, Seen, describe, is_lost, jobs

HEALTHY, HEALTHY_P50_S, HEALTHY_P99_S = ("none", "duplicates", "503 then retry"), 0.015, 0.050
DEGRADED = ("drop all", "receiver down", "receiver flapping")
DEGRADED_P50_S, DEGRADED_REQUESTS = 1.0, 3.0
LOST_P50_S, LOST_P99_S, LOST_REQUESTS = 1.5, 3.0, 2.0
DEFINITIONS = (
    "Lag: the moment the caller knows a job ended (`wait`/`as_completed` returned it, or a "
    "poller's GET returned it final) minus the later of the job's `finished_at` (as the server "
    "reports it) and the moment the caller started asking about it. Status requests: "
    "`GET /v1/jobs/{id}` and `GET /v1/jobs?ids=`, each request counting 1, per job of the "
    "cell; feed requests: the library's requests to the receiver's `/v1/events`, per job."
)
SETUP = (
    "Every cell has its own translation server (seeded, `--workers 2000`) and, for the "
    "library, its own callback receiver; job i of a shape has the same duration, estimator "
    "factor and webhook fault for every strategy. The library's cells run one at a time (in "
    "quick mode a fault's four shapes at once); the pollers run after the library, every "
    "shape and strategy at once."
)


@dataclasses.dataclass(slots=True)
class Figures:
    """What a cell's row shows (lag in seconds, requests per job); for a fault that drops
    webhooks, the same of the library's lost jobs, and the status lookups of the others."""

    jobs: int
    resolved: int
    lag_p50: float | None
    lag_p99: float | None
    status: float
    feed: float
    paths: dict[str, int]
    lost: Figures | None = None
    lookups_of_others: int = 0

    @classmethod
    def of(cls, run: CellRun, seen: Sequence[Seen] | None = None) -> Figures:
        """The figures of ``seen`` (by default every job of the run)."""
        jobs = run.seen if seen is None else seen
        lags = sorted(lag for s in jobs if (lag := s.lag_s) is not None)
        p50, p99 = (percentile(lags, 50), percentile(lags, 99)) if lags else (None, None)
        n, kinds, paths = len(jobs) or 1, run.counts.kinds, Counter(s.path for s in jobs if s.path)
        fig = cls(len(jobs), len(lags), p50, p99, kinds["status"] / n, kinds["feed"] / n, paths)
        lost = [s for s in jobs if is_lost(run.fault, s.index)]
        if run.strategy == LIBRARY and lost and seen is None:
            fig.lost = cls.of(run, lost)
            fig.lookups_of_others = sum(s.lookups for s in jobs if not is_lost(run.fault, s.index))
        return fig


def stages(seen: Sequence[Seen]) -> str:
    """p50 / p99 of each part of the webhook-found jobs' lag, two table cells."""
    parts = [s for job in seen if (s := job.stages()) is not None]
    if not parts:
        return "- | -"
    cols = [sorted(p[i] for p in parts) for i in (0, 1)]
    return " | ".join(f"{fmt_s(percentile(c, 50))} / {fmt_s(percentile(c, 99))}" for c in cols)


def at_most(value: float | None, limit: float, what: str) -> tuple[bool, str]:
    """A goal ``value <= limit`` on a duration."""
    return value is not None and value <= limit, f"{what} {fmt_s(value)} <= {fmt_s(limit)}"


def checks(fault: str, shape: str, lib: Figures, peers: dict[str, Figures]) -> list[Any]:
    """The goals of one library cell: (met, what)."""
    per_job = f"status requests {lib.status:.2f}/job"
    out = [(lib.resolved == lib.jobs, f"every job resolved ({lib.resolved}/{lib.jobs})")]
    if fault in HEALTHY:
        out += [at_most(lib.lag_p50, HEALTHY_P50_S, "lag p50")]
        out += [at_most(lib.lag_p99, HEALTHY_P99_S, "lag p99"), (lib.status == 0, f"{per_job} = 0")]
    if (lost := lib.lost) is not None and (fault == "drop 1/10" or shape == "one job"):
        ok, text = at_most(lost.lag_p50, LOST_P50_S, "lost jobs' lag p50")
        out += [(ok and lost.resolved == lost.jobs, text)]
        out += [at_most(lost.lag_p99, LOST_P99_S, "lost jobs' lag p99")]
        text = f"status requests per lost job {lost.status:.2f} <= {LOST_REQUESTS:.0f}"
        out += [(lost.status <= LOST_REQUESTS, f"{text} ({lost.jobs} lost)")]
        if lost.jobs < lib.jobs:
            n = lib.lookups_of_others
            out.append((n == 0, f"status lookups of the other jobs {n} = 0"))
    if fault in DEGRADED:
        out += [at_most(lib.lag_p50, DEGRADED_P50_S, "lag p50")]
        out += [(lib.status <= DEGRADED_REQUESTS, f"{per_job} <= {DEGRADED_REQUESTS:.0f}")]
    if peers:
        low = min(peers, key=lambda k: peers[k].status)
        text = f"{per_job} <= every poller's (lowest: {low} {peers[low].status:.2f})"
        out.append((lib.status <= peers[low].status, text))
    for name, peer in peers.items():
        if name in ("backoff", "heygen-cli"):
            a, b = lib.lag_p50, peer.lag_p50
            ok = a is not None and b is not None and a < b
            out.append((ok, f"lag p50 {fmt_s(a)} < {name}'s {fmt_s(b)}"))
    return out


class Report:
    """Every cell's run and figures, and the goal checks as (fault, shape, met, what)."""

    def __init__(self, args: Any, info: dict[str, Any], command: str, runs: list[CellRun]) -> None:
        self.args, self.info, self.command, self.runs = args, info, command, runs
        self.figs = {(r.fault, r.shape, r.strategy): Figures.of(r) for r in runs if not r.error}
        self.checks: list[tuple[str, str, bool, str]] = []
        for fault in args.faults:
            for shape in args.shapes:
                if (lib := self.fig(fault, shape, LIBRARY)) is not None:
                    peers = {p: f for p in PEERS if (f := self.fig(fault, shape, p)) is not None}
                    for ok, text in checks(fault, shape, lib, peers):
                        self.checks.append((fault, shape, ok, text))

    def run(self, fault: str, shape: str, strategy: str) -> CellRun | None:
        """A cell's run (a poller's: the one run of its shape)."""
        key = (fault if strategy == LIBRARY else "*", shape, strategy)
        return next((r for r in self.runs if (r.fault, r.shape, r.strategy) == key), None)

    def fig(self, fault: str, shape: str, strategy: str) -> Figures | None:
        """A cell's figures (None when it did not run or crashed)."""
        return self.figs.get((fault if strategy == LIBRARY else "*", shape, strategy))

    def label(self, shape: str) -> str:
        """The shape and its size."""
        return f"{shape} ({describe(self.args.sizes, shape)})"

    def rows(self, fault: str) -> tuple[list[str], list[str], list[str]]:
        """The fault's rows: every cell; the library's lost jobs; the library's requests."""
        cells, lost, requests = [], [], []
        for shape in self.args.shapes:
            for strategy in STRATEGIES:
                if (run := self.run(fault, shape, strategy)) is None:
                    continue
                lib, fig = strategy == LIBRARY, self.fig(fault, shape, strategy)
                star = "" if lib else " \\*"
                head = f"{self.label(shape)} | {strategy}{star}"
                if fig is None:
                    cells.append(f"{head} | crashed: {run.error} |||||")
                    continue
                found = ", ".join(f"{k} {v}" for k, v in sorted(fig.paths.items())) or "-"
                cells.append(
                    f"{head} | {fig.resolved}/{fig.jobs} | {fmt_s(fig.lag_p50)} | "
                    f"{fmt_s(fig.lag_p99)} | {fig.status:.2f} | "
                    + (f"{fig.feed:.2f} | {found}" if lib else "- | poll")
                )
                if not lib:
                    continue
                if (f := fig.lost) is not None:
                    gone = [s for s in run.seen if is_lost(fault, s.index)]
                    each = [f"#{s.index} {fmt_s(s.lag_s)} ({s.lookups}, {s.path})" for s in gone]
                    each = each[:12] + (["... (in the JSON)"] if each[12:] else [])
                    lost.append(
                        f"{shape} | {f.resolved}/{f.jobs} | {fmt_s(f.lag_p50)} | "
                        f"{fmt_s(f.lag_p99)} | {f.status:.2f} | {fig.lookups_of_others} | "
                        + ", ".join(each)
                    )
                c, failed = run.counts, {k: v for k, v in run.counts.kinds.items() if "failed" in k}
                requests.append(
                    f"{shape} | {c.kinds['status']} / {c.client_status} / "
                    f"{run.server_status_requests} | {c.kinds['feed']} | {stages(run.seen)} | "
                    f"{failed or '-'} | {run.proxy or '-'} | {run.wall_s:.1f}"
                )
        return cells, lost, requests

    def fault_section(self, fault: str) -> str:
        """One fault: what it is, its cells, the library's lost jobs and requests, the goals."""
        cells, lost, requests = self.rows(fault)
        head = "shape | strategy | resolved | lag p50 | lag p99 | status requests/job | feed "
        out = [
            f"## Fault: {fault}",
            FAULT_NOTES[fault],
            table(head + "requests/job | found by", cells),
            "\\* pollers create their jobs without a callback URL: one run per shape, "
            "the same figures under every fault.",
        ]
        if lost:
            out += [
                "The library's lost jobs (webhook dropped); per lost job: its lag (status "
                "requests naming it, how it was found)",
                table(
                    "shape | found | lag p50 | "
                    "lag p99 | status requests per lost job | lookups of the other jobs | per "
                    "lost job",
                    lost,
                ),
            ]
        out += [
            "The library's requests: status requests counted by its transport / by the "
            "client itself / by the server; feed requests; where a webhook-found job's lag went "
            "(p50 / p99: from its end to the receiver's `received_at`, millisecond resolution; "
            "from then to the caller knowing); those with no answer; the fault's proxy",
            table(
                "shape | status requests | feed | end to stored | stored to known | unanswered | "
                "proxy | wall s",
                requests,
            ),
        ]
        goals = [
            f"- {'PASS' if ok else 'MISS'} {s}: {t}" for f, s, ok, t in self.checks if f == fault
        ]
        return "\n\n".join(out + (["Goals:\n\n" + "\n".join(goals)] if goals else []))

    def markdown(self, wall_s: float) -> str:
        """The whole document: header, definitions, one section per fault."""
        args, missed = self.args, [c for c in self.checks if not c[2]]
        sizes = ", ".join(map(self.label, args.shapes))
        mode = (
            "**quick mode** (fewer jobs per cell than the full run)" if args.quick else "full mode"
        )
        head = [
            "# Waiting benchmark: how fast and how cheaply a caller learns that a job ended",
            "Generated by `scripts/bench_waiting.py`; every figure below is what this run "
            "measured.",
            f"- machine: {describe_machine(self.info)}\n- date: {self.info['date']}\n"
            f"- command: `{self.command}`\n- {mode}: {sizes}; "
            f"seed {args.seed}; the run took {wall_s:.0f} s\n"
            f"- goals: {len(self.checks) - len(missed)} met, {len(missed)} missed",
            DEFINITIONS,
            SETUP,
            "![lag p50 against status requests per job](waiting-benchmark.png)"
            "\n\n(The chart draws a lag p50 below 0.1 ms at 0.1 ms.)",
        ]
        if missed:
            head += ["## Goals missed", "\n".join(f"- {f} / {s}: {t}" for f, s, _, t in missed)]
        return "\n\n".join(head + [self.fault_section(fault) for fault in args.faults]) + "\n"

    def summary(self) -> str:
        """Per fault, the library's lag p50 and status requests per job in each shape, and its
        goals met; then each poller, the same under every fault."""

        def cells(fault: str, strategy: str) -> str:
            figs = [self.fig(fault, shape, strategy) for shape in self.args.shapes]
            return " | ".join(
                "-" if f is None else f"{fmt_s(f.lag_p50)}, {f.status:.2f}" for f in figs
            )

        rows = []
        for fault in self.args.faults:
            met = [ok for f, _, ok, _ in self.checks if f == fault]
            rows.append(f"library, {fault} | {cells(fault, LIBRARY)} | {sum(met)}/{len(met)}")
        rows += [
            f"{peer}, any fault | {cells('*', peer)} |"
            for peer in PEERS
            if not self.args.no_pollers
        ]
        return table(
            " | ".join(["strategy, fault", *map(self.label, self.args.shapes), "goals met"]), rows
        )

    def headline(self) -> list[tuple[str, str, str]]:
        """The README's rows, from the ``as_completed`` shape: (figure, value, link)."""
        shape, link, out = "as_completed", "waiting-benchmark.md#fault-", []
        if (ok := self.fig("none", shape, LIBRARY)) is not None:
            text = f"lag p50 {fmt_s(ok.lag_p50)}, p99 {fmt_s(ok.lag_p99)}; {ok.status:.2f} status "
            text += "requests per job"
            if (poll := self.fig("*", shape, "poll 1s")) is not None:
                text += (
                    f" (polling every 1 s: p50 {fmt_s(poll.lag_p50)}, {poll.status:.2f} per job)"
                )
            out.append(
                (
                    f"Learning a job ended, {shape} of {jobs(self.args.sizes, shape)}",
                    text,
                    link + "none",
                )
            )
        if (drop := self.fig("drop 1/10", shape, LIBRARY)) is not None and (f := drop.lost):
            text = f"p50 {fmt_s(f.lag_p50)}, p99 {fmt_s(f.lag_p99)}; {f.status:.2f} status requests"
            out.append(("A lost webhook found after", f"{text} per lost job", link + "drop-110"))
        if (down := self.fig("receiver down", shape, LIBRARY)) is not None:
            text = f"lag p50 {fmt_s(down.lag_p50)}; {down.status:.2f} status requests per job"
            out.append(("Receiver down: learning a job ended", text, link + "receiver-down"))
        return out
