"""The server's waitress channel (translation_server/serving.py), on a real waitress server.

Each answer in one send: the channel below only records what the task hands to ``write_soon``
(each hand-over is one ``send`` with waitress's ``send_bytes=1``) and then lets waitress send
it as usual; the client is ``http.client`` or a raw socket, so answers are checked as they
arrive.

No wake-up the loop does not need: the fixture counts the trigger's real pulls, and its loop
waits up to a minute in ``select`` (waitress's own waits a second), so a wake-up skipped when
it was needed leaves a client without its answer and the test fails on the client's timeout.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from waitress import wasyncore as asyncore
from waitress.server import BaseWSGIServer, create_server

from translation_server.__main__ import build_server
from translation_server.config import Settings
from translation_server.serving import (
    LOOKAHEAD,
    QueueDepthLog,
    ServerChannel,
    serve_with_server_channel,
)

BODY = b'{"id":"job_1","status":"pending"}'
BIG = 8 * 1024 * 1024  # far more than a socket's send buffer: the loop sends the rest
LOOP_WAIT_S = 60.0
CLIENT_TIMEOUT_S = 5.0


# ``/held`` answers once this is set (a request still being served, for as long as a test needs)
HELD = threading.Event()


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A WSGI app with one path per shape of answer."""
    path = environ["PATH_INFO"]
    if path == "/held":
        assert HELD.wait(CLIENT_TIMEOUT_S), "the test never released the request"
        path = "/json"
    if path == "/json":
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [BODY]  # as Flask does
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(BIG))])
        return [b"x" * BIG]
    if path == "/two-chunks":
        start_response("200 OK", [("Content-Length", "6")])
        return [b"abc", b"def"]
    if path == "/stream":  # no length: waitress sends it chunked
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"one", b"two"])
    if path == "/too-long":  # more than its Content-Length: waitress cuts it
        start_response("200 OK", [("Content-Length", "4")])
        return [b"abcdefgh"]
    if path == "/too-short":  # fewer bytes than its Content-Length: waitress closes after
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc"]
    if path == "/str-chunk":  # an application bug: waitress answers 500 in its place
        start_response("200 OK", [("Content-Length", "3")])
        return ["abc"]
    if path == "/no-content-with-body":  # waitress drops a body a 204 may not have
        start_response("204 No Content", [])
        return [b"ignored"]
    if path == "/not-modified":
        start_response("304 Not Modified", [("ETag", 'W/"x"')])
        return []
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


class Recorded:
    """What the channels handed to ``write_soon``, in the order handed; ``take`` empties it.

    ``pulls`` counts the trigger's real pulls (a byte written to wake the loop).
    """

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.lock = threading.Lock()
        self.pulls = 0
        self.half_closed = threading.Event()  # a channel met a client's half-close
        self.reads_after_half_close: bool | None = None  # whether it went on reading then

    def take(self) -> list[bytes]:
        with self.lock:
            taken, self.writes = self.writes, []
        return taken


@pytest.fixture
def served() -> Iterator[tuple[int, Recorded]]:
    recorded = Recorded()

    class RecordingChannel(ServerChannel):  # type: ignore[misc]
        def write_soon(self, data: bytes) -> int:
            with recorded.lock:
                recorded.writes.append(bytes(data))
            return super().write_soon(data)  # type: ignore[no-any-return]

        def handle_read(self) -> None:
            super().handle_read()
            if self.half_closed and not recorded.half_closed.is_set():
                recorded.reads_after_half_close = self.readable()
                recorded.half_closed.set()

    server: Any = create_server(app, host="127.0.0.1", port=0, threads=2)
    real_pull = server.trigger.pull_trigger

    def counted_pull(thunk: Any = None) -> None:
        with recorded.lock:
            recorded.pulls += 1
        real_pull(thunk)

    server.trigger.pull_trigger = counted_pull
    serve_with_server_channel(server)
    assert server.channel_class is ServerChannel
    assert server.adj.channel_request_lookahead == LOOKAHEAD
    server.channel_class = RecordingChannel
    stop = threading.Event()

    def serve() -> None:  # waitress's loop, stopped between turns; closed in its own thread
        while not stop.is_set():
            asyncore.loop(timeout=LOOP_WAIT_S, map=server._map, count=1)
        server.task_dispatcher.shutdown()
        for channel in list(server._map.values()):
            channel.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.effective_port), recorded
    finally:
        stop.set()
        real_pull()  # wakes the loop to see ``stop``
        thread.join(timeout=5)


