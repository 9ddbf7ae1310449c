"""Webhook delivery: signed POSTs from the outbox, by a bounded pool of sender threads.

"Persist, then notify": a job's final state and its outbox row are committed together, then
the scheduler wakes this dispatcher, which leases due rows and hands them to the senders.
Delivery is at-least-once with the retry schedule of API.md section 3 (full jitter); an
unreachable endpoint can never fail a job, and one slow endpoint cannot hold every sender
(at most ``per_host`` attempts to one host at once).
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
from urllib.parse import urlsplit

import certifi
from urllib3 import PoolManager, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError

from client_lib.models import WebhookMode
from client_lib.webhooks import sign
from client_lib.wire import retry_after as parse_retry_after

from .background import Loop
from .callbacks import CallbackPolicy
from .clients import Clients
from .config import Settings
from .db import Database
from .metrics import ServerMetrics
from .outbox import DELIVERED, DROPPED, FAILED, PENDING, AttemptResult, Outbox, OutboxEvent
from .records import ClientRecord

log = logging.getLogger(__name__)

USER_AGENT = "vt-webhooks/1.0"
HEADERS = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
POOLS = 16  # hosts whose keep-alive connections are kept
_ERROR_TEXT_MAX = 300


class ForbiddenAddress(OSError):
    """The callback host resolved to an address outside the allow-list; nothing was sent."""


def _is_forbidden(exc: BaseException, depth: int = 0) -> bool:
    """urllib3 wraps our refusal (ProtocolError("Connection aborted.", ForbiddenAddress))."""
    if isinstance(exc, ForbiddenAddress):
        return True
    return depth < 4 and any(
        isinstance(a, BaseException) and _is_forbidden(a, depth + 1) for a in exc.args
    )


def guarded_pool_manager(policy: CallbackPolicy, *, maxsize: int = 4) -> PoolManager:
    """Keep-alive pools, shared by every sender, whose connections refuse peers outside the
    allow-list (checked on the connected socket, so a name resolving to a forbidden address is
    never sent a byte). No retries, no redirects, no environment proxy; requests' CA bundle.
    """

    def check(conn: Any, sock: Any) -> None:
        peer = sock.getpeername()[0]
        if not (policy.host_allowed_by_name(conn.host) or policy.address_allowed(peer)):
            sock.close()
            raise ForbiddenAddress(f"{conn.host} resolved to {peer}, outside the allow-list")

    class GuardedHTTP(HTTPConnection):
        def _new_conn(self) -> Any:
            sock = super()._new_conn()
            check(self, sock)
            return sock

    class GuardedHTTPS(HTTPSConnection):
        def _new_conn(self) -> Any:
            sock = super()._new_conn()
            check(self, sock)
            return sock

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTP

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPS

    manager = PoolManager(
        num_pools=POOLS,
        maxsize=maxsize,
        retries=False,
        ca_certs=certifi.where(),
    )
    manager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}
    return manager


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
        self._per_host = settings.webhook_per_host or max(1, self._senders * 3 // 4)
        self._pool = ThreadPoolExecutor(self._senders, thread_name_prefix="vt-webhook")
        # senders hand their results back; the dispatch loop records them in batches
        self._results: queue.SimpleQueue[tuple[OutboxEvent, list[AttemptResult]]] = (
            queue.SimpleQueue()
        )
        self._http = guarded_pool_manager(policy, maxsize=self._per_host)
        self._timeout = Timeout(connect=settings.webhook_timeout, read=settings.webhook_timeout)
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._loop = Loop("vt-dispatcher", self._dispatch_once)
        self._secrets: dict[str, tuple[float, ClientRecord | None]] = {}

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
        self._record_finished()
        self._http.clear()

    def wake(self) -> None:
        """Something became due (a job ended, a redelivery was asked)."""
        self._loop.wake()

    # ------------------------------------------------------------------ loop

    def _dispatch_once(self) -> float:
        """Record finished attempts, lease what free senders can take; returns the idle wait.

        Each round costs at most two write transactions however many webhooks it moves.
        """
        self._record_finished()
        with self._lock:
            free = self._senders - sum(self._in_flight.values())
            busy = {h for h, n in self._in_flight.items() if n >= self._per_host}
        events = self._outbox.lease(
            now=time.time(),
            limit=free,
            busy_hosts=busy,
            host_of=_host,
            lease_s=self._settings.webhook_timeout * 2 + 5,
        )
        for event in events:
            with self._lock:
                self._in_flight[_host(event.callback_url)] += 1
            self._pool.submit(self._deliver, event)
        if events and len(events) < free and not busy:
            return 0.0  # the outbox may hold more that is due
        if events or free <= 0 or busy:
            return 1.0  # every sender (or host) is taken: one finishing wakes us
        next_due = self._outbox.next_due_at()
        return 1.0 if next_due is None else min(1.0, max(0.0, next_due - time.time()))

    def _record_finished(self) -> None:
        """Write the results the senders handed back, in one transaction."""
        batch = []
        while True:
            try:
                batch.append(self._results.get_nowait())
            except queue.Empty:
                break
        if batch:
            try:
                self._outbox.record_many(batch)
            except Exception:
                # not recorded: their leases expire and they are sent again (at-least-once)
                log.exception("recording %d webhook attempts failed", len(batch))
                return
            self._on_recorded([event for event, _ in batch])

    def _deliver(self, event: OutboxEvent) -> None:
        try:
            self._results.put((event, self._attempts(event)))
        except Exception:
            # the lease expires and the event is retried: at-least-once, never lost
            log.exception("%s webhook %s: delivery crashed", event.job_id, event.id)
        finally:
            with self._lock:
                self._in_flight[_host(event.callback_url)] -= 1
            self._loop.wake()

    def _attempts(self, event: OutboxEvent) -> list[AttemptResult]:
        """One lease's attempts: none sent for a dropped event, two for a duplicated one."""
        now = time.time()
        if event.mode == WebhookMode.DROP:
            log.info("%s webhook %s dropped by fault injection", event.job_id, event.id)
            self._metrics.webhook_attempts.labels("dropped").inc()
            return [
                AttemptResult(
                    now, None, "dropped by fault injection", None, "dropped", DROPPED, None
                )
            ]
        if event.attempts == 0:
            self._metrics.webhook_latency.observe(max(0.0, now - event.created_at))
        results = [self._attempt(event, event.attempts + 1)]
        if event.mode == WebhookMode.DUPLICATE and results[0].state == DELIVERED:
            results.append(self._attempt(event, event.attempts + 2))
        return results

    def _attempt(self, event: OutboxEvent, number: int) -> AttemptResult:
        """Send once, and decide what follows from the answer."""
        started = time.time()
        client = self._client(event.client_id)
        status, error, retry_after, forbidden = None, None, None, False
        try:
            resp = self._signed_post(
                client, event.callback_url, event.id, event.payload, started, self._timeout
            )
            status = resp.status
            retry_after = (
                parse_retry_after(resp.headers.get("Retry-After"), started)
                if status in (429, 503)
                else None
            )
        except (HTTPError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT_MAX]
            forbidden = _is_forbidden(exc)
        latency = (time.time() - started) * 1000
        if forbidden:  # SSRF guard: never retried, never contacted
            result = AttemptResult(started, None, error, latency, "forbidden", FAILED, None)
        else:
            result = self._decide(started, number, status, error, latency, retry_after)
        self._metrics.webhook_attempts.labels(result.outcome).inc()
        log.info(
            "%s webhook %s attempt %d -> %s (%s) %.1fms",
            event.job_id,
            event.id,
            number,
            result.outcome,
            status if status is not None else error,
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
        timeout: Timeout,
    ) -> Any:
        """POST one body, signed Standard Webhooks style with the tenant's active secrets."""
        stamp = int(now)
        secrets = client.signing_secrets(now) if client else []
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(secrets, msg_id, stamp, payload),
        }
        return self._http.request(
            "POST",
            url,
            body=payload.encode(),
            headers={**HEADERS, **headers},
            redirect=False,
            timeout=timeout,
        )

    def post_once(self, client_id: str, url: str, msg_id: str, payload: str, timeout: float) -> Any:
        """Send one signed body once, unrecorded (heartbeats); the status, or the error text."""
        try:
            resp = self._signed_post(
                self._client(client_id), url, msg_id, payload, time.time(), Timeout(timeout)
            )
        except (HTTPError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT_MAX]
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


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()
