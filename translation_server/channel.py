"""The webhook channel: heartbeats that tell an endpoint which of its job events exist.

An endpoint (a client's callback URL) asks for channel events when a job is created with
``channel_events: true``. From then on every job event to it carries the endpoint's next
sequence number (``"seq"`` in the signed body, numbered by the store in the transaction that
makes the job final), and this module sends it signed ``channel.heartbeat`` events:

- every ``heartbeat_interval`` seconds while the endpoint has jobs in flight, or had a job
  event within the last ``heartbeat_linger`` seconds;
- shortly (``SOON_S``) after a delivery attempt to it concluded, so that news travels fast.

A heartbeat carries the last sequence number given out and, for the most recent events, which
job each number belongs to and whether it is still ``pending`` (not yet sent, or waiting for a
retry, with the time of the next attempt) or ``sent`` (an attempt concluded: delivered, or
given up). An endpoint that holds every ``sent`` event it was told of has lost nothing; a
``sent`` number it never received is a lost webhook, and the job it names can be asked for
at once. Heartbeats are not stored and not retried: the next one says the same, and newer.

With several server instances on one database, the oldest live one (``leases.py``) sends the
periodic heartbeats and each sends the prompt one after its own deliveries. Every heartbeat is
read from the database when it is sent, so one overtaken by a newer one says less, never
something false: an event it calls ``sent`` was sent.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import and_, exists, or_, select

from client_lib.models import format_time

from .background import Loop
from .db import Database
from .outbox import PENDING, SENDING, OutboxEvent
from .schema import channel_events, channels, jobs, webhook_events
from .states import State

log = logging.getLogger(__name__)

HEARTBEAT_TYPE = "channel.heartbeat"
RECENT_EVENTS = 64  # the newest sequence numbers a heartbeat describes
RECENT_WINDOW_S = 60.0  # ... given out at most this long ago
SOON_S = 0.05  # a concluded delivery is followed by a heartbeat this soon (coalescing)
SENDERS = 4
SEND_TIMEOUT_S = 2.0

Endpoint = tuple[str, str]  # (client_id, callback_url)
# posts one signed body: (client_id, url, webhook id, body, timeout) -> status or error text
Post = Callable[[str, str, str, str, float], Any]

_IN_FLIGHT = (State.QUEUED.value, State.PROCESSING.value)


class Heartbeats:
    """Sends each active channel endpoint its heartbeats, on a thread of its own."""

    def __init__(
        self,
        database: Database,
        post: Post,
        *,
        interval: float,
        linger: float,
        leads: Callable[[], bool] = lambda: True,
    ) -> None:
        self._db = database
        self._leads = leads
        self._post = post
        self._interval = interval
        self._linger = linger
        self._lock = threading.Lock()
        self._soon: dict[Endpoint, float] = {}
        self._sending: set[Endpoint] = set()
        self._next_round = 0.0
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="vt-heartbeat")
        self._loop = Loop("vt-heartbeats", self._step)

    @property
    def enabled(self) -> bool:
        """Whether heartbeats are sent at all."""
        return self._interval > 0

    def start(self) -> None:
        """Start the loop (nothing runs when the interval is 0)."""
        if self.enabled:
            self._loop.start()

    def stop(self) -> None:
        """Stop the loop and the senders."""
        self._loop.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def concluded(self, events: Iterable[OutboxEvent]) -> None:
        """Deliveries to these events' endpoints concluded: heartbeat them soon."""
        if not self.enabled:
            return
        at = time.time() + SOON_S
        with self._lock:
            for event in events:
                self._soon.setdefault((event.client_id, event.callback_url), at)
        self._loop.wake()

    # ------------------------------------------------------------------ loop

    def _step(self) -> float:
        now = time.time()
        due: set[Endpoint] = set()
        if now >= self._next_round:
            if self._leads():  # one instance of several sends the rounds (leases.py)
                due.update(self.active_endpoints(now))
            self._next_round = now + self._interval
        with self._lock:
            for endpoint, at in list(self._soon.items()):
                if at <= now:
                    due.add(endpoint)
                    del self._soon[endpoint]
            due -= self._sending
            self._sending |= due
            wake = min([self._next_round, *self._soon.values()])
        for endpoint in due:
            self._pool.submit(self._send, endpoint)
        return max(0.0, wake - time.time())

    def _send(self, endpoint: Endpoint) -> None:
        try:
            body = self.body(endpoint, time.time())
            if body is not None:
                msg_id = f"msg_hb_{secrets.token_urlsafe(12)}"
                outcome = self._post(endpoint[0], endpoint[1], msg_id, body, SEND_TIMEOUT_S)
                log.debug("heartbeat to %s -> %s", endpoint[1], outcome)
        except Exception:
            log.exception("heartbeat to %s failed", endpoint[1])
        finally:
            with self._lock:
                self._sending.discard(endpoint)

    # ----------------------------------------------------------------- reads

    def active_endpoints(self, now: float) -> list[Endpoint]:
        """Channel endpoints with jobs in flight or a job event in the last linger seconds."""
        in_flight = exists().where(
            jobs.c.client_id == channels.c.client_id,
            jobs.c.callback_url == channels.c.callback_url,
            jobs.c.state.in_(_IN_FLIGHT),
        )
        query = select(channels.c.client_id, channels.c.callback_url).where(
            or_(channels.c.last_event_at > now - self._linger, in_flight)
        )
        with self._db.engine.connect() as conn:
            return [(r.client_id, r.callback_url) for r in conn.execute(query)]

    def body(self, endpoint: Endpoint, now: float) -> str | None:
        """The heartbeat's signed body for an endpoint; None when it has no channel."""
        client_id, url = endpoint
        with self._db.engine.connect() as conn:
            last = conn.execute(
                select(channels.c.last_seq).where(
                    channels.c.client_id == client_id, channels.c.callback_url == url
                )
            ).scalar()
            if last is None:
                return None
            rows = conn.execute(
                select(
                    channel_events.c.seq,
                    channel_events.c.job_id,
                    webhook_events.c.state,
                    webhook_events.c.next_attempt_at,
                )
                .join(webhook_events, webhook_events.c.id == channel_events.c.event_id)
                .where(
                    and_(
                        channel_events.c.client_id == client_id,
                        channel_events.c.callback_url == url,
                        channel_events.c.seq > last - RECENT_EVENTS,
                        channel_events.c.created_at > now - RECENT_WINDOW_S,
                    )
                )
                .order_by(channel_events.c.seq)
            ).all()
        events = [
            {
                "seq": r.seq,
                "job_id": r.job_id,
                "state": "pending" if r.state in (PENDING, SENDING) else "sent",
                "next_attempt_at": format_time(r.next_attempt_at) if r.state == PENDING else None,
            }
            for r in rows
        ]
        data = {
            "endpoint": url,
            "client_id": client_id,
            "seq": last,
            "interval_s": self._interval,
            "events": events,
        }
        doc = {"type": HEARTBEAT_TYPE, "timestamp": format_time(now), "data": data}
        return json.dumps(doc, separators=(",", ":"))
