"""The waiting core: what to do next to learn that jobs ended, decided without any I/O.

``WaitCore`` is fed what the outside world said (feed pages, status answers, failures, the
clock) and answers what to do next (``next_action``): pin the feed position, read the feed,
ask the translation server about some jobs, or sleep. It holds no thread, socket or lock: the
sync client drives it under its own lock (``client.py``), the async client from a task, and
the unit tests with a fake clock.

How a job's end is learned, for a job whose callback is this client's receiver endpoint:

- **webhook**: the job's final event arrives in the receiver's change feed. Every event the
  feed brings is kept, for tracked jobs and (bounded) for any other job, so a job watched
  later costs nothing when its event already came.
- **the webhook channel**: the server numbers the job events it sends to the endpoint and
  sends heartbeats saying which numbers exist, for which job, and whether each was sent or is
  pending a retry. A number sent but never received is a lost webhook: that job is asked for
  at once (one ``?ids=`` request). A retry due soon is waited for; one due later is not.
  While heartbeats come, a job nobody heard of is still running: no status request is made,
  bar a safety-net check at three times its estimated duration.
- **polling**: when the receiver is unreachable, the channel has gone silent, or the job's
  webhooks cannot reach this client at all, jobs are asked for from 95 % of their estimated
  duration, then at growing intervals from 12 % of it (0.5 to 5 s), batched into
  ``?ids=`` requests.

Belief about the channel is re-earned continuously: the next heartbeat or feed page after an
outage puts jobs back on the quiet path. Each job is reported once, with its final state,
whatever arrives twice, late or out of order.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import logging
import random
from collections import Counter
from collections.abc import Sequence

from .errors import JobNotFound, TranslationError
from .models import BULK_IDS_MAX, ChannelStatus, Event, Heartbeat, Job, parse_time

log = logging.getLogger(__name__)

MIN_FEED_WAIT_S = 0.01
KEPT_EVENTS = 10_000  # final jobs seen in the feed for jobs not tracked (yet)
KEPT_RESULTS = 10_000  # ended jobs remembered after they were reported


@dataclasses.dataclass(frozen=True, slots=True)
class WaitPolicy:
    """The tunables of the strategy (defaults suit jobs of seconds to minutes)."""

    long_poll_s: float = 5.0  # one feed request at most this long
    # on the quiet path, a safety-net check at start + 3 x estimated duration + grace
    deadline_factor: float = 3.0
    grace_s: float = 1.0
    # polling: first at 95 % of the estimated duration, then at 12 % of it, each interval
    # 1.2 times the last (0.5 to 5 s): about 2.3 requests a job with estimates off by 20 %
    early_fraction: float = 0.95
    interval_fraction: float = 0.12
    interval_growth: float = 1.2
    min_poll_s: float = 0.5
    max_poll_s: float = 5.0
    jitter: float = 0.1  # +/- 10 % on every poll delay
    batch_window_s: float = 0.5  # polls due within this window go out in one ?ids= request
    ride_along_fraction: float = 0.6  # polling: jobs this far into their estimate join too
    retry_wait_s: float = 2.0  # a webhook retry due within this is waited for
    retry_grace_s: float = 1.0  # ... and checked on this long after it was due
    channel_stale_factor: float = 3.0  # silent after this many heartbeat intervals
    receiver_retry_s: tuple[float, float] = (0.5, 5.0)  # backoff while the receiver is down


# ------------------------------------------------------------------ actions


@dataclasses.dataclass(frozen=True, slots=True)
class PinFeed:
    """Ask the feed for its current end (``after=latest``), then call ``feed_pinned``."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReadFeed:
    """Read the feed after ``after``, waiting up to ``wait`` s; then ``on_feed``."""

    after: str
    wait: float


@dataclasses.dataclass(frozen=True, slots=True)
class Poll:
    """Ask the translation server for these jobs (one ``?ids=``); then ``on_statuses``."""

    job_ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """Ask the receiver for the job's final event (``GET /v1/events/{id}``); then ``on_lookup``."""

    job_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    """Nothing to do for ``seconds``."""

    seconds: float


Action = PinFeed | ReadFeed | Lookup | Poll | Sleep


# ------------------------------------------------------------ what it knows


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


