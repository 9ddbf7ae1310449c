"""Schemathesis against both services' OpenAPI documents, every check, 0 failures.

Real services on free ports with temporary databases; the server's document is exercised
with a tenant's API key and the admin token, the receiver's with its feed token, so the
authenticated operations are reached. Examples are bounded (15 per operation and phase) and
deterministic, so a run is the same every time and takes about a minute on two cores.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import apifuzz
from tests.support import ADMIN, Service, start_receiver, start_server

# a run takes under a minute on two cores; a machine shared with other work may take longer
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    with start_server(workdir, "--duration-min", "0.1", "--duration-max", "0.3") as server:
        # short long-polls: a generated wait= must not hold the run up
        with start_receiver(workdir, "--max-wait", "0.5") as receiver:
            yield server, receiver


def _check(run: apifuzz.FuzzRun) -> None:
    assert run.passed, run.output[-6000:]
    assert run.server_errors == 0, run.output[-6000:]


def test_the_servers_document(services: tuple[Service, Service], tmp_path: Path) -> None:
    server, _ = services
    setup = json.loads((server.log_path.parent / "local.json").read_text())
    assert apifuzz.security_schemes(server.url) == ["adminToken", "apiKey"]
    run = apifuzz.run(server.url, {"apiKey": setup["api_key"], "adminToken": ADMIN}, tmp_path)
    _check(run)
    assert run.cases > 500  # every operation was exercised, not skipped


def test_the_receivers_document(services: tuple[Service, Service], tmp_path: Path) -> None:
    _, receiver = services
    setup = json.loads((receiver.log_path.parent / "local.json").read_text())
    schemes = apifuzz.security_schemes(receiver.url)
    assert schemes, "the feed's bearer token is declared"
    run = apifuzz.run(receiver.url, {name: setup["receiver_token"] for name in schemes}, tmp_path)
    _check(run)
    assert run.cases > 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 314572800\r\n\r\n", 413),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Odd: a\x1bb\r\n\r\n", 400),
    ],
)
def test_waitress_answers_these_itself_in_plain_text_on_both(
    services: tuple[Service, Service], request_bytes: bytes, status: int
) -> None:
    # docs/api.md, "waitress's own answers": not problem+json, and said so in the contract
    for service in services:
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
            sock.sendall(request_bytes)
            head = sock.recv(65536).split(b"\r\n\r\n")[0].decode("latin-1").lower()
        assert head.split()[1] == str(status), head
        assert "content-type: text/plain" in head and "connection: close" in head
