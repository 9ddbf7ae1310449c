"""Scale run (issue 6): 10,000 jobs in flight at once, all resolved by ONE client.

One translation server (child process, port 0, its own SQLite file, as many worker slots as
jobs, error rate 0) and the project's callback receiver (``python -m callback_receiver``,
sharing the server's credentials file as ``start_stack`` does). Then:

1. calibrate: a few throw-away jobs measure the cost of one creation on this machine; the cost
   grows with the jobs already in flight, so the creation time of ``--jobs`` is predicted as
   ``--growth`` x jobs x that cost (a job's pinned end cannot move once it is created, so the
   first job's duration must cover the whole creation);
2. create ``--jobs`` jobs from ``CREATE_THREADS`` threads through one ``TranslationClient``
   (keep-alive sessions, ``callback_url`` = the receiver's ``/webhooks``), each with
   ``simulate.duration_s`` pinned so that it ends inside a window that opens after the
   predicted end of creation plus the side load: every job is in flight at once;
3. while all of them are in flight, ``client.as_completed`` (the library under test) waits in
   a thread, and a side load of ``GET /v1/jobs/{id}`` (random ids, keep-alive connections,
   ``wrk`` or the Python generator of ``bench_common``) measures status latency at that load;
4. the finish window opens; ``as_completed`` resolves every job; detection paths, lag and the
   client's status requests are counted.

A sampler reads ``/proc/<pid>/status`` (VmRSS, VmHWM) and ``/proc/<pid>/stat`` (CPU) of the
server, the receiver and this process every 0.5 s; peak memory is VmHWM at the end.

    .venv/bin/python scripts/bench_scale.py [--jobs 10000] [--side-load-seconds 10]

Prints a markdown table and writes the raw figures to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import requests
from bench_common import (
    ChildService,
    LoadResult,
    LoadSpec,
    children,
    percentile,
    pick_generator,
    run_load,
    start_callback_receiver,
    start_translation_server,
)

from client_lib import TranslationClient, WaitTimeout
from client_lib.models import Event, parse_time
from client_lib.waiting import Detection

ROOT = Path(__file__).resolve().parent.parent
CREATE_THREADS = 8
PROBE_WARMUP = 30
PROBE_ROUNDS = 3
PROBE_JOBS = 100  # per round; the median round counts (the machine may be shared)
# A creation costs more as jobs pile up (its answer's estimate reads the busy worker slots):
# creating N jobs takes about GROWTH x N x the probe's cost of one (measured 1.16 at 10,000
# on the reference machine; 2.1 before the server's writer loop of 01b1fd8).
GROWTH = 2.5  # creation slows as jobs pile up: 1.5x the probe measured here, with margin
SAFETY = 1.1  # the prediction may be this much too low and every job is still in flight
SETTLE_S = 3.0  # between the side load's end and the first job's end
SIDE_CONNECTIONS = 8
SIDE_PATHS = 2000
SAMPLE_EVERY_S = 0.5
DRAIN_TIMEOUT_S = 120.0
HTTP_TIMEOUT_S = 30.0


# --- child processes --------------------------------------------------------------------------


def start_server(workdir: Path, *, workers: int, seed: int) -> ChildService:
    """The translation server: ``workers`` slots, no errors, quiet logs, demo credentials."""
    return start_translation_server(
        workdir,
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--error-rate",
        "0",
        "--duration-min",
        "30",
        "--duration-max",
        "40",
    )


# --- sampling memory and CPU ------------------------------------------------------------------


def proc_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB (empty once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {m[1]: int(m[2]) for m in re.finditer(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Monitor:
    """Samples RSS and CPU of named processes every ``SAMPLE_EVERY_S`` in a thread."""

    pids: dict[str, int]
    started: float = dataclasses.field(default_factory=time.monotonic)
    samples: dict[str, list[tuple[float, int, float]]] = dataclasses.field(default_factory=dict)
    marks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling, and mark the start."""
        self.mark("start")
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (the last sample is taken first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(SAMPLE_EVERY_S):
                self._sample()
                return

    def _sample(self) -> None:
        at = time.monotonic() - self.started
        for name, pid in self.pids.items():
            rss = proc_memory_kb(pid).get("VmRSS", 0)
            self.samples.setdefault(name, []).append((at, rss, cpu_seconds(pid)))

    def mark(self, phase: str) -> None:
        """Record every process's RSS, peak and CPU at the end of a phase."""
        at = round(time.monotonic() - self.started, 2)
        procs = {
            name: {**proc_memory_kb(pid), "cpu_s": round(cpu_seconds(pid), 2)}
            for name, pid in self.pids.items()
        }
        self.marks.append({"phase": phase, "at_s": at, "procs": procs})

    def _phases(self, name: str) -> dict[str, dict[str, float]]:
        """CPU seconds and average CPU % of one process in each phase (mark to mark)."""
        phases = {}
        for before, after in zip(self.marks, self.marks[1:], strict=False):
            cpu = after["procs"][name]["cpu_s"] - before["procs"][name]["cpu_s"]
            wall = max(after["at_s"] - before["at_s"], 1e-9)
            phases[after["phase"]] = {"cpu_s": round(cpu, 2), "cpu_pct": round(100 * cpu / wall, 1)}
        return phases

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per process: peak (VmHWM at the last mark), largest sampled RSS, CPU per phase."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.pids:
            rss = [s[1] for s in self.samples.get(name, [])] or [0]
            out[name] = {
                "peak_kb": self.marks[-1]["procs"][name].get("VmHWM", 0),
                "max_sampled_rss_kb": max(rss),
                "rss_at_marks_kb": {
                    m["phase"]: m["procs"][name].get("VmRSS", 0) for m in self.marks
                },
                "phases": self._phases(name),
            }
        return out


def scrape(url: str, prefixes: Sequence[str]) -> dict[str, float]:
    """The samples of a Prometheus ``/metrics`` page whose names start with ``prefixes``."""
    text = requests.get(f"{url}/metrics", timeout=HTTP_TIMEOUT_S).text
    out = {}
    for line in text.splitlines():
        if line.startswith(tuple(prefixes)):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def processing_now(server_url: str) -> int:
    """Jobs the server holds in a worker slot right now (its ``vt_jobs`` gauge)."""
    return int(scrape(server_url, ["vt_jobs{"]).get('vt_jobs{state="processing"}', 0))


# --- creating the jobs ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Created:
    """One created job: its id, when the POST came back, when it was pinned to end."""

    job_id: str
    returned_at: float
    finish_at: float


def in_threads(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """Map ``fn`` over ``items`` with ``CREATE_THREADS`` threads (the client is thread-safe)."""
    with ThreadPoolExecutor(CREATE_THREADS, thread_name_prefix="create") as pool:
        return list(pool.map(fn, items))


def calibrate(client: TranslationClient) -> float:
    """Seconds per creation with nothing in flight: the median of a few rounds of throw-away
    jobs that end at once, after a warm-up that opens the keep-alive connections."""

    def create(_: int) -> None:
        client.create_job(callback_url=None, simulate={"duration_s": 0, "outcome": "completed"})

    in_threads(create, range(PROBE_WARMUP))
    rounds = []
    for _ in range(PROBE_ROUNDS):
        started = time.perf_counter()
        in_threads(create, range(PROBE_JOBS))
        rounds.append((time.perf_counter() - started) / PROBE_JOBS)
    return sorted(rounds)[len(rounds) // 2]


def predict_creation_s(jobs: int, probe_s: float, growth: float) -> float:
    """Seconds to create ``jobs`` when one costs ``probe_s`` with nothing in flight."""
    return growth * jobs * probe_s


def finish_times(opens: float, spread_s: float, jobs: int, seed: int) -> list[float]:
    """When each job should end: uniform in ``[opens, opens + spread_s]``, seeded."""
    rng = random.Random(seed)
    return [opens + rng.uniform(0, spread_s) for _ in range(jobs)]


def create_jobs(
    client: TranslationClient, callback_url: str, finishes: Sequence[float]
) -> list[Created]:
    """One job per finish time, its duration pinned at creation so that it ends then."""

    def create(finish_at: float) -> Created:
        job = client.create_job(
            callback_url=callback_url,
            target_language="es",
            simulate={
                "duration_s": round(max(0.0, finish_at - time.time()), 3),
                "outcome": "completed",
                "webhook": "deliver",
            },
        )
        return Created(job.id, time.time(), finish_at)

    return in_threads(create, finishes)


def creation_figures(created: Sequence[Created], started: float) -> dict[str, Any]:
    """Total time, rate, and the rate in each tenth of the run (it falls as jobs pile up)."""
    returned = sorted(c.returned_at for c in created)
    n = len(returned)
    deciles, prev = [], started
    for k in range(1, 11):
        lo, hi = (k - 1) * n // 10, k * n // 10
        if hi <= lo:
            continue
        deciles.append(round((hi - lo) / max(returned[hi - 1] - prev, 1e-9), 1))
        prev = returned[hi - 1]
    seconds = returned[-1] - started
    return {
        "jobs": n,
        "seconds": round(seconds, 2),
        "jobs_per_s": round(n / seconds, 1),
        "jobs_per_s_by_tenth": deciles,
        "pinned_end_before_creation_end": sum(c.finish_at <= returned[-1] for c in created),
    }


# --- while they are in flight -----------------------------------------------------------------


def side_load(
    server_url: str, api_key: str, ids: Sequence[str], *, seconds: float, seed: int
) -> LoadResult:
    """``GET /v1/jobs/{id}`` on random ids from keep-alive connections for ``seconds``."""
    rng = random.Random(seed)
    spec = LoadSpec(
        url=server_url,
        paths=tuple(f"/v1/jobs/{rng.choice(ids)}" for _ in range(SIDE_PATHS)),
        headers=(("Authorization", f"Bearer {api_key}"),),
        connections=SIDE_CONNECTIONS,
        duration_s=seconds,
    )
    return run_load(spec, pick_generator("auto"))


@dataclasses.dataclass
class Waiting:
    """What one ``as_completed`` over every job returned."""

    resolved: int = 0
    statuses: Counter[str] = dataclasses.field(default_factory=Counter)
    error: str | None = None
    ended_at: float = 0.0
    cpu_s: float = 0.0  # CPU time of the waiting thread alone


def wait_all(client: TranslationClient, ids: Sequence[str], timeout: float, out: Waiting) -> None:
    """Consume ONE ``as_completed`` over every id (the body of the waiting thread)."""
    try:
        for job in client.as_completed(ids, timeout=timeout):
            out.resolved += 1
            out.statuses[job.status.value] += 1
    except WaitTimeout as exc:
        out.error = f"WaitTimeout: {exc}"
    except Exception as exc:  # a thread's boundary: report it, never hide it
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        out.ended_at = time.time()
        out.cpu_s = round(time.thread_time(), 2)


def received_times(receiver_url: str) -> dict[str, float]:
    """When the receiver stored each job's final webhook: its change feed read from the start."""
    out: dict[str, float] = {}
    after = ""
    while True:
        body = requests.get(
            f"{receiver_url}/v1/events",
            params={"after": after, "limit": "1000"},
            timeout=HTTP_TIMEOUT_S,
        ).json()
        for raw in body["events"]:
            event = Event.from_dict(raw)
            job, at = event.final_job, parse_time(event.received_at)
            if job is not None and at is not None:
                out.setdefault(job.id, at)
        if not body["events"]:
            return out
        after = body["cursor"]


def _ms(values_s: list[float]) -> dict[str, float]:
    """p50, p99 and max of durations in seconds, as milliseconds."""
    ms = sorted(v * 1000 for v in values_s)
    return {
        "p50": round(percentile(ms, 50), 1),
        "p99": round(percentile(ms, 99), 1),
        "max": round(ms[-1], 1) if ms else 0.0,
    }


def lag_figures(detections: Sequence[Detection], received: dict[str, float]) -> dict[str, Any]:
    """Detection lag, and for webhook detections where it went: the job's end to the
    receiver storing the webhook (server dispatch and receiver), then on to the client."""
    lags = [d.lag_s for d in detections if d.lag_s is not None]
    hooked = [
        (d, received[d.job.id], parse_time(d.job.finished_at))
        for d in detections
        if d.path == "webhook" and d.job.id in received
    ]
    return {
        "lag_ms": _ms(lags),
        "webhook_end_to_stored_ms": _ms([at - end for _, at, end in hooked if end]),
        "webhook_stored_to_detected_ms": _ms([d.detected_at - at for d, at, _ in hooked]),
    }


def detection_figures(
    client: TranslationClient, ids: Sequence[str], received: dict[str, float]
) -> dict[str, Any]:
    """How the client learned each end (path), how late (lag), at what request cost."""
    found = [client.detection(i) for i in ids]
    detections = [d for d in found if d is not None]
    stats = client.stats
    paths = Counter(d.path for d in detections)
    paths["unresolved"] = len(ids) - len(detections)
    return {
        "paths": dict(paths),
        **lag_figures(detections, received),
        "status_requests": stats.status_requests,
        "status_requests_per_job": round(stats.status_requests / max(len(ids), 1), 4),
        "requests": dict(stats.requests),
        "feed_requests": stats.waiting.feed_requests,
        "mode_changes": [m for _, m, _ in stats.waiting.mode_changes],
    }


# --- the run ----------------------------------------------------------------------------------


def in_flight_phase(
    args: argparse.Namespace, server_url: str, api_key: str, ids: Sequence[str], opens: float
) -> dict[str, Any]:
    """The side load, with the server's count of jobs in a slot before and after it."""
    before = processing_now(server_url)
    load = side_load(server_url, api_key, ids, seconds=args.side_load_seconds, seed=args.seed)
    after = processing_now(server_url)
    return {
        "processing_before": before,
        "processing_after": after,
        "margin_to_first_end_s": round(opens - time.time(), 2),
        "load": dataclasses.asdict(load),
    }


def create_phase(
    args: argparse.Namespace,
    client: TranslationClient,
    callback_url: str,
) -> tuple[list[Created], float, dict[str, Any]]:
    """Probe, predict, then create every job so that all end after creation and side load.

    Returns the jobs, when the finish window opens, and the creation figures.
    """
    per_job_s = calibrate(client)
    predicted = predict_creation_s(args.jobs, per_job_s, args.growth)
    started = time.time()
    opens = started + SAFETY * predicted + args.side_load_seconds + SETTLE_S
    created = create_jobs(
        client, callback_url, finish_times(opens, args.spread_seconds, args.jobs, args.seed)
    )
    figures = creation_figures(created, started)
    figures.update(
        probe_jobs=PROBE_WARMUP + PROBE_ROUNDS * PROBE_JOBS,
        probe_ms_per_job=round(per_job_s * 1000, 2),
        predicted_s=round(predicted, 1),
        window_opens_after_s=round(opens - started, 1),
    )
    return created, opens, figures


def resolution_figures(
    waiting: Waiting, created: Sequence[Created], opens: float
) -> dict[str, Any]:
    """What ``as_completed`` returned, and how long after the finish window opened."""
    drain = waiting.ended_at - opens
    return {
        "resolved": waiting.resolved,
        "statuses": dict(waiting.statuses),
        "error": waiting.error,
        "waiting_thread_cpu_s": waiting.cpu_s,
        "last_resolved_after_window_opened_s": round(drain, 2),
        "last_pinned_end_after_window_opened_s": round(
            max(c.finish_at for c in created) - opens, 2
        ),
        "resolved_per_s_from_window": round(waiting.resolved / max(drain, 1e-9), 1),
    }


def scenario(
    args: argparse.Namespace,
    client: TranslationClient,
    server: ChildService,
    receiver: ChildService,
    monitor: Monitor,
) -> dict[str, Any]:
    """Create, measure while in flight, wait for all; every figure but the processes'."""
    created, opens, creation = create_phase(args, client, f"{receiver.url}/webhooks")
    monitor.mark("created")
    ids = [c.job_id for c in created]
    waiting = Waiting()
    timeout = opens + args.spread_seconds + DRAIN_TIMEOUT_S - time.time()
    waiter = threading.Thread(
        target=wait_all, args=(client, ids, timeout, waiting), name="as_completed", daemon=True
    )
    waiter.start()
    in_flight = in_flight_phase(args, server.url, str(client.api_key), ids, opens)
    monitor.mark("side_load")
    waiter.join()
    monitor.mark("resolved")
    return {
        "creation": creation,
        "in_flight": in_flight,
        "resolution": {
            **resolution_figures(waiting, created, opens),
            **detection_figures(client, ids, received_times(receiver.url)),
        },
        "webhooks": {
            **scrape(server.url, ["vt_webhook_attempts_total{"]),
            **scrape(receiver.url, ["receiver_webhooks_received_total{"]),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start both services, run the scenario, always stop them; all the figures."""
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, children() as started:
        workdir = Path(tmp)
        started.append(start_server(workdir, workers=args.jobs + PROBE_JOBS + 100, seed=args.seed))
        started.append(start_callback_receiver(workdir))
        server, receiver = started
        monitor = Monitor(
            {"server": server.proc.pid, "receiver": receiver.proc.pid, "bench": os.getpid()}
        )
        monitor.start()
        client = TranslationClient(
            base_url=server.url,
            receiver_url=receiver.url,
            credentials_file=str(workdir / "local.json"),
            seed=args.seed,
        )
        try:
            figures = scenario(args, client, server, receiver, monitor)
        finally:
            client.close()
            monitor.stop()
    figures["processes"] = monitor.summary()
    figures["timeline"] = [{"phase": m["phase"], "at_s": m["at_s"]} for m in monitor.marks]
    figures["wall_s"] = round(time.monotonic() - begun, 1)
    return figures


# --- report -----------------------------------------------------------------------------------


def _dist(d: dict[str, float]) -> str:
    return f"p50 {d['p50']} / p99 {d['p99']} / max {d['max']} ms"


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def _process_rows(procs: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    rows = []
    for name in ("server", "receiver", "bench"):
        p = procs[name]
        rss = p["rss_at_marks_kb"]
        cpu = ", ".join(
            f"{phase} {v['cpu_s']} s ({v['cpu_pct']} %)" for phase, v in p["phases"].items()
        )
        label = "bench process (client)" if name == "bench" else name
        rows += [
            (f"{label}: peak memory (VmHWM)", _mb(p["peak_kb"])),
            (
                f"{label}: RSS start / created / resolved",
                " / ".join(_mb(rss.get(k, 0)) for k in ("start", "created", "resolved")),
            ),
            (f"{label}: CPU by phase", cpu),
        ]
    return rows


def table(f: dict[str, Any], jobs: int) -> str:
    """The markdown table of a run."""
    rows = _load_rows(f, jobs) + _process_rows(f["processes"])
    rows.append(("total wall time", f"{f['wall_s']} s"))
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _load_rows(f: dict[str, Any], jobs: int) -> list[tuple[str, str]]:
    c, inf, r = f["creation"], f["in_flight"], f["resolution"]
    load = inf["load"]
    rows = [
        (
            "jobs created / resolved",
            f"{c['jobs']} / {r['resolved']} {r['statuses']}"
            + (f" **{r['error']}**" if r["error"] else ""),
        ),
        (
            "creation (8 threads, one client)",
            f"{c['seconds']} s, {c['jobs_per_s']} jobs/s "
            f"(predicted {c['predicted_s']} s from a probe of {c['probe_ms_per_job']} ms/job)",
        ),
        ("creation jobs/s by tenth of the run", " ".join(str(x) for x in c["jobs_per_s_by_tenth"])),
        (
            "in a worker slot before / after the side load",
            f"{inf['processing_before']} / {inf['processing_after']} (of {jobs})",
        ),
        (
            f"status side load ({load['generator']}, {load['connections']} conns, "
            f"{load['duration_s']:.0f} s)",
            f"{load['requests_per_s']:.0f} req/s, p50 {load['p50_ms']:.1f} ms, "
            f"p99 {load['p99_ms']:.1f} ms, max {load['max_ms']:.0f} ms, errors {load['errors']}",
        ),
    ]
    return rows + _resolution_rows(f)


def _resolution_rows(f: dict[str, Any]) -> list[tuple[str, str]]:
    r = f["resolution"]
    return [
        ("detection paths", ", ".join(f"{k} {v}" for k, v in sorted(r["paths"].items()))),
        ("detection lag p50 / p99 / max", _dist(r["lag_ms"])),
        ("webhook: job end -> stored by the receiver", _dist(r["webhook_end_to_stored_ms"])),
        ("webhook: stored -> detected by the client", _dist(r["webhook_stored_to_detected_ms"])),
        ("status requests (per job)", f"{r['status_requests']} ({r['status_requests_per_job']})"),
        ("feed requests", str(r["feed_requests"])),
        (
            "last job resolved after the finish window opened",
            f"{r['last_resolved_after_window_opened_s']} s (pinned ends span "
            f"{r['last_pinned_end_after_window_opened_s']} s; {r['resolved_per_s_from_window']} "
            "jobs/s)",
        ),
        ("client mode changes", " -> ".join(r["mode_changes"]) or "none"),
        ("CPU of the thread in as_completed", f"{r['waiting_thread_cpu_s']} s"),
        (
            "webhooks (server attempts; receiver)",
            ", ".join(f"{k.split('{')[1].rstrip('}')} {v:.0f}" for k, v in f["webhooks"].items()),
        ),
    ]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def machine() -> dict[str, Any]:
    """Where the figures come from: machine, load, and the code measured (commit, edits)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted": _git(
            "status", "--porcelain", "--", "translation_server", "callback_receiver", "client_lib"
        ).splitlines(),
    }


# --- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--jobs", type=int, default=10_000, help="jobs in flight at once")
    p.add_argument(
        "--side-load-seconds",
        type=float,
        default=10.0,
        help="length of the GET /v1/jobs/{id} side load while all are in flight",
    )
    p.add_argument(
        "--spread-seconds",
        type=float,
        default=30.0,
        help="the jobs' pinned ends are spread uniformly over this window",
    )
    p.add_argument(
        "--growth",
        type=float,
        default=GROWTH,
        help="creation time / (jobs x the probe's cost of one); raise it if the "
        "in-flight count before the side load falls short of --jobs",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench-results" / "scale.json")
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Run the scale scenario; print the table; write the JSON.

    Exits 1 unless every job was in a worker slot at once and every one was resolved.
    """
    args = parse_args(argv)
    before = machine()
    figures = run(args)
    print(f"### Scale: {args.jobs} jobs in flight at once\n")
    print(table(figures, args.jobs))
    result = {
        "machine": before,
        "load_avg_after": machine()["load_avg"],
        "args": {k: str(v) for k, v in vars(args).items()},
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nraw figures: {args.out}")
    all_in_flight = figures["in_flight"]["processing_before"] == args.jobs
    return 0 if all_in_flight and figures["resolution"]["resolved"] == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