@dataclasses.dataclass
class WaitStats:
    """What waiting cost and how jobs were detected (``client.stats.waiting``)."""

    webhooks_used: int = 0
    polls_resolved: int = 0
    duplicate_reports_dropped: int = 0
    lost_webhooks: int = 0  # sent per the channel, never received: asked for
    status_polls: int = 0
    feed_requests: int = 0
    receiver_outages: int = 0
    mode_changes: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)
    detections: dict[str, Detection] = dataclasses.field(default_factory=dict)

    def paths(self) -> Counter[str]:
        """How many jobs each path detected."""
        return Counter(d.path for d in self.detections.values())


@dataclasses.dataclass(slots=True)
class _Tracked:
    job: Job
    start: float
    estimate: float | None  # estimated end (absolute)
    next_poll: float = 0.0
    checks: int = 0
    urgent: bool = False  # the channel says it ended: ask now
    covered: bool = True  # followed from a feed position before its end could be stored

    def duration(self, now: float, floor: float) -> float:
        end = self.estimate if self.estimate is not None else now
        return max(end - self.start, floor)


class _Timeline:
    """Job ids ordered by a time, O(log n) to set or read the earliest (stale entries are
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


class WaitCore:
    """Tracks jobs until they end and decides, from what it was told, what to do next."""

    def __init__(
        self,
        *,
        endpoint: str | None,
        policy: WaitPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        """``endpoint``: the callback URL whose events this client's feed shows (None: none)."""
        self.endpoint = endpoint
        self.policy = policy or WaitPolicy()
        self.stats = WaitStats()
        self._random = random.Random(seed)
        self._tracked: dict[str, _Tracked] = {}
        self._polls = _Timeline()
        self._done: collections.OrderedDict[str, Detection] = collections.OrderedDict()
        self._failed: dict[str, TranslationError] = {}
        self._kept: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._finished: list[str] = []
        self._lookups: dict[str, None] = {}  # jobs to look up at the receiver, in order
        self._cursor: str | None = None
        self._receiver_up = endpoint is not None
        self._receiver_retry_at = 0.0
        self._receiver_backoff = self.policy.receiver_retry_s[0]
        self._heard_at: float | None = None  # when the channel was last known alive
        self._waiting_since: float | None = None  # when the first channel job was tracked
        self._interval = 1.0
        self._channel_seq: dict[str, int] = {}  # per client: the highest number accounted for
        self._regime = self._current_regime(0.0)

    # ------------------------------------------------------------ queries

    @property
    def cursor(self) -> str | None:
        """The feed position (None until pinned)."""
        return self._cursor

    @property
    def receiver_up(self) -> bool:
        """Whether the last feed request succeeded."""
        return self._receiver_up

    @property
    def regime(self) -> str:
        """How channel jobs are being followed: ``channel``, ``silent`` or ``receiver down``."""
        return self._regime

    def tracking(self) -> bool:
        """Whether any job is still being followed."""
        return bool(self._tracked)

    def result(self, job_id: str) -> Detection | None:
        """The detection of a job, once it ended (raises what made it unobservable)."""
        if job_id in self._failed:
            raise self._failed[job_id]
        return self._done.get(job_id)

    def last_known(self, job_id: str) -> Job | None:
        """The latest state seen of a job, final or not."""
        tracked = self._tracked.get(job_id)
        if tracked is not None:
            return tracked.job
        done = self._done.get(job_id)
        return done.job if done else self._kept.get(job_id)

    def finished_since(self, mark: int) -> tuple[list[str], int]:
        """Ids whose end was learned (or that failed) after ``mark``, and the new mark."""
        return self._finished[mark:], len(self._finished)

    def needs_pin(self, now: float) -> bool:
        """Whether the feed position should be pinned before a job is created."""
        return self._cursor is None and self.endpoint is not None and now >= self._receiver_retry_at

    # ------------------------------------------------------------- inputs

    def track(self, job: Job, now: float) -> None:
        """Follow a job until it ends (created by this client, or asked about)."""
        if job.id in self._done or job.id in self._failed:
            return
        if job.id in self._tracked:
            self._update(self._tracked[job.id], job, now)
            return
        if self.knows(job.id, now):
            return
        if job.is_final:
            self._resolve(job, "known", now)
            return
        start = parse_time(job.started_at) or parse_time(job.created_at) or now
        tracked = _Tracked(job, start, parse_time(job.estimated_completion_at))
        tracked.covered = self._cursor is not None
        if self._on_channel(job) and not any(
            self._on_channel(t.job) for t in self._tracked.values()
        ):
            self._waiting_since = now  # a new stretch of waiting on the channel begins
        self._tracked[job.id] = tracked
        self._reschedule(tracked, now)

    def knows(self, job_id: str, now: float) -> bool:
        """Whether the job is followed or ended already (a kept event ends it now)."""
        kept = self._kept.pop(job_id, None)
        if kept is not None:
            self.stats.webhooks_used += 1
            self._resolve(kept, "webhook", now)
        return job_id in self._tracked or job_id in self._done or job_id in self._failed

    def forget(self, job_id: str) -> None:
        """Stop following a job and drop what is known of it."""
        self._untrack(job_id)
        self._done.pop(job_id, None)
        self._kept.pop(job_id, None)
        self._failed.pop(job_id, None)

    def feed_pinned(self, cursor: str, now: float) -> None:
        """The feed's end, asked for before creating jobs: none of their events is missed."""
        if self._cursor is None:
            self._cursor = cursor
        self._receiver_ok()
        self._check_regime(now)

    def on_feed(
        self,
        events: Sequence[Event],
        cursor: str,
        now: float,
        channels: Sequence[ChannelStatus] = (),
    ) -> list[Detection]:
        """A feed page: every event in order, then the channels' liveness."""
        self.stats.feed_requests += 1
        self._cursor = cursor
        self._receiver_ok()
        found = []
        for event in events:
            if event.heartbeat is not None:
                self._on_heartbeat(event.heartbeat, now)
            elif (detection := self._on_event(event, now)) is not None:
                found.append(detection)
        for channel in channels:
            if channel.endpoint == self.endpoint:
                heard = now - channel.age_s
                self._heard_at = max(self._heard_at or heard, heard)
        self._check_regime(now)
        return found

    def on_feed_error(self, exc: TranslationError, now: float) -> None:
        """A feed request (or pinning it) failed: poll, and try the receiver again later."""
        self.stats.feed_requests += 1
        low, high = self.policy.receiver_retry_s
        retry_after = getattr(exc, "retry_after", None)
        if getattr(exc, "status_code", None) == 503 and retry_after is not None:
            # up, but every long-poll slot is taken: come back when it says; if that lasts,
            # the channel goes silent and jobs are polled
            self._receiver_retry_at = now + retry_after
            return
        delay = retry_after if retry_after is not None else self._receiver_backoff
        self._receiver_retry_at = now + delay * (1 + self._random.uniform(0, 0.2))
        self._receiver_backoff = min(high, max(low, self._receiver_backoff * 2))
        if self._receiver_up:
            self._receiver_up = False
            self.stats.receiver_outages += 1
            log.info("receiver unreachable (%s); asking the translation server", exc)
        self._check_regime(now)

    def on_lookup(self, job_id: str, final: Job | None, now: float) -> Detection | None:
        """The receiver's final event for a job (None: it has none): no lost webhook then."""
        self._lookups.pop(job_id, None)
        tracked = self._tracked.get(job_id)
        if tracked is None:
            return None
        if final is not None and final.is_final:
            self.stats.webhooks_used += 1
            return self._resolve(final, "webhook", now)
        tracked.covered = True  # nothing before the feed position: the next word is final
        self.stats.lost_webhooks += 1
        tracked.urgent = True
        self._set_poll(tracked, now)
        return None

    def on_statuses(self, asked: Sequence[str], jobs: Sequence[Job], now: float) -> list[Detection]:
        """The server's answer to a ``Poll``."""
        self.stats.status_polls += 1
        seen = {j.id for j in jobs}
        for missing in (i for i in asked if i not in seen and i in self._tracked):
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
                found.append(self._resolve(job, "poll", now))
                continue
            tracked.checks += 1
            tracked.urgent = False
            self._update(tracked, job, now)
        return found

    def on_status_error(self, asked: Sequence[str], exc: TranslationError, now: float) -> None:
        """A ``Poll`` failed (429, 503, network): try again later, as the server asked if it did."""
        self.stats.status_polls += 1
        retry_after = getattr(exc, "retry_after", None)
        for job_id in asked:
            tracked = self._tracked.get(job_id)
            if tracked is not None:
                delay = max(retry_after or 0.0, self._jitter(self.policy.min_poll_s * 2))
                self._set_poll(tracked, now + delay)
        log.info("status request failed (%s); next try in >= %.1f s", exc, retry_after or 1.0)

    # ------------------------------------------------------------- output

    def next_action(self, now: float, *, max_block: float | None = None) -> Action:
        """What to do now: pin the feed, poll what is due, read the feed, or sleep."""
        self._check_regime(now)
        if self._tracked and self.needs_pin(now):
            return PinFeed()
        while self._lookups:
            job_id = next(iter(self._lookups))
            if job_id in self._tracked:
                return Lookup(job_id)
            del self._lookups[job_id]
        due = self._due(now)
        if due:
            return Poll(tuple(due))
        wake = self._polls.earliest()
        wake = now + self.policy.long_poll_s if wake is None else wake
        if self._regime == "channel" and self._waiting_since is not None:
            wake = min(wake, self._silent_at())  # so the change of regime is noticed
        block = max(0.0, min(self.policy.long_poll_s, wake - now))
        if max_block is not None:
            block = min(block, max_block)
        if block >= MIN_FEED_WAIT_S and self._cursor is not None:
            if now >= self._receiver_retry_at:
                return ReadFeed(self._cursor, block)
            block = min(block, max(0.0, self._receiver_retry_at - now))
        return Sleep(block)

    # ------------------------------------------------------------ feed

    def _on_event(self, event: Event, now: float) -> Detection | None:
        job = event.final_job
        if job is None:
            return None
        if job.id in self._done:
            self.stats.duplicate_reports_dropped += 1
            return None
        if job.id not in self._tracked:
            self._keep(job)
            return None
        self.stats.webhooks_used += 1
        detection = self._resolve(job, "webhook", now)
        lag = detection.lag_s
        log.info(
            "%s %s: webhook received %s after it ended",
            job.id,
            job.status.value,
            f"{lag * 1000:.0f} ms" if lag is not None else "",
        )
        return detection

    def _keep(self, job: Job) -> None:
        self._kept[job.id] = job
        self._kept.move_to_end(job.id)
        while len(self._kept) > KEPT_EVENTS:
            self._kept.popitem(last=False)

    def _on_heartbeat(self, beat: Heartbeat, now: float) -> None:
        if beat.endpoint != self.endpoint:
            return
        self._heard_at = now
        self._interval = beat.interval_s
        accounted = {e.seq for e in beat.events}
        for entry in beat.events:
            tracked = self._tracked.get(entry.job_id)
            if tracked is None:
                continue
            if entry.sent and not tracked.covered:
                # its event may have been stored before this client's feed position
                self._lookups[entry.job_id] = None
            elif entry.sent:
                # sent, and the event (fed before this heartbeat) never came: lost
                if not tracked.urgent:
                    self.stats.lost_webhooks += 1
                    log.info("%s: its webhook was sent but never arrived; asking", entry.job_id)
                tracked.urgent = True
                self._set_poll(tracked, now)
            elif entry.next_attempt_at is not None:
                retry = entry.next_attempt_at
                if retry - now > self.policy.retry_wait_s:
                    log.info(
                        "%s ended; its webhook is retried only in %.0f s", entry.job_id, retry - now
                    )
                    tracked.urgent = True
                    self._set_poll(tracked, now)
                else:
                    self._set_poll(tracked, max(now, retry) + self.policy.retry_grace_s)
        known = self._channel_seq.get(beat.client_id)
        unaccounted = known is not None and any(
            s not in accounted for s in range(known + 1, beat.seq + 1)
        )
        self._channel_seq[beat.client_id] = max(known or 0, beat.seq)
        if unaccounted:
            # events too many or too old for the heartbeat to name: ask for every job that
            # may plausibly have ended (one request; they ride along in the same ?ids=)
            for tracked in self._tracked.values():
                if self._on_channel(tracked.job) and self._plausibly_ended(tracked, now):
                    tracked.urgent = True
                    self._set_poll(tracked, now)

    # ------------------------------------------------------------ polling

    def _due(self, now: float) -> list[str]:
        earliest = self._polls.earliest()
        if earliest is None or earliest > now:
            return []
        horizon = now + self.policy.batch_window_s
        due = sorted(
            (t for t in self._tracked.values() if self._joins_poll(t, now, horizon)),
            key=lambda t: (not t.urgent, t.next_poll),
        )
        return [t.job.id for t in due][:BULK_IDS_MAX]

    def _joins_poll(self, tracked: _Tracked, now: float, horizon: float) -> bool:
        """A job whose own poll is due within the batch window joins; while polling, so does
        any job that may plausibly have ended: one more id costs no extra request."""
        if tracked.next_poll <= horizon:
            return True
        return self._regime_of(tracked.job) == "poll" and self._plausibly_ended(tracked, now)

    def _plausibly_ended(self, tracked: _Tracked, now: float) -> bool:
        duration = tracked.duration(now, self.policy.min_poll_s)
        return now - tracked.start >= self.policy.ride_along_fraction * duration

    def _update(self, tracked: _Tracked, job: Job, now: float) -> None:
        tracked.job = job
        tracked.estimate = parse_time(job.estimated_completion_at) or tracked.estimate
        if job.started_at:
            tracked.start = parse_time(job.started_at) or tracked.start
        self._reschedule(tracked, now)

    def _reschedule(self, tracked: _Tracked, now: float) -> None:
        if tracked.urgent:
            self._set_poll(tracked, now)
            return
        p = self.policy
        duration = tracked.duration(now, p.min_poll_s)
        if self._regime_of(tracked.job) == "quiet":
            at = tracked.start + p.deadline_factor * duration * (1 + tracked.checks) + p.grace_s
            self._set_poll(tracked, max(at, now + p.min_poll_s))
            return
        grown = p.interval_fraction * duration * p.interval_growth ** max(0, tracked.checks - 1)
        interval = min(p.max_poll_s, max(p.min_poll_s, grown))
        first = tracked.start + p.early_fraction * duration
        at = first if tracked.checks == 0 and first > now else now + interval
        self._set_poll(tracked, now + self._jitter(max(at - now, p.min_poll_s)))

    def _set_poll(self, tracked: _Tracked, at: float) -> None:
        tracked.next_poll = at
        self._polls.set(tracked.job.id, at)

    def _jitter(self, delay: float) -> float:
        j = self.policy.jitter
        return delay * (1 + self._random.uniform(-j, j))

    # ------------------------------------------------------------ regimes

    def _on_channel(self, job: Job) -> bool:
        return self.endpoint is not None and job.callback_url == self.endpoint

    def _regime_of(self, job: Job) -> str:
        """``quiet`` (webhooks and the channel will tell) or ``poll``, for one job."""
        return "quiet" if self._regime == "channel" and self._on_channel(job) else "poll"

    def _silent_at(self) -> float:
        """When the channel counts as silent if nothing is heard before."""
        stale = self.policy.channel_stale_factor * max(self._interval, 1.0)
        return max(self._heard_at or 0.0, self._waiting_since or 0.0) + stale

    def _current_regime(self, now: float) -> str:
        if self.endpoint is None or not self._receiver_up:
            return "receiver down"
        if self._waiting_since is not None and now >= self._silent_at():
            return "silent"
        return "channel"

    def _check_regime(self, now: float) -> None:
        regime = self._current_regime(now)
        if regime == self._regime:
            return
        log.info("webhook channel: %s -> %s", self._regime, regime)
        self.stats.mode_changes.append((now, regime, f"was {self._regime}"))
        self._regime = regime
        for tracked in self._tracked.values():
            self._reschedule(tracked, now)

    def _receiver_ok(self) -> None:
        self._receiver_backoff = self.policy.receiver_retry_s[0]
        if not self._receiver_up:
            self._receiver_up = True
            log.info("receiver reachable again; following the feed")

    # ------------------------------------------------------------ ending

    def _resolve(self, job: Job, path: str, now: float) -> Detection:
        detection = Detection(job=job, path=path, detected_at=now)
        self._untrack(job.id)
        self._done[job.id] = detection
        while len(self._done) > KEPT_RESULTS:
            self._done.popitem(last=False)
        self._finished.append(job.id)
        self.stats.detections[job.id] = detection
        if path == "poll":
            self.stats.polls_resolved += 1
            log.info("%s %s: found by asking the server", job.id, job.status.value)
        return detection

    def _untrack(self, job_id: str) -> _Tracked | None:
        self._polls.discard(job_id)
        return self._tracked.pop(job_id, None)
