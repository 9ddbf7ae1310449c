"""A per-client token bucket: ``--rate-limit`` requests per second, bursts of ``--rate-burst``.

With several server instances on one database each allows its share: the rate and burst
divided by the live instances (``leases.py``), so a client spreading its requests over every
instance still gets no more than the limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Token buckets keyed by client id; ``rate`` 0 disables limiting."""

    def __init__(self, rate: float, burst: int, *, shares: Callable[[], int] = lambda: 1) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._shares = shares
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take a token; returns 0 when allowed, else the seconds until one is available."""
        if self._rate <= 0:
            return 0.0
        now = time.monotonic()
        shares = max(1, self._shares())
        rate, burst = self._rate / shares, max(1.0, self._burst / shares)
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """The ``Retry-After`` value for a wait."""
        return str(max(1, math.ceil(wait)))
