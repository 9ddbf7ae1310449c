"""The waiting core: what to do next to learn that jobs ended, decided without any I/O.

``WaitCore`` is fed what the outside world said (feed pages, status answers, failures, the
clock) and answers one action at a time (``actions.py``): pin the feed position, read the
feed, look a job up at the receiver, ask the server about some jobs, or sleep. It holds no
thread, socket or lock: the clients drive it, the tests do so in virtual time.

A job whose callback is this client's receiver ends by webhook (every event the feed brings
is kept; while few jobs are followed, it is read for them only, so that other clients' events
wake nobody), or, when the webhook channel's heartbeats say its event was sent and it never
came, by one ``?ids=`` request. While heartbeats come nothing is polled but a safety net at three
times a job's estimate. Jobs are polled from their estimates only while the receiver is
unreachable, the channel silent, or for jobs whose webhooks cannot reach this client; the
next heartbeat puts them back on the quiet path. docs/design.md tells why.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence

from .actions import Action, Lookup, PinFeed, Poll, ReadFeed, Sleep
from .channelview import ChannelView
from .errors import JobNotFound, TranslationError
from .models import BULK_IDS_MAX, ChannelStatus, Event, Heartbeat, Job, parse_time
from .receiverview import ReceiverView
from .timeline import Bounded, Timeline, Tracked
from .waitpolicy import Detection, WaitPolicy, WaitStats

log = logging.getLogger(__name__)

MIN_FEED_WAIT_S = 0.01
KEPT_EVENTS = 10_000  # final jobs seen in the feed for jobs not tracked (yet)
KEPT_RESULTS = 10_000  # ended jobs remembered after they were reported
FEED_FILTER_MAX = 50  # following this many channel jobs at most, the feed is read for them only


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
        self._tracked: dict[str, Tracked] = {}
        self._polls = Timeline()
        self._done: Bounded[Detection] = Bounded(KEPT_RESULTS)
        self._failed: dict[str, TranslationError] = {}
        self._kept: Bounded[Job] = Bounded(KEPT_EVENTS)
        self._finished: list[str] = []
        self._lookups: dict[str, None] = {}  # jobs to look up at the receiver, in order
        self._coverage: set[str] = set()  # ... of which only to learn what came before
        self._filtered_reads = 0  # feed reads issued for some jobs only
        self._read_filtered = False  # the read under way (or the last one) was
        self._reading = False
        self._wanted: set[str] = set()  # jobs a caller waits (or waited) on
        self._cursor: str | None = None
        self._receiver = ReceiverView(
            self.policy.receiver_retry_s, self._random, up=endpoint is not None
        )
        self._channel = ChannelView(self.policy.channel_stale_factor)
        self._regime = self._current_regime(0.0)

    # ------------------------------------------------------------ queries

    @property
    def receiver_up(self) -> bool:
        """Whether the last feed request succeeded."""
        return self._receiver.up

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

    def read_mark(self) -> int:
        """Taken before a job is created or looked up, handed to ``track``: tells whether a
        feed read for other jobs only may have passed over this job's event meanwhile."""
        return -1 if self._reading and self._read_filtered else self._filtered_reads

    def needs_pin(self, now: float) -> bool:
        """Whether the feed position should be pinned before a job is created."""
        return self._cursor is None and self.endpoint is not None and now >= self._receiver.retry_at

    # ------------------------------------------------------------- inputs

    def track(self, job: Job, now: float, mark: int | None = None) -> None:
        """Follow a job until it ends (created by this client, or asked about); ``mark``:
        ``read_mark()`` from before it was created or looked up."""
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
        tracked = Tracked(job, start, parse_time(job.estimated_completion_at))
        tracked.covered = self._cursor is not None
        if tracked.covered and self._filtered_reads != (0 if mark is None else mark):
            # a read for other jobs only went by: what came before it is asked for once
            tracked.covered = False
            self._lookups[job.id] = None
            self._coverage.add(job.id)
        if self._on_channel(job) and not any(
            self._on_channel(t.job) for t in self._tracked.values()
        ):
            self._channel.waiting_starts(now)
        self._tracked[job.id] = tracked
        self._reschedule(tracked, now)

    def knows(self, job_id: str, now: float) -> bool:
        """Whether the job is followed or ended already (a kept event ends it now)."""
        kept = self._kept.pop(job_id, None)
        if kept is not None:
            self.stats.webhooks_used += 1
            self._resolve(kept, "webhook", now)
        return job_id in self._tracked or job_id in self._done or job_id in self._failed

    def want(self, job_ids: Iterable[str], now: float) -> None:
        """Callers wait on these jobs: every one of them may be asked about from now on."""
        for job_id in job_ids:
            if job_id not in self._wanted:
                self._wanted.add(job_id)
                tracked = self._tracked.get(job_id)
                if tracked is not None:
                    self._reschedule(tracked, now)

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
        self._receiver.ok()
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
        self._reading = False
        self._cursor = cursor
        self._receiver.ok()
        found = []
        for event in events:
            if event.heartbeat is not None:
                self._on_heartbeat(event.heartbeat, now)
            elif (detection := self._on_event(event, now)) is not None:
                found.append(detection)
        for channel in channels:
            if channel.endpoint == self.endpoint:
                self._channel.heard(now - channel.age_s)
        self._check_regime(now)
        return found

    def on_feed_error(self, exc: TranslationError, now: float) -> None:
        """A feed request (or pinning it) failed: poll, and try the receiver again later."""
        self.stats.feed_requests += 1
        self._reading = False
        outages = self._receiver.outages
        self._receiver.failed(exc, now)
        self.stats.receiver_outages += self._receiver.outages - outages
        self._check_regime(now)

    def on_lookup(self, job_id: str, final: Job | None, now: float) -> Detection | None:
        """The receiver's final event for a job, or None: it has none (then a webhook the
        channel said was sent is lost)."""
        self._lookups.pop(job_id, None)
        coverage_only = job_id in self._coverage
        self._coverage.discard(job_id)
        if final is not None and final.is_final and job_id not in self._done:
            self.stats.webhooks_used += 1
            return self._resolve(final, "webhook", now)
        tracked = self._tracked.get(job_id)
        if tracked is None or final is not None:
            return None
        tracked.covered = True  # nothing before the feed position: the next word is final
        if coverage_only:
            return None
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
            self._failed[missing] = JobNotFound.invisible(missing)
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
        for tracked in filter(None, map(self._tracked.get, asked)):
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
        wake = min(wake, self._channel.look_by(self._regime, now))  # a change of regime noticed
        block = max(0.0, min(self.policy.long_poll_s, wake - now))
        if max_block is not None:
            block = min(block, max_block)
        if block >= MIN_FEED_WAIT_S and self._cursor is not None:
            if now >= self._receiver.retry_at:
                return self._read(block)
            block = min(block, max(0.0, self._receiver.retry_at - now))
        return Sleep(block)

    # ------------------------------------------------------------ feed

    def _read(self, block: float) -> ReadFeed:
        """Read the feed for the channel jobs followed when they are few, else all of it."""
        assert self._cursor is not None
        jobs = sorted(t.job.id for t in self._tracked.values() if self._on_channel(t.job))
        self._reading, self._read_filtered = True, 0 < len(jobs) <= FEED_FILTER_MAX
        if not self._read_filtered:
            return ReadFeed(self._cursor, block)
        self._filtered_reads += 1
        return ReadFeed(self._cursor, block, tuple(jobs))

    def _on_event(self, event: Event, now: float) -> Detection | None:
        self._channel.received(event.seq)
        job = event.final_job
        if job is None:
            return None
        if job.id in self._done:
            self.stats.duplicate_reports_dropped += 1
            return None
        if job.id not in self._tracked:
            self._kept.put(job.id, job)
            return None
        self.stats.webhooks_used += 1
        detection = self._resolve(job, "webhook", now)
        lag = f"{detection.lag_s * 1000:.0f} ms" if detection.lag_s is not None else ""
        log.info("%s %s: webhook received %s after it ended", job.id, job.status.value, lag)
        return detection

    def _on_heartbeat(self, beat: Heartbeat, now: float) -> None:
        if beat.endpoint != self.endpoint:
            return
        # numbers of jobs a read for some jobs only left out cannot be accounted for here
        unaccounted = self._channel.read(beat, now) and not self._read_filtered
        for entry in beat.events:
            tracked = self._tracked.get(entry.job_id)
            if tracked is None:
                continue
            if entry.sent and not tracked.covered:
                # its event may have been stored before this client's feed position
                self._lookups[entry.job_id] = None
                self._coverage.discard(entry.job_id)
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
        if unaccounted:
            # events too many or too old for the heartbeat to name: ask for every job that
            # may plausibly have ended (one request; they ride along in the same ?ids=)
            for tracked in self._tracked.values():
                if self._on_channel(tracked.job) and self.policy.plausibly_ended(tracked, now):
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

    def _joins_poll(self, tracked: Tracked, now: float, horizon: float) -> bool:
        """A job whose own poll is due within the batch window joins; while polling, so does
        any job that may plausibly have ended: one more id costs no extra request."""
        if not self._askable(tracked):
            return False
        if tracked.next_poll <= horizon:
            return True
        return self._regime_of(tracked.job) == "poll" and self.policy.plausibly_ended(tracked, now)

    def _update(self, tracked: Tracked, job: Job, now: float) -> None:
        tracked.job = job
        tracked.estimate = parse_time(job.estimated_completion_at) or tracked.estimate
        if job.started_at:
            tracked.start = parse_time(job.started_at) or tracked.start
        self._reschedule(tracked, now)

    def _reschedule(self, tracked: Tracked, now: float) -> None:
        if tracked.urgent:
            self._set_poll(tracked, now)
            return
        quiet = self._regime_of(tracked.job) == "quiet"
        self._set_poll(tracked, self.policy.next_poll(tracked, now, quiet, self._jitter))

    def _set_poll(self, tracked: Tracked, at: float) -> None:
        tracked.next_poll = at
        if self._askable(tracked):
            self._polls.set(tracked.job.id, at)
        else:
            self._polls.discard(tracked.job.id)

    def _askable(self, tracked: Tracked) -> bool:
        """A job nobody waits on is asked about only on the channel's word (its webhooks
        reach this client); one created with another callback, or none, only once waited on."""
        return tracked.job.id in self._wanted or self._on_channel(tracked.job)

    def _jitter(self, delay: float) -> float:
        j = self.policy.jitter
        return delay * (1 + self._random.uniform(-j, j))

    # ------------------------------------------------------------ regimes

    def _on_channel(self, job: Job) -> bool:
        return self.endpoint is not None and job.callback_url == self.endpoint

    def _regime_of(self, job: Job) -> str:
        """``quiet`` (webhooks and the channel will tell) or ``poll``, for one job."""
        return "quiet" if self._regime == "channel" and self._on_channel(job) else "poll"

    def _current_regime(self, now: float) -> str:
        if self.endpoint is None or not self._receiver.up:
            return "receiver down"
        if self._channel.is_silent(now):
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

    # ------------------------------------------------------------ ending

    def _resolve(self, job: Job, path: str, now: float) -> Detection:
        detection = Detection(job=job, path=path, detected_at=now)
        self._untrack(job.id)
        self._done.put(job.id, detection)
        self._finished.append(job.id)
        self.stats.detections[job.id] = detection
        if path == "poll":
            self.stats.polls_resolved += 1
            log.info("%s %s: found by asking the server", job.id, job.status.value)
        return detection

    def _untrack(self, job_id: str) -> Tracked | None:
        self._polls.discard(job_id)
        self._wanted.discard(job_id)
        return self._tracked.pop(job_id, None)
