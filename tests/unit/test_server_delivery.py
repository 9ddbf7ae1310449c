"""Signing, retry decisions and the connecting of the webhook sender (``egress.py``)."""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError, SSLError

from client_lib.webhooks import sign
from client_lib.wire import retry_after
from tests.sink import Sink
from translation_server.callbacks import CallbackPolicy
from translation_server.clients import new_webhook_secret
from translation_server.config import Settings
from translation_server.delivery import Dispatcher
from translation_server.egress import Egress, Forbidden, error_text
from translation_server.outbox import OutboxEvent


def test_signature_verifies_with_the_reference_package_for_each_secret() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    now = int(time.time())
    body = '{"type":"job.completed"}'
    header = sign([new, old], "msg_1", now, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": header}
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "job.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + " ", headers)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 30 ", 30.0),
        ("999999999", 86400.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_is_parsed_and_capped(value: str | None, expected: float | None) -> None:
    assert retry_after(value, time.time()) == expected


def test_http_date_retry_after_in_the_future() -> None:
    from email.utils import formatdate

    now = time.time()
    assert retry_after(formatdate(now + 60, usegmt=True), now) == pytest.approx(60, abs=1)


def make_dispatcher(runtime: Any, **settings: Any) -> Dispatcher:
    settings.setdefault("webhook_retry_schedule", (1, 5, 30))
    s = Settings(**settings)
    policy = CallbackPolicy(s.callback_allow)
    return Dispatcher(runtime.db, runtime.clients, s, runtime.metrics, policy, rng=lambda: 0.5)


def test_retry_decisions_follow_the_schedule_with_full_jitter(runtime: Any) -> None:
    d = make_dispatcher(runtime)
    now = time.time()
    retry = d._decide(now, 1, 500, None, 3.0, None)
    assert (retry.outcome, retry.state) == ("retry", "pending")
    assert retry.next_attempt_at == pytest.approx(time.time() + 0.5, abs=0.05)  # 0.5 * 1 s
    assert d._decide(now, 3, 503, None, 1.0, None).next_attempt_at == pytest.approx(
        time.time() + 15, abs=0.05
    )
    assert d._decide(now, 4, 500, None, 1.0, None).state == "failed"  # 1 + 3 retries used
    assert d._decide(now, 1, 302, None, 1.0, None).outcome == "retry"  # 3xx is failure
    gone = d._decide(now, 1, 410, None, 1.0, None)
    assert (gone.outcome, gone.state) == ("gone", "failed")
    honoured = d._decide(now, 1, 429, None, 1.0, 7.0)
    assert honoured.next_attempt_at == pytest.approx(time.time() + 7, abs=0.05)
    assert d._decide(now, 1, 299, None, 1.0, None).state == "delivered"
    d.stop()


@pytest.mark.parametrize(
    ("schedule", "answers", "outcomes"),
    [
        ((0, 5), [(503, {})], ["retry", "delivered"]),  # a retry due at once goes at once
        ((0, 5), [(503, {"Retry-After": "2"})], ["retry"]),  # the endpoint asked for a pause
        ((1, 5), [(500, {})], ["retry"]),  # the schedule's wait is the dispatcher's
        ((0, 0, 0, 0, 0), [(503, {})] * 5, ["retry"] * 3),  # at most three at once
    ],
)
def test_a_retry_due_at_once_is_sent_by_the_same_sender(
    runtime: Any,
    tenant: dict[str, str],
    schedule: tuple[float, ...],
    answers: list[tuple[int, dict[str, str]]],
    outcomes: list[str],
) -> None:
    d = make_dispatcher(runtime, webhook_retry_schedule=schedule)
    with Sink([tenant["webhook_secret"]]) as sink:
        sink.script = [(status, headers, 0.0) for status, headers in answers]
        event = OutboxEvent("msg_1", "job_1", tenant["id"], "job.completed", sink.url, "{}",
                            "deliver", 0, time.time())  # fmt: skip
        results, _ = d._attempts(event)
        assert [r.outcome for r in results] == outcomes
        assert [a.webhook_id for a in sink.arrivals] == ["msg_1"] * len(outcomes)
        assert all(a.verified_with == [0] for a in sink.arrivals)


def test_retries_at_once_stop_when_the_breaker_opens(runtime: Any, tenant: dict[str, str]) -> None:
    d = make_dispatcher(
        runtime,
        webhook_retry_schedule=(0,) * 5,
        webhook_breaker_failures=2,
        webhook_breaker_window=0.0,
    )
    with Sink([tenant["webhook_secret"]]) as sink:
        sink.script = [(500, {}, 0.0)] * 5
        event = OutboxEvent("msg_2", "job_2", tenant["id"], "job.completed", sink.url, "{}",
                            "deliver", 0, time.time())  # fmt: skip
        results, counted = d._attempts(event)
        # each failure counted once: the second opened the breaker, so no third went
        assert ([r.outcome for r in results], counted) == (["retry", "retry"], 2)
        assert d.fairness.state(tenant["id"], sink.url, time.time()) == "open"
        assert len(sink.arrivals) == 2


def test_egress_never_connects_outside_the_allow_list() -> None:
    with Sink() as sink:
        refused = Egress(CallbackPolicy(("127.0.0.2/32",)))
        with pytest.raises(Forbidden) as info:
            refused.post(sink.url, b"{}", {}, 2)
        assert str(info.value) == "refused by the allow-list"
        # a name that resolves to a forbidden address is refused before any connection too
        with pytest.raises(Forbidden):
            refused.post(sink.url.replace("127.0.0.1", "localhost"), b"{}", {}, 2)
        assert sink.arrivals == []
        allowed = Egress(CallbackPolicy(("127.0.0.0/8",)))
        assert allowed.post(sink.url + "?a=1", b"{}", {}, 2).status == 204
        # a name allowed by the operator: resolved once, connected to by address, with the
        # URL's own Host header
        by_name = Egress(CallbackPolicy(("localhost",)))
        named = sink.url.replace("127.0.0.1", "LocalHost")
        assert by_name.post(named, b"{}", {}, 2).status == 204
        arrivals = sink.wait_for(2)
        assert arrivals[0].headers["host"] == f"127.0.0.1:{sink.port}"
        assert arrivals[1].headers["host"] == f"localhost:{sink.port}"
        allowed.clear()
        by_name.clear()


def test_error_texts_name_the_class_and_no_address() -> None:
    assert error_text(Forbidden()) == "refused by the allow-list"
    refused = NewConnectionError(object(), "Failed to establish: [Errno 111] 10.9.8.7 refused")
    assert error_text(refused) == "NewConnectionError: the connection failed"
    assert "10.9.8.7" not in error_text(ProtocolError("aborted", OSError("10.9.8.7")))
    assert error_text(ReadTimeoutError(None, "/x", "10.9.8.7")).startswith("ReadTimeoutError")  # type: ignore[arg-type]
    assert (
        error_text(ConnectionResetError("10.9.8.7")) == "ConnectionResetError: the attempt failed"
    )


def test_policy_allows_names_explicitly_and_addresses_by_network() -> None:
    policy = CallbackPolicy(("127.0.0.0/8", "::1/128", "hooks.internal"))
    assert policy.address_allowed("127.0.0.5") and policy.address_allowed("::1")
    assert policy.address_allowed("::ffff:127.0.0.1")
    assert not policy.address_allowed("10.0.0.1") and not policy.address_allowed("nonsense")
    assert policy.host_allowed_by_name("HOOKS.internal.")
    policy.check("http://hooks.internal/x")  # allowed by name, never resolved here


@pytest.fixture
def tls_sink(tmp_path: Path) -> Iterator[tuple[str, int, list[tuple[str | None, str]]]]:
    """An https endpoint on 127.0.0.1 whose certificate names only ``localhost`` (made by
    openssl); yields the CA file, the port, and (SNI name, Host header) per request."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    seen: list[tuple[str | None, str]] = []
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((names[-1] if names else None, self.headers["Host"]))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield str(cert), server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_https_connects_by_address_with_the_urls_name_for_sni_and_certificate(
    tls_sink: tuple[str, int, list[tuple[str | None, str]]],
) -> None:
    ca, port, seen = tls_sink
    egress = Egress(CallbackPolicy(("localhost",)), ca_certs=ca)
    assert egress.post(f"https://localhost:{port}/x", b"{}", {}, 5).status == 204
    assert seen == [("localhost", f"localhost:{port}")]
    # the certificate does not name 127.0.0.1: verified against the URL's host, it fails
    by_address = Egress(CallbackPolicy(("127.0.0.0/8",)), ca_certs=ca)
    with pytest.raises(SSLError) as info:
        by_address.post(f"https://127.0.0.1:{port}/x", b"{}", {}, 5)
    assert error_text(info.value) == "SSLError: the TLS handshake or certificate check failed"
    assert len(seen) == 1
    egress.clear()
    by_address.clear()
