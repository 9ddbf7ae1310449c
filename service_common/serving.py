"""Serving a service's app with waitress, configured through its public settings only, until
SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from waitress.server import create_server

from client_lib.localsetup import write_ready_file
from client_lib.wire import MAX_BODY_BYTES, MAX_HEADER_BYTES

log = logging.getLogger(__name__)
FILES_HEADROOM = 64  # descriptors beyond the connections: the database, logs, listeners
QUEUE_WARNING_INTERVAL_S = 10.0


class OncePerInterval(logging.Filter):
    """Let one record through per ``interval`` seconds; the next one that passes says how
    many were held back in between.

    waitress warns on its ``waitress.queue`` logger each time a request waits for a free
    thread, which under a sustained load is nearly every request: a line and a write() per
    request, telling an operator nothing the first line of the interval did not.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        if now < self._next:
            self._held += 1
            return False
        self._next = now + self._interval
        held, self._held = self._held, 0
        if held:
            record.msg = f"{record.msg} ({held} more since the last one logged)"
        return True


class ServingSettings(Protocol):
    """What serving needs of a service's settings."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def connection_limit(self) -> int: ...
    @property
    def channel_timeout(self) -> int: ...
    @property
    def cleanup_interval(self) -> int: ...
    @property
    def backlog(self) -> int: ...


def build_server(app: Any, settings: ServingSettings, ident: str) -> Any:
    """The waitress server for ``app``, listening.

    An idle or trickling connection costs a file descriptor and no thread (waitress hands a
    request to a thread only once its headers are complete), so the connection limit is
    high and poll() replaces select(), which cannot watch descriptors above 1023. waitress
    has no header timeout and no per-address limit: docs/reverse-proxy.md.
    """
    queue_log = logging.getLogger("waitress.queue")
    if not any(isinstance(f, OncePerInterval) for f in queue_log.filters):
        queue_log.addFilter(OncePerInterval(QUEUE_WARNING_INTERVAL_S))
    files = raise_open_files_limit()
    if files < settings.connection_limit + FILES_HEADROOM:
        log.warning(
            "open-files limit %d is below connection-limit %d plus headroom: "
            "connections beyond it will fail to be accepted",
            files,
            settings.connection_limit,
        )
    return create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        ident=ident,
        connection_limit=settings.connection_limit,
        channel_timeout=settings.channel_timeout,
        cleanup_interval=settings.cleanup_interval,
        backlog=settings.backlog,
        asyncore_use_poll=True,
        # refused from the declared length, before a byte of the body is read
        max_request_body_size=MAX_BODY_BYTES,
        max_request_header_size=MAX_HEADER_BYTES,
    )


def raise_open_files_limit() -> int:
    """Raise this process's open-files soft limit to its hard limit; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft)


def serve_until_signalled(
    server: Any,
    url: str,
    ready_file: Path | None,
    *,
    on_signal: Callable[[], None] = lambda: None,
    on_stop: Callable[[], None] = lambda: None,
) -> None:
    """Run ``server`` until SIGTERM or SIGINT: ``on_signal`` runs in the signal handler (to
    release what keeps request threads busy), then the server stops taking requests, lets
    those under way finish (5 s at most) and closes; ``on_stop`` runs last. The ready file
    is written once the handlers are in place: a parent may signal as soon as it appears."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        on_signal()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if ready_file is not None:
            write_ready_file(ready_file, url, int(server.effective_port))
        server.run()  # waitress catches the SystemExit of the handler and returns
    except (SystemExit, KeyboardInterrupt):
        pass  # a signal before run() began
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        on_signal()
        server.task_dispatcher.shutdown(timeout=5)
        server.close()
        on_stop()
        log.info("stopped")
