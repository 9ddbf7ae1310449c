"""Benchmark ``GET /v1/jobs/{id}`` of the translation server against a bare Flask+waitress app.

The targets run as child processes on this machine and are driven, one after the other, by
the same load generator (``wrk`` when on PATH, else a multi-process Python generator; see
``bench_common``). All but one run with the same number of waitress request threads
(``--threads``, by default the server's own default):

- ``server``: the translation server as benchmarks usually run one, its per-request access
  log off (``--log-level WARNING``);
- ``server+log``: the same server and data with its default ``--log-level INFO``, one
  access-log line per request written to a file;
- ``bare``: a bare Flask app on stock waitress answering the same paths with a fixed JSON
  body copied from one real answer of the server: the baseline, which the goal's
  ratio is taken against;
- ``bare, 1 thread``: the same bare app with one request thread, to show what the thread
  count alone does to such an endpoint.

The servers get a fresh SQLite database each, one client and ``--jobs`` jobs: half pending (a
pinned hour-long duration, so most are queued behind the worker slots and their estimates are
computed on every read) and half completed. Requests rotate over the job ids with the
client's ``Authorization`` header.

This machine's speed drifts by a third from minute to minute (2 shared cores), so one run per
target would compare different moments. The targets take turns instead, ``--rounds`` times,
in a rotating order, each with a short warm-up; the figures reported are the medians over the
rounds, the ratio is the median of each round's ratio, and every round is kept in the JSON.

Prints a markdown table and writes the raw figures to ``--out`` (JSON). ``--profile`` also
profiles the GET in-process with Flask's test client (cProfile) and prints the top costs.

    .venv/bin/python scripts/bench_server.py [--rounds 5] [--duration 5] [--connections 16]

The goal: the server reaches >= 60 % of the bare endpoint's requests/s, with p99 under
25 ms at 16 connections. ``--check`` exits 1 when it does not.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime as dt
import io
import json
import os
import platform
import pstats
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from bench_common import (
    ADMIN_TOKEN,
    ChildService,
    LoadResult,
    LoadSpec,
    children,
    pick_generator,
    python_executable,
    run_load,
    start_child,
    start_translation_server,
    write_ready_file,
)

from translation_server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 0.60
GOAL_P99_MS = 25.0
PENDING_DURATION_S = 3600
SERVE_BARE = "_serve-bare"

PostFn = Callable[[str, dict[str, Any], dict[str, str]], tuple[int, dict[str, Any]]]
GetFn = Callable[[str, dict[str, str]], tuple[int, bytes]]


# --- the bare endpoint (runs in its own child process) ----------------------------------------


def create_bare_app(body: bytes) -> Any:
    """A Flask app answering ``GET /v1/jobs/<id>`` with a fixed JSON body."""
    from flask import Flask, Response

    app = Flask("bare")

    @app.get("/v1/jobs/<job_id>")
    def get_job(job_id: str) -> Response:
        """The same answer for every id."""
        return Response(body, mimetype="application/json")

    return app


def _raise_exit(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve_bare(argv: Sequence[str]) -> None:
    """Child mode: serve the bare app with waitress until SIGTERM."""
    from waitress.server import create_server

    parser = argparse.ArgumentParser(prog=f"bench_server.py {SERVE_BARE}")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    app = create_bare_app(args.body_file.read_bytes())
    server: Any = create_server(
        app, host="127.0.0.1", port=0, threads=args.threads, ident="bench-bare"
    )
    port = int(server.effective_port)
    write_ready_file(args.ready_file, f"http://127.0.0.1:{port}", port)
    signal.signal(signal.SIGTERM, _raise_exit)
    try:
        server.run()
    finally:
        server.close()


# --- setting up the server's data -------------------------------------------------------------


def job_request(n: int, duration_s: float) -> dict[str, Any]:
    """One create-job body with a pinned duration and outcome."""
    return {
        "target_language": "es",
        "source_url": f"https://videos.example/{n}.mp4",
        "metadata": {"bench": n},
        "simulate": {"duration_s": duration_s, "outcome": "completed"},
    }


def populate(post: PostFn, get: GetFn, job_count: int) -> tuple[str, list[str]]:
    """Create a client and its jobs: half completed, then half pending for an hour.

    The instant jobs go first and are awaited: created after the hour-long ones, they would
    queue behind them for the worker slots. Returns the client's API key and the job ids,
    interleaved (completed, pending, completed, ...).
    """
    status, client = post(
        "/v1/clients", {"name": "bench"}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    if status != 201:
        raise RuntimeError(f"POST /v1/clients answered {status}: {client}")
    auth = {"Authorization": f"Bearer {client['api_key']}"}

    def create(n: int, duration_s: float) -> str:
        """Create one job; its id."""
        status, job = post("/v1/jobs", job_request(n, duration_s), auth)
        if status != 201:
            raise RuntimeError(f"POST /v1/jobs answered {status}: {job}")
        return str(job["id"])

    done = [create(n, 0) for n in range((job_count + 1) // 2)]
    _wait_completed(get, done, auth)
    pending = [create(n, PENDING_DURATION_S) for n in range(len(done), job_count)]
    ids = [j for pair in zip(done, pending, strict=False) for j in pair]
    return str(client["api_key"]), ids + done[len(pending) :]


def _wait_completed(
    get: GetFn, ids: Sequence[str], auth: dict[str, str], timeout: float = 30.0
) -> None:
    """Poll until every job in ``ids`` is completed."""
    deadline = time.monotonic() + timeout
    waiting = list(ids)
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} jobs did not complete within {timeout}s")
        waiting = [
            j for j in waiting if json.loads(get(f"/v1/jobs/{j}", auth)[1])["status"] != "completed"
        ]
        time.sleep(0.05)


def http_client(base_url: str) -> tuple[PostFn, GetFn]:
    """``post`` and ``get`` over real HTTP (requests)."""
    session = requests.Session()

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        """POST JSON; the status and the decoded answer."""
        resp = session.post(base_url + path, json=body, headers=headers, timeout=10)
        return resp.status_code, resp.json()

    def get(path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """GET; the status and the raw body."""
        resp = session.get(base_url + path, headers=headers, timeout=10)
        return resp.status_code, resp.content

    return post, get


# --- the two targets --------------------------------------------------------------------------


def start_server(workdir: Path, threads: int, log_level: str) -> ChildService:
    """The real translation server on a fresh SQLite database under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    return start_translation_server(workdir, "--threads", str(threads), "--log-level", log_level)


