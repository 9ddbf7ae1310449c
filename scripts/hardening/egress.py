"""The server's webhook egress under hostile tenants: SSRF forms, forbidden addresses, hanging
endpoints.

Each figure runs against a real translation server (``tests.support.start_server``, its own
SQLite file) with the callback allow-list at ``127.0.0.1/32``:

- every hostile callback URL of ``tests.hostile_urls`` is sent to ``POST /v1/jobs``;
- a listener on 127.0.0.2 counts every connection it is offered meanwhile, and while jobs
  accepted under a wider allow-list (``127.0.0.0/8``) are redelivered by a server restarted
  with the narrow one, to an open and a closed port there;
- one tenant's 64 webhooks go to 16 ports that accept and never answer while another tenant's
  jobs end one by one; its webhook lag is the arrival at its endpoint minus the job's
  ``finished_at`` (same machine, same clock).
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from client_lib.models import parse_time
from scripts.common import fmt_s, percentile
from scripts.hardening import Figure
from tests.e2e.servers import deliveries, new_tenant
from tests.hostile_urls import HOSTILE
from tests.sink import Sink
from tests.support import Service, start_server, wait_until
from tests.tarpit import Tarpit

NARROW, WIDE = "127.0.0.1/32", "127.0.0.0/8"
HANGING, HANGING_PORTS = 64, 16
GOAL_LAG_S = 1.0


def _create(server: Service, auth: dict[str, str], url: str, **simulate: Any) -> Any:
    body = {"callback_url": url, "simulate": {"duration_s": 0, "outcome": "completed", **simulate}}
    return requests.post(f"{server.url}/v1/jobs", json=body, headers=auth, timeout=10)


def _closed_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def hostile_urls(workdir: Path, forbidden: Tarpit) -> Figure:
    """Every hostile form against the allow-list at 127.0.0.1/32: how many were accepted."""
    with Sink() as allowed, start_server(workdir, "--callback-allow", NARROW) as server:
        tenant = new_tenant(server.url)
        urls = [u.format(p=forbidden.ports[0], q=allowed.port) for u in HOSTILE]
        accepted = [u for u in urls if _create(server, tenant["auth"], u).status_code != 422]
    return Figure(
        "hostile callback URLs accepted",
        f"{len(accepted)} of {len(urls)}",
        "0 of at least 40",
        not accepted and len(urls) >= 40,
        "POST /v1/jobs with each form of tests/hostile_urls.py (userinfo and backslash "
        "confusions, decimal, octal and hex IPv4, IPv6-mapped, 0.0.0.0, trailing dots, "
        "percent-encoded hosts, bad ports, control characters); anything but 422 counts"
        + (f"; accepted: {', '.join(accepted)}" if accepted else ""),
    )


def forbidden_connections(workdir: Path, forbidden: Tarpit) -> tuple[Figure, bool]:
    """Jobs accepted under 127.0.0.0/8 to 127.0.0.2, redelivered after a restart with the
    allow-list at 127.0.0.1/32: connections the listener there saw, and whether the deliveries
    view reads the same for its open and a closed port."""
    urls = [
        f"http://127.0.0.2:{port}/x" for port in (forbidden.ports[0], _closed_port("127.0.0.2"))
    ]
    with start_server(workdir, "--callback-allow", WIDE) as server:
        tenant = new_tenant(server.url)
        # recorded as dropped, never sent: nothing reaches the listener under the wide list
        ids = [_create(server, tenant["auth"], u, webhook="drop").json()["id"] for u in urls]
        wait_until(
            lambda: all(
                deliveries(server.url, i, tenant["auth"])[0]["state"] == "dropped" for i in ids
            ),
            timeout=30,
            message="the dropped webhooks",
        )
    with start_server(workdir, "--callback-allow", NARROW) as server:
        for i in ids:
            resp = requests.post(
                f"{server.url}/v1/jobs/{i}/redeliver", headers=tenant["auth"], timeout=10
            )
            resp.raise_for_status()

        def attempts() -> list[dict[str, Any]] | None:
            logs = [deliveries(server.url, i, tenant["auth"])[0]["attempt_log"] for i in ids]
            return [log[-1] for log in logs] if all(log for log in logs) else None

        last = wait_until(attempts, timeout=30, message="the redelivery attempts")
    keys = ("outcome", "error", "status_code", "latency_ms")
    same = len({tuple(a[k] for k in keys) for a in last}) == 1 and last[0]["outcome"] == "forbidden"
    figure = Figure(
        "connections opened to a forbidden address",
        str(forbidden.accepted),
        "0",
        forbidden.accepted == 0,
        "a listener on 127.0.0.2 counts every connection while the hostile URLs are tried and "
        "while a server restarted with the allow-list at 127.0.0.1/32 redelivers two webhooks "
        "accepted under 127.0.0.0/8 to 127.0.0.2 (an open and a closed port); the deliveries "
        + ("view reads the same for both" if same else "view tells the two ports apart"),
    )
    return figure, same


def hanging_lag(workdir: Path, quick: bool) -> Figure:
    """Another tenant's webhook lag while one tenant's 64 webhooks hang."""
    probes = 20 if quick else 100
    with (
        Tarpit("127.0.0.1", count=HANGING_PORTS) as tarpit,
        start_server(workdir, "--callback-allow", NARROW) as server,
    ):
        hostile, other = new_tenant(server.url), new_tenant(server.url)
        with Sink([other["webhook_secret"]]) as sink:
            targets = tarpit.urls() * (HANGING // HANGING_PORTS)
            for url in targets:
                _create(server, hostile["auth"], url).raise_for_status()
            wait_until(lambda: tarpit.accepted > 0, timeout=30, message="hanging attempts")
            for _ in range(probes):
                _create(server, other["auth"], sink.url).raise_for_status()
                time.sleep(0.05)  # the probes' pace, not a measurement
            arrivals = sink.wait_for(probes, timeout=120)
            held = tarpit.accepted
    lags = sorted(
        max(0.0, a.at - (parse_time(a.json()["data"]["finished_at"]) or a.at)) for a in arrivals
    )
    p99 = percentile(lags, 99)
    return Figure(
        "another tenant's webhook lag p99, one tenant's 64 callbacks hanging",
        fmt_s(p99),
        f"under {fmt_s(GOAL_LAG_S)}",
        p99 < GOAL_LAG_S,
        f"{HANGING} webhooks of one tenant to {HANGING_PORTS} loopback ports that accept and "
        f"never answer ({held} connections opened to them meanwhile), then {probes} jobs of "
        "another tenant, 50 ms apart; lag = arrival minus the job's finished_at; default "
        "server settings (16 senders, 10 s webhook timeout)",
    )


def measure(quick: bool) -> list[Figure]:
    """The three egress figures."""
    with tempfile.TemporaryDirectory() as tmp, Tarpit("127.0.0.2") as forbidden:
        root = Path(tmp)
        (root / "urls").mkdir()
        (root / "restart").mkdir()
        (root / "lag").mkdir()
        urls = hostile_urls(root / "urls", forbidden)
        connections, _ = forbidden_connections(root / "restart", forbidden)
        lag = hanging_lag(root / "lag", quick)
    return [urls, connections, lag]
