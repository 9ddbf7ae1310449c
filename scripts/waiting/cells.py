"""Cells (a shape x a fault x a strategy), each on services of its own, and their run order.

The library runs one fault at a time, its four shapes at once; the pollers run after it,
every shape and strategy at once, so their load never overlaps the library's cells.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from scripts.common import received_times
from tests.support import start_receiver, start_server

from .callers import READY_TIMEOUT_S, AgentSpec, run_shape
from .matrix import LIBRARY, PEERS, Counts, JobSpec, Seen
from .proxies import FlappingProxy, Reject503Proxy

WORKERS = 2000  # worker slots of every server: no job ever queues
PROXIES: dict[str, type[FlappingProxy | Reject503Proxy]] = {
    "receiver flapping": FlappingProxy,
    "503 then retry": Reject503Proxy,
}
WEBHOOKS_ONLY = ("503 then retry",)  # the proxy carries the webhooks; the feed is read direct
_REQUESTS = re.compile(r"^vt_http_requests_total\{([^}]*)\}\s+(\S+)$", re.M)


@dataclasses.dataclass(slots=True)
class CellRun:
    """One cell's outcome; ``fault`` is ``*`` for a poller (no fault touches it)."""

    fault: str
    shape: str
    strategy: str
    specs: list[JobSpec] = dataclasses.field(default_factory=list)
    seen: list[Seen] = dataclasses.field(default_factory=list)
    counts: Counts = dataclasses.field(default_factory=Counts)
    wall_s: float = 0.0
    server_status_requests: int | None = None  # as the server counted them (its /metrics)
    proxy: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the cell, its requests by kind, and each job as its caller saw it."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        counts = {"kinds": dict(self.counts.kinds), "client_status": self.counts.client_status}
        return {
            **out,
            "specs": len(self.specs),
            "seen": list(map(dataclasses.asdict, self.seen)),
            "counts": counts,
        }


def closed_port_url() -> str:
    """A URL on which nothing listens (a port the OS just handed out and took back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run_cell(
    run: CellRun, args: Any, workdir: Path, keep: contextlib.ExitStack, barrier: threading.Barrier
) -> None:
    """Fresh services (for the library: a receiver, and the fault's proxy), then the callers,
    released by ``barrier`` together with the other cells; ``keep`` stops the services."""
    workdir.mkdir()
    opts = ["--workers", str(WORKERS), "--seed", str(args.seed), "--log-level", "WARNING"]
    server = keep.enter_context(start_server(workdir, *opts, timeout=READY_TIMEOUT_S))
    setup = json.loads((workdir / "local.json").read_text())
    key, token = str(setup["api_key"]), setup.get("receiver_token")
    with contextlib.ExitStack() as stack:
        proxy, receiver_url = None, closed_port_url() if run.fault == "receiver down" else ""
        stored_from = ""  # the receiver itself, not a proxy in front of it
        callback = None  # the receiver's own /webhooks
        if run.strategy == LIBRARY and not receiver_url:
            opts = ["--log-level", "warning"]  # its own defaults, as a user starts it
            receiver_url = stored_from = keep.enter_context(start_receiver(workdir, *opts)).url
            if run.fault in PROXIES:
                proxy = stack.enter_context(contextlib.closing(PROXIES[run.fault](receiver_url)))
                if run.fault in WEBHOOKS_ONLY:
                    callback = proxy.url + "/webhooks"
                else:
                    receiver_url = proxy.url
        began = [0.0]

        def ready() -> None:
            barrier.wait(timeout=READY_TIMEOUT_S)
            began[0] = time.time()
            if isinstance(proxy, FlappingProxy):
                proxy.begin(began[0])

        rng_key = f"{args.seed}/{run.shape}/{run.strategy}"
        agent = AgentSpec(
            run.strategy,
            server.url,
            key,
            receiver_url,
            run.fault,
            rng_key,
            receiver_token=token,
            callback_url=callback,
        )
        run.seen, run.counts = run_shape(
            run.shape, agent, run.specs, args.timeout, args.sizes["processes"][0], ready
        )
        run.wall_s = time.time() - began[0]
        if stored_from:
            stored = received_times(stored_from, token)
            for s in run.seen:
                s.stored_at = stored.get(s.job_id)
        if isinstance(proxy, FlappingProxy):
            run.proxy = {"down_windows": proxy.downs, "connections_dropped": proxy.dropped}
        elif isinstance(proxy, Reject503Proxy):
            run.proxy = {"rejected_503": len(proxy.rejected), "passed": dict(proxy.passed)}
    with contextlib.suppress(requests.RequestException):  # None: no count to show
        found = _REQUESTS.findall(requests.get(f"{server.url}/metrics", timeout=10).text)
        labels = [(dict(re.findall(r'(\w+)="([^"]*)"', ls)), float(n)) for ls, n in found]
        routes = ("/v1/jobs", "/v1/jobs/<job_id>")
        status = [n for lb, n in labels if lb.get("method") == "GET" and lb.get("route") in routes]
        run.server_status_requests = int(sum(status)) if found else None


def run_together(cells: list[CellRun], args: Any) -> None:
    """Run cells in threads, released together once every one of them is ready; every
    child service is stopped on the way out."""
    barrier = threading.Barrier(len(cells))

    def one(run: CellRun, workdir: Path, keep: contextlib.ExitStack) -> None:
        try:
            run_cell(run, args, workdir, keep, barrier)
        except BaseException as exc:
            barrier.abort()
            if not isinstance(exc, threading.BrokenBarrierError):
                traceback.print_exc(file=sys.stderr)
            run.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as keep:
        threads = [
            threading.Thread(target=one, args=(run, Path(tmp) / str(i), keep))
            for i, run in enumerate(cells)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def run_matrix(args: Any, specs: dict[str, list[JobSpec]], report: Callable[[CellRun], None]):
    """The library under each fault, one cell at a time (in quick mode its shapes at once:
    quicker, but they share the cores), then every poller cell at once; ``report(run)`` as
    each cell's run comes in. Every run."""
    library = [
        [CellRun(f, shape, LIBRARY, specs[shape]) for shape in args.shapes] for f in args.faults
    ]
    phases = library if args.quick else [[cell] for cells in library for cell in cells]
    if not args.no_pollers:
        phases.append([CellRun("*", sh, peer, specs[sh]) for sh in args.shapes for peer in PEERS])
    for cells in phases:
        print(f"{cells[0].strategy}, {cells[0].fault}: {len(cells)} cells at once", file=sys.stderr)
        run_together(cells, args)
        for run in cells:
            for s in run.seen:
                s.lookups = run.counts.lookups[s.job_id]
            report(run)
    return [run for cells in phases for run in cells]
