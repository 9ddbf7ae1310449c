"""Greedy connections on real services: 1,000 idle connections and 100 trickling one header
byte at a time, all from one source, do not stop either service answering others."""

from __future__ import annotations

import resource
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import support
from tests.support import Service, wait_until

pytestmark = pytest.mark.timeout(120)

IDLE = 1000
TRICKLING = 100
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 200


class Trickle:
    """Sockets that send one byte of a request's headers every ``every`` seconds, never
    finishing them."""

    def __init__(self, sockets: list[socket.socket], every: float) -> None:
        self.sockets, self.every = sockets, every
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.every) and self.sent < len(REQUEST):
            for sock in self.sockets:
                sock.send(REQUEST[self.sent : self.sent + 1])
            self.sent += 1


def open_connections(port: int, count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        out.append(sock)
    return out


@pytest.fixture
def greedy(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Service]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if request.param == "server":
        service = support.start_server(tmp_path)
    else:
        token = "connections-test-feed-token-0123"
        service = support.start_receiver(tmp_path, "--feed-token", token)
    with service:
        yield service


@pytest.mark.parametrize("greedy", ["server", "receiver"], indirect=True)
def test_idle_and_trickling_connections_do_not_stop_a_service(greedy: Service) -> None:
    idle = open_connections(greedy.port, IDLE)
    trickling = open_connections(greedy.port, TRICKLING)
    trickle = Trickle(trickling, every=0.5)
    try:
        wait_until(lambda: trickle.sent >= 3, message="headers under way on every trickler")
        with requests.Session() as session:
            for _ in range(20):  # a probe: a new connection each time, then keep-alive
                assert session.get(f"{greedy.url}/healthz", timeout=10).status_code == 200
        for _ in range(10):
            fresh = requests.get(f"{greedy.url}/healthz", timeout=10)
            assert fresh.status_code == 200
        assert trickle.thread.is_alive()
        # Nobody was dropped to make room: an idle connection still gets an answer.
        idle[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert idle[0].recv(64).startswith(b"HTTP/1.1 200")
    finally:
        trickle.stop.set()
        trickle.thread.join(timeout=5)
        for sock in idle + trickling:
            sock.close()
