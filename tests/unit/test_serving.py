"""Serving: waitress's queue-depth warnings at most once per interval."""

from __future__ import annotations

import logging

from service_common.serving import OncePerInterval, build_server


def _record(depth: int) -> logging.LogRecord:
    return logging.LogRecord(
        "waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (depth,), None
    )


def test_one_record_per_interval_then_the_count_held_back() -> None:
    now = [100.0]
    once = OncePerInterval(10.0, clock=lambda: now[0])
    first = _record(1)
    assert once.filter(first) and first.getMessage() == "Task queue depth is 1"
    assert not any(once.filter(_record(d)) for d in (2, 3, 4))
    now[0] = 109.9
    assert not once.filter(_record(5))
    now[0] = 110.0
    later = _record(6)
    assert once.filter(later)
    assert later.getMessage() == "Task queue depth is 6 (4 more since the last one logged)"
    now[0] = 125.0
    quiet = _record(7)
    assert once.filter(quiet) and quiet.getMessage() == "Task queue depth is 7"


def test_installed_once_on_the_waitress_queue_logger() -> None:
    class Settings:
        host, port, threads, connection_limit = "127.0.0.1", 0, 1, 10
        channel_timeout, cleanup_interval, backlog = 30, 30, 16

    queue_log = logging.getLogger("waitress.queue")
    before = list(queue_log.filters)
    servers = [build_server(lambda e, s: [], Settings(), "t") for _ in range(2)]
    try:
        assert sum(isinstance(f, OncePerInterval) for f in queue_log.filters) == 1
    finally:
        for server in servers:
            server.close()
        queue_log.filters[:] = before
