"""The matrix (shapes, faults, strategies), the seeded jobs, what a caller saw, the requests."""

from __future__ import annotations

import dataclasses
import random
import re
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from client_lib.models import parse_time
from client_lib.transport import Request, Response, Transport

SHAPES = ("one job", "sequential", "as_completed", "processes")
LIBRARY = "library"
PEERS = ("poll 1s", "poll 5s", "backoff", "doubling", "heygen-cli")
STRATEGIES = (LIBRARY, *PEERS)
FAULT_NOTES = {
    "none": "webhooks delivered.",
    "drop 1/10": "jobs 0, 10, 20, ... of each shape are created with `simulate.webhook = "
    '"drop"`: the server never sends their webhook.',
    "drop all": 'every job is created with `simulate.webhook = "drop"`.',
    "receiver down": "the library's `receiver_url`, and so every callback URL, is a closed "
    "port on 127.0.0.1.",
    "receiver flapping": "the library's `receiver_url` is a TCP proxy in front of the receiver "
    "that refuses new connections and drops open ones 3 s in every 10 s (from 7 s to 10 s "
    "after the cell starts, and every 10 s after): webhooks and feed requests alike.",
    "duplicates": 'every job is created with `simulate.webhook = "duplicate"`: its webhook '
    "is sent twice.",
    "503 then retry": "the library's `callback_url` is an HTTP proxy in front of the receiver "
    "that answers the first `POST /webhooks` of each `job.*` event (by `webhook-id`) 503, "
    "without `Retry-After`, and passes everything else through; the server retries on its "
    "schedule. The library reads the feed from the receiver itself.",
}
FAULTS = tuple(FAULT_NOTES)
# jobs per cell: one job's callers, sequential's and as_completed's jobs, processes x jobs
QUICK = {"one job": 5, "sequential": 10, "as_completed": 50, "processes": (4, 5)}
FULL = {"one job": 20, "sequential": 10, "as_completed": 200, "processes": (10, 20)}


def jobs(sizes: dict[str, Any], shape: str) -> int:
    """How many jobs a cell of this shape has."""
    size = sizes[shape]
    return size[0] * size[1] if shape == "processes" else int(size)


def describe(sizes: dict[str, Any], shape: str) -> str:
    """The shape's size, as the tables name it."""
    if shape == "processes":
        return "{} x {} jobs".format(*sizes[shape])
    return f"{sizes[shape]} {'callers' if shape == 'one job' else 'jobs'}"


@dataclasses.dataclass(frozen=True, slots=True)
class JobSpec:
    """Job ``index`` of a shape, the same for every strategy."""

    index: int
    duration_s: float
    estimate_factor: float


def job_specs(seed: int, shape: str, count: int) -> list[JobSpec]:
    """Durations uniform in 5-15 s, estimator factors ``max(0.3, gauss(1, 0.2))``, seeded."""
    rng = random.Random(f"waiting/{seed}/{shape}")
    pairs = [(rng.uniform(5.0, 15.0), max(0.3, rng.gauss(1.0, 0.2))) for _ in range(count)]
    return [JobSpec(i, round(d, 3), round(f, 4)) for i, (d, f) in enumerate(pairs)]


def is_lost(fault: str, index: int) -> bool:
    """Whether the fault drops this job's webhook."""
    return fault == "drop all" or (fault == "drop 1/10" and index % 10 == 0)


def simulate(spec: JobSpec, fault: str | None) -> dict[str, Any]:
    """The ``simulate`` body pinning the job; ``fault=None``: no webhook setting (pollers)."""
    body: dict[str, Any] = {"duration_s": spec.duration_s, "estimate_factor": spec.estimate_factor}
    if fault is not None:
        dup = "duplicate" if fault == "duplicates" else "deliver"
        body["webhook"] = "drop" if is_lost(fault, spec.index) else dup
    return {**body, "outcome": "completed"}


@dataclasses.dataclass(slots=True)
class Seen:
    """One job as its caller saw it."""

    index: int
    job_id: str = ""
    asked_at: float = 0.0  # when the caller started asking about this job
    seen_at: float | None = None  # when the caller knew it ended (None: never)
    finished_at: float | None = None
    path: str | None = None  # the library's detection path
    lookups: int = 0  # status requests naming this job
    stored_at: float | None = None  # when the library's receiver stored its final webhook

    def saw(self, finished_at: str | None, at: float) -> None:
        """The caller learned at ``at`` that the job ended at ``finished_at`` (wire time)."""
        self.seen_at, self.finished_at = at, parse_time(finished_at)

    @property
    def lag_s(self) -> float | None:
        """Known minus the later of its end and the first question; None if never known."""
        if self.seen_at is None or self.finished_at is None:
            return None
        return max(0.0, self.seen_at - max(self.finished_at, self.asked_at))

    def stages(self) -> tuple[float, float] | None:
        """A webhook-found job's lag in two: (end to stored, stored to known), in seconds."""
        if self.path != "webhook" or None in (self.stored_at, self.seen_at, self.finished_at):
            return None
        assert self.stored_at is not None and self.seen_at is not None
        start = max(self.finished_at or 0.0, self.asked_at)  # as the lag counts
        stored = max(self.stored_at, start)
        return stored - start, max(0.0, self.seen_at - stored)


@dataclasses.dataclass
class Counts:
    """A caller's requests by kind (``status``, ``feed``, ``failed <kind>``: no HTTP answer,
    or another method and path), the status requests naming each job, and the library's own
    count of its status requests (``client.stats``)."""

    kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    lookups: Counter[str] = dataclasses.field(default_factory=Counter)
    client_status: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"kinds": self.kinds, "lookups": self.lookups, "client_status": self.client_status}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def add(self, kind: str, ids: list[str] | None = None) -> None:
        """One request of ``kind``; ``ids``: the jobs a status request names."""
        with self._lock:
            self.kinds[kind] += 1
            self.lookups.update(ids or [])

    def merge_all(self, others: Iterable[Counts]) -> Counts:
        """Add other callers' counts; self."""
        for other in others:
            self.kinds.update(other.kinds)
            self.lookups.update(other.lookups)
            self.client_status += other.client_status
        return self


_JOB = re.compile(r"/v1/jobs/([^/?]+)")


class CountingTransport:
    """The library's real transport, counting every request it is asked to send."""

    def __init__(self, inner: Transport, server: str, receiver: str, counts: Counts) -> None:
        self._inner, self._counts = inner, counts
        self._server, self._receiver = server.rstrip("/") + "/", receiver.rstrip("/") + "/"

    def send(self, request: Request) -> Response:
        """Count (``status`` with the ids it names, ``feed``, or the method and path), send."""
        url, ids = request.url.split("?", 1)[0], None
        path = "/" + url.removeprefix(self._server).removeprefix(self._receiver)
        if url.startswith(self._receiver):
            kind = "feed" if path.startswith("/v1/events") else f"{request.method} receiver {path}"
        elif request.method == "GET" and path == "/v1/jobs" and "ids" in (request.params or {}):
            kind, ids = "status", [i for i in (request.params or {})["ids"].split(",") if i]
        elif request.method == "GET" and (m := _JOB.fullmatch(path)) is not None:
            kind, ids = "status", [m[1]]
        else:
            kind = f"{request.method} {_JOB.sub('/v1/jobs/{id}', path)}"
        self._counts.add(kind, ids)
        try:
            return self._inner.send(request)
        except Exception:
            self._counts.add(f"failed {kind}")
            raise

    def close(self) -> None:
        """Close the real transport."""
        self._inner.close()
