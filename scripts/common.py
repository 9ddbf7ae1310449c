"""What the benchmarks share: figures, tables, machine info, their results, and one HTTP load.

Every benchmark (``python -m scripts.bench_<name> [--quick]``) prints its markdown and writes
``bench-results/<name>.json``: its title, command, markdown, headline rows (figure, value, link)
and raw figures, from which ``scripts/bench.py`` writes docs/benchmarks.md and the README's
results. Services are started with the tests' launcher, ``tests.support``.

The HTTP load is ``wrk`` when it is on PATH (a generated Lua script rotates the paths; its
``done()`` hook prints exact percentiles as JSON), else a Python generator: one process per
core, each with a thread per keep-alive connection, so that one GIL is not the limit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests

from client_lib.models import Event, parse_time

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"


def machine() -> dict[str, Any]:
    """What the figures were measured on, and when."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = [round(x, 2) for x in os.getloadavg()]
    python = platform.python_version()
    return dict(date=date, cpu=cpu, cores=os.cpu_count(), python=python, load_avg=load)


def describe_machine(info: dict[str, Any]) -> str:
    """One line: CPU, cores, Python, load average."""
    load = ", ".join(f"{x:.2f}" for x in info["load_avg"])
    return f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, load average {load}"


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary_ms(values_s: Iterable[float]) -> dict[str, float]:
    """Count, p50, p90, p99 and max of durations in seconds, as milliseconds."""
    ms = sorted(v * 1000 for v in values_s)
    out = {f"p{p}": round(percentile(ms, p), 2) for p in (50, 90, 99)}
    return {"count": len(ms), **out, "max": round(ms[-1], 2) if ms else 0.0}


def fmt_s(seconds: float | None) -> str:
    """A duration: milliseconds below a second, seconds above; a dash for none."""
    if seconds is None:
        return "-"
    if seconds < 0.1:  # a goal such as 15 ms must not read as met when it is not
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(header: str, rows: Iterable[str | Sequence[object]]) -> str:
    """A markdown table from a header (``"a | b"``) and rows (strings alike, or sequences);
    every column but the first right-aligned."""
    cells = [r if isinstance(r, str) else " | ".join(map(str, r)) for r in rows]
    rule = "|---" + "|---:" * header.count(" | ") + "|"
    return "\n".join([f"| {header} |", rule, *(f"| {row} |" for row in cells)])


def definitions(items: dict[str, str]) -> str:
    """One line per figure: its name in bold, then what it measures."""
    return "\n".join(f"- **{name}**: {text}" for name, text in items.items())


def anchor(title: str) -> str:
    """The anchor GitHub gives a markdown heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def met(ok: bool) -> str:
    """A goal's verdict."""
    return "met" if ok else "**not met**"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (its peak) of a process, in MB."""
    pairs = (ln.split(":", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {k: int(v.split()[0]) / 1024 for k, v in pairs if k in ("VmRSS", "VmHWM")}


def metrics(url: str, prefix: str) -> dict[str, float]:
    """The samples of a service's Prometheus ``/metrics`` whose names start with ``prefix``."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith(prefix))
    return {name: float(value) for name, value in pairs}


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line, with ``--quick``; SIGTERM from now on raises SystemExit,
    so that ``finally`` blocks stop the child services."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    p = argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="a smaller, shorter run")
    return p


def command(module: str, argv: Sequence[str]) -> str:
    """The command that ran a benchmark, as typed from the project root."""
    exe = Path(sys.executable)
    exe = exe.relative_to(ROOT) if exe.is_relative_to(ROOT) else exe
    return shlex.join([str(exe), "-m", module, *argv])


def save(
    name: str, argv: Sequence[str], title: str, markdown: str, headline: list[Any], raw: Any
) -> None:
    """Print the markdown; write ``bench-results/<name>.json``: machine, command, mode, title,
    markdown, headline rows (figure, value, link) and raw figures."""
    print(markdown)
    run = dict(machine=machine(), command=command(f"scripts.bench_{name}", argv))
    doc = dict(**run, quick="--quick" in argv, title=title, markdown=markdown, headline=headline)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({**doc, "raw": raw}, indent=2, default=str))


class Load(NamedTuple):
    """GETs of ``paths`` in rotation with ``headers``, on ``connections``, for a time."""

    url: str
    paths: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    connections: int
    duration_s: float


class CpuSplit(NamedTuple):
    """CPUs kept apart: the services under test on ``targets``, the load on ``load``."""

    targets: frozenset[int]
    load: frozenset[int]


