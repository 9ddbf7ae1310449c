"""Both services end to end, as an operator should run them: secrets in files, never on the
command line; then every log line of both is searched for every secret in play.

The flow: an operator creates a client and rotates its secret, jobs run and their signed
webhooks reach the receiver, a client reads the feed, and wrong keys, tokens and hostile
paths and headers are tried. Afterwards: no API key, admin token, webhook secret (or its
key bytes), feed token or webhook signature appears in any log line; every line is one
record (no forged line, no raw control character); the data folder is owner-only.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import Service, start_service, wait_until

ADMIN_TOKEN = "e2e-admin-token-from-a-file-7f3a9c"
FEED_TOKEN = "e2e-feed-token-from-a-file-0b41d2"
# a secret the receiver accepts from a file named by its variable, never used to sign
SPARE_SECRET = "whsec_" + base64.b64encode(b"spare-secret-from-a-file-0123456").decode()
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) [\w.]+: ")
SIGNATURE = re.compile(r"v1,[A-Za-z0-9+/]{43}=")


@dataclass
class Stack:
    server: Service
    receiver: Service
    home: Path

    def setup(self) -> dict[str, Any]:
        return dict(json.loads((self.home / "local.json").read_text()))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    home = tmp_path / "home"  # made by the services themselves
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    (tmp_path / "feed-token").write_text(FEED_TOKEN)
    (tmp_path / "secrets").write_text(SPARE_SECRET + "\n")
    env = {"VT_HOME": str(home)}
    server = start_service(
        "translation_server",
        ["--no-demo-job", "--admin-token-file", str(token_file), "--seed", "3",
         "--duration-min", "0.2", "--duration-max", "0.4", "--error-rate", "0"],
        tmp_path, name="server", env=env,
    )  # fmt: skip
    try:
        wait_until(lambda: (home / "local.json").exists(), message="the set-up file")
        receiver = start_service(
            "callback_receiver", ["--feed-token-file", str(tmp_path / "feed-token")], tmp_path,
            name="receiver", env={**env, "VT_WEBHOOK_SECRETS_FILE": str(tmp_path / "secrets")},
        )  # fmt: skip
    except BaseException:
        server.stop()
        raise
    with server, receiver:
        yield Stack(server, receiver, home)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def _run_the_flow(stack: Stack) -> list[str]:
    """Everything an operator, a tenant and a stranger do; returns the secrets in play."""
    server, receiver = stack.server.url, stack.receiver.url
    admin = _bearer(ADMIN_TOKEN)
    acme = requests.post(f"{server}/v1/clients", json={"name": "acme"}, headers=admin, timeout=5)
    assert acme.status_code == 201
    key, first_secret = acme.json()["api_key"], acme.json()["webhook_secret"]
    setup = stack.setup()
    feed = _bearer(FEED_TOKEN)
    callback = f"{receiver}/webhooks"
    body = {"callback_url": callback, "channel_events": True, "metadata": {"k": "v"},
            "simulate": {"duration_s": 0.2, "outcome": "completed"}}  # fmt: skip
    ids = []
    for n in range(3):
        made = requests.post(
            f"{server}/v1/jobs", json=body, headers={**_bearer(key), "Idempotency-Key": f"k{n}"}
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    rotated = requests.post(
        f"{server}/v1/clients/{acme.json()['id']}/rotate-secret", headers=admin, timeout=5
    )
    assert rotated.status_code == 200
    late = requests.post(f"{server}/v1/jobs", json=body, headers=_bearer(key), timeout=5)
    ids.append(late.json()["id"])  # signed with both secrets

    def fed() -> bool:
        page = requests.get(f"{receiver}/v1/events?after=0&limit=1000", headers=feed, timeout=5)
        finals = {e["data"]["id"] for e in page.json()["events"] if e["type"] == "job.completed"}
        return finals >= set(ids)

    wait_until(fed, timeout=20, message="every job's webhook in the feed")
    for job_id in ids:
        assert requests.get(f"{receiver}/v1/events/{job_id}", headers=feed).status_code == 200
        assert requests.get(f"{server}/v1/jobs/{job_id}/deliveries", headers=_bearer(key)).ok
    # wrong credentials, each a 401 that must not log what it was given
    for url, headers in [
        (f"{server}/v1/jobs", _bearer(key[:-4] + "AAAA")),
        (f"{server}/v1/clients", _bearer(ADMIN_TOKEN + "x")),
        (f"{receiver}/v1/events", _bearer(FEED_TOKEN + "x")),
        (f"{receiver}/v1/events", _bearer(setup["receiver_token"])),  # not the file's
    ]:
        assert requests.get(url, headers=headers, timeout=5).status_code == 401
    forged = requests.post(
        callback, data=b"{}", timeout=5,
        headers={"webhook-id": "msg_x\x85FORGED", "webhook-timestamp": "1",
                 "webhook-signature": "v1," + base64.b64encode(b"s" * 32).decode()},
    )  # fmt: skip
    assert forged.status_code in (400, 401)
    # a %0A in a path and line breaks in header values, to both services (waitress refuses
    # a header with a control character itself; U+0085, a line break to Python, it passes)
    for url in (server, receiver):
        for path in ("/v1/jobs/x%0AFORGED%20200%20request_id=0", "/nowhere%0D%0AFORGED"):
            conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
            conn.request("GET", path, headers={"X-Request-ID": "r\x85FORGED", **_bearer(key)})
            assert conn.getresponse().status in (400, 401, 404)  # 400: waitress, plain
            conn.close()
        answer = _raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Odd: a\x7f\x1bb\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 400 ")  # waitress's own, before the app
    return [
        ADMIN_TOKEN, key, setup["api_key"], first_secret, rotated.json()["webhook_secret"],
        setup["webhook_secret"], setup["receiver_token"], FEED_TOKEN, SPARE_SECRET,
    ]  # fmt: skip


def _key_bytes(secret: str) -> list[str]:
    """A webhook secret and the forms its key could be logged in."""
    if not secret.startswith("whsec_"):
        return [secret]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return [
        secret,
        secret.removeprefix("whsec_"),
        key.hex(),
        base64.urlsafe_b64encode(key).decode(),
    ]


def test_no_secret_reaches_a_log_line_and_the_data_folder_is_owner_only(stack: Stack) -> None:
    secrets = _run_the_flow(stack)
    assert len(set(secrets)) == len(secrets) and all(len(s) >= 16 for s in secrets)
    found = {p.name: stat.S_IMODE(p.stat().st_mode) for p in stack.home.iterdir()}
    assert {"local.json", "server.db", "receiver.db"} <= set(found)
    assert any(name.endswith("-wal") for name in found)  # SQLite's own files too
    assert all(mode == 0o600 for mode in found.values()), found
    assert stat.S_IMODE(stack.home.stat().st_mode) == 0o700
    for service in (stack.server, stack.receiver):  # the files kept them out of ps
        cmdline = Path(f"/proc/{service.proc.pid}/cmdline").read_bytes()
        assert not any(s.encode() in cmdline for s in secrets), cmdline
    stack.server.stop()
    stack.receiver.stop()
    logs = {"server": stack.server.log(), "receiver": stack.receiver.log()}
    for name, text in logs.items():
        lines = text.splitlines()
        assert len(lines) > 20, name
        for line in lines:
            assert LINE.match(line), f"{name}: not one record per line: {line!r}"
            assert line.isprintable(), f"{name}: a raw control character: {line!r}"
            assert not SIGNATURE.search(line), f"{name}: a webhook signature: {line!r}"
            for secret in secrets:
                for form in _key_bytes(secret):
                    assert form not in line, f"{name} logged a secret: {line!r}"
        assert "\\nFORGED" in text and "\\r\\nFORGED" in text  # the paths, escaped
    assert "msg_x\\x85FORGED" in logs["receiver"]  # a header value, escaped
