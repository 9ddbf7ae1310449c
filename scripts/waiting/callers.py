"""The callers: this library and the pollers, each run in the four shapes of calling code.

A strategy is an *agent* with the same moves: ``create`` a job, ``wait`` for one, wait for
``many`` (the library: create them all, then ``as_completed``; a poller: create each and start
its polling thread at once), and ``finish``; the shapes are written once, for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import queue
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter

from client_lib import TranslationClient
from client_lib.errors import WaitTimeout
from client_lib.transport import RequestsTransport

from .matrix import LIBRARY, CountingTransport, Counts, JobSpec, Seen, simulate

POOL_MAX = 32  # a poller cell's keep-alive connections, its processes' together (waitress
# serves 100 at once: more would wait, idle, for one to close)
READY_TIMEOUT_S = 120.0  # services started and client processes spawned


def doubling(first: float, cap: float | None, jitter: tuple[float, float] | None):
    """Delays from ``first``, doubling up to ``cap``, each times a uniform ``jitter``."""

    def delays(rng: random.Random) -> Iterator[float]:
        for n in itertools.count():
            base = first * 2**n if cap is None else min(first * 2**n, cap)
            yield base * (rng.uniform(*jitter) if jitter else 1.0)

    return delays


DELAYS: dict[str, Callable[[random.Random], Iterator[float]]] = {
    "poll 1s": lambda _rng: itertools.repeat(1.0),
    "poll 5s": lambda _rng: itertools.repeat(5.0),
    "backoff": doubling(1.0, 32.0, (0.5, 1.5)),
    "doubling": doubling(1.0, None, None),
    "heygen-cli": doubling(2.0, 30.0, (0.75, 1.25)),
}


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """How to make a cell's agent (picklable, for the ``processes`` shape)."""

    strategy: str
    server_url: str
    api_key: str
    receiver_url: str  # the library's
    fault: str
    rng_key: str
    pool: int = 1  # a poller's keep-alive connections
    receiver_token: str | None = None  # the library's feed token
    callback_url: str | None = None  # the library's, when not the receiver's own /webhooks

    def make(self, timeout: float) -> Library | Poller:
        """A fresh agent whose waiting ends ``timeout`` seconds after its ``start``."""
        return (Library if self.strategy == LIBRARY else Poller)(self, timeout)


class Agent:
    """What both strategies share: counts, a deadline, the shapes' moves."""

    def __init__(self, spec: AgentSpec, timeout: float) -> None:
        self.spec, self.timeout, self.deadline, self.counts = spec, timeout, 0.0, Counts()

    def start(self) -> Self:
        """The caller starts: the deadline counts from now."""
        self.deadline = time.time() + self.timeout
        return self


class Library(Agent):
    """A ``TranslationClient`` on the cell's services, its requests counted."""

    def __init__(self, spec: AgentSpec, timeout: float) -> None:
        super().__init__(spec, timeout)
        url, receiver = spec.server_url, spec.receiver_url
        counting = CountingTransport(RequestsTransport(), url, receiver, self.counts)
        self.client = TranslationClient(
            base_url=url,
            api_key=spec.api_key,
            receiver_url=receiver,
            receiver_token=spec.receiver_token,
            transport=counting,
            callback_url=spec.callback_url,
        )

    def create(self, spec: JobSpec) -> Seen:
        """Create the job with the fault's webhook setting."""
        job = self.client.create_job(target_language="es", simulate=simulate(spec, self.spec.fault))
        return Seen(spec.index, job.id, time.time())

    def wait(self, s: Seen, *, since_create: bool) -> None:
        """``wait`` for it (asked about since its creation, or from now)."""
        s.asked_at = s.asked_at if since_create else time.time()
        with contextlib.suppress(WaitTimeout):
            job = self.client.wait(s.job_id, timeout=max(0.01, self.deadline - time.time()))
            s.saw(job.finished_at, time.time())

    def many(self, specs: Sequence[JobSpec]) -> list[Seen]:
        """Create every job, then ``as_completed`` over them, asked about from then on."""
        by_id, asked = {s.job_id: s for s in map(self.create, specs)}, time.time()
        for s in by_id.values():
            s.asked_at = asked
        with contextlib.suppress(WaitTimeout):
            for job in self.client.as_completed(list(by_id), timeout=self.deadline - asked):
                by_id[job.id].saw(job.finished_at, time.time())
        return list(by_id.values())

    def finish(self, seen: Sequence[Seen]) -> Counts:
        """Each job's detection path, the client's own count of status requests; close."""
        for s in seen:
            s.path = getattr(self.client.detection(s.job_id), "path", None)
        self.counts.client_status = int(self.client.stats.status_requests)
        self.client.close()
        return self.counts