@dataclasses.dataclass(frozen=True)
class PopulatedServer:
    """A started server with the benchmark's client and jobs, and the load that polls them."""

    url: str
    api_key: str
    spec: LoadSpec
    pending_body: bytes  # one real answer for a pending job (the larger body)


def start_populated_server(
    started: list[ChildService],
    workdir: Path,
    threads: int,
    log_level: str,
    args: argparse.Namespace,
) -> PopulatedServer:
    """Start a server (registered in ``started`` at once, so it is always stopped), populate
    it with ``args.jobs`` jobs, and describe the load: ``args.connections`` for
    ``args.duration`` seconds over every job."""
    started.append(start_server(workdir, threads, log_level))
    url = started[-1].url
    post, get = http_client(url)
    api_key, ids = populate(post, get, args.jobs)
    headers = (("Authorization", f"Bearer {api_key}"),)
    paths = tuple(f"/v1/jobs/{j}" for j in ids)
    spec = LoadSpec(url, paths, headers, args.connections, args.duration)
    _, pending_body = get(paths[1], dict(headers))
    return PopulatedServer(url, api_key, spec, pending_body)


def start_bare(name: str, workdir: Path, threads: int, body: bytes) -> ChildService:
    """The bare Flask app on stock waitress serving ``body``."""
    body_file = workdir / "bare-body.json"
    body_file.write_bytes(body)
    stem = name.replace(", ", "-").replace(" ", "-")
    cmd = [
        python_executable(),
        str(Path(__file__).resolve()),
        SERVE_BARE,
        "--body-file",
        str(body_file),
        "--ready-file",
        str(workdir / f"{stem}.ready"),
        "--threads",
        str(threads),
    ]
    return start_child(name, cmd, workdir / f"{stem}.ready", workdir / f"{stem}.log")