@contextlib.contextmanager
def connection(port: int) -> Iterator[http.client.HTTPConnection]:
    """A keep-alive connection to the test server, closed afterwards (on a failure too)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
    try:
        yield conn
    finally:
        conn.close()


def fetch(conn: http.client.HTTPConnection, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn.request(method, path)
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_a_json_answer_leaves_in_one_send_and_the_connection_stays_open(
    served: tuple[int, Recorded],
) -> None:
    port, recorded = served
    with connection(port) as conn:
        for _ in range(3):  # keep-alive: the same socket answers again, each time whole
            assert fetch(conn, "/json") == (200, BODY)
            (write,) = recorded.take()
            head, _, body = write.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert f"Content-Length: {len(BODY)}".encode() in head
            assert body == BODY


def test_a_body_of_several_chunks_sends_the_header_with_the_first(
    served: tuple[int, Recorded],
) -> None:
    port, recorded = served
    with connection(port) as conn:
        assert fetch(conn, "/two-chunks") == (200, b"abcdef")
        first, second = recorded.take()
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\nabc")
        assert second == b"def"


@pytest.mark.parametrize(
    ("path", "method", "status", "body", "expected_writes"),
    [
        # chunked: the header alone, then waitress's own chunk framing
        ("/stream", "GET", 200, b"onetwo", [b"3\r\none\r\n", b"3\r\ntwo\r\n", b"0\r\n\r\n"]),
        # waitress keeps cutting a body to its Content-Length
        ("/too-long", "GET", 200, b"abcd", [b"abcd"]),
        # no body at all: the header alone
        ("/not-modified", "GET", 304, b"", []),
        ("/no-content-with-body", "GET", 204, b"", []),
        ("/json", "HEAD", 200, b"", []),
    ],
)
def test_other_answers_go_through_waitress_unchanged(
    served: tuple[int, Recorded],
    path: str,
    method: str,
    status: int,
    body: bytes,
    expected_writes: list[bytes],
) -> None:
    port, recorded = served
    with connection(port) as conn:
        assert fetch(conn, path, method) == (status, body)
        header, *rest = recorded.take()
        assert header.startswith(f"HTTP/1.1 {status} ".encode()) and header.endswith(b"\r\n\r\n")
        assert rest == expected_writes


def exchange(port: int, request: bytes) -> bytes:
    """Send a raw request; everything the server sends until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "request_line",
    [b"GET /json HTTP/1.0\r\n\r\n", b"GET /json HTTP/1.1\r\nConnection: close\r\n\r\n"],
)
def test_an_answer_that_closes_the_connection_is_whole_too(
    served: tuple[int, Recorded], request_line: bytes
) -> None:
    port, recorded = served
    received = exchange(port, request_line)  # returns only once the server has closed
    (write,) = recorded.take()
    assert received == write and write.endswith(b"\r\n\r\n" + BODY)


def test_too_few_bytes_still_close_the_connection(served: tuple[int, Recorded]) -> None:
    port, recorded = served
    received = exchange(port, b"GET /too-short HTTP/1.1\r\n\r\n")  # keep-alive asked
    (write,) = recorded.take()
    assert received == write  # one send, then waitress closed the connection
    head, _, body = write.partition(b"\r\n\r\n")
    assert b"Content-Length: 10" in head and body == b"abc"


def test_a_chunk_that_is_not_bytes_gets_waitress_500_not_a_half_answer(
    served: tuple[int, Recorded],
) -> None:
    port, recorded = served
    with connection(port) as conn:
        status, body = fetch(conn, "/str-chunk")
        assert status == 500 and b"Internal Server Error" in body
        assert not any(w.startswith(b"HTTP/1.1 200") for w in recorded.take())


def test_keep_alive_answers_do_not_wake_the_loop(served: tuple[int, Recorded]) -> None:
    port, recorded = served
    with connection(port) as conn:
        assert fetch(conn, "/json") == (200, BODY)  # the loop has seen the connection since
        before = recorded.pulls
        answers = [fetch(conn, "/json") for _ in range(50)]
        assert answers == [(200, BODY)] * 50
        # stock waitress pulls once per answer; a pull is left only where the loop happened to
        # look at the connection while an answer was on its way out
        assert recorded.pulls - before <= 5


