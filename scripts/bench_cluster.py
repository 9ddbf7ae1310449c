"""Server instances on one PostgreSQL database against one server on SQLite; a kill's takeover.

Four set-ups, each on a fresh database (PostgreSQL: the machine's service, one new database per
set-up; SQLite: a new file): 1 server on SQLite, then 1, 2 and 3 servers on PostgreSQL. In each:

1. creates: ``--creates`` jobs (pending for an hour, so the run is creation alone) from 8
   threads, spread round robin over the instances; creates/s over the whole burst;
2. reads: ``GET /v1/jobs/{id}`` over those jobs from ``scripts.common``'s load generator,
   ``--connections`` connections split evenly over the instances (the client spreads the load,
   as nginx would); requests/s summed, p99 the worst instance's.

CPU per process (user + system seconds over each phase's wall time, in cores) is read from
``/proc`` for every server and for PostgreSQL (all of the service's processes together, so
any other use of the service at the time is counted too).

Then the takeover: two servers on PostgreSQL with ``--lease-seconds``; jobs started by one,
which is then killed with SIGKILL; the time from the kill until the other has ended every job
the victim was running (the lease left to run, plus up to a third of it until the survivor's
scheduler looks).

    .venv/bin/python -m scripts.bench_cluster [--quick] [--creates 2000] [--duration 5]
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from client_lib.localsetup import load_local_setup
from scripts.common import (
    ROOT,
    Load,
    anchor,
    command,
    cpu_seconds,
    definitions,
    describe_machine,
    machine,
    metrics,
    parser,
    run_load,
    save,
    summary_ms,
    table,
)
from tests.e2e.servers import new_tenant
from tests.pgsupport import fresh_database, query
from tests.receiver_support import SECRET, event_body, signed_headers
from tests.support import ADMIN, Service, start_service, wait_until

START, END = "<!-- cluster:start -->", "<!-- cluster:end -->"
TITLE = "Cluster: server instances on PostgreSQL, and a killed instance's takeover"
SETUPS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 3))
QUIET = ("--no-demo-job", "--admin-token", ADMIN, "--log-level", "WARNING", "--seed", "7")
DEFINITIONS = {
    "creates/s": "jobs created per second by 8 client threads, spread over the instances",
    "GET req/s": "`GET /v1/jobs/{id}` answered per second, all instances together",
    "p99": "the worst instance's 99th percentile latency of those reads",
    "CPU (cores)": "CPU seconds over the phase's wall seconds: each server, then PostgreSQL "
    "(every process of the service)",
    "takeover": "from the SIGKILL to the last of the victim's running jobs ended by the other",
}


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def postgres_cpu() -> float:
    """CPU seconds the PostgreSQL service has used: its postmaster, the backends it has reaped
    (the postmaster's children's time) and those still running."""
    procs = {}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "postgres":
                procs[int(proc.name)] = _stat(int(proc.name))
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for fields in procs.values():
        total += int(fields[11]) + int(fields[12])  # its own time
        if int(fields[1]) not in procs:  # the postmaster: its reaped backends' time too
            total += int(fields[13]) + int(fields[14])
    return total / tick


class Meter:
    """CPU used by each server and by PostgreSQL over a phase: seconds, and cores."""

    def __init__(self, servers: Sequence[Service]) -> None:
        self.pids = [s.proc.pid for s in servers]
        self.start = (time.monotonic(), [cpu_seconds(p) for p in self.pids], postgres_cpu())

    def cores(self) -> dict[str, Any]:
        wall = time.monotonic() - self.start[0]
        used = [cpu_seconds(p) - c for p, c in zip(self.pids, self.start[1], strict=True)]
        pg = postgres_cpu() - self.start[2]
        return {
            "wall_s": wall,
            "server_cpu_s": sum(used),
            "postgres_cpu_s": pg,
            "servers": [u / wall for u in used],
            "postgres": pg / wall,
        }


@contextlib.contextmanager
def database(engine: str, workdir: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{workdir / 'server.db'}"
        return
    with fresh_database("vt_bench") as url:
        yield url


@contextlib.contextmanager
def instances(url: str, count: int, workdir: Path, *extra: str) -> Iterator[list[Service]]:
    with contextlib.ExitStack() as stack:
        servers = []
        for n in range(count):
            args = [*QUIET, "--database-url", url, *extra]
            service = start_service("translation_server", args, workdir, name=f"server{n}")
            servers.append(stack.enter_context(service))
        yield servers


def create_jobs(
    urls: Sequence[str], auth: dict[str, str], count: int, duration: float
) -> list[str]:
    local = threading.local()

    def create(n: int) -> str:
        if not hasattr(local, "http"):
            local.http = requests.Session()
        body = {"simulate": {"duration_s": duration, "outcome": "completed"}}
        resp = local.http.post(
            f"{urls[n % len(urls)]}/v1/jobs", json=body, headers=auth, timeout=30
        )
        resp.raise_for_status()
        return str(resp.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(create, range(count)))


def measure_setup(engine: str, count: int, args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, database(engine, Path(tmp)) as url:
        with instances(url, count, Path(tmp), "--threads", str(args.threads)) as servers:
            auth = new_tenant(servers[0].url)["auth"]
            urls = [s.url for s in servers]
            meter, started = Meter(servers), time.monotonic()
            ids = create_jobs(urls, auth, args.creates, 3600.0)
            creates = {"per_s": len(ids) / (time.monotonic() - started), **meter.cores()}
            paths = tuple(f"/v1/jobs/{j}" for j in ids[:500])
            split = [
                args.connections // count + (n < args.connections % count) for n in range(count)
            ]
            loads = [
                Load(u, paths, tuple(auth.items()), c, args.duration)
                for u, c in zip(urls, split, strict=True)
            ]
            for load in loads:  # warm-up
                run_load(load._replace(duration_s=1.0))
            meter, results = Meter(servers), [{} for _ in loads]

            def drive(n: int) -> None:
                results[n] = run_load(loads[n])

            threads = [threading.Thread(target=drive, args=(n,)) for n in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            reads = {
                "per_s": sum(r["requests_per_s"] for r in results),
                "p99_ms": max(r["p99_ms"] for r in results),
                "errors": sum(r["errors"] for r in results),
                **meter.cores(),
            }
    return {"engine": engine, "instances": count, "creates": creates, "reads": reads}


def cross_wake(args: Any) -> dict[str, Any]:
    """Two receivers on one database: a long-poll parked on one, a webhook sent to the other;
    the time from the webhook's send to the long-poll's answer (storing it included)."""
    token = "bench-cluster-feed-token-0123456789"
    with tempfile.TemporaryDirectory() as tmp, fresh_database("vt_bench") as url:
        with contextlib.ExitStack() as stack:
            args_ = ["--database-url", url, "--secret", SECRET, "--feed-token", token,
                     "--credentials-file", "", "--log-level", "WARNING"]  # fmt: skip
            parked, storing = (
                stack.enter_context(
                    start_service("callback_receiver", args_, Path(tmp), name=f"receiver{n}")
                )
                for n in range(2)
            )
            feed = {"Authorization": f"Bearer {token}"}
            http, lags = requests.Session(), []
            for n in range(args.wakes):
                cursor = http.get(f"{parked.url}/v1/events?after=latest", headers=feed).json()
                answer: dict[str, float] = {}

                def poll(after: str = cursor["cursor"], answer: dict[str, float] = answer) -> None:
                    requests.get(f"{parked.url}/v1/events?after={after}&wait=10", headers=feed)
                    answer["at"] = time.perf_counter()

                poller = threading.Thread(target=poll)
                poller.start()
                wait_until(
                    lambda: metrics(parked.url, "receiver_feed_waiters").get(
                        "receiver_feed_waiters"
                    ),
                    message="a parked long-poll",
                )
                body = event_body(f"job_{n}")
                headers = signed_headers(body, msg_id=f"msg_wake_{n}")
                sent = time.perf_counter()
                assert http.post(f"{storing.url}/webhooks", data=body, headers=headers).ok
                poller.join(timeout=15)
                lags.append(answer["at"] - sent)
    return {"wakes": len(lags), **summary_ms(lags)}


def webhook_lag(args: Any, count: int) -> dict[str, Any]:
    """``count`` servers and a receiver on one database: from a job's end (its
    ``finished_at``, by whichever server ended it) to its webhook stored by the receiver
    (``received_at``)."""
    token = "bench-cluster-feed-token-0123456789"
    with tempfile.TemporaryDirectory() as tmp, fresh_database("vt_bench") as url:
        creds = Path(tmp) / "local.json"
        # a worker slot for every job: the figure is the webhook's, not the queue's
        extra = ("--credentials-file", str(creds), "--heartbeat-interval", "0")
        extra += ("--workers", str(args.lag_jobs))
        with instances(url, count, Path(tmp), *extra) as servers:
            rargs = ["--database-url", url, "--credentials-file", str(creds),
                     "--feed-token", token, "--log-level", "WARNING"]  # fmt: skip
            with start_service("callback_receiver", rargs, Path(tmp), name="receiver") as rcv:
                auth = {"Authorization": f"Bearer {load_local_setup(creds).api_key}"}
                rng, http = random.Random(16), requests.Session()
                for n in range(args.lag_jobs):
                    body = {
                        "callback_url": f"{rcv.url}/webhooks",
                        "simulate": {"duration_s": 0.5 + rng.random(), "outcome": "completed"},
                    }
                    url_ = servers[n % count].url
                    http.post(f"{url_}/v1/jobs", json=body, headers=auth).raise_for_status()
                sql = (
                    "SELECT e.received_at - j.finished_at FROM events e "
                    "JOIN jobs j ON j.id = e.job_id"
                )
                lags = wait_until(
                    lambda: (rows := query(url, sql)) and len(rows) >= args.lag_jobs and rows,
                    timeout=60,
                    message="every webhook",
                )
    return summary_ms(float(r[0]) for r in lags)


def takeover(args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, fresh_database("vt_bench") as url:
        lease = ("--lease-seconds", str(args.lease), "--workers", "50")
        with instances(url, 2, Path(tmp), *lease) as (survivor, victim):
            auth = new_tenant(survivor.url)["auth"]
            create_jobs([victim.url], auth, 40, 30.0)  # the victim starts them
            victim_id = wait_until(
                lambda: query(url, "SELECT id FROM instances WHERE pid = %s", victim.proc.pid),
                message="the victim's lease",
            )[0][0]
            running = wait_until(
                lambda: query(
                    url, "SELECT id FROM jobs WHERE owner = %s AND state = 'processing'", victim_id
                ),
                message="the victim's jobs",
            )
            # due soon, so that only the lease holds them back
            query(url, "UPDATE jobs SET due_at = %s WHERE owner = %s", time.time() + 0.2, victim_id)
            victim.stop(signal.SIGKILL)
            killed = time.time()
            ids = [r[0] for r in running]

            def ended() -> list[Any] | None:
                rows = query(url, "SELECT max(finished_at), count(*) FROM jobs WHERE id = ANY(%s) "
                             "AND finished_at IS NOT NULL", ids)  # fmt: skip
                return rows if rows[0][1] == len(ids) else None

            last = wait_until(ended, timeout=args.lease * 4 + 30, interval=0.05, message="takeover")
    return {"lease_s": args.lease, "jobs": len(ids), "takeover_s": float(last[0][0]) - killed}


def main(argv: Sequence[str]) -> int:
    p = parser(__doc__)
    p.add_argument("--creates", type=int, help="jobs created per set-up [2000; quick 300]")
    p.add_argument("--duration", type=float, help="timed seconds of reads [5; quick 2]")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=8, help="waitress threads per server")
    p.add_argument("--lease", type=float, help="the takeover's --lease-seconds [5; quick 2]")
    args = p.parse_args(argv)
    args.creates = args.creates or (300 if args.quick else 2000)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.lease = args.lease or (2.0 if args.quick else 5.0)
    args.wakes = 20 if args.quick else 200
    args.lag_jobs = 50 if args.quick else 400
    runs = []
    for engine, count in SETUPS:
        print(f"{engine} x{count}", file=sys.stderr, flush=True)
        runs.append(measure_setup(engine, count, args))
    kill = takeover(args)
    wake = cross_wake(args)
    lags = {count: webhook_lag(args, count) for count in (1, 2)}

    def cores(phase: dict[str, Any]) -> str:
        each = " + ".join(f"{c:.2f}" for c in phase["servers"])
        return f"{each}; pg {phase['postgres']:.2f}"

    rows = [
        f"{r['engine']} | {r['instances']} | {r['creates']['per_s']:,.0f} | "
        f"{cores(r['creates'])} | {r['reads']['per_s']:,.0f} | {r['reads']['p99_ms']:.1f} | "
        f"{cores(r['reads'])} | {r['reads']['errors']}"
        for r in runs
    ]
    # what one operation costs PostgreSQL, over the PostgreSQL set-ups: the basis of the
    # capacity on paper in docs/scaling.md
    pg_runs = [r for r in runs if r["engine"] == "postgresql"]
    per_create = sum(r["creates"]["postgres_cpu_s"] for r in pg_runs) / (
        args.creates * len(pg_runs)
    )
    per_read = sum(r["reads"]["postgres_cpu_s"] for r in pg_runs) / sum(
        r["reads"]["per_s"] * r["reads"]["wall_s"] for r in pg_runs
    )
    costs = {"pg_ms_per_create": per_create * 1e3, "pg_ms_per_read": per_read * 1e3}
    text = "\n\n".join(
        [
            f"{args.creates} creates and {args.duration:g} s of reads per set-up, "
            f"{args.connections} connections, {args.threads} waitress threads per server; one run "
            "each, in the order shown.",
            definitions(DEFINITIONS),
            table(
                "database | servers | creates/s | CPU while creating (cores) | GET req/s | "
                "p99 ms | CPU while reading (cores) | errors",
                rows,
            ),
            f"PostgreSQL CPU per operation (all its PostgreSQL set-ups together): "
            f"{costs['pg_ms_per_create']:.2f} ms per create, {costs['pg_ms_per_read']:.3f} ms "
            f"per read, so one core of the primary carries at most about "
            f"{1 / max(per_create, 1e-9):,.0f} creates/s or {1 / max(per_read, 1e-9):,.0f} "
            "reads/s (docs/scaling.md).",
            f"Across receivers: a long-poll parked on one receiver answered "
            f"{wake['p50']:.1f} ms (p50), {wake['p99']:.1f} ms (p99) after the event it waited "
            f"for was sent to another receiver, storing it included ({wake['wakes']} times; "
            "LISTEN/NOTIFY).",
            "From a job's end to its webhook stored by the receiver, over "
            f"{args.lag_jobs} jobs: with one server {lags[1]['p50']:.1f} ms (p50), "
            f"{lags[1]['p99']:.1f} ms (p99); with two (jobs created alternately on either) "
            f"{lags[2]['p50']:.1f} ms (p50), {lags[2]['p99']:.1f} ms (p99).",
            f"Takeover: with `--lease-seconds {kill['lease_s']:g}`, the {kill['jobs']} jobs a "
            f"killed instance was running were all ended by the other "
            f"{kill['takeover_s']:.2f} s after the SIGKILL.",
        ]
    )
    best = max(runs[1:], key=lambda r: r["creates"]["per_s"])
    value = (
        f"creates/s {runs[0]['creates']['per_s']:,.0f} (SQLite, 1 server) vs "
        f"{best['creates']['per_s']:,.0f} (PostgreSQL, {best['instances']}); takeover "
        f"{kill['takeover_s']:.1f} s with a {kill['lease_s']:g} s lease"
    )
    headline = [("Cluster on PostgreSQL", value, f"benchmarks.md#{anchor(TITLE)}")]
    raw = {
        "args": vars(args),
        "runs": runs,
        "takeover": kill,
        "costs": costs,
        "wake": wake,
        "lag": lags,
    }
    save("cluster", argv, TITLE, text, headline, raw)
    write_scaling_doc(text, argv)
    return 0


def write_scaling_doc(text: str, argv: Sequence[str]) -> None:
    """Put the figures in docs/scaling.md, between its markers, with how they were made."""
    doc = ROOT / "docs" / "scaling.md"
    page = doc.read_text()
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    mode = "quick mode (a check that it runs; not figures to quote)" if "--quick" in argv else ""
    made = f"`{command('scripts.bench_cluster', argv)}`, {machine()['date']}"
    lines = [f"{made}{', ' + mode if mode else ''}; {describe_machine(machine())}.", "", text]
    doc.write_text(f"{head}{START}\n" + "\n".join(lines) + f"\n{END}{tail}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