# the bare targets: their own thread count (None: --threads)
BARE_TARGETS = {"bare": None, "bare, 1 thread": 1}
TARGETS = ("server", "server+log", *BARE_TARGETS)
LOG_LEVEL = {"server": "WARNING", "server+log": "INFO"}


def measure(name: str, spec: LoadSpec, *, generator: str, warmup_s: float) -> LoadResult:
    """A warm-up run (discarded), then the timed run."""
    print(
        f"  {name}: warm-up {warmup_s:g}s, then {spec.duration_s:g}s "
        f"at {spec.connections} connections ({generator})",
        file=sys.stderr,
        flush=True,
    )
    if warmup_s > 0:
        run_load(dataclasses.replace(spec, duration_s=warmup_s), generator)
    return run_load(spec, generator)


def run_benchmark(
    args: argparse.Namespace, generator: str
) -> tuple[dict[str, list[LoadResult]], int]:
    """Start every target, load them in turns for ``args.rounds`` rounds, stop all (always).

    Returns each target's runs, round by round, and the size of the JSON body they answered.
    """
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp, children() as started:
        workdir = Path(tmp)
        specs: dict[str, LoadSpec] = {}
        sample = b""
        for name, level in LOG_LEVEL.items():
            server = start_populated_server(started, workdir / name, args.threads, level, args)
            specs[name], sample = server.spec, server.pending_body
        for name, threads in BARE_TARGETS.items():
            started.append(start_bare(name, workdir, threads or args.threads, sample))
            specs[name] = dataclasses.replace(specs["server"], url=started[-1].url)
        child = {target: started[n] for n, target in enumerate(TARGETS)}
        results: dict[str, list[LoadResult]] = {name: [] for name in TARGETS}
        for round_no in range(args.rounds):
            print(f" round {round_no + 1}/{args.rounds}", file=sys.stderr, flush=True)
            turn = round_no % len(TARGETS)  # who goes first rotates: drift hits all alike
            for name in TARGETS[turn:] + TARGETS[:turn]:
                result = measure(name, specs[name], generator=generator, warmup_s=args.warmup)
                results[name].append(result)
                if child[name].proc.poll() is not None:
                    raise RuntimeError(f"{name} died under load:\n{child[name].log_tail()}")
        return results, len(sample)


# --- reporting --------------------------------------------------------------------------------


