"""Who may take a webhook sender now: limits per host and per tenant, and a circuit breaker.

A sender thread is only ever given an event that may go at once, so an event waiting on a
full host or tenant, or on an endpoint that keeps failing, never holds a thread:

- **per tenant** (``client_id``): at most ``per_tenant`` attempts under way, more only while
  ``per_tenant`` of the ``senders``, and of the host's places, stay free: a tenant alone can
  use the senders for a burst, and yet one tenant's hanging endpoints always leave free
  senders for everyone else;
- **per host** (the URL's host name or IP, whatever its port): at most ``per_host``, so many
  ports (or tenants) on one slow host cannot hold every sender;
- **per endpoint** (the pair client, callback URL) a circuit breaker: after
  ``breaker_failures`` failed attempts in a row, spanning at least ``window`` seconds (a
  receiver restarting for a few seconds is no reason to pause its webhooks and heartbeats),
  the endpoint is *open* for ``cooldown`` seconds, and its due events are moved to the end
  of that pause without an attempt (the retry schedule does not advance). Then one trial
  attempt goes (*half-open*): success closes the breaker; failure opens it again for twice
  as long, at most ``max_cooldown``.

The dispatcher asks ``exclusions`` before leasing (full tenants and endpoints in trial are
left in the outbox, unread) and ``admit`` for what it read; every admitted event is
``release``-d once its attempt is over. Limits are per server process.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterable

from client_lib.wire import APIProblem

from .callbacks import parsed_callback_url
from .outbox import OutboxEvent

ENDPOINTS_KEPT = 10_000  # failing endpoints remembered; the oldest are forgotten first


def host_of(url: str) -> str:
    """The host a callback URL connects to, without its port ('' when it does not parse)."""
    try:
        return parsed_callback_url(url).host
    except APIProblem:
        return ""


@dataclasses.dataclass(slots=True)
class Breaker:
    """One endpoint's failures in a row and, once open, until when."""

    failures: int = 0
    failing_since: float = 0.0  # the first failure of the row
    open_until: float | None = None
    cooldown: float = 0.0
    trial_id: str | None = None  # the event of the half-open trial attempt under way


Endpoint = tuple[str, str]  # (client_id, callback_url)


