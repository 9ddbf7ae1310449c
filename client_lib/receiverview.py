"""What a client knows of its callback receiver's reachability: up or down, and when to try
its feed again (backing off while it is down, as it asks while it is busy)."""

from __future__ import annotations

import logging
import random

from .errors import TranslationError

log = logging.getLogger(__name__)


class ReceiverView:
    """Whether the receiver's feed answers, and when it may be asked again."""

    def __init__(self, retry_s: tuple[float, float], rng: random.Random, *, up: bool) -> None:
        self.up = up
        self.retry_at = 0.0
        self.outages = 0
        self._retry_s = retry_s
        self._backoff = retry_s[0]
        self._random = rng

    def ok(self) -> None:
        """A feed request succeeded."""
        self._backoff = self._retry_s[0]
        if not self.up:
            self.up = True
            log.info("receiver reachable again; following the feed")

    def failed(self, exc: TranslationError, now: float) -> None:
        """A feed request failed: a busy feed is retried when it says (it is up); anything
        else counts as an outage, retried with backoff (or when it said)."""
        retry_after = getattr(exc, "retry_after", None)
        if getattr(exc, "status_code", None) == 503 and retry_after is not None:
            # up, but every long-poll slot is taken: come back when it says; if that lasts,
            # the channel goes silent and jobs are polled
            self.retry_at = now + retry_after
            return
        low, high = self._retry_s
        delay = retry_after if retry_after is not None else self._backoff
        self.retry_at = now + delay * (1 + self._random.uniform(0, 0.2))
        self._backoff = min(high, max(low, self._backoff * 2))
        if self.up:
            self.up = False
            self.outages += 1
            log.info("receiver unreachable (%s); asking the translation server", exc)
