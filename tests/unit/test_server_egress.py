"""The webhook egress: one strict parser for callback URLs, nothing outside the allow-list ever
connected to, records that say nothing of a refused port, and fair sending (limits per host
and per tenant, the circuit breaker) against real listeners."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from client_lib.models import parse_time
from tests.conftest import ADMIN_TOKEN
from tests.hostile_urls import HOSTILE
from tests.sink import Sink
from tests.support import wait_until
from tests.tarpit import Tarpit
from translation_server import egress as egress_module
from translation_server.callbacks import CallbackPolicy, parse_callback_url
from translation_server.config import Settings
from translation_server.delivery import Dispatcher
from translation_server.egress import Egress, Forbidden
from translation_server.fairness import Fairness
from translation_server.outbox import OutboxEvent


def post_job(client: FlaskClient, auth: dict[str, str], url: str, **simulate: Any) -> Any:
    body = {"callback_url": url, "simulate": {"duration_s": 0, "outcome": "completed", **simulate}}
    return client.post("/v1/jobs", json=body, headers=auth)


def new_tenant(client: FlaskClient, name: str = "t") -> dict[str, str]:
    resp = client.post(
        "/v1/clients", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    body = resp.get_json()
    return {**body, "auth": {"Authorization": f"Bearer {body['api_key']}"}}


@pytest.mark.parametrize("form", HOSTILE)
def test_hostile_callback_urls_are_refused_naming_the_field(make_app: Any, form: str) -> None:
    app: Flask = make_app(callback_allow=("127.0.0.1/32",))
    client = app.test_client()
    tenant = new_tenant(client)
    resp = post_job(client, tenant["auth"], form.format(p=8, q=9))
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    problem = json.loads(resp.get_data())
    assert (problem["field"], problem["code"]) == ("callback_url", "invalid_callback_url")
    assert problem["detail"].startswith("callback_url: ")


@pytest.mark.parametrize(
    ("url", "host", "port", "header", "target"),
    [
        ("http://127.0.0.1:9/hooks?a=b&c=%2F", "127.0.0.1", 9, "127.0.0.1:9", "/hooks?a=b&c=%2F"),
        ("HTTP://LocalHost:9", "localhost", 9, "localhost:9", "/"),
        ("https://hooks.example.com/x", "hooks.example.com", 443, "hooks.example.com", "/x"),
        ("http://[::1]:9/x", "::1", 9, "[::1]:9", "/x"),
        ("http://127.0.0.1?q=1", "127.0.0.1", 80, "127.0.0.1", "/?q=1"),
    ],
)
def test_the_parser_gives_what_the_sender_connects_to(
    url: str, host: str, port: int, header: str, target: str
) -> None:
    parsed = parse_callback_url(url)
    assert (parsed.host, parsed.port, parsed.host_header, parsed.target) == (
        host,
        port,
        header,
        target,
    )


def test_a_listener_on_a_forbidden_address_sees_no_connection() -> None:
    policy = CallbackPolicy(("127.0.0.1/32",))
    egress = Egress(policy)
    with Tarpit("127.0.0.2") as forbidden, Sink() as allowed:
        (p,), q = forbidden.ports, allowed.port
        for form in [*HOSTILE, "http://127.0.0.2:{p}/x", "http://[::ffff:127.0.0.2]:{p}/x"]:
            with pytest.raises(Forbidden):
                egress.post(form.format(p=p, q=q), b"{}", {}, 2)
        with pytest.raises(Forbidden):  # a name resolving outside the allow-list
            Egress(CallbackPolicy(("127.0.0.2/32",))).post(f"http://localhost:{q}/x", b"{}", {}, 2)
        assert egress.post(allowed.url, b"{}", {}, 2).status == 204  # the control
        assert forbidden.accepted == 0 and len(allowed.arrivals) == 1
    egress.clear()


def test_a_host_is_resolved_and_checked_once_for_a_while_and_a_refusal_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counted(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    with Sink() as allowed:
        url = f"http://localhost:{allowed.port}/x"
        egress = Egress(CallbackPolicy(("127.0.0.1/32", "::1/128")))
        for _ in range(3):
            assert egress.post(url, b"{}", {}, 2).status == 204
        assert lookups.count("localhost") == 1  # within RESOLVED_TTL_S: the checked addresses
        monkeypatch.setattr(egress_module, "RESOLVED_TTL_S", 0.0)
        assert egress.post(url, b"{}", {}, 2).status == 204
        assert lookups.count("localhost") == 2  # once it passed: resolved and checked again
        narrow = Egress(CallbackPolicy(("127.0.0.2/32",)))
        for _ in range(2):
            with pytest.raises(Forbidden):
                narrow.post(url, b"{}", {}, 2)
        assert lookups.count("localhost") == 4  # a refusal is looked at again every time
        assert len(allowed.arrivals) == 4
        egress.clear()


def dispatcher(runtime: Any, **settings: Any) -> Dispatcher:
    s = Settings(**{"webhook_retry_schedule": (0.05,) * 20, **settings})
    policy = CallbackPolicy(s.callback_allow)
    return Dispatcher(runtime.db, runtime.clients, s, runtime.metrics, policy, rng=lambda: 1.0)


def finished_jobs(
    runtime: Any, client: FlaskClient, auth: dict[str, str], urls: list[str]
) -> list[str]:
    """One job per URL, each at its end (its webhook due)."""
    ids = []
    for url in urls:
        resp = post_job(client, auth, url)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        ids.append(str(resp.get_json()["id"]))
    for _ in range(3):  # queued -> processing -> completed
        runtime.simulator.step(time.time() + 1)
    return ids


def deliveries(client: FlaskClient, auth: dict[str, str], job_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/v1/jobs/{job_id}/deliveries", headers=auth)
    assert resp.status_code == 200
    return resp.get_json()["deliveries"]  # type: ignore[no-any-return]


def closed_port(host: str) -> int:
    """A port on ``host`` that nothing listens on."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.mark.both_engines
