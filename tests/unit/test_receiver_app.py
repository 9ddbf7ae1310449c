"""The receiver app around the webhook path: health, metrics, errors, secrets, CLI."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError

from callback_receiver.__main__ import main
from callback_receiver.config import Settings
from callback_receiver.receiver import get_receiver
from client_lib.localsetup import LocalSetup
from tests.receiver_support import (
    OTHER_SECRET,
    SECRET,
    event_body,
    receiver_app,
    signed_headers,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    with receiver_app(tmp_path) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def deliver(
    client: FlaskClient, body: bytes, *, secret: str = SECRET, msg_id: str | None = None
) -> int:
    headers = signed_headers(body, secret=secret, msg_id=msg_id)
    return client.post("/webhooks", data=body, headers=headers).status_code


def test_healthz_reports_the_database(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok"}

    def broken() -> None:
        raise OperationalError("SELECT 1", {}, Exception("disk gone"))

    monkeypatch.setattr(get_receiver(app).store, "ping", broken)
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json()["code"] == "database_unavailable"
    assert "disk gone" not in resp.get_data(as_text=True)


def test_metrics_are_per_app(tmp_path: Path) -> None:
    with receiver_app(tmp_path / "a") as one, receiver_app(tmp_path / "b") as two:
        deliver(one.test_client(), event_body())
        text_one = one.test_client().get("/metrics").get_data(as_text=True)
        text_two = two.test_client().get("/metrics").get_data(as_text=True)
    assert 'receiver_webhooks_received_total{result="verified"} 1.0' in text_one
    assert 'result="verified"' not in text_two
    assert 'receiver_http_requests_total{route="/webhooks",status="204"} 1.0' in text_one
    assert "receiver_feed_waiters 0.0" in text_one


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    unsafe = client.get("/healthz", headers={"X-Request-ID": "x\tinjected " * 20})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["X-Request-ID"])


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("GET", "/webhooks", 405, "method_not_allowed"),
        ("POST", "/v1/events", 405, "method_not_allowed"),
        ("DELETE", "/", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_are_problems(
    client: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    resp = client.open(path, method=method)
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == code
    assert resp.headers["X-Request-ID"] == resp.get_json()["request_id"]


def test_unexpected_errors_are_a_bare_500_problem(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(get_receiver(app).store, "receipts", explode)
    resp = client.get("/v1/receipts")
    assert resp.status_code == 500
    assert resp.get_json()["code"] == "internal_error"
    assert "secret internals" not in resp.get_data(as_text=True)


def test_secret_from_credentials_file_is_read_when_it_appears_and_changes(tmp_path: Path) -> None:
    creds = tmp_path / "local.json"
    with receiver_app(tmp_path, secrets=(), credentials_file=creds) as app:
        client = app.test_client()
        assert deliver(client, event_body("j1"), secret=OTHER_SECRET) == 401  # no file yet
        LocalSetup(webhook_secret=OTHER_SECRET).write(creds)
        assert deliver(client, event_body("j2"), secret=OTHER_SECRET) == 204
        LocalSetup(webhook_secret=SECRET).write(creds)  # rotation
        st = creds.stat()
        os.utime(creds, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        assert deliver(client, event_body("j3"), secret=SECRET) == 204
        assert deliver(client, event_body("j4"), secret=OTHER_SECRET) == 401


def test_broken_credentials_file_is_ignored_not_fatal(tmp_path: Path) -> None:
    creds = tmp_path / "local.json"
    creds.write_text("{half a file")
    with receiver_app(tmp_path, credentials_file=creds) as app:
        assert deliver(app.test_client(), event_body()) == 204  # the configured secret works


@pytest.mark.parametrize(
    "changes",
    [
        {"threads": 1},
        {"threads": 8, "max_waiters": 8},
        {"max_waiters": -1},
        {"tolerance_s": 0},
        {"max_wait_s": 61},
        {"credentials_file": None},  # no feed token from anywhere
        {"feed_token": "short"},
        {"feed_token": "a token with spaces in it"},
        {"connection_limit": 10},
        {"channel_timeout": 0},
    ],
)
def test_invalid_settings_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Settings(**changes)  # type: ignore[arg-type]


def test_max_waiters_defaults_to_threads_minus_thirty_two() -> None:
    assert (Settings().threads, Settings().waiter_limit) == (544, 512)
    assert Settings(threads=40).waiter_limit == 8
    assert Settings(threads=3).waiter_limit == 1
    assert Settings().replace(threads=64).waiter_limit == 32


def test_help_shows_every_default_and_variable() -> None:
    result = CliRunner().invoke(main, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for option, envvar in [
        ("--port", "VT_RECEIVER_PORT"),
        ("--secret", "VT_WEBHOOK_SECRETS"),
        ("--database-url", "VT_RECEIVER_DATABASE_URL"),
        ("--tolerance", "VT_WEBHOOK_TOLERANCE"),
        ("--threads", "VT_RECEIVER_THREADS"),
        ("--max-waiters", "VT_RECEIVER_MAX_WAITERS"),
        ("--credentials-file", "VT_CREDENTIALS_FILE"),
        ("--feed-token", "VT_RECEIVER_FEED_TOKEN"),
        ("--connection-limit", "VT_RECEIVER_CONNECTION_LIMIT"),
        ("--channel-timeout", "VT_RECEIVER_CHANNEL_TIMEOUT"),
    ]:
        line = next(ln for ln in result.output.splitlines() if ln.strip().startswith(option))
        assert envvar in line and "default:" in line, line


def test_bad_secret_is_refused_without_echoing_it() -> None:
    result = CliRunner().invoke(
        main, ["--secret", "whsec_%%%not-base64%%%"], env={"VT_WEBHOOK_SECRETS": ""}
    )
    assert result.exit_code == 2
    assert "secret #1" in result.output
    assert "not-base64" not in result.output


def test_secrets_variable_accepts_spaces_and_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []
    monkeypatch.setattr("callback_receiver.__main__.serve", lambda s: seen.append(s) or 0)
    env = {"VT_WEBHOOK_SECRETS": f"{SECRET}, {OTHER_SECRET}"}
    result = CliRunner().invoke(main, ["--port", "0"], env=env)
    assert result.exit_code == 0, result.output
    assert seen[0].secrets == (SECRET, OTHER_SECRET)
