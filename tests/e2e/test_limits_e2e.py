"""Limits set on purpose on both real services: a body declared too large is refused from its
Content-Length, before any of it is read."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.servers import Stack, start_stack

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(tmp_path_factory.mktemp("limits"))
    yield started
    started.stop()


def declared_huge(port: int, path: str) -> tuple[bytes, float]:
    """POST announcing 300 MB and sending 10 bytes: the answer, and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 300000000\r\n\r\n0123456789".encode()
        )
        answer = sock.recv(4096)
    return answer, time.monotonic() - started


@pytest.mark.parametrize(("service", "path"), [("server", "/v1/jobs"), ("receiver", "/webhooks")])
def test_a_declared_300_mb_body_is_refused_before_it_is_read(
    stack: Stack, service: str, path: str
) -> None:
    port = stack.server.port if service == "server" else stack.receiver.port
    answer, took = declared_huge(port, path)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert took < 2.0  # the 300 MB were never waited for