class Poller(Agent):
    """``GET /v1/jobs/{id}`` until final, on a keep-alive session shared by its threads."""

    def __init__(self, spec: AgentSpec, timeout: float) -> None:
        super().__init__(spec, timeout)
        self.auth = {"Authorization": f"Bearer {spec.api_key}"}
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_maxsize=spec.pool, pool_block=True))
        self.created: dict[str, dict[str, Any]] = {}

    def create(self, spec: JobSpec) -> Seen:
        """Create the job, without a callback URL; its answer is the first look at it."""
        self.counts.add("POST /v1/jobs")
        body = {"target_language": "es", "simulate": simulate(spec, None)}
        resp = self.session.post(
            f"{self.spec.server_url}/v1/jobs", json=body, headers=self.auth, timeout=10
        )
        resp.raise_for_status()
        self.created[resp.json()["id"]] = resp.json()
        return Seen(spec.index, resp.json()["id"], time.time())

    def get(self, job_id: str) -> dict[str, Any] | None:
        """One status request (None when it failed)."""
        self.counts.add("status", [job_id])
        with contextlib.suppress(requests.RequestException):
            url = f"{self.spec.server_url}/v1/jobs/{job_id}"
            if (resp := self.session.get(url, headers=self.auth, timeout=10)).status_code == 200:
                return dict(resp.json())
        self.counts.add("failed status")
        return None

    def wait(self, s: Seen, *, since_create: bool) -> None:
        """Look (the create answer, or a GET), sleep, look again, until final or too late."""
        first = self.created.pop(s.job_id, None)
        if not since_create:
            s.asked_at, first = time.time(), None
        body, at = first or self.get(s.job_id), time.time()
        for delay in DELAYS[self.spec.strategy](random.Random(f"{self.spec.rng_key}/{s.index}")):
            if body is not None and body["status"] != "pending":
                return s.saw(body["finished_at"], at)
            if time.time() + delay > self.deadline:
                return None
            time.sleep(delay)
            body, at = self.get(s.job_id), time.time()

    def many(self, specs: Sequence[JobSpec]) -> list[Seen]:
        """Create each job and start its polling thread at once."""
        seen: list[Seen] = []
        with ThreadPoolExecutor(max(1, len(specs))) as pool:
            for spec in specs:
                seen.append(self.create(spec))
                pool.submit(self.wait, seen[-1], since_create=True)
        return seen

    def finish(self, seen: Sequence[Seen]) -> Counts:
        """Close the session."""
        self.session.close()
        return self.counts


Outcome = tuple[list[Seen], Counts]


def run_shape(
    shape: str,
    agent: AgentSpec,
    specs: Sequence[JobSpec],
    timeout: float,
    processes: int,
    ready: Callable[[], None],
) -> Outcome:
    """The cell's callers in ``shape``; ``ready()`` returns once every cell may start."""
    if shape == "processes":  # each process its agent, its share of the jobs, then many
        pool = max(1, POOL_MAX // processes)  # the cell's processes hold POOL_MAX together
        size = len(specs) // processes
        parts = [specs[i * size : (i + 1) * size] for i in range(processes)]
        return _processes(dataclasses.replace(agent, pool=pool), parts, timeout, ready)
    if shape == "one job":  # K callers in threads, each its agent: create one job, wait
        agents = [agent.make(timeout) for _ in specs]
        ready()
        with ThreadPoolExecutor(len(specs)) as threads:
            seen = list(threads.map(_one_job, agents, specs))
        return seen, Counts().merge_all(a.counts for a in agents)
    one = dataclasses.replace(agent, pool=min(len(specs), POOL_MAX)).make(timeout)
    ready()
    one.start()
    if shape == "as_completed":
        seen = one.many(specs)
    else:  # sequential: create every job, then wait on each in turn, asking about it from then
        seen = [one.create(spec) for spec in specs]
        for s in seen:
            one.wait(s, since_create=False)
    return seen, one.finish(seen)


def _one_job(agent: Library | Poller, spec: JobSpec) -> Seen:
    s = agent.start().create(spec)
    agent.wait(s, since_create=True)
    agent.finish([s])
    return s


def _in_process(
    agent: AgentSpec, specs: Sequence[JobSpec], timeout: float, barriers: Any, out: Any
) -> None:
    """A spawned caller: its agent made, then (once every cell is ready) ``many``."""
    try:
        one = agent.make(timeout)
        for barrier in barriers:  # made: ready; then every cell ready: go
            barrier.wait(timeout=READY_TIMEOUT_S)
        seen = one.start().many(specs)
        out.put((seen, one.finish(seen)))
    except BaseException as exc:  # the parent must hear of it, whatever it is
        for barrier in barriers:
            barrier.abort()
        out.put(f"{type(exc).__name__}: {exc}")


def _processes(
    agent: AgentSpec, parts: Sequence[Sequence[JobSpec]], timeout: float, ready: Callable[[], None]
) -> Outcome:
    """P spawned processes; once all are up, ``ready()``, then they start together."""
    ctx = multiprocessing.get_context("spawn")
    barriers, out = [ctx.Barrier(len(parts) + 1) for _ in range(2)], ctx.Queue()
    procs = [
        ctx.Process(target=_in_process, args=(agent, part, timeout, barriers, out))
        for part in parts
    ]
    for proc in procs:
        proc.start()
    try:
        barriers[0].wait(timeout=READY_TIMEOUT_S)
        ready()
        barriers[1].wait(timeout=READY_TIMEOUT_S)
        outcomes = [out.get(timeout=timeout + 60) for _ in procs]
    except BaseException:
        for barrier in barriers:
            barrier.abort()
        with contextlib.suppress(queue.Empty):  # what a failed process said
            print(f"a client process: {out.get(timeout=1)}", file=sys.stderr)
        raise
    finally:
        for proc in procs:
            proc.join(timeout=10)
            proc.kill()
    if errors := [o for o in outcomes if isinstance(o, str)]:
        raise RuntimeError(f"a client process: {errors[0]}")
    return [s for seen, _ in outcomes for s in seen], Counts().merge_all(c for _, c in outcomes)