def split_cpus() -> CpuSplit | None:
    """The first half of this process's CPUs for the targets, the rest for the load
    generator; None with a single CPU. A load generator sharing the targets' CPUs takes
    their time in turns the scheduler picks, and its own latency figures with it."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return CpuSplit(frozenset(cpus[:half]), frozenset(cpus[half:]))


def usable_cpus() -> int:
    """The CPUs this process may run on (a load generator's threads or processes)."""
    return len(os.sched_getaffinity(0))


def generator() -> str:
    """``wrk`` when it is on PATH, else ``python``."""
    return "wrk" if shutil.which("wrk") else "python"


def run_load(load: Load) -> dict[str, Any]:
    """One timed run: requests, errors, requests/s, p50, p99 and max in ms."""
    out = _run_wrk(load) if generator() == "wrk" else _run_python(load)
    out["requests_per_s"] = out["requests"] / out["duration_s"]
    return {"generator": generator(), "connections": load.connections, **out}


WRK_LUA = """\
local paths, headers, counter = {paths}, {headers}, 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {{"requests":%d,"duration_s":%f,"errors":%d,'
    .. '"p50_ms":%f,"p99_ms":%f,"max_ms":%f}}\\n', summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


def _run_wrk(load: Load) -> dict[str, Any]:
    lua = json.dumps  # a JSON string literal is a Lua one here
    paths = "{" + ", ".join(lua(p) for p in load.paths) + "}"
    headers = "{" + ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in load.headers) + "}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_LUA.format(paths=paths, headers=headers))
        script.flush()
        threads, seconds = (
            min(load.connections, usable_cpus()),
            max(1, round(load.duration_s)),
        )
        cmd = f"wrk -t{threads} -c{load.connections} -d{seconds}s --latency --timeout 5s"
        cmd += f" -s {script.name} {load.url}"
        out = subprocess.run(cmd.split(), capture_output=True, text=True, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    return dict(json.loads(line.removeprefix("WRK_JSON ")))


def _connection(load: Load, n: int, deadline: float) -> tuple[list[float], int]:
    """One keep-alive connection sending requests until ``deadline``: latencies, errors."""
    parts, latencies, errors = urlsplit(load.url), [], 0
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    while (start := time.perf_counter()) < deadline:
        try:
            conn.request("GET", load.paths[n % len(load.paths)], headers=dict(load.headers))
            resp = conn.getresponse()
            resp.read()
            errors += resp.status >= 400
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()  # http.client reconnects on the next request
        latencies.append(time.perf_counter() - start)
        n += 1
    conn.close()
    return latencies, errors


def _load_process(load: Load, first: int, count: int, start_at: float, out: Any) -> None:
    """A generator process: ``count`` connections; sends back latencies and errors."""
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + load.duration_s
    with ThreadPoolExecutor(count) as pool:
        runs = list(pool.map(lambda n: _connection(load, (first + n) * 7, deadline), range(count)))
    out.put(([x for lat, _ in runs for x in lat], sum(e for _, e in runs)))


def _run_python(load: Load) -> dict[str, Any]:
    procs = max(1, min(load.connections, usable_cpus()))
    counts = [load.connections // procs + (n < load.connections % procs) for n in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    out, start_at = ctx.Queue(), time.time() + 1.0  # every process starts at once
    args = [(load, sum(counts[:n]), c, start_at, out) for n, c in enumerate(counts)]
    workers = [ctx.Process(target=_load_process, args=a) for a in args]
    for w in workers:
        w.start()
    try:
        parts = [out.get(timeout=load.duration_s + 30) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=5)
            w.kill()
    lats = sorted(x for got, _ in parts for x in got)
    p50, p99, top = (percentile(lats, p) * 1e3 for p in (50, 99, 100))
    errors = sum(e for _, e in parts)
    return dict(
        duration_s=load.duration_s,
        requests=len(lats),
        errors=errors,
        p50_ms=p50,
        p99_ms=p99,
        max_ms=top,
    )


def received_times(receiver_url: str, token: str | None) -> dict[str, float]:
    """When the receiver stored each job's final webhook: its change feed from the start."""
    out: dict[str, float] = {}
    params = {"after": "", "limit": "1000"}
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{receiver_url}/v1/events"
    while events := requests.get(url, params=params, headers=auth, timeout=30).json():
        for event in map(Event.from_dict, events["events"]):
            if event.final_job is not None and (at := parse_time(event.received_at)) is not None:
                out.setdefault(event.final_job.id, at)
        if not events["events"]:
            break
        params["after"] = events["cursor"]
    return out