def test_deliveries_say_the_same_of_an_open_and_a_closed_forbidden_port(make_app: Any) -> None:
    """Jobs accepted under a wider allow-list, sent under a narrower one (a restart)."""
    app: Flask = make_app(callback_allow=("127.0.0.0/8",))
    runtime, client = app.extensions["vt"], app.test_client()
    tenant = new_tenant(client)
    with Tarpit("127.0.0.2") as forbidden:
        ports = [*forbidden.ports, closed_port("127.0.0.2")]
        urls = [f"http://127.0.0.2:{port}/x" for port in ports]
        ids = finished_jobs(runtime, client, tenant["auth"], urls)
        sender = dispatcher(runtime, callback_allow=("127.0.0.1/32",))
        sender.start()

        def recorded() -> list[dict[str, Any]] | None:
            views = [deliveries(client, tenant["auth"], i)[0] for i in ids]
            return views if all(v["state"] == "failed" for v in views) else None

        try:
            views = wait_until(recorded, message="both forbidden deliveries recorded")
        finally:
            sender.stop()
        assert forbidden.accepted == 0
    keys = ("error", "outcome", "status_code", "latency_ms", "next_attempt_at")
    logs = [[{k: a[k] for k in keys} for a in v["attempt_log"]] for v in views]
    refused = {"error": "refused by the allow-list", "outcome": "forbidden"}
    assert logs[0] == logs[1] == [{**refused, "status_code": None, "latency_ms": None,
                                   "next_attempt_at": None}]  # fmt: skip


@pytest.mark.both_engines
def test_one_tenants_hanging_endpoints_do_not_delay_another_tenants_webhook(
    make_app: Any,
) -> None:
    """48 webhooks to 16 ports that accept and never answer, then another tenant's: it is
    delivered while every hanging attempt is still under way, on a sender the hostile tenant
    could not take."""
    app: Flask = make_app(start=True, webhook_timeout=60.0, webhook_senders=16)
    client = app.test_client()
    hostile, other = new_tenant(client, "hostile"), new_tenant(client, "other")
    with Tarpit("127.0.0.1", count=16) as tarpit, Sink([other["webhook_secret"]]) as sink:
        for url in tarpit.urls() * 3:
            assert post_job(client, hostile["auth"], url).status_code == 201
        wait_until(lambda: tarpit.accepted >= 8, message="the hostile tenant's attempts")
        assert post_job(client, other["auth"], sink.url).status_code == 201
        arrival = sink.wait_for(1, timeout=10)[0]
        assert arrival.verified_with == [0]
        # beyond its share (4), a tenant borrows only while a share of the senders (16) and
        # of the host's places (12) stays free for the others: 8
        assert tarpit.accepted == 8


