"""The waiting strategy: learn that jobs ended from webhooks, poll the server only as a fallback.

One ``Waiter`` per client follows the callback receiver's change feed (a long-poll, one
connection for any number of jobs) and keeps, for every job it watches, the time at which it
would ask the translation server instead. When to ask depends on what the waiter believes
about webhooks:

``unknown``     no webhook seen yet: a job is checked once it has run three times its
                estimated duration, or sooner when a tenth of the jobs are well past their
                estimates and not one webhook came (webhooks are probably lost);
``trusted``     webhooks are arriving: a job is checked only at three times its estimate, as a
                safety net, so a healthy system costs no status requests at all;
``distrusted``  a job was found final with no webhook, or the receiver is unreachable: jobs
                are polled from 80 % of their estimate, then as the server's estimate and
                ``Poll-After-Ms`` suggest, with jitter.

Polls that fall due together go out as one ``GET /v1/jobs?ids=`` call. Whichever path sees a
final state first wins; a job is reported once. The waiter is driven by ``step()``: the client
calls it from whichever thread is waiting (see ``client.py``), tests call it with a fake clock.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Protocol

from .errors import APIError, JobNotFound, TranslationError
from .models import Event, Job, parse_time

log = logging.getLogger(__name__)

MAX_IDS_PER_POLL = 100
MIN_FEED_WAIT_S = 0.01


class Clock(Protocol):
    """Wall-clock time (comparable with the server's timestamps), and sleeping."""

    def now(self) -> float:
        """Unix seconds."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Unix seconds."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)


class Backend(Protocol):
    """The calls the waiter makes; the client implements them over HTTP."""

    def feed_latest(self) -> str:
        """The receiver feed's current end."""

    def feed(self, after: str, wait: float) -> tuple[list[Event], str]:
        """Events after ``after``, blocking up to ``wait`` seconds for one."""

    def final_event(self, job_id: str) -> Job | None:
        """The final job the receiver got a webhook for, if any."""

    def status_many(self, ids: Sequence[str]) -> list[Job]:
        """The current state of these jobs on the translation server (one request)."""


class Mode(StrEnum):
    """What the waiter believes about webhooks."""

    UNKNOWN = "unknown"
    TRUSTED = "trusted"
    DISTRUSTED = "distrusted"


@dataclasses.dataclass(frozen=True, slots=True)
class WaitPolicy:
    """The tunables of the strategy (defaults suit jobs of seconds to minutes)."""

    long_poll_s: float = 5.0  # one feed request at most this long (new jobs join between)
    # unknown and trusted: a safety-net check at start + 3 x estimated duration + grace (an
    # estimate can be off by far more than its typical 20 %; polling earlier costs requests
    # when webhooks work, which is the common case)
    deadline_factor: float = 3.0
    grace_s: float = 1.0
    # unknown: once a tenth of the jobs (3 at least) have run 1.25 x their estimated duration
    # and not one webhook came, check those jobs at once
    probe_overdue_factor: float = 1.25
    probe_fraction: float = 0.1
    probe_quorum: int = 3
    probe_interval_s: float = 0.25  # how often that is re-assessed
    early_fraction: float = 0.8  # distrusted: first poll at 80 % of the time to the estimate
    overdue_fraction: float = 0.1  # past the estimate: poll every 10 % of the estimated duration
    min_poll_s: float = 0.5
    max_poll_s: float = 30.0
    jitter: float = 0.1  # +/- 10 % on every poll delay
    batch_window_s: float = 0.5  # polls due within this window go out in one ?ids= request
    ride_along_fraction: float = 0.6  # distrusted: jobs this far into their estimate join too
    webhook_in_flight_s: float = 1.0  # a job final for less than this may still get its webhook
    receiver_retry_s: tuple[float, float] = (1.0, 30.0)  # backoff while the receiver is down


@dataclasses.dataclass(frozen=True, slots=True)
class Detection:
    """How and when the waiter learned that a job ended."""

    job: Job
    path: str  # "webhook", "poll", or "known" (already final when watched)
    detected_at: float

    @property
    def lag_s(self) -> float | None:
        """Seconds from the job's end (server time) to its detection."""
        finished = parse_time(self.job.finished_at)
        return None if finished is None else max(0.0, self.detected_at - finished)


@dataclasses.dataclass(slots=True)
class _Tracked:
    job: Job
    start: float
    estimate: float | None
    next_poll: float = 0.0
    checks: int = 0
    on_update: Callable[[Job], None] | None = None


@dataclasses.dataclass
class WaitStats:
    """What waiting cost and how jobs were detected (``client.stats.waiting``)."""

    webhooks_used: int = 0
    polls_resolved: int = 0
    duplicate_reports_dropped: int = 0
    fallback_polls: int = 0
    status_polls: int = 0
    feed_requests: int = 0
    receiver_outages: int = 0
    mode_changes: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)
    detections: dict[str, Detection] = dataclasses.field(default_factory=dict)

    def paths(self) -> Counter[str]:
        """How many jobs each path detected."""
        return Counter(d.path for d in self.detections.values())


