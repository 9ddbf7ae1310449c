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
from client_lib.models import format_time, parse_time
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
    channel: bool = False

    @property
    def finish(self) -> float:
        return self.created + self.duration

    @property
    def ended(self) -> float:
        return self.cancelled_at if self.cancelled_at is not None else self.finish

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


ENDPOINT = f"{RECEIVER}/webhooks"
RETRY_SCHEDULE = (0.0, 1.0, 5.0, 30.0, 120.0, 600.0)  # the server's default's start
HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_SOON = 0.05
HEARTBEAT_LINGER = 10.0
HEARTBEAT_RECENT = 64
RETRY_SOON = 1.0  # the receiver's: a retry due sooner brings the event itself


@dataclasses.dataclass
class Delivery:
    """How the fake server's attempts at one job's webhook went."""

    job: FakeJob
    created: float  # when the job ended and its event was made
    seq: int | None
    failures: list[tuple[float, float]]  # (attempt concluded, next attempt at)
    concluded: float | None  # delivered, or dropped: an attempt that ended it
    arrivals: list[float]  # when copies reached the receiver


class FakeServices:
    """The translation server and the receiver, as one transport.

    The server side plays the real one's webhook channel too: numbered events for channel
    jobs, retries on the real schedule (seeded jitter per job) while the receiver is down or
    answers 503, and heartbeats (every second while active, and soon after each attempt)
    that the receiver feeds when they say something new.
    """

    def __init__(self, clock: FakeClock, *, webhook_delay: float = 0.01) -> None:
        self.clock = clock
        self.jobs: dict[str, FakeJob] = {}
        self.webhook_delay = webhook_delay
        self.receiver_down: list[tuple[float, float]] = []  # [from, to) intervals
        self.first_attempt_503 = False  # the receiver answers each webhook's first try 503
        self.feed_busy_until = 0.0  # the feed answers 503 too_many_waiters until then
        self.heartbeats = True
        self.status_answers: list[tuple[int, dict[str, str]]] = []  # scripted, then 200
        self.requests: Counter[str] = Counter()
        self.status_poll_times: list[float] = []
        self._events: list[tuple[float, str, Any]] | None = None
        self._heard: list[float] = []
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
        channel: bool = True,
        created: float | None = None,
    ) -> FakeJob:
        if factor is None:
            factor = max(0.3, self.noise.gauss(1.0, 0.2)) if self.noise else self.default_factor
        job = FakeJob(
            job_id,
            self.clock.now() if created is None else created,
            duration,
            factor,
            outcome,
            webhook,
            ENDPOINT if callback else None,
            channel=callback and channel,
        )
        self.jobs[job_id] = job
        self._events = None
        return job

    def is_down(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.receiver_down)

    def deliveries(self) -> list[Delivery]:
        """Every job event, in the order the server made them (its numbering order)."""
        out, seq = [], 0
        ended = [j for j in self.jobs.values() if j.callback_url is not None]
        for job in sorted(ended, key=lambda j: (j.ended, j.id)):
            if job.channel:
                seq += 1
            out.append(self._deliver(job, seq if job.channel else None))
        return out

    def _deliver(self, job: FakeJob, seq: int | None) -> Delivery:
        rng = random.Random(job.id)
        delivery = Delivery(job, job.ended, seq, [], None, [])
        t = job.ended + self.webhook_delay
        for n in range(len(RETRY_SCHEDULE) + 1):
            if job.webhook == "drop":
                delivery.concluded = t
                return delivery
            refused = self.is_down(t) or (self.first_attempt_503 and n == 0)
            if not refused:
                copies = 2 if job.webhook == "duplicate" else 1
                delivery.arrivals = [t + i * 0.005 for i in range(copies)]
                delivery.concluded = delivery.arrivals[-1]
                return delivery
            if n == len(RETRY_SCHEDULE):
                delivery.concluded = t  # given up
                return delivery
            following = t + rng.random() * RETRY_SCHEDULE[n]
            delivery.failures.append((t, following))
            t = following
        return delivery

    def events(self) -> list[tuple[float, str, Any]]:
        """The receiver's feed: (arrival time, webhook id, job or heartbeat), in order."""
        if self._events is None:
            deliveries = self.deliveries()
            out: list[tuple[float, str, Any]] = [
                (arrival, f"msg_{d.job.id}", d)
                for d in deliveries
                for arrival in d.arrivals
                if not self.is_down(arrival)
            ]
            out += self._fed_heartbeats(deliveries)
            self._events = sorted(out, key=lambda e: e[0])
        return self._events

    def _fed_heartbeats(self, deliveries: list[Delivery]) -> list[tuple[float, str, Any]]:
        numbered = [d for d in deliveries if d.seq is not None]
        channel_jobs = [j for j in self.jobs.values() if j.channel]
        if not self.heartbeats or not channel_jobs:
            self._heard = []
            return []
        times = {d.concluded + HEARTBEAT_SOON for d in numbered if d.concluded is not None}
        times |= {at + HEARTBEAT_SOON for d in numbered for at, _ in d.failures}
        begin = min(j.created for j in channel_jobs)
        last = max([j.ended for j in channel_jobs] + [d.concluded or 0 for d in numbered])
        tick = begin + HEARTBEAT_INTERVAL
        while tick <= last + HEARTBEAT_LINGER:
            times.add(tick)
            tick += HEARTBEAT_INTERVAL
        heard = sorted(t for t in times if not self.is_down(t))
        self._heard = heard
        fed, digest = [], None
        stored = {  # when each job's event was stored at the receiver
            d.job.id: min(a for a in d.arrivals if not self.is_down(a))
            for d in numbered
            if any(not self.is_down(a) for a in d.arrivals)
        }
        for n, h in enumerate(heard):
            beat = self._heartbeat(numbered, h)
            # as the receiver does: fed only when it asks a client to act
            urgent = [
                e
                for e in beat["events"]
                if (
                    stored.get(e["job_id"], h + 1) > h
                    if e["state"] == "sent"
                    else (parse_time(e["next_attempt_at"]) or 0) > h + RETRY_SOON
                )
            ]
            key = json.dumps(urgent)
            if urgent and key != digest:
                digest = key
                fed.append((h, f"msg_hb_{n}", beat))
        return fed

    @staticmethod
    def _heartbeat(numbered: list[Delivery], h: float) -> dict[str, Any]:
        made = [d for d in numbered if d.created <= h]
        last = made[-1].seq if made else 0
        assert last is not None
        entries = []
        for d in made[-HEARTBEAT_RECENT:]:
            if d.created < h - 60:
                continue
            retry = [nxt for at, nxt in d.failures if at <= h]
            sent = d.concluded is not None and d.concluded <= h
            upcoming = None if sent else (retry[-1] if retry else d.created)
            entries.append(
                {
                    "seq": d.seq,
                    "job_id": d.job.id,
                    "state": "sent" if sent else "pending",
                    "next_attempt_at": format_time(upcoming),
                }
            )
        return {
            "endpoint": ENDPOINT,
            "client_id": "cli_test",
            "seq": last,
            "interval_s": HEARTBEAT_INTERVAL,
            "events": entries,
        }

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
            self.requests["lookup"] += 1
            for i, e in enumerate(events):
                if e[0] <= now and isinstance(e[2], Delivery) and e[2].job.id == job_id:
                    return self._json(200, self._event(i, e))
            return self._json(404, {"code": "event_not_found", "detail": "job_id: none"})
        self.requests["feed"] += 1
        if now < self.feed_busy_until and params.get("wait"):
            self.requests["feed busy"] += 1
            problem = {"code": "too_many_waiters", "detail": "wait: every slot is taken"}
            return self._json(503, problem, {"Retry-After": "1"})
        if params.get("after") == "latest":
            return self._json(200, {"events": [], "cursor": str(self._count_until(now))})
        after, wait = int(params["after"]), float(params.get("wait", 0))
        if "jobs" in params:  # as the receiver does: these jobs' events, and heartbeats
            wanted = set(params["jobs"].split(","))
            self.requests["feed for some jobs"] += 1
        shown = [
            (i, e)
            for i, e in enumerate(events)
            if i >= after and ("jobs" not in params or _shown(e[2], wanted))
        ]
        following = shown[0][1] if shown else None
        if following is None or following[0] > now:
            wake = min(now + wait, following[0] if following else now + wait)
            down_at = [a for a, _b in self.receiver_down if now < a < wake]
            self.clock.advance_to(min([wake, *down_at]))
        now = self.clock.now()
        found = list(itertools.takewhile(lambda ie: ie[1][0] <= now, shown))
        cursor = str(found[-1][0] + 1) if found else str(after)
        page: dict[str, Any] = {"events": [self._event(i, e) for i, e in found], "cursor": cursor}
        heard = [h for h in self._heard if h <= now]
        if heard and now - heard[-1] < 300:
            age = round(now - heard[-1], 3)
            page["channels"] = [{"endpoint": ENDPOINT, "seq": 0, "age_s": age}]
        return self._json(200, page)

    def _count_until(self, t: float) -> int:
        return sum(1 for e in self.events() if e[0] <= t)

    def _event(self, index: int, event: tuple[float, str, Any]) -> dict[str, Any]:
        arrival, webhook_id, what = event
        out = {
            "cursor": str(index + 1),
            "webhook_id": webhook_id,
            "received_at": format_time(arrival),
        }
        if isinstance(what, Delivery):
            body = what.job.body(arrival)
            out.update(type=f"job.{body['status']}", data=body)
            if what.seq is not None:
                out["seq"] = what.seq
        else:
            out.update(type="channel.heartbeat", data=what)
        return out

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
                factor=sim.get("estimate_factor"),
                outcome=sim.get("outcome", "completed"),
                webhook=sim.get("webhook", "deliver"),
                callback=bool(body.get("callback_url")),
                channel=bool(body.get("channel_events")),
            )
            self.requests["create"] += 1
            return self._json(201, job.body(now))
        if path.endswith("/cancel"):
            job = self.jobs[path.split("/")[3]]
            job.cancelled_at = now
            self._events = None
            return self._json(200, job.body(now))
        return self._json(404, {"code": "not_found", "detail": path})


def _shown(what: Any, jobs: set[str]) -> bool:
    """Whether a feed filtered to ``jobs`` shows this event: theirs, or a heartbeat."""
    return not isinstance(what, Delivery) or what.job.id in jobs
