"""A fake clock and a fake transport that play both services, for socket-free client tests.

Time is virtual: a long-poll with nothing to report moves the clock to the next event or to
the end of its wait; sleeping moves it too. No test using these sleeps for real.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from client_lib.errors import TransportError
from client_lib.models import format_time
from client_lib.transport import Request, Response

SERVER = "http://server.test"
RECEIVER = "http://receiver.test"
T0 = 1_800_000_000.0


class FakeClock:
    """Virtual wall-clock time."""

    def __init__(self, start: float = T0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def advance_to(self, t: float) -> None:
        self.t = max(self.t, t)


@dataclasses.dataclass
class FakeJob:
    id: str
    created: float
    duration: float
    factor: float
    outcome: str
    webhook: str  # deliver, drop, duplicate
    callback_url: str | None
    cancelled_at: float | None = None

    @property
    def finish(self) -> float:
        return self.created + self.duration

    def status(self, now: float) -> str:
        if self.cancelled_at is not None and self.cancelled_at <= now:
            return "cancelled"
        return self.outcome if now >= self.finish else "pending"

    def body(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        final = status != "pending"
        estimate = self.created + self.duration * self.factor
        if not final and estimate <= now:
            estimate = now + 0.1 * self.duration * self.factor
        ended = self.cancelled_at if status == "cancelled" else self.finish
        return {
            "id": self.id,
            "status": status,
            "stage": None if final else "processing",
            "progress": 1.0
            if status == "completed"
            else round(min(0.99, (now - self.created) / (self.duration * self.factor)), 4),
            "created_at": format_time(self.created),
            "started_at": format_time(self.created),
            "finished_at": format_time(ended) if final else None,
            "estimated_completion_at": None if final else format_time(estimate),
            "priority": 0,
            "target_language": "es",
            "source_url": None,
            "callback_url": self.callback_url,
            "attempts": 1,
            "result": {"video_url": "https://cdn/x.mp4"} if status == "completed" else None,
            "error": {"code": "translation_failed", "message": "boom"}
            if status == "error"
            else None,
            "metadata": {},
        }


class FakeServices:
    """The translation server and the receiver, as one transport."""

    def __init__(self, clock: FakeClock, *, webhook_delay: float = 0.01) -> None:
        self.clock = clock
        self.jobs: dict[str, FakeJob] = {}
        self.webhook_delay = webhook_delay
        self.receiver_down: list[tuple[float, float]] = []  # [from, to) intervals
        self.status_answers: list[tuple[int, dict[str, str]]] = []  # scripted, then 200
        self.requests: Counter[str] = Counter()
        self.status_poll_times: list[float] = []
        self._events: list[tuple[float, str, FakeJob]] | None = None
        self.default_factor = 1.0
        self.noise: random.Random | None = None  # set: estimate factors ~ N(1, 0.2), seeded

    # --------------------------------------------------------------- helpers

    def add_job(
        self,
        job_id: str,
        duration: float,
        *,
        factor: float | None = None,
        outcome: str = "completed",
        webhook: str = "deliver",
        callback: bool = True,
    ) -> FakeJob:
        if factor is None:
            factor = max(0.3, self.noise.gauss(1.0, 0.2)) if self.noise else self.default_factor
        job = FakeJob(
            job_id,
            self.clock.now(),
            duration,
            factor,
            outcome,
            webhook,
            f"{RECEIVER}/webhooks" if callback else None,
        )
        self.jobs[job_id] = job
        self._events = None
        return job

    def is_down(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.receiver_down)

    def events(self) -> list[tuple[float, str, FakeJob]]:
        """(arrival time, webhook id, job), in arrival order; a webhook sent while the
        receiver is down is retried by the 'server' when it is back up."""
        if self._events is None:
            out = []
            for job in self.jobs.values():
                if job.callback_url is None or job.webhook == "drop":
                    continue
                ended = job.cancelled_at if job.cancelled_at is not None else job.finish
                arrival = ended + self.webhook_delay
                for _a, b in sorted(self.receiver_down):
                    if self.is_down(arrival):
                        arrival = b + 0.5
                copies = 2 if job.webhook == "duplicate" else 1
                out += [(arrival + i * 0.005, f"msg_{job.id}", job) for i in range(copies)]
            self._events = sorted(out, key=lambda e: e[0])
        return self._events

    # ------------------------------------------------------------- transport

    def send(self, request: Request) -> Response:
        url = urlsplit(request.url)
        base = f"{url.scheme}://{url.netloc}"
        params = dict(request.params or {})
        if base == RECEIVER:
            return self._receiver(request, url.path, params)
        if base == SERVER:
            return self._server(request, url.path, params)
        raise TransportError("connection failed", method=request.method, url=request.url)

    def close(self) -> None:
        pass

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(
            status,
            {"Content-Type": "application/json", **(headers or {})},
            json.dumps(body).encode(),
        )

    def _receiver(self, request: Request, path: str, params: dict[str, str]) -> Response:
        now = self.clock.now()
        if self.is_down(now):
            self.requests["receiver down"] += 1
            raise TransportError("connection failed", method=request.method, url=request.url)
        events = self.events()
        if path.startswith("/v1/events/"):
            job_id = path.rsplit("/", 1)[1]
            arrived = [e for e in events if e[0] <= now and e[2].id == job_id]
            if not arrived:
                return self._json(404, {"code": "event_not_found", "detail": "job_id: none"})
            return self._json(200, self._event(events.index(arrived[0]), arrived[0]))
        self.requests["feed"] += 1
        if params.get("after") == "latest":
            return self._json(200, {"events": [], "cursor": str(self._count_until(now))})
        after, wait = int(params["after"]), float(params.get("wait", 0))
        following = events[after] if after < len(events) else None
        if following is None or following[0] > now:
            wake = min(now + wait, following[0] if following else now + wait)
            down_at = [a for a, _b in self.receiver_down if now < a < wake]
            self.clock.advance_to(min([wake, *down_at]))
        now = self.clock.now()
        found = list(
            itertools.takewhile(
                lambda ie: ie[1][0] <= now, ((i, events[i]) for i in range(after, len(events)))
            )
        )
        cursor = str(found[-1][0] + 1) if found else str(after)
        return self._json(200, {"events": [self._event(i, e) for i, e in found], "cursor": cursor})

    def _count_until(self, t: float) -> int:
        return sum(1 for e in self.events() if e[0] <= t)

    def _event(self, index: int, event: tuple[float, str, FakeJob]) -> dict[str, Any]:
        arrival, webhook_id, job = event
        body = job.body(arrival)
        return {
            "cursor": str(index + 1),
            "webhook_id": webhook_id,
            "received_at": format_time(arrival),
            "type": f"job.{body['status']}",
            "data": body,
        }

    def _server(self, request: Request, path: str, params: dict[str, str]) -> Response:
        now = self.clock.now()
        if path == "/v1/jobs" and request.method == "GET" and "ids" in params:
            self.requests["status"] += 1
            self.status_poll_times.append(now)
            if self.status_answers:
                status, headers = self.status_answers.pop(0)
                return self._json(status, {"code": "rate_limited", "detail": "slow down"}, headers)
            ids = params["ids"].split(",")
            return self._json(
                200, {"jobs": [self.jobs[i].body(now) for i in ids if i in self.jobs]}
            )
        if path.startswith("/v1/jobs/") and request.method == "GET":
            self.requests["status"] += 1
            job = self.jobs.get(path.rsplit("/", 1)[1])
            if job is None:
                return self._json(404, {"code": "job_not_found", "detail": "no job"})
            return self._json(200, job.body(now))
        if path == "/v1/jobs" and request.method == "POST":
            body = request.json or {}
            sim = body.get("simulate", {})
            job = self.add_job(
                f"job_{len(self.jobs) + 1}",
                sim.get("duration_s", 10.0),
                outcome=sim.get("outcome", "completed"),
                webhook=sim.get("webhook", "deliver"),
                callback=bool(body.get("callback_url")),
            )
            self.requests["create"] += 1
            return self._json(201, job.body(now))
        if path.endswith("/cancel"):
            job = self.jobs[path.split("/")[3]]
            job.cancelled_at = now
            self._events = None
            return self._json(200, job.body(now))
        return self._json(404, {"code": "not_found", "detail": path})