def median_of(runs: list[LoadResult]) -> dict[str, float]:
    """A target's median requests/s, p50 and p99 over its rounds, and its error total."""
    return {
        "requests_per_s": statistics.median(r.requests_per_s for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "errors": sum(r.errors for r in runs),
    }


def ratios(results: dict[str, list[LoadResult]], name: str, base: str = "bare") -> list[float]:
    """Round by round: the target's requests/s over ``base``'s in the same round."""
    return [
        r.requests_per_s / b.requests_per_s if b.requests_per_s else 0.0
        for r, b in zip(results[name], results[base], strict=True)
    ]


def markdown_table(results: dict[str, list[LoadResult]]) -> str:
    """The side-by-side table: medians over the rounds."""
    first = results["bare"][0]
    lines = [
        f"{len(results['bare'])} rounds of {first.duration_s:.0f} s per target, "
        f"{first.generator}, {first.connections} connections; medians over the rounds\n",
        "| target | requests/s | p50 ms | p99 ms | errors | ratio to bare (min-max) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in TARGETS:
        m, r = median_of(results[name]), ratios(results, name)
        lines.append(
            f"| {name} | {m['requests_per_s']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
            f"| {m['errors']:.0f} | {statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f}) |"
        )
    return "\n".join(lines)


def goals(results: dict[str, list[LoadResult]]) -> dict[str, Any]:
    """The two goals, measured on the ``server`` target (medians over the rounds)."""
    server = median_of(results["server"])
    ratio = statistics.median(ratios(results, "server"))
    errors = sum(median_of(results[name])["errors"] for name in TARGETS)
    return {
        "ratio": round(ratio, 4),
        "ratio_goal": GOAL_RATIO,
        "ratio_met": ratio >= GOAL_RATIO,
        "p99_ms": round(server["p99_ms"], 3),
        "p99_goal_ms": GOAL_P99_MS,
        "p99_met": server["p99_ms"] < GOAL_P99_MS,
        "errors_met": errors == 0,
    }


def goal_lines(g: dict[str, Any]) -> str:
    """One line per goal, with its verdict."""

    def verdict(ok: bool) -> str:
        """A goal's verdict word."""
        return "met" if ok else "NOT met"

    return (
        f"- server/bare requests/s: {g['ratio']:.0%} (goal >= {g['ratio_goal']:.0%}): "
        f"{verdict(g['ratio_met'])}\n"
        f"- server p99: {g['p99_ms']:.2f} ms (goal < {g['p99_goal_ms']:g} ms): "
        f"{verdict(g['p99_met'])}"
    )


def write_json(
    path: Path,
    args: argparse.Namespace,
    *,
    generator: str,
    body_bytes: int,
    results: dict[str, list[LoadResult]],
    profile: dict[str, Any] | None,
) -> None:
    """The raw figures and the conditions they were measured in."""
    payload = {
        "benchmark": "GET /v1/jobs/{id}: translation server vs bare Flask+waitress",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "threads": args.threads,
            "jobs": args.jobs,
            "generator": generator,
            "body_bytes": body_bytes,
        },
        "medians": {name: median_of(runs) for name, runs in results.items()},
        "ratios_by_round": {name: ratios(results, name) for name in TARGETS},
        "rounds": {name: [dataclasses.asdict(r) for r in runs] for name, runs in results.items()},
        "goals": goals(results),
        "profile": profile,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


# --- profiling (in-process, Flask test client) ------------------------------------------------


def _package_of(filename: str) -> str:
    """Group a profiled function by the library (or our package) it lives in."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    for ours in ("translation_server", "client_lib"):
        if ours in parts:
            return ours
    return f"stdlib:{Path(filename).stem}"


def _rows(
    raw: dict[Any, Any], index: int, total: float, top: int, only: str | None = None
) -> list[dict[str, Any]]:
    """The ``top`` functions by self (index 2) or cumulative (3) time, optionally one package."""
    items = [kv for kv in raw.items() if only is None or _package_of(kv[0][0]) == only]
    ranked = sorted(items, key=lambda kv: -kv[1][index])[:top]
    return [
        {
            "function": f"{Path(k[0]).name}:{k[1]}({k[2]})",
            "calls": v[1],
            "seconds": round(v[index], 4),
            "share": round(v[index] / total, 3),
        }
        for k, v in ranked
    ]


def summarize(stats: pstats.Stats, *, top: int = 15) -> dict[str, Any]:
    """Self time by package, the costliest functions, and SQL statements executed."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    by_pkg: dict[str, float] = {}
    for (filename, _line, _func), (_cc, _nc, tt, _ct, _callers) in raw.items():
        by_pkg[_package_of(filename)] = by_pkg.get(_package_of(filename), 0.0) + tt
    packages = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:top]
    statements = sum(
        v[1]
        for (filename, _line, func), v in raw.items()
        if func == "_execute_clauseelement" and filename.endswith("base.py")
    )
    return {
        "total_s": round(total, 4),
        "sql_statements": statements,
        "self_by_package": [
            {"package": p, "seconds": round(s, 4), "share": round(s / total, 3)}
            for p, s in packages
        ],
        "top_self": _rows(raw, 2, total, top),
        "top_cumulative": _rows(raw, 3, total, top),
        "ours_cumulative": _rows(raw, 3, total, top, only="translation_server"),
    }


def test_client_calls(client: Any) -> tuple[PostFn, GetFn]:
    """``post`` and ``get`` through Flask's test client."""

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        """POST JSON; the status and the decoded answer."""
        resp = client.post(path, json=body, headers=headers)
        return resp.status_code, resp.get_json()

    def get(path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """GET; the status and the raw body."""
        resp = client.get(path, headers=headers)
        return resp.status_code, resp.data

    return post, get


def profile_get(job_count: int, requests_n: int) -> dict[str, Any]:
    """cProfile ``requests_n`` GETs through the test client on the same data shape."""
    from translation_server.app import create_app
    from translation_server.config import Settings

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/profile.db",
            admin_token=ADMIN_TOKEN,
            credentials_file=None,
            demo_job=False,
            port=0,
        )
        app = create_app(settings)
        try:
            post, get = test_client_calls(app.test_client())
            api_key, ids = populate(post, get, job_count)
            auth = {"Authorization": f"Bearer {api_key}"}
            for n in range(200):  # warm caches and pools before measuring
                get(f"/v1/jobs/{ids[n % len(ids)]}", auth)
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            for n in range(requests_n):
                get(f"/v1/jobs/{ids[n % len(ids)]}", auth)
            profiler.disable()
            elapsed = time.perf_counter() - started
        finally:
            app.extensions["vt"].close()
    summary = summarize(pstats.Stats(profiler))
    summary.update(
        requests=requests_n,
        wall_s=round(elapsed, 3),
        per_request_ms_profiled=round(elapsed / requests_n * 1000, 3),
    )
    return summary


def print_profile(summary: dict[str, Any]) -> None:
    """The profile's headline figures, in markdown."""
    n = summary["requests"]
    out = io.StringIO()
    out.write(
        f"\nProfile: cProfile, in-process through Flask's test client (its werkzeug cost is "
        f"not the server's), {n} GETs over the same job mix, "
        f"{summary['per_request_ms_profiled']} ms/request under the profiler, "
        f"{summary['sql_statements'] / n:.2f} SQL statements/request\n\n"
    )
    out.write("| self time by package | share |\n|---|---:|\n")
    for row in summary["self_by_package"][:8]:
        out.write(f"| {row['package']} | {row['share']:.0%} |\n")
    out.write("\n| translation_server, cumulative | calls | share |\n|---|---:|---:|\n")
    for row in summary["ours_cumulative"][:12]:
        out.write(f"| `{row['function']}` | {row['calls']} | {row['share']:.0%} |\n")
    print(out.getvalue())


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="turns each target takes")
    p.add_argument("--duration", type=float, default=5.0, help="timed seconds per target and round")
    p.add_argument(
        "--warmup", type=float, default=1.0, help="discarded seconds before each timed run"
    )
    p.add_argument("--connections", type=int, default=16, help="concurrent connections")
    p.add_argument(
        "--threads",
        type=int,
        default=Settings().threads,
        help="waitress request threads of every target but the waitress-defaults one "
        "(default: the server's default)",
    )
    p.add_argument("--jobs", type=int, default=50, help="jobs to rotate over (half pending)")
    p.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk when on PATH, else python)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench-results" / "server.json",
        help="where to write the raw figures (JSON)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the GET in-process and print the top costs",
    )
    p.add_argument("--profile-requests", type=int, default=3000)
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    args = p.parse_args(argv)
    if args.jobs < 2 or min(args.connections, args.threads, args.rounds, args.duration) <= 0:
        p.error("--jobs must be >= 2; --connections, --threads, --rounds, --duration positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [SERVE_BARE]:
        serve_bare(argv[1:])
        return 0
    args = parse_args(argv)
    generator = pick_generator(args.generator)
    signal.signal(signal.SIGTERM, _raise_exit)  # so the finally blocks stop the children
    results, body_bytes = run_benchmark(args, generator)
    profile = profile_get(args.jobs, args.profile_requests) if args.profile else None
    print(markdown_table(results))
    g = goals(results)
    print("\n" + goal_lines(g))
    if profile:
        print_profile(profile)
    write_json(
        args.out, args, generator=generator, body_bytes=body_bytes, results=results, profile=profile
    )
    print(f"\nraw figures: {args.out}")
    return 1 if args.check and not (g["ratio_met"] and g["p99_met"]) else 0


if __name__ == "__main__":
    sys.exit(main())
