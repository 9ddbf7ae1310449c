"""How the server's waitress serves: each answer in one send, no wake-up the loop does not need,
and the request queue's warnings summed up instead of one per request.

waitress serves with one I/O thread (a ``select`` loop over every connection) and a pool of
request threads. Three of its habits cost a small API more than its own code does, and a poll
of ``GET /v1/jobs/{id}`` (a few hundred bytes, the bulk of our traffic) pays all three:

**Header and body in two sends.** waitress's task writes the status line and headers with one
``send`` and then the body with another (it sets ``TCP_NODELAY``, so each is a TCP segment of
its own): twice the system calls and, worse on a small machine, twice the wake-ups of the
client, which reads the header, then waits again for the body. ``OneSendTask`` builds the
header as waitress does and hands it over together with the body's first chunk when that chunk
is all or the start of a body of known length (what Flask gives for every JSON answer).
Anything else (chunked bodies, no body, HEAD, a first chunk longer than its Content-Length,
every later chunk) goes through waitress's own code unchanged.

**A wake-up of the I/O thread after every answer.** The request thread sends the answer
itself, then pulls the loop's trigger (a byte down a pipe) so that the loop looks at the
connection again: by default waitress stops watching a connection for reading while one of
its requests is being served. That is one more thread woken, one more pass over every
connection and two more system calls per request, all under the GIL the request threads want.
``ServerChannel`` keeps watching a connection while its request is served (waitress's own
``channel_request_lookahead``) and remembers
what the loop last decided about it; at the end of a request, when everything is sent, nothing
is to be closed and the loop is already waiting to read from it, the trigger is not pulled.
Any other time (a partial send, a connection to close, requests pipelined past the lookahead,
a decision the loop has not made yet) it is pulled exactly as waitress pulls it. Watching a
connection while its request is served means the loop may read the end of a client's input
then: waitress would take that for a client gone and close at once, but a client that only
shut down its sending side still waits for the answer, so the channel stops reading, answers,
and closes after.

**A warning per queued request.** waitress logs "Task queue depth is N" each time a request
finds every request thread busy. With few threads (the server's default is one: with the
GIL, more threads add contention, not speed) that is every request under load, each a log
record built and written. ``QueueDepthLog`` keeps the signal, at most one line per interval,
with the deepest queue and the number of queued requests since the last line.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

# Requests read ahead while one is served. With 1 the loop would keep watching an idle
# keep-alive connection, but a quick client's next request
# often arrives while the request thread is still finishing the answer it just sent: with 2
# the loop still watches then, and only a client that pipelines more needs a wake-up.
LOOKAHEAD = 2


class OneSendTask(WSGITask):  # type: ignore[misc]
    """A WSGI task whose header leaves with the first chunk of the body."""

    wrote_header: bool  # waitress's (untyped) own attributes, as this class uses them
    content_length: int | None
    content_bytes_written: int

    def write(self, data: bytes) -> None:
        if self.wrote_header or not data or not self.complete:
            super().write(data)  # the body's later chunks, and waitress's own errors
            return
        header: bytes = self.build_response_header()
        length = self.content_length
        if (
            self.has_body
            and not self.chunked_response
            and length is not None
            and len(data) <= length
        ):
            whole = header + data  # fails on a non-bytes chunk before anything is sent
            self.channel.write_soon(whole)
            self.wrote_header = True
            self.content_bytes_written += len(data)
            return
        self.channel.write_soon(header)
        self.wrote_header = True
        super().write(data)  # the header is out: waitress handles the body as it would


class ServerChannel(HTTPChannel):  # type: ignore[misc]
    """An HTTP channel that sends each answer whole and wakes the I/O loop only when needed."""

    task_class = OneSendTask

    # waitress's (untyped) own attributes, as this class uses them
    connected: bool
    will_close: bool
    close_when_flushed: bool
    total_outbufs_len: int
    requests: list[Any]
    requests_lock: threading.Lock
    socket: socket.socket

    # Whether the I/O loop, when it last looked, chose to wait for this connection's next
    # request, or for room to send on it (then it looks again at once). Written by the
    # loop's thread only; read by the request thread.
    watched_for_reading = False
    watched_for_writing = False
    # The client has finished sending (shut its side down) while a request of its was being
    # served: it still waits for the answer, which is sent before the connection closes.
    half_closed = False

    def readable(self) -> bool:
        watched: bool = not self.half_closed and super().readable()
        self.watched_for_reading = watched
        return watched

    def writable(self) -> bool:
        watched = bool(super().writable())
        self.watched_for_writing = watched
        return watched

    def handle_read(self) -> None:
        # Watching a connection while its request is served means the loop may meet the end
        # of the client's input there. waitress would take it for a client gone and close
        # at once, dropping the answer; a client that half-closes still reads it.
        if self.requests and not self._peek():
            self.half_closed = True
            self._close_once_answered()  # service() may have finished the last one meanwhile
            return
        super().handle_read()

    def _peek(self) -> bytes:
        """The next byte waiting on the socket, left there; b"" at the end of the input."""
        try:
            return self.socket.recv(1, socket.MSG_PEEK)
        except OSError:
            return b"?"  # waitress's own read meets the error and handles it

    def service(self) -> None:
        serving: threading.local = self.server.vt_serving  # see serve_with_server_channel
        serving.channel = self
        try:
            super().service()
        finally:
            serving.channel = None
        if self.half_closed and self.connected:
            self._close_once_answered()
            self.server.pull_trigger()

    def _close_once_answered(self) -> None:
        """After a half-close: once no request is left, close when what is left is sent.

        Under the requests lock, against the loop's thread and the request thread both
        getting here at the end of the last request.
        """
        with self.requests_lock:
            if not self.requests:
                self.close_when_flushed = True

    def loop_must_look(self) -> bool:
        """Whether the I/O loop has something to do for this connection that it would miss.

        Nothing, when everything is sent, nothing is to be closed, and the loop is waiting
        to read from it already (then the client's next request wakes it, as it should) or
        to send on it (then it looks again as soon as the socket has room, at once).
        """
        return not (
            (self.watched_for_reading or self.watched_for_writing)
            and self.connected
            and not self.will_close
            and not self.close_when_flushed
            and not self.total_outbufs_len
        )


def _quiet_trigger(pull: Callable[[], None], serving: threading.local) -> Callable[[], None]:
    """The server's ``pull_trigger``, skipped when the serving channel needs no new look.

    ``serving.channel`` is the channel the calling thread is serving, if any.
    """

    def pull_trigger() -> None:
        channel: ServerChannel | None = getattr(serving, "channel", None)
        if channel is None or channel.loop_must_look():
            pull()

    return pull_trigger


def serve_with_server_channel(server: Any) -> None:
    """Make a waitress server (from ``create_server``) use ``ServerChannel``.

    ``create_server`` gives one listener, or several in a ``MultiSocketServer`` (a host name
    with more than one address): each gets the channel, the lookahead and the trigger.
    """
    listeners = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = ServerChannel
            adj = listener.adj
            adj.channel_request_lookahead = max(LOOKAHEAD, adj.channel_request_lookahead)
            listener.vt_serving = threading.local()  # which channel each request thread serves
            listener.pull_trigger = _quiet_trigger(listener.pull_trigger, listener.vt_serving)


class QueueDepthLog:
    """Stands in for waitress's ``waitress.queue`` logger: one summary line per interval.

    The first queued request is told at once; the ones after it are counted, and told with
    the next one to queue once the interval has passed (so the tail of a burst waits for the
    next burst). waitress calls ``warning("Task queue depth is %d", depth)`` under its
    dispatcher's lock, so the counting here needs none of its own.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._next_line_at = float("-inf")
        self._since = clock()
        self._deepest = 0
        self._queued = 0

    def warning(self, _msg: str, depth: int, *_args: Any) -> None:
        """Count one request that waited behind ``depth`` others; maybe write the summary."""
        self._deepest = max(self._deepest, depth)
        self._queued += 1
        now = self._clock()
        if now < self._next_line_at:
            return
        self._logger.warning(
            "%d requests waited for a request thread in the last %.0f s (queue depth up to %d)",
            self._queued,
            now - self._since,
            self._deepest,
        )
        self._next_line_at = now + self._interval_s
        self._since = now
        self._deepest = self._queued = 0


def summarize_queue_warnings(server: Any, interval_s: float = 10.0) -> None:
    """Give a waitress server's dispatcher a ``QueueDepthLog`` for its queue warnings."""
    dispatcher = server.task_dispatcher
    dispatcher.queue_logger = QueueDepthLog(dispatcher.queue_logger, interval_s)
