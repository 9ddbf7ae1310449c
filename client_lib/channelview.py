"""What a client knows of its webhook channel: when it was last heard, and which sequence
numbers the heartbeats have accounted for (per client of the server)."""

from __future__ import annotations

import collections
import math

from .models import Heartbeat

RECEIVED_KEPT = 4096  # the newest sequence numbers received, for telling gaps


class ChannelView:
    """Liveness and numbering of the channel of one endpoint, as the feed shows it."""

    def __init__(self, stale_factor: float) -> None:
        self._stale_factor = stale_factor
        self._heard_at: float | None = None  # when the channel was last known alive
        self._waiting_since: float | None = None  # when the current stretch of waiting began
        self._interval = 1.0
        self._accounted: dict[str, int] = {}  # per client: the highest number accounted for
        self._received: collections.deque[int] = collections.deque(maxlen=RECEIVED_KEPT)

    @property
    def waiting(self) -> bool:
        """Whether jobs have been waited on over the channel at all."""
        return self._waiting_since is not None

    def waiting_starts(self, now: float) -> None:
        """A job on the channel is followed while none was: heartbeats are due from now."""
        self._waiting_since = now

    def heard(self, at: float) -> None:
        """The channel was alive at ``at`` (a heartbeat, or a feed page's channel age)."""
        self._heard_at = max(self._heard_at or at, at)

    def silent_at(self) -> float:
        """When the channel counts as silent if nothing is heard before."""
        stale = self._stale_factor * max(self._interval, 1.0)
        return max(self._heard_at or 0.0, self._waiting_since or 0.0) + stale

    def look_by(self, regime: str, now: float) -> float:
        """When a feed read should be back, so that a change of regime is noticed: when the
        channel would fall silent; silent, after an interval (a page brings the channel's age,
        even a page of a read for some jobs only that found none of theirs)."""
        if not self.waiting or regime not in ("channel", "silent"):
            return math.inf
        return self.silent_at() if regime == "channel" else now + max(self._interval, 1.0)

    def is_silent(self, now: float) -> bool:
        """Whether heartbeats were due and none came for a few intervals."""
        return self._waiting_since is not None and now >= self.silent_at()

    def received(self, seq: int | None) -> None:
        """A job event came through the feed: if numbered, heartbeats need not name it."""
        if seq is not None:
            self._received.append(seq)

    def read(self, beat: Heartbeat, now: float) -> bool:
        """Take a heartbeat in; True when numbers were given out that neither it nor the feed's
        events account for (too many, or heartbeats the receiver did not feed), so that jobs
        that may have ended must be asked about."""
        self.heard(now)
        self._interval = beat.interval_s
        named = {e.seq for e in beat.events} | set(self._received)
        known = self._accounted.get(beat.client_id)
        self._accounted[beat.client_id] = max(known or 0, beat.seq)
        return known is not None and any(s not in named for s in range(known + 1, beat.seq + 1))
