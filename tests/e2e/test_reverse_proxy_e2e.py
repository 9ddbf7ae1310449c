"""The shipped nginx snippet (deploy/nginx/vt-services.conf) in front of real services: what
waitress alone cannot hold. Only its addresses are changed, to free ports.

nginx comes from Debian's packages (``make nginx``, a prerequisite of ``make test``); a missing
nginx fails these tests rather than skipping them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import support
from tests.receiver_support import FEED_AUTH, FEED_TOKEN, SECRET, event_body, signed_headers
from tests.support import ROOT, Service, wait_until

pytestmark = pytest.mark.timeout(120)

SNIPPET = ROOT / "deploy" / "nginx" / "vt-services.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proxy:
    """nginx running the snippet, with the services behind it."""

    server: Service
    receiver: Service
    server_url: str
    receiver_url: str
    port: int


def snippet_for(server_port: int, receiver_port: int, front: tuple[int, int]) -> str:
    """The shipped snippet with its four addresses changed, and nothing else."""
    text = SNIPPET.read_text()
    for old, new in (
        ("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{front[0]};"),
        ("listen 127.0.0.1:8081;", f"listen 127.0.0.1:{front[1]};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{server_port};"),
        ("server 127.0.0.1:8001;", f"server 127.0.0.1:{receiver_port};"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    assert Path(NGINX).exists(), "nginx is missing: `make nginx` installs Debian's package"
    with (
        support.start_server(tmp_path) as server,
        support.start_receiver(tmp_path, "--secret", SECRET, "--feed-token", FEED_TOKEN) as rcv,
    ):
        front = (free_port(), free_port())
        (tmp_path / "vt-services.conf").write_text(snippet_for(server.port, rcv.port, front))
        (tmp_path / "nginx.conf").write_text(
            "user root;\n"  # ignored unless started as root; then the workers can use tmp_path
            "worker_processes 1;\n"
            f"pid {tmp_path}/nginx.pid;\n"
            f"error_log {tmp_path}/nginx-error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            f"    access_log {tmp_path}/nginx-access.log;\n"
            f"    client_body_temp_path {tmp_path}/client_body;\n"
            f"    proxy_temp_path {tmp_path}/proxy;\n"
            f"    fastcgi_temp_path {tmp_path}/fastcgi;\n"
            f"    uwsgi_temp_path {tmp_path}/uwsgi;\n"
            f"    scgi_temp_path {tmp_path}/scgi;\n"
            f"    include {tmp_path}/vt-services.conf;\n"
            "}\n"
        )
        cmd = [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log"),
               "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:

            def listening() -> bool:
                if proc.poll() is not None:
                    log = (tmp_path / "nginx-error.log").read_text()
                    raise AssertionError(f"nginx exited with {proc.returncode}:\n{log}")
                try:
                    socket.create_connection(("127.0.0.1", front[1]), timeout=1).close()
                    return True
                except OSError:
                    return False

            wait_until(listening, message="nginx to listen")
            urls = (f"http://127.0.0.1:{front[0]}", f"http://127.0.0.1:{front[1]}")
            yield Proxy(server, rcv, urls[0], urls[1], front[0])
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_a_trickling_client_is_cut_off_while_others_are_served(proxy: Proxy) -> None:
    trickler = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    idle = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(200)]
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 100
    answer: list[bytes] = []
    stop = threading.Event()

    def trickle() -> None:
        for byte in request:
            try:
                trickler.send(bytes([byte]))
            except OSError:
                return  # cut off
            if stop.wait(1.0):
                return

    def read_until_closed() -> None:
        try:
            while chunk := trickler.recv(4096):
                answer.append(chunk)
        except ConnectionResetError:
            answer.append(b"reset")  # reset_timedout_connection: a RST, not a 408

    sender = threading.Thread(target=trickle, daemon=True)
    reader = threading.Thread(target=read_until_closed, daemon=True)
    sender.start()
    reader.start()
    try:
        served = 0
        while reader.is_alive() and served < 500:  # others, meanwhile, through the proxy
            assert requests.get(f"{proxy.server_url}/healthz", timeout=10).status_code == 200
            served += 1
            reader.join(timeout=0.5)
        reader.join(timeout=30)
        assert not reader.is_alive(), "nginx never cut the trickling client off"
        assert answer == [b"reset"] or b"".join(answer).startswith(b"HTTP/1.1 408"), answer
        assert served >= 1
        assert requests.get(f"{proxy.receiver_url}/healthz", timeout=10).status_code == 200
    finally:
        stop.set()
        trickler.close()
        for sock in idle:
            sock.close()


def test_the_feed_long_poll_passes_through_unbuffered(proxy: Proxy) -> None:
    result: dict[str, requests.Response] = {}

    def long_poll() -> None:
        result["page"] = requests.get(
            f"{proxy.receiver_url}/v1/events",
            params={"wait": 20},
            headers=FEED_AUTH,
            timeout=40,
        )

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()

    def parked() -> bool:
        text = requests.get(f"{proxy.receiver.url}/metrics", timeout=5).text
        return "receiver_feed_waiters 1.0" in text

    wait_until(parked, message="the long-poll parked behind nginx")
    body = event_body("job_proxied")
    delivered = requests.post(
        f"{proxy.receiver_url}/webhooks", data=body, headers=signed_headers(body), timeout=10
    )
    assert delivered.status_code == 204
    poller.join(timeout=15)
    page = result["page"]
    assert page.status_code == 200
    assert [e["data"]["id"] for e in page.json()["events"]] == ["job_proxied"]
    bare = requests.get(f"{proxy.receiver_url}/v1/events", timeout=10)
    assert bare.status_code == 401 and bare.json()["code"] == "unauthorized"


def test_a_declared_huge_body_is_refused_by_the_proxy_at_once(proxy: Proxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300000000\r\n\r\n{"
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 413")


def test_one_address_holds_at_most_64_requests_under_way(proxy: Proxy) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def long_poll() -> None:
        resp = requests.get(
            f"{proxy.receiver_url}/v1/events",
            params={"job_id": "job_never", "wait": 8},
            headers=FEED_AUTH,
            timeout=30,
        )
        with lock:
            statuses.append(resp.status_code)

    polls = [threading.Thread(target=long_poll, daemon=True) for _ in range(70)]
    for poll in polls:
        poll.start()
    wait_until(lambda: len(statuses) >= 6, timeout=20, message="the polls over the limit")
    with lock:
        refused = list(statuses)
    assert refused == [429] * 6
    for poll in polls:
        poll.join(timeout=30)
    assert sorted(statuses) == [200] * 64 + [429] * 6
