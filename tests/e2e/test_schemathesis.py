"""Schemathesis against both services' OpenAPI documents, every check, 0 failures.

Real services on free ports with temporary databases; the server's document is exercised
with a tenant's API key and the admin token, the receiver's with its feed token, so the
authenticated operations are reached. Examples are bounded (15 per operation and phase) and
deterministic, so a run is the same every time and takes about a minute on two cores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import apifuzz
from tests.support import ADMIN, Service, start_receiver, start_server


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
