"""What waiting is tuned by (``WaitPolicy``) and what it reports (``Detection``, ``WaitStats``)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable

from .models import Job, parse_time
from .timeline import Tracked


@dataclasses.dataclass(frozen=True, slots=True)
class WaitPolicy:
    """The tunables of the strategy (defaults suit jobs of seconds to minutes)."""

    long_poll_s: float = 5.0  # one feed request at most this long
    # on the quiet path, a safety-net check at start + 3 x estimated duration + grace
    deadline_factor: float = 3.0
    grace_s: float = 1.0
    # polling: first at 95 % of the estimated duration, then at 10 % of it, each interval
    # 1.2 times the last (0.5 to 5 s): about 2.5 requests a job with estimates off by 20 %,
    # and the end known within about 0.8 s (half an interval) of it
    early_fraction: float = 0.95
    interval_fraction: float = 0.10
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

    def next_poll(
        self, tracked: Tracked, now: float, quiet: bool, jitter: Callable[[float], float]
    ) -> float:
        """When to ask about a job next: on the quiet path only as a safety net, else from
        its estimate (``jitter`` spreads a delay)."""
        duration = tracked.duration(now, self.min_poll_s)
        if quiet:
            at = tracked.start + self.deadline_factor * duration * (1 + tracked.checks)
            return max(at + self.grace_s, now + self.min_poll_s)
        grown = (
            self.interval_fraction * duration * self.interval_growth ** max(0, tracked.checks - 1)
        )
        interval = min(self.max_poll_s, max(self.min_poll_s, grown))
        first = tracked.start + self.early_fraction * duration
        at = first if tracked.checks == 0 and first > now else now + interval
        return now + jitter(max(at - now, self.min_poll_s))

    def plausibly_ended(self, tracked: Tracked, now: float) -> bool:
        """Whether a job is far enough into its estimate to ride along in a poll."""
        duration = tracked.duration(now, self.min_poll_s)
        return now - tracked.start >= self.ride_along_fraction * duration


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
