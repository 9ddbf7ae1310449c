"""Wake-ups from other server instances: PostgreSQL ``LISTEN``/``NOTIFY``.

Triggers (``migrations.py``) make every transaction that inserts jobs notify ``vt_jobs``, and
every one that inserts webhook outbox rows notify ``vt_outbox``, when it commits; the payload
is the writer's ``application_name``, its instance id. Each instance listens on one dedicated
autocommit psycopg connection, on a thread of its own, and hands what others sent to its
scheduler (a queued job it may have a slot for) and its dispatcher (a webhook to send). Its
own notifications are ignored: its writers wake their loops directly.

A notification is a hint, never the only path: the loops also wake on their own timers. After
the connection is lost and made again, every handler is called once (notifications sent
meanwhile are gone). SQLite has no other instances, so there is nothing to listen to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

POLL_S = 0.5  # how soon a stop is noticed while no notification comes
RECONNECT_S = 1.0


def conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """Calls ``handlers[channel]()`` for each notification another instance sends."""

    def __init__(
        self, url: str, handlers: Mapping[str, Callable[[], None]], *, instance_id: str
    ) -> None:
        self._conninfo = conninfo(url)
        self._handlers = dict(handlers)
        self._me = instance_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while LISTEN is in force

    def start(self) -> None:
        """Start listening, on a thread of its own."""
        self._thread = threading.Thread(target=self._run, name="vt-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and wait for the thread (at most ``POLL_S`` more)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error:
                log.warning("listening for other instances failed; again shortly", exc_info=True)
            finally:
                self.listening.clear()
            self._stop.wait(RECONNECT_S)

    def _listen(self) -> None:
        with psycopg.connect(
            self._conninfo, autocommit=True, application_name=f"{self._me}-listen"
        ) as conn:
            for channel in self._handlers:
                conn.execute(f"LISTEN {channel}")
            for handler in self._handlers.values():
                handler()  # whatever was sent while nobody listened
            self.listening.set()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=POLL_S):
                    if note.payload != self._me:
                        self._handlers[note.channel]()