class Fairness:
    """In-flight counts per host and tenant, and the breakers; thread-safe."""

    def __init__(
        self,
        *,
        per_host: int,
        per_tenant: int,
        breaker_failures: int,
        cooldown: float,
        max_cooldown: float,
        window: float = 0.0,
        senders: int = 0,
    ) -> None:
        self.per_host, self.per_tenant = per_host, per_tenant
        self._senders = senders  # 0: a tenant never goes beyond per_tenant
        self._threshold = breaker_failures  # 0: no breaker
        self._window = window
        self._cooldown, self._max_cooldown = cooldown, max(cooldown, max_cooldown)
        self._lock = threading.Lock()
        self._hosts: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()
        self._breakers: dict[Endpoint, Breaker] = {}

    @property
    def in_flight(self) -> int:
        """Attempts admitted and not yet released."""
        with self._lock:
            return sum(self._tenants.values())

    def exclusions(self) -> tuple[list[str], list[Endpoint]]:
        """Tenants at their limit, and endpoints whose trial attempt is under way: the lease
        leaves their events in the outbox."""
        with self._lock:
            tenants = [t for t in self._tenants if self._tenant_full(t)]
            trials = [endpoint for endpoint, b in self._breakers.items() if b.trial_id]
        return tenants, trials

    def admit(
        self,
        events: Iterable[OutboxEvent],
        now: float,
        limit: int,
        host_wait: float | None = None,
    ) -> tuple[list[OutboxEvent], dict[str, float], int]:
        """Split leasable events into at most ``limit`` to send now (counted as under way),
        those to move to a later time (``{id: when}``: endpoints whose breaker is open, and
        with ``host_wait``, events to a full host, moved that far), and a count of those
        left due (no sender free, their tenant filled up, or their host without
        ``host_wait``)."""
        take: list[OutboxEvent] = []
        later: dict[str, float] = {}
        left = 0
        with self._lock:
            for event in events:
                breaker = self._breakers.get((event.client_id, event.callback_url))
                if breaker is not None and breaker.open_until is not None:
                    if now < breaker.open_until:
                        later[event.id] = breaker.open_until
                        continue
                    if breaker.trial_id is not None:
                        left += 1
                        continue
                host = host_of(event.callback_url)
                if self._hosts[host] >= self.per_host and host_wait is not None:
                    later[event.id] = now + host_wait
                    continue
                if (
                    len(take) >= limit
                    or self._tenant_full(event.client_id)
                    or self._hosts[host] >= self.per_host
                ):
                    left += 1
                    continue
                if breaker is not None and breaker.open_until is not None:
                    breaker.trial_id = event.id
                self._tenants[event.client_id] += 1
                self._hosts[host] += 1
                take.append(event)
        return take, later, left

    def _tenant_full(self, client_id: str) -> bool:
        """At its share, and beyond it only while a share of the senders stays free, and never
        so far that one host could not take another tenant's share (locked)."""
        n = self._tenants[client_id]
        if n < self.per_tenant:
            return False
        free_after = self._senders - sum(self._tenants.values())
        return free_after <= self.per_tenant or n >= self.per_host - self.per_tenant

    def release(self, event: OutboxEvent, succeeded: bool | None, now: float) -> None:
        """An admitted event's attempt is over: ``succeeded`` True (the endpoint answered),
        False (it failed), None (nothing was tried: no change to its breaker)."""
        host = host_of(event.callback_url)
        with self._lock:
            for counter, key in ((self._tenants, event.client_id), (self._hosts, host)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]
            self._count(event, succeeded, now)

    def failed_before_last(self, event: OutboxEvent, now: float) -> bool:
        """An admitted event's attempt failed and its sender may try again at once: the
        breaker counts it; True while the endpoint's breaker stays closed."""
        with self._lock:
            self._count(event, False, now)
            breaker = self._breakers.get((event.client_id, event.callback_url))
            return breaker is None or breaker.open_until is None

    def _count(self, event: OutboxEvent, succeeded: bool | None, now: float) -> None:
        """One attempt's word to its endpoint's breaker (locked)."""
        endpoint = (event.client_id, event.callback_url)
        breaker = self._breakers.get(endpoint)
        trial = breaker is not None and breaker.trial_id == event.id
        if breaker is not None and trial:
            breaker.trial_id = None  # nothing tried (None): the next event is the trial
        if self._threshold <= 0 or succeeded is None:
            return
        if succeeded:
            self._breakers.pop(endpoint, None)
            return
        breaker = self._breakers.pop(endpoint, None) or Breaker(failing_since=now)
        self._breakers[endpoint] = breaker  # the most recent failure last
        breaker.failures += 1
        opens = (
            breaker.open_until is None
            and breaker.failures >= self._threshold
            and now - breaker.failing_since >= self._window
        )
        if trial or opens:
            breaker.cooldown = min(
                self._max_cooldown, breaker.cooldown * 2 if trial else self._cooldown
            )
            breaker.open_until = now + breaker.cooldown
        while len(self._breakers) > ENDPOINTS_KEPT:
            oldest = next(iter(self._breakers))
            if self._breakers[oldest].trial_id is not None:
                break
            del self._breakers[oldest]

    def state(self, client_id: str, callback_url: str, now: float) -> str:
        """``closed``, ``open`` or ``half-open`` (tests and logs)."""
        with self._lock:
            breaker = self._breakers.get((client_id, callback_url))
        if breaker is None or breaker.open_until is None:
            return "closed"
        return "open" if now < breaker.open_until and breaker.trial_id is None else "half-open"
