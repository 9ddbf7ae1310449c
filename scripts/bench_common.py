"""Shared pieces of the HTTP benchmarks: child services, load generators, result figures.

A benchmark starts each target as a child process that binds port 0 and writes
``{"url", "port", "pid"}`` to a ready file (the shape the tests use), then drives it with ONE
load generator, the same for every target:

- ``wrk`` when it is on PATH: a generated Lua script rotates the request paths and sets the
  headers, and its ``done()`` hook prints the figures as JSON (exact percentiles in
  microseconds, no text scraping);
- otherwise a Python generator: several processes, each with threads holding one keep-alive
  ``http.client`` connection apiece, so the generator is less of a bottleneck than one GIL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to send: paths in rotation, headers, how many connections and for how long."""

    url: str
    paths: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    connections: int
    duration_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class LoadResult:
    """The figures of one timed run."""

    generator: str
    connections: int
    duration_s: float
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclasses.dataclass
class ChildService:
    """A service in a child process; ``stop`` always reaps it."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the child wrote (for error messages)."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_child(name: str, cmd: Sequence[str], ready_file: Path, log_path: Path) -> ChildService:
    """Start ``cmd`` (which must write ``ready_file``) and wait until it listens."""
    ready_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VT_")}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env)
    child = ChildService(name=name, proc=proc, url="", log_path=log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{child.log_tail()}")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                child.url = str(json.loads(ready_file.read_text())["url"])
                return child
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen within {READY_TIMEOUT_S}s")
            time.sleep(0.02)
    except BaseException:
        child.stop()
        raise


def write_ready_file(path: Path, url: str, port: int) -> None:
    """Tell the parent where a child listens (atomically: the parent polls for the file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "port": port, "pid": os.getpid()}))
    os.replace(tmp, path)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --- wrk --------------------------------------------------------------------------------------