def read_answers(sock: socket.socket, count: int, length: int) -> list[bytes]:
    """Read ``count`` answers of ``length``-byte bodies off ``sock``; their bodies."""
    received, bodies = b"", list[bytes]()
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while len(bodies) < count:
        head_end = received.find(b"\r\n\r\n")
        if head_end >= 0 and len(received) >= head_end + 4 + length:
            bodies.append(received[head_end + 4 : head_end + 4 + length])
            received = received[head_end + 4 + length :]
            continue
        assert time.monotonic() < deadline, f"{len(bodies)} of {count} answers arrived"
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        received += chunk
    return bodies


def test_requests_pipelined_past_the_lookahead_are_all_answered(
    served: tuple[int, Recorded],
) -> None:
    port, _ = served
    count = LOOKAHEAD + 3  # the loop stops reading them; each answer must wake it again
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n" * count)
        assert read_answers(sock, count, len(BODY)) == [BODY] * count
        sock.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")  # and it still listens
        assert read_answers(sock, 1, len(BODY)) == [BODY]


def test_a_client_that_half_closes_while_served_still_gets_its_answer(
    served: tuple[int, Recorded],
) -> None:
    port, recorded = served
    HELD.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)  # done sending; still reading
        assert recorded.half_closed.wait(CLIENT_TIMEOUT_S)  # the loop saw it mid-request
        assert recorded.reads_after_half_close is False  # and stopped reading (no busy loop)
        HELD.set()
        received = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"\r\n\r\n" + BODY)


def test_several_connections_at_once_on_two_threads_are_all_answered(
    served: tuple[int, Recorded],
) -> None:
    port, _ = served

    def client() -> list[tuple[int, bytes]]:
        with connection(port) as conn:
            return [fetch(conn, "/json") for _ in range(40)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: client(), range(6)))
    assert answers == [[(200, BODY)] * 40] * 6


def test_an_answer_larger_than_the_send_buffer_is_finished_by_the_loop(
    served: tuple[int, Recorded],
) -> None:
    port, _ = served
    with connection(port) as conn:
        status, body = fetch(conn, "/big")
        assert status == 200 and len(body) == BIG
        assert fetch(conn, "/json") == (200, BODY)  # the connection is watched again afterwards


def test_every_listener_of_a_multi_socket_server_gets_the_channel() -> None:
    server: Any = create_server(app, listen="127.0.0.1:0 127.0.0.1:0")
    try:
        listeners = [s for s in server.map.values() if isinstance(s, BaseWSGIServer)]
        assert len(listeners) == 2
        serve_with_server_channel(server)
        assert all(listener.channel_class is ServerChannel for listener in listeners)
        assert all(listener.adj.channel_request_lookahead == LOOKAHEAD for listener in listeners)
    finally:
        server.close()


def test_the_server_process_serves_with_the_channel() -> None:
    settings = Settings(host="127.0.0.1", port=0, threads=1)
    server = build_server(app, settings)  # what ``python -m translation_server`` serves with
    try:
        assert server.channel_class is ServerChannel
        assert server.adj.channel_request_lookahead == LOOKAHEAD
    finally:
        server.close()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_queue_warnings_become_one_summary_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = QueueDepthLog(logging.getLogger("test.queue"), interval_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.queue"):
        clock.now += 30  # the server ran 30 s before a request had to wait
        log.warning("Task queue depth is %d", 1)  # the first one is told at once
        for depth in (3, 7, 2):
            clock.now += 1
            log.warning("Task queue depth is %d", depth)
        clock.now += 7  # 10 s after the first line
        log.warning("Task queue depth is %d", 4)
        clock.now += 60  # a quiet minute, then the next burst tells the last one's tail
        log.warning("Task queue depth is %d", 2)
    assert [r.getMessage() for r in caplog.records] == [
        "1 requests waited for a request thread in the last 30 s (queue depth up to 1)",
        "4 requests waited for a request thread in the last 10 s (queue depth up to 7)",
        "1 requests waited for a request thread in the last 60 s (queue depth up to 2)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_the_server_process_summarizes_its_queue_warnings() -> None:
    settings = Settings(host="127.0.0.1", port=0, threads=1)
    server = build_server(app, settings)
    try:
        assert isinstance(server.task_dispatcher.queue_logger, QueueDepthLog)
    finally:
        server.close()
