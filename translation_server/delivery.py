"""Webhook delivery: signed POSTs from the outbox, by a bounded pool of sender threads.

"Persist, then notify": a job's final state and its outbox row are committed together, then
the scheduler wakes this dispatcher, which leases due rows and hands them to the senders.
Delivery is at-least-once with the retry schedule of API.md section 3 (full jitter); an
unreachable endpoint can never fail a job. Only events that may go at once are leased
(``fairness.py``: limits per tenant and per host, a breaker per endpoint), so a slow or dead
endpoint holds at most its tenant's share of the senders; connecting is ``egress.py``'s.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from urllib3.exceptions import HTTPError

from client_lib.models import WebhookMode
from client_lib.webhooks import sign
from client_lib.wire import retry_after as parse_retry_after

from .background import Loop
from .callbacks import REFUSED, CallbackPolicy
from .clients import Clients
from .config import Settings
from .db import Database
from .egress import Egress, Forbidden, error_text
from .fairness import Fairness
from .metrics import ServerMetrics
from .outbox import DELIVERED, DROPPED, FAILED, PENDING, AttemptResult, Outbox, OutboxEvent
from .records import ClientRecord

log = logging.getLogger(__name__)

USER_AGENT = "vt-webhooks/1.0"
HEADERS = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
BREAKER_MAX_S = 600.0  # the longest pause of an endpoint that keeps failing
HOST_WAIT_S = 0.5  # how far events to a full host move when they crowd out the others
HEARTBEATS_PER_TENANT = 2  # of the channel's four heartbeat senders
AT_ONCE_MAX = 3  # attempts of one lease while the schedule says "at once"
SUCCEEDED = {"delivered": True, "gone": True, "retry": False, "failed": False}


class Dispatcher:
    """Leases due outbox events and delivers them with a bounded pool of senders."""

    def __init__(
        self,
        database: Database,
        clients: Clients,
        settings: Settings,
        metrics: ServerMetrics,
        policy: CallbackPolicy,
        *,
        rng: Callable[[], float] | None = None,
        on_recorded: Callable[[list[OutboxEvent]], None] | None = None,
    ) -> None:
        self._clients = clients
        self._on_recorded = on_recorded or (lambda events: None)
        self._outbox = Outbox(database)
        self._settings = settings
        self._metrics = metrics
        self._policy = policy
        self._random = rng or random.Random(settings.seed).random
        self._senders = settings.webhook_senders
        self._fair = Fairness(
            per_host=settings.webhook_per_host or max(1, self._senders * 3 // 4),
            per_tenant=settings.webhook_per_tenant or max(1, self._senders // 4),
            breaker_failures=settings.webhook_breaker_failures,
            cooldown=settings.webhook_breaker_cooldown,
            window=settings.webhook_breaker_window,
            max_cooldown=BREAKER_MAX_S,
            senders=self._senders,
        )
        self._pool = ThreadPoolExecutor(self._senders, thread_name_prefix="vt-webhook")
        # senders hand their results back; the dispatch loop records them in batches
        self._results: queue.SimpleQueue[tuple[OutboxEvent, list[AttemptResult]]] = (
            queue.SimpleQueue()
        )
        self._http = Egress(
            policy, maxsize=self._fair.per_host, connect_timeout=settings.webhook_connect_timeout
        )
        self._loop = Loop("vt-dispatcher", self._dispatch_once)
        self._secrets: dict[str, tuple[float, ClientRecord | None]] = {}
        self._beats: Counter[str] = Counter()  # heartbeat posts under way, per client
        self._beats_lock = threading.Lock()

    @property
    def fairness(self) -> Fairness:
        """The limits and breakers senders are admitted by."""
        return self._fair

    @property
    def outbox(self) -> Outbox:
        """The outbox this dispatcher drains."""
        return self._outbox

    def start(self) -> None:
        """Start the dispatch loop."""
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop leasing, let attempts under way finish (bounded by the webhook timeout)."""
        self._loop.stop(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._record(self._finished())
        self._http.clear()

    def wake(self) -> None:
        """Something became due (a job ended, a redelivery was asked)."""
        self._loop.wake()

    # ------------------------------------------------------------------ loop

    def _dispatch_once(self) -> float:
        """Record finished attempts, lease what free senders can take; returns the idle wait.

        Events of tenants at their limit are not even read; events to a full host, or to an
        endpoint whose breaker is open, are moved later rather than handed to a sender. Each
        round costs one write transaction however many webhooks it records and moves.
        """
        done = self._finished()
        free = self._senders - self._fair.in_flight
        if free <= 0:
            self._record(done)
            return 1.0  # a sender finishing wakes us
        skip_clients, skip_endpoints = self._fair.exclusions()
        now = time.time()
        admitted: list[OutboxEvent] = []
        left = 0
        crowded = False

        def admit(events: list[OutboxEvent]) -> tuple[list[OutboxEvent], dict[str, float]]:
            nonlocal left, crowded
            crowded = len(events) >= free * 4  # the read window is full: do not let
            host_wait = HOST_WAIT_S if crowded else None  # full hosts' events crowd it again
            take, later, left = self._fair.admit(events, now, free, host_wait)
            admitted.extend(take)
            return take, later

        try:
            events = self._outbox.lease(
                now=now,
                limit=free,
                lease_s=self._settings.webhook_timeout * 2 + 5,
                skip_clients=skip_clients,
                skip_endpoints=skip_endpoints,
                admit=admit,
                done=done,
            )
        except Exception:
            for event in admitted:  # admitted, never leased: give their places back
                self._fair.release(event, None, now)
            self._record(done)  # the results alone, once more
            raise
        for event in events:
            self._pool.submit(self._deliver, event)
        self._recorded(done)
        if crowded and len(events) < free and not left:
            return 0.0  # more may be due than the window read (behind those moved later)
        if len(events) >= free or left:
            return 1.0  # every sender (or the host or tenant) is taken: one finishing wakes us
        next_due = self._outbox.next_due_at()
        wait = 1.0 if next_due is None else min(1.0, max(0.0, next_due - time.time()))
        # due events of skipped tenants are not ours to spin on: their senders finishing wake us
        return max(wait, 0.25) if skip_clients or skip_endpoints else wait

    def _finished(self) -> list[tuple[OutboxEvent, list[AttemptResult]]]:
        """The results the senders handed back since the last round."""
        batch = []
        while True:
            try:
                batch.append(self._results.get_nowait())
            except queue.Empty:
                return batch

    def _record(self, done: list[tuple[OutboxEvent, list[AttemptResult]]]) -> None:
        """Write finished attempts, in one transaction."""
        if not done:
            return
        try:
            self._outbox.record_many(done)
        except Exception:
            # not recorded: their leases expire and they are sent again (at-least-once)
            log.exception("recording %d webhook attempts failed", len(done))
            return
        self._recorded(done)

    def _recorded(self, done: list[tuple[OutboxEvent, list[AttemptResult]]]) -> None:
        if done:
            self._on_recorded([event for event, _ in done])

    def _deliver(self, event: OutboxEvent) -> None:
        results: list[AttemptResult] = []
        counted = 0  # of the results, those the breaker already learned of
        try:
            results, counted = self._attempts(event)
        except Exception:
            # the lease expires and the event is retried: at-least-once, never lost
            log.exception("%s webhook %s: delivery crashed", event.job_id, event.id)
        finally:
            # the breaker learns of the attempt before the event can be leased again
            last = len(results) > counted
            succeeded = SUCCEEDED.get(results[-1].outcome) if last else None
            self._fair.release(event, succeeded, time.time())
            if results:
                self._results.put((event, results))
            self._loop.wake()

    def _attempts(self, event: OutboxEvent) -> tuple[list[AttemptResult], int]:
        """One lease's attempts: none sent for a dropped event; a retry due at once right after
        its failed attempt (at most ``AT_ONCE_MAX`` attempts in all); a duplicated event twice."""
        now = time.time()
        if event.mode == WebhookMode.DROP:
            log.info("%s webhook %s dropped by fault injection", event.job_id, event.id)
            self._metrics.webhook_attempts.labels("dropped").inc()
            return [
                AttemptResult(
                    now, None, "dropped by fault injection", None, "dropped", DROPPED, None
                )
            ], 0
        if event.attempts == 0:
            self._metrics.webhook_latency.observe(max(0.0, now - event.created_at))
        results, counted = [self._attempt(event, event.attempts + 1)], 0
        while len(results) < AT_ONCE_MAX and _due_now(results[-1]):
            # a retry the schedule puts at once goes now, from this sender and this lease,
            # unless the failure, counted by the breaker, opened it
            counted += 1
            if not self._fair.failed_before_last(event, time.time()):
                return results, counted
            results.append(self._attempt(event, event.attempts + len(results) + 1))
        if event.mode == WebhookMode.DUPLICATE and results[-1].state == DELIVERED:
            results.append(self._attempt(event, event.attempts + len(results) + 1))
        return results, counted

    def _attempt(self, event: OutboxEvent, number: int) -> AttemptResult:
        """Send once, and decide what follows from the answer."""
        started = time.time()
        client = self._client(event.client_id)
        status, error, retry_after, forbidden = None, None, None, False
        try:
            resp = self._signed_post(
                client,
                event.callback_url,
                event.id,
                event.payload,
                started,
                self._settings.webhook_timeout,
            )
            status = resp.status
            retry_after = (
                parse_retry_after(resp.headers.get("Retry-After"), started)
                if status in (429, 503)
                else None
            )
        except Forbidden:
            forbidden = True
        except (HTTPError, OSError) as exc:
            error = error_text(exc)
        latency = (time.time() - started) * 1000
        if forbidden:  # SSRF guard: nothing was connected to, never retried
            result = AttemptResult(started, None, REFUSED, None, "forbidden", FAILED, None)
        else:
            result = self._decide(started, number, status, error, latency, retry_after)
        self._metrics.webhook_attempts.labels(result.outcome).inc()
        log.info(
            "%s webhook %s attempt %d -> %s (%s) %.1fms",
            event.job_id,
            event.id,
            number,
            result.outcome,
            status if status is not None else (error or REFUSED),
            latency,
        )
        return result

    def _signed_post(
        self,
        client: ClientRecord | None,
        url: str,
        msg_id: str,
        payload: str,
        now: float,
        timeout: float,
    ) -> Any:
        """POST one body, signed Standard Webhooks style with the tenant's active secrets."""
        stamp = int(now)
        secrets = client.signing_secrets(now) if client else []
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(secrets, msg_id, stamp, payload),
        }
        return self._http.post(url, payload.encode(), {**HEADERS, **headers}, timeout)

    def post_once(self, client_id: str, url: str, msg_id: str, payload: str, timeout: float) -> Any:
        """Send one signed body once, unrecorded (heartbeats); the status, or the error text.

        Skipped (each heartbeat repeats the last) for an endpoint whose breaker is open, and
        while ``HEARTBEATS_PER_TENANT`` of the client's are under way: one tenant's hanging
        endpoints cannot hold every heartbeat sender."""
        if self._fair.state(client_id, url, time.time()) == "open":
            return "skipped: the endpoint is paused by its circuit breaker"
        with self._beats_lock:
            if self._beats[client_id] >= HEARTBEATS_PER_TENANT:
                return "skipped: the client's heartbeats are already under way"
            self._beats[client_id] += 1
        try:
            resp = self._signed_post(
                self._client(client_id), url, msg_id, payload, time.time(), timeout
            )
        except (HTTPError, OSError, Forbidden) as exc:
            return error_text(exc)
        finally:
            with self._beats_lock:
                self._beats[client_id] -= 1
                if self._beats[client_id] <= 0:
                    del self._beats[client_id]
        return resp.status

    def _decide(
        self,
        started: float,
        number: int,
        status: int | None,
        error: str | None,
        latency: float,
        retry_after: float | None,
    ) -> AttemptResult:
        if status is not None and 200 <= status < 300:
            return AttemptResult(started, status, None, latency, "delivered", DELIVERED, None)
        if status == 410:
            return AttemptResult(
                started, status, "410 Gone: endpoint retired", latency, "gone", FAILED, None
            )
        schedule = self._settings.webhook_retry_schedule
        if number > len(schedule):
            return AttemptResult(
                started, status, error or "retries exhausted", latency, "failed", FAILED, None
            )
        delay = self._random() * schedule[number - 1]  # full jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        return AttemptResult(started, status, error, latency, "retry", PENDING, time.time() + delay)

    def _client(self, client_id: str) -> ClientRecord | None:
        """The signing tenant, cached for a second (rotations show up promptly)."""
        now = time.monotonic()
        cached = self._secrets.get(client_id)
        if cached is None or cached[0] < now:
            cached = (now + 1.0, self._clients.get(client_id))
            self._secrets[client_id] = cached
        return cached[1]

    def forget_client(self, client_id: str) -> None:
        """Drop a tenant's cached secrets (after a rotation)."""
        self._secrets.pop(client_id, None)


def _due_now(result: AttemptResult) -> bool:
    """Whether a failed attempt's retry is due already (a schedule delay of 0, no Retry-After)."""
    return (
        result.state == PENDING
        and result.next_attempt_at is not None
        and result.next_attempt_at <= time.time()
    )