WRK_LUA = """\
local paths = {paths}
local headers = {headers}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests":%d,"duration_us":%d,"errors":%d,'
    .. '"p50_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk_available() -> bool:
    """Whether the ``wrk`` binary is on PATH."""
    return shutil.which("wrk") is not None


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def _wrk_script(spec: LoadSpec) -> str:
    paths = "{" + ", ".join(_lua_string(p) for p in spec.paths) + "}"
    headers = (
        "{" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers) + "}"
    )
    return WRK_LUA.format(paths=paths, headers=headers)


def _wrk_command(spec: LoadSpec, script: str) -> list[str]:
    threads = max(1, min(spec.connections, os.cpu_count() or 1))
    return ["wrk", f"-t{threads}", f"-c{spec.connections}", f"-d{spec.duration_s:g}s",
            "--latency", "--timeout", "5s", "-s", script, spec.url]  # fmt: skip


def run_wrk(spec: LoadSpec) -> LoadResult:
    """One timed wrk run; the figures come from the Lua ``done()`` hook."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(_wrk_script(spec))
    try:
        out = subprocess.run(
            _wrk_command(spec, lua.name),
            capture_output=True,
            text=True,
            check=True,
            timeout=spec.duration_s + 30,
        ).stdout
    finally:
        os.unlink(lua.name)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    return LoadResult(
        generator="wrk",
        connections=spec.connections,
        duration_s=seconds,
        requests=raw["requests"],
        errors=raw["errors"],
        requests_per_s=raw["requests"] / seconds,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


# --- the Python generator ---------------------------------------------------------------------


def _connection_loop(
    spec: LoadSpec, offset: int, deadline: float, latencies: list[float], errors: list[int]
) -> None:
    """One keep-alive connection sending requests until ``deadline``.

    ``latencies`` and ``errors`` belong to this thread alone (no shared counters).
    """
    parts = urlsplit(spec.url)
    headers = dict(spec.headers)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    i = offset
    try:
        while (start := time.perf_counter()) < deadline:
            try:
                conn.request("GET", spec.paths[i % len(spec.paths)], headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status < 400
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()  # http.client reconnects on the next request
            latencies.append(time.perf_counter() - start)
            if not ok:
                errors[0] += 1
            i += 1
    finally:
        conn.close()


def _generator_process(
    spec: LoadSpec, first: int, count: int, start_at: float, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    """A worker process: ``count`` connection threads; sends back latencies and errors."""
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + spec.duration_s
    lats: list[list[float]] = [[] for _ in range(count)]
    errs: list[list[int]] = [[0] for _ in range(count)]
    threads = [
        threading.Thread(
            target=_connection_loop, args=(spec, (first + n) * 7, deadline, lats[n], errs[n])
        )
        for n in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(([x for lat in lats for x in lat], sum(e[0] for e in errs)))


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if n < extra else 0) for n in range(parts)]


def run_python(spec: LoadSpec, *, processes: int | None = None) -> LoadResult:
    """One timed run of the Python generator (several processes, threads in each)."""
    procs = max(1, min(spec.connections, processes or os.cpu_count() or 1))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 1.0  # spawn takes a moment: start every process together
    workers, first = [], 0
    for count in _split(spec.connections, procs):
        p = ctx.Process(target=_generator_process, args=(spec, first, count, start_at, queue))
        p.start()
        workers.append(p)
        first += count
    try:
        results = [queue.get(timeout=spec.duration_s + 30) for _ in workers]
    finally:
        for p in workers:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    latencies = sorted(lat for lats, _ in results for lat in lats)
    errors = sum(err for _, err in results)
    return LoadResult(
        generator="python",
        connections=spec.connections,
        duration_s=spec.duration_s,
        requests=len(latencies),
        errors=errors,
        requests_per_s=len(latencies) / spec.duration_s,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=(latencies[-1] * 1000) if latencies else 0.0,
    )


def run_load(spec: LoadSpec, generator: str) -> LoadResult:
    """Dispatch to ``wrk`` or ``python``."""
    if generator == "wrk":
        return run_wrk(spec)
    return run_python(spec)


def pick_generator(requested: str) -> str:
    """``auto`` means wrk when installed, else the Python generator."""
    if requested == "auto":
        return "wrk" if wrk_available() else "python"
    if requested == "wrk" and not wrk_available():
        raise SystemExit("wrk is not on PATH (apt-get install -y wrk), or use --generator python")
    return requested


@contextlib.contextmanager
def children() -> Iterator[list[ChildService]]:
    """A list to register child services in; every one is stopped on the way out."""
    started: list[ChildService] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


def python_executable() -> str:
    """The interpreter running this script (the project's venv when run through it)."""
    return sys.executable


ADMIN_TOKEN = "bench-admin-token"


def start_translation_server(workdir: Path, *extra: str) -> ChildService:
    """The real translation server for a benchmark: a free port, its own SQLite database,
    the admin token above, no demo job, quiet logs; ``extra`` adds or overrides options."""
    cmd = [python_executable(), "-m", "translation_server", "--host", "127.0.0.1",
           "--port", "0", "--ready-file", str(workdir / "server.ready"),
           "--database-url", f"sqlite:///{workdir / 'bench.db'}",
           "--admin-token", ADMIN_TOKEN, "--credentials-file", str(workdir / "local.json"),
           "--no-demo-job", "--log-level", "WARNING", *extra]  # fmt: skip
    return start_child("server", cmd, workdir / "server.ready", workdir / "server.log")


def start_callback_receiver(workdir: Path, *extra: str) -> ChildService:
    """The project's callback receiver on its own database, trusting the webhook secret the
    translation server wrote to ``workdir/local.json``; quiet logs; ``extra`` options."""
    cmd = [python_executable(), "-m", "callback_receiver", "--host", "127.0.0.1", "--port", "0",
           "--ready-file", str(workdir / "receiver.ready"),
           "--database-url", f"sqlite:///{workdir / 'receiver.db'}",
           "--credentials-file", str(workdir / "local.json"), "--log-level", "warning",
           *extra]  # fmt: skip
    return start_child("receiver", cmd, workdir / "receiver.ready", workdir / "receiver.log")