@pytest.mark.both_engines
def test_the_circuit_breaker_pauses_a_failing_endpoint_then_closes(make_app: Any) -> None:
    app: Flask = make_app(
        start=True,
        webhook_retry_schedule=(0,) * 10,
        webhook_breaker_failures=3,
        webhook_breaker_cooldown=0.5,
        webhook_breaker_window=0.0,
    )
    runtime, client = app.extensions["vt"], app.test_client()
    tenant = new_tenant(client)
    with Sink() as sink:
        sink.script = [(500, {}, 0.0)] * 3
        job_id = post_job(client, tenant["auth"], sink.url).get_json()["id"]

        def delivered() -> dict[str, Any] | None:
            view = deliveries(client, tenant["auth"], job_id)
            return view[0] if view and view[0]["state"] == "delivered" else None

        view = wait_until(delivered, message="the trial attempt delivered")
    log = view["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 500, 500, 204]
    assert [a["outcome"] for a in log] == ["retry", "retry", "retry", "delivered"]
    # the schedule asked for at once; the open breaker held the event for its cooldown
    gap = parse_time(log[3]["attempted_at"]) - parse_time(log[2]["attempted_at"])
    assert gap >= 0.5 - 0.01
    assert runtime.dispatcher.fairness.state(tenant["id"], sink.url, time.time()) == "closed"


def event(client_id: str, url: str, n: int = 0) -> OutboxEvent:
    return OutboxEvent(f"msg_{client_id}_{n}", "job_x", client_id, "job.completed", url, "{}",
                       "deliver", 0, 0.0)  # fmt: skip


def test_the_breaker_opens_doubles_on_a_failed_trial_and_closes_on_success() -> None:
    fair = Fairness(per_host=8, per_tenant=8, breaker_failures=2, cooldown=10, max_cooldown=15)
    url = "http://127.0.0.1:9/x"
    for n in range(2):
        (taken,), later, _ = fair.admit([event("a", url, n)], 100.0, 8)
        fair.release(taken, False, 100.0)
    assert fair.state("a", url, 100.0) == "open"
    assert fair.state("b", url, 100.0) == "closed"  # an endpoint is (client, URL)
    take, later, left = fair.admit([event("a", url, 5), event("b", url, 6)], 101.0, 8)
    assert [e.client_id for e in take] == ["b"] and later == {"msg_a_5": 110.0}
    fair.release(take[0], True, 101.0)
    # the cooldown over: one trial goes, the endpoint's other events wait for it
    take, later, left = fair.admit([event("a", url, 5), event("a", url, 7)], 110.0, 8)
    assert [e.id for e in take] == ["msg_a_5"] and (later, left) == ({}, 1)
    assert fair.exclusions() == ([], [("a", url)]) and fair.state("a", url, 110.0) == "half-open"
    fair.release(take[0], False, 110.0)  # the trial failed: open twice as long, at most 15 s
    take, later, _ = fair.admit([event("a", url, 7)], 111.0, 8)
    assert take == [] and later == {"msg_a_7": 125.0}
    (trial,), _, _ = fair.admit([event("a", url, 7)], 125.0, 8)
    fair.release(trial, True, 125.0)
    assert fair.state("a", url, 125.0) == "closed" and fair.in_flight == 0


def test_failures_in_a_row_open_the_breaker_only_once_they_span_its_window() -> None:
    """A receiver restarting for a few seconds fails a burst of attempts: no pause for that."""
    fair = Fairness(
        per_host=8, per_tenant=8, breaker_failures=3, cooldown=30, max_cooldown=60, window=10
    )
    url = "http://127.0.0.1:9/x"
    for n, at in enumerate((100.0, 101.0, 102.0, 105.0)):  # four failures within 5 s
        (taken,), _, _ = fair.admit([event("a", url, n)], at, 8)
        fair.release(taken, False, at)
    assert fair.state("a", url, 105.0) == "closed"
    (taken,), _, _ = fair.admit([event("a", url, 9)], 110.0, 8)
    fair.release(taken, False, 110.0)  # still failing 10 s after the first: paused
    assert fair.state("a", url, 110.0) == "open"


def test_a_tenant_borrows_beyond_its_share_while_a_share_of_senders_stays_free() -> None:
    fair = Fairness(
        per_host=16, per_tenant=2, breaker_failures=0, cooldown=1, max_cooldown=1, senders=8
    )
    burst = [event("a", f"http://127.0.0.1:{n}/x", n) for n in range(1, 10)]
    take, _, left = fair.admit(burst, 0.0, 8)
    assert len(take) == 6 and left == 3  # 8 senders, 2 kept free for anyone else
    assert fair.exclusions() == (["a"], [])
    (other,), _, _ = fair.admit([event("b", "http://127.0.0.1:20/x", 20)], 0.0, 2)
    assert fair.in_flight == 7
    fair.release(other, True, 0.0)
    for e in take:
        fair.release(e, True, 0.0)
    assert fair.exclusions() == ([], []) and fair.in_flight == 0


def test_limits_count_the_host_without_its_port_and_the_tenant() -> None:
    fair = Fairness(per_host=2, per_tenant=2, breaker_failures=0, cooldown=1, max_cooldown=1)
    events = [event("a", "http://127.0.0.1:1/x", 1), event("b", "http://127.0.0.1:2/x", 2),
              event("c", "http://127.0.0.1:3/x", 3), event("c", "http://[::1]:3/x", 4),
              event("c", "http://[::1]:4/x", 5), event("c", "http://[::1]:5/x", 6)]  # fmt: skip
    take, later, left = fair.admit(events, 0.0, 16)
    assert [e.id for e in take] == ["msg_a_1", "msg_b_2", "msg_c_4", "msg_c_5"]
    assert (later, left) == ({}, 2)
    assert fair.exclusions() == (["c"], [])
    # with a wait, events to a full host move later instead (they crowded the read window)
    _, later, _ = fair.admit([event("d", "http://127.0.0.1:8/x", 7)], 0.0, 16, 0.5)
    assert later == {"msg_d_7": 0.5}
    for e in take:
        fair.release(e, True, 0.0)
    assert fair.in_flight == 0 and fair.exclusions() == ([], [])


def test_one_tenants_hanging_heartbeats_hold_at_most_two_senders(runtime: Any) -> None:
    (hostile, _), (other, _) = runtime.clients.create("hostile"), runtime.clients.create("other")
    post = runtime.dispatcher.post_once
    with Tarpit("127.0.0.1", count=3) as tarpit, Sink() as sink:
        hanging = [
            threading.Thread(target=post, args=(hostile.id, url, "msg_hb_1", "{}", 60.0))
            for url in tarpit.urls()[:2]
        ]
        for thread in hanging:
            thread.start()
        wait_until(lambda: tarpit.accepted == 2, message="two hanging heartbeats")
        third = post(hostile.id, tarpit.urls()[2], "msg_hb_2", "{}", 60.0)
        assert third == "skipped: the client's heartbeats are already under way"
        assert post(other.id, sink.url, "msg_hb_3", "{}", 5.0) == 204
        assert tarpit.accepted == 2
    for thread in hanging:  # the listeners closed: the hanging posts end
        thread.join(10)
        assert not thread.is_alive()


@pytest.mark.both_engines
def test_the_lease_leaves_skipped_tenants_and_endpoints_unread_and_moves_events_later(
    make_app: Any,
) -> None:
    app: Flask = make_app()
    runtime, client = app.extensions["vt"], app.test_client()
    a, b = new_tenant(client, "a"), new_tenant(client, "b")
    finished_jobs(runtime, client, a["auth"], ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"])
    finished_jobs(runtime, client, b["auth"], ["http://127.0.0.1:9/a"])
    outbox, now = runtime.dispatcher.outbox, time.time() + 1

    def lease(**kw: Any) -> list[tuple[str, str]]:
        events = outbox.lease(now=now, limit=10, lease_s=1000, **kw)
        return sorted((e.client_id, e.callback_url) for e in events)

    skip = {"skip_clients": [b["id"]], "skip_endpoints": [(a["id"], "http://127.0.0.1:9/a")]}
    assert lease(**skip) == [(a["id"], "http://127.0.0.1:9/b")]
    # the others are still due; one moved later by ``admit`` is not, until then
    moved = lease(admit=lambda events: ([], {e.id: now + 60 for e in events}))
    assert moved == []
    assert outbox.lease(now=now + 59, limit=10, lease_s=0.5) == []
    assert len(outbox.lease(now=now + 60, limit=10, lease_s=0.5)) == 2  # the third is leased


def test_a_trial_that_tried_nothing_leaves_the_next_event_to_try() -> None:
    fair = Fairness(per_host=8, per_tenant=8, breaker_failures=1, cooldown=10, max_cooldown=60)
    url = "http://127.0.0.1:9/x"
    (first, late), _, _ = fair.admit([event("a", url, 1), event("a", url, 2)], 0.0, 8)
    fair.release(first, False, 0.0)
    (trial,), _, _ = fair.admit([event("a", url, 3)], 10.0, 8)  # a dropped event, say
    fair.release(trial, None, 10.0)
    assert fair.exclusions() == ([], []) and fair.state("a", url, 10.0) == "half-open"
    (trial,), _, _ = fair.admit([event("a", url, 4)], 10.0, 8)
    fair.release(late, False, 10.0)  # admitted before the breaker opened: not the trial
    assert fair.state("a", url, 10.0) == "half-open"
    fair.release(trial, False, 10.0)
    assert fair.state("a", url, 29.0) == "open" and fair.state("a", url, 30.0) == "half-open"
    assert fair.in_flight == 0