class _Timeline:
    """Job ids ordered by a time: O(log n) to set or read the earliest (stale entries are
    skipped lazily), so waiting on thousands of jobs does not scan them all at every step."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._at: dict[str, float] = {}

    def set(self, job_id: str, at: float) -> None:
        self._at[job_id] = at
        heapq.heappush(self._heap, (at, job_id))
        if len(self._heap) > 4 * len(self._at) + 64:  # compact the stale entries
            self._heap = [(t, j) for j, t in self._at.items()]
            heapq.heapify(self._heap)

    def discard(self, job_id: str) -> None:
        self._at.pop(job_id, None)

    def earliest(self) -> float | None:
        while self._heap:
            at, job_id = self._heap[0]
            if self._at.get(job_id) == at:
                return at
            heapq.heappop(self._heap)
        return None

    def pop_until(self, t: float) -> list[str]:
        out = []
        while (at := self.earliest()) is not None and at <= t:
            _, job_id = heapq.heappop(self._heap)
            del self._at[job_id]
            out.append(job_id)
        return out


class Waiter:
    """Tracks jobs until they end; ``step()`` does one round of feed reading and polling."""

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Clock | None = None,
        policy: WaitPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        self._backend = backend
        self._clock = clock or SystemClock()
        self.policy = policy or WaitPolicy()
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._tracked: dict[str, _Tracked] = {}
        self._polls = _Timeline()  # when each tracked job is next asked about
        self._overdue = _Timeline()  # unknown webhooks: when a job counts as late
        self._late: set[str] = set()
        self._finished: list[str] = []  # ids in the order their end was learned
        self._webhook_lags: collections.deque[float] = collections.deque(maxlen=200)
        self._done: dict[str, Detection] = {}
        self._failed: dict[str, TranslationError] = {}
        self._cursor: str | None = None
        self._mode = Mode.UNKNOWN
        self._receiver_up = True
        self._receiver_retry_at = 0.0
        self._receiver_backoff = self.policy.receiver_retry_s[0]
        self.stats = WaitStats()

    # ------------------------------------------------------------- watching

    @property
    def mode(self) -> Mode:
        """The current belief about webhooks."""
        return self._mode

    @property
    def receiver_up(self) -> bool:
        """Whether the last feed request succeeded."""
        return self._receiver_up

    @property
    def cursor_pinned(self) -> bool:
        """Whether the feed position is known (events from now on cannot be missed)."""
        return self._cursor is not None

    def ensure_cursor(self) -> None:
        """Pin the feed position before jobs are created, so none of their events is missed.

        While the receiver is known to be down, this waits for its retry time like the
        feed does: creating many jobs then costs no receiver request each.
        """
        with self._lock:
            if self._cursor is not None:
                return
            if not self._receiver_up and self._clock.now() < self._receiver_retry_at:
                return
        try:
            cursor = self._backend.feed_latest()
        except TranslationError as exc:
            self._receiver_failed(exc)
            return
        with self._lock:
            if self._cursor is None:
                self._cursor = cursor

    def watch(
        self, job: Job, *, on_update: Callable[[Job], None] | None = None, fresh: bool = True
    ) -> None:
        """Track a job. ``fresh``: created after ``ensure_cursor`` (the feed will show it)."""
        if not fresh and not job.is_final and self._receiver_up:
            try:
                final = self._backend.final_event(job.id)
            except TranslationError:
                final = None
            if final is not None:
                job = final
        with self._lock:
            if job.id in self._done or job.id in self._tracked:
                return
            if job.is_final:
                self._resolve(job, "known")
                return
            start = parse_time(job.started_at) or parse_time(job.created_at) or self._clock.now()
            tracked = _Tracked(
                job, start, parse_time(job.estimated_completion_at), on_update=on_update
            )
            self._tracked[job.id] = tracked
            self._set_poll(tracked, self._schedule(tracked, self._clock.now()))
            if tracked.estimate is not None:
                overdue_at = start + self.policy.probe_overdue_factor * (tracked.estimate - start)
                self._overdue.set(job.id, overdue_at)

    def result(self, job_id: str) -> Detection | None:
        """The detection of a job, once it ended (raises what made it unobservable)."""
        with self._lock:
            if job_id in self._failed:
                raise self._failed[job_id]
            return self._done.get(job_id)

    def last_known(self, job_id: str) -> Job | None:
        """The latest state seen of a job, final or not."""
        with self._lock:
            tracked = self._tracked.get(job_id)
            if tracked is not None:
                return tracked.job
            done = self._done.get(job_id)
            return done.job if done else None

    def finished_since(self, mark: int) -> tuple[list[str], int]:
        """Ids whose end was learned (or that failed) after ``mark``, and the new mark."""
        with self._lock:
            return self._finished[mark:], len(self._finished)

    def _untrack(self, job_id: str) -> _Tracked | None:
        self._polls.discard(job_id)
        self._overdue.discard(job_id)
        self._late.discard(job_id)
        return self._tracked.pop(job_id, None)

    def _set_poll(self, tracked: _Tracked, at: float) -> None:
        tracked.next_poll = at
        self._polls.set(tracked.job.id, at)

    # ---------------------------------------------------------------- steps

    def step(self, max_block: float) -> list[Detection]:
        """Poll what is due, then read the feed (or sleep) for at most ``max_block`` seconds."""
        found = self._poll_due()
        with self._lock:
            if not self._tracked:
                return found
            now = self._clock.now()
            wake = self._next_wake(now)
        block = max(0.0, min(max_block, self.policy.long_poll_s, wake - now))
        if block < MIN_FEED_WAIT_S:
            self._clock.sleep(block)  # a feed request for a few ms is not worth it
        elif self._receiver_up or now >= self._receiver_retry_at:
            found += self._read_feed(block)
        else:
            self._clock.sleep(min(block, max(0.0, self._receiver_retry_at - now)))
        return found

    def _next_wake(self, now: float) -> float:
        """The next poll, or, while webhooks are unknown and jobs are overdue, a probe check."""
        wake = self._polls.earliest()
        wake = now + self.policy.long_poll_s if wake is None else wake
        if self._mode is Mode.UNKNOWN and self._receiver_up:
            overdue = self._overdue.earliest()
            if overdue is not None:
                wake = min(wake, max(overdue, now + self.policy.probe_interval_s))
        return wake

    def _read_feed(self, wait: float) -> list[Detection]:
        if self._cursor is None:
            self.ensure_cursor()
            if self._cursor is None:
                return []
        try:
            self.stats.feed_requests += 1
            events, cursor = self._backend.feed(self._cursor, wait)
        except TranslationError as exc:
            self._receiver_failed(exc)
            return []
        with self._lock:
            self._cursor = cursor
            if not self._receiver_up:
                self._receiver_back()
            return [d for d in (self._on_event(e) for e in events) if d is not None]

    def _on_event(self, event: Event) -> Detection | None:
        job = event.final_job
        if job is None:
            return None
        if job.id in self._done:
            self.stats.duplicate_reports_dropped += 1
            self._note_webhook_lag(event, job)  # still tells that, and how late, webhooks come
            if self._mode is not Mode.TRUSTED:
                self._set_mode(Mode.TRUSTED, f"a late webhook arrived for {job.id}")
            return None
        tracked = self._tracked.get(job.id)
        if tracked is None:
            return None
        self.stats.webhooks_used += 1
        if self._mode is not Mode.TRUSTED:
            self._set_mode(Mode.TRUSTED, f"a webhook arrived for {job.id}")
        detection = self._resolve(job, "webhook")
        lag = detection.lag_s
        self._note_webhook_lag(event, job)
        log.info(
            "%s %s: webhook received %s after it ended",
            job.id,
            job.status.value,
            f"{lag * 1000:.0f} ms" if lag is not None else "",
        )
        return detection

    def _probe_if_quiet(self, now: float) -> None:
        """Unknown webhooks, many jobs well past their estimates, not one webhook: ask now.

        One job overrunning its estimate by a quarter says little (estimates are noisy, and
        the first jobs to pass theirs are those whose estimates were the most too short);
        a tenth of them all doing so while no webhook at all has come says webhooks are
        probably lost. One ``?ids=`` request settles it. Simulated over estimates off by
        20 %, this never fires before the first job really ended (so costs nothing when
        webhooks work) and fires about two seconds after it when they are lost.
        """
        p = self.policy
        self._late.update(self._overdue.pop_until(now))
        needed = max(p.probe_quorum, math.ceil(p.probe_fraction * len(self._tracked)))
        if len(self._late) >= needed:
            log.info(
                "%d of %d jobs are 25 %% past their estimates and no webhook came; checking them",
                len(self._late),
                len(self._tracked),
            )
            for job_id in self._late:
                tracked = self._tracked.get(job_id)
                if tracked is not None and tracked.next_poll > now:
                    self._set_poll(tracked, now)

    def _poll_due(self) -> list[Detection]:
        with self._lock:
            now = self._clock.now()
            if self._mode is Mode.UNKNOWN and self._receiver_up:
                self._probe_if_quiet(now)
            earliest = self._polls.earliest()
            if earliest is None or earliest > now:
                return []
            mode = self._effective_mode()
            due = sorted(
                (t for t in self._tracked.values() if self._joins_poll(t, now, mode)),
                key=lambda t: t.next_poll,
            )
            ids = [t.job.id for t in due][:MAX_IDS_PER_POLL]
        if mode is not Mode.DISTRUSTED:
            self.stats.fallback_polls += 1
            log.info(
                "no webhook for %s by its deadline (%s webhooks); asking the server",
                ", ".join(ids[:3]) + (" ..." if len(ids) > 3 else ""),
                mode.value,
            )
        try:
            self.stats.status_polls += 1
            jobs = self._backend.status_many(ids)
        except TranslationError as exc:
            self._poll_failed(ids, exc)
            return []
        with self._lock:
            return self._on_poll(ids, jobs)

    def _joins_poll(self, tracked: _Tracked, now: float, mode: Mode) -> bool:
        """Whether a job rides along in a poll that is going out anyway.

        A job whose own poll is due within the batch window joins. While polling (distrusted),
        so does any job that may plausibly have ended (60 % of its estimated duration run):
        one more id costs the server little and costs the caller no extra request, and it
        catches the jobs whose estimates were too long well before their own poll.
        """
        p = self.policy
        if tracked.next_poll <= now + p.batch_window_s:
            return True
        if mode is not Mode.DISTRUSTED or tracked.estimate is None:
            return False
        return now - tracked.start >= p.ride_along_fraction * (tracked.estimate - tracked.start)

    def _on_poll(self, ids: list[str], jobs: list[Job]) -> list[Detection]:
        now = self._clock.now()
        seen = {j.id for j in jobs}
        for missing in (i for i in ids if i not in seen and i in self._tracked):
            self._untrack(missing)
            self._finished.append(missing)
            self._failed[missing] = JobNotFound(
                status_code=404,
                method="GET",
                url="/v1/jobs",
                code="job_not_found",
                detail=f"job {missing} is not visible to this client",
            )
        found = []
        for job in jobs:
            tracked = self._tracked.get(job.id)
            if tracked is None:
                continue
            if job.is_final:
                found.append(self._resolve(job, "poll"))
                self._note_missed_webhook(job, now)
                continue
            self._observe(tracked, job)
            tracked.checks += 1
            self._overdue.discard(job.id)  # known to be running: no longer evidence
            self._late.discard(job.id)
            self._set_poll(tracked, self._schedule(tracked, now))
        return found

    def _observe(self, tracked: _Tracked, job: Job) -> None:
        before = tracked.job
        tracked.job = job
        tracked.estimate = parse_time(job.estimated_completion_at) or tracked.estimate
        if job.started_at and not before.started_at:
            tracked.start = parse_time(job.started_at) or tracked.start
        if (job.stage, round(job.progress, 2)) != (before.stage, round(before.progress, 2)):
            log.info(
                "%s %s, %s %.0f %%",
                job.id,
                job.status.value,
                job.stage.value if job.stage else "",
                job.progress * 100,
            )
            if tracked.on_update:
                tracked.on_update(job)

    def _note_webhook_lag(self, event: Event, job: Job) -> None:
        finished, received = parse_time(job.finished_at), parse_time(event.received_at)
        if finished is not None and received is not None:
            self._webhook_lags.append(max(0.0, received - finished))

    def _in_flight_window(self) -> float:
        """How long a webhook may still be on its way: the policy's floor, or three times
        the slowest of the recent webhooks (a busy system delivers late, not never)."""
        slowest = max(self._webhook_lags, default=0.0)
        return max(self.policy.webhook_in_flight_s, 3 * slowest)

    def _note_missed_webhook(self, job: Job, now: float) -> None:
        """A poll found a final job: if its webhook should have come by now, it was lost."""
        finished = parse_time(job.finished_at)
        if not job.callback_url or finished is None or not self._receiver_up:
            return
        age = now - finished
        if age >= self._in_flight_window() and self._mode is not Mode.DISTRUSTED:
            self._set_mode(Mode.DISTRUSTED, f"{job.id} ended {age:.1f} s ago and no webhook came")

    # ------------------------------------------------------- state changes

    def _resolve(self, job: Job, path: str) -> Detection:
        detection = Detection(job=job, path=path, detected_at=self._clock.now())
        tracked = self._untrack(job.id)
        self._done[job.id] = detection
        self._finished.append(job.id)
        self.stats.detections[job.id] = detection
        if path == "poll":
            self.stats.polls_resolved += 1
            log.info("%s %s: found by polling", job.id, job.status.value)
        if tracked and tracked.on_update:
            tracked.on_update(job)
        return detection

    def _set_mode(self, mode: Mode, reason: str) -> None:
        log.info("webhooks %s -> %s: %s", self._mode.value, mode.value, reason)
        self.stats.mode_changes.append((self._clock.now(), mode.value, reason))
        self._mode = mode
        self._reschedule_all()

    def _effective_mode(self) -> Mode:
        return self._mode if self._receiver_up else Mode.DISTRUSTED

    def _receiver_failed(self, exc: TranslationError) -> None:
        with self._lock:
            now = self._clock.now()
            low, high = self.policy.receiver_retry_s
            retry_after = exc.retry_after if isinstance(exc, APIError) else None
            delay = retry_after if retry_after is not None else self._receiver_backoff
            self._receiver_retry_at = now + delay * (1 + self._random.uniform(0, 0.2))
            self._receiver_backoff = min(high, max(low, self._receiver_backoff * 2))
            if self._receiver_up:
                self._receiver_up = False
                self.stats.receiver_outages += 1
                log.info("receiver unreachable (%s); polling the translation server", exc)
                self._reschedule_all()

    def _receiver_back(self) -> None:
        self._receiver_up = True
        self._receiver_backoff = self.policy.receiver_retry_s[0]
        log.info("receiver reachable again; waiting on the feed (%s webhooks)", self._mode.value)
        self._reschedule_all()

    def _poll_failed(self, ids: list[str], exc: TranslationError) -> None:
        """A failed poll (429, 503, network): try again later, as the server asked if it did."""
        retry_after = exc.retry_after if isinstance(exc, APIError) else None
        with self._lock:
            now = self._clock.now()
            for job_id in ids:
                tracked = self._tracked.get(job_id)
                if tracked is None:
                    continue
                delay = max(retry_after or 0.0, self._jitter(self.policy.min_poll_s * 2))
                self._set_poll(tracked, now + delay)
        log.info("status poll failed (%s); next try in >= %.1f s", exc, retry_after or 1.0)

    def _reschedule_all(self) -> None:
        """After a change of belief: jobs already past their estimate are asked at once when
        webhooks can no longer be counted on; the rest follow the new schedule."""
        now = self._clock.now()
        polling = self._effective_mode() is Mode.DISTRUSTED
        for tracked in self._tracked.values():
            overdue = tracked.estimate is not None and tracked.estimate <= now
            self._set_poll(tracked, now if polling and overdue else self._schedule(tracked, now))

    # ----------------------------------------------------------- scheduling

    def _schedule(self, tracked: _Tracked, now: float) -> float:
        """When to ask the server about this job, under the current belief about webhooks."""
        p = self.policy
        estimate = tracked.estimate if tracked.estimate is not None else now + p.max_poll_s
        duration = max(estimate - tracked.start, p.min_poll_s)
        mode = self._effective_mode()
        if mode is Mode.DISTRUSTED:
            remaining = estimate - now
            if remaining > p.min_poll_s:
                fraction = p.early_fraction if tracked.checks == 0 else 1.0
                delay = fraction * remaining
            else:
                delay = p.overdue_fraction * duration
            delay = min(delay, p.max_poll_s)  # polling cadence: never slower than this
        else:
            at = tracked.start + p.deadline_factor * duration * (1 + tracked.checks) + p.grace_s
            delay = at - now
        return now + self._jitter(max(delay, p.min_poll_s))

    def _jitter(self, delay: float) -> float:
        j = self.policy.jitter
        return delay * (1 + self._random.uniform(-j, j))
