"""Wake-ups from other receivers on one PostgreSQL database: ``LISTEN``/``NOTIFY``.

A trigger (``migrations.py``) makes every transaction that inserts events notify ``vt_feed``
when it commits, with the writer's ``application_name`` (its instance id) as the payload. Each
receiver listens on one dedicated autocommit psycopg connection, on a thread of its own, and
calls its feed's ``notify()`` for what other receivers stored, so a long-poll parked here wakes
for an event that arrived there. Its own notifications are ignored: its writers notify the
feed directly. After the connection is lost and made again the feed is notified once
(notifications sent meanwhile are gone). SQLite has one receiver: nothing to listen to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

from .migrations import FEED_CHANNEL

log = logging.getLogger(__name__)

POLL_S = 0.5  # how soon a stop is noticed while no notification comes
RECONNECT_S = 1.0


def is_postgresql(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (other receivers may share it)."""
    return make_url(url).get_backend_name() == "postgresql"


class FeedListener:
    """Calls ``notify()`` for each batch of events another receiver commits."""

    def __init__(self, url: str, notify: Callable[[], None], *, instance_id: str) -> None:
        self._conninfo = (
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._notify = notify
        self._me = instance_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vt-feed-listener", daemon=True)
        self.listening = threading.Event()  # set while LISTEN is in force

    def start(self) -> None:
        """Start listening, on a thread of its own."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and wait for the thread (at most ``POLL_S`` more)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, application_name=f"{self._me}-listen"
                ) as conn:
                    conn.execute(f"LISTEN {FEED_CHANNEL}")
                    self._notify()  # whatever was stored while nobody listened
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL_S):
                            if note.payload != self._me:
                                self._notify()
            except psycopg.Error:
                log.warning("listening for other receivers failed; again shortly", exc_info=True)
            finally:
                self.listening.clear()
            self._stop.wait(RECONNECT_S)
