"""The two faults that need a proxy in front of the callback receiver.

``FlappingProxy`` (``receiver flapping``): a TCP proxy that is unreachable ``FLAP_DOWN_S`` of
every ``FLAP_PERIOD_S``: while down it has no listening socket (new connections are refused)
and it resets every open connection. ``Reject503Proxy`` (``503 then retry``): an HTTP proxy
answering the first ``POST /webhooks`` of each ``job.*`` event (by ``webhook-id``) 503 without
``Retry-After``, and passing every other request, that event's retries included, through.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

FLAP_PERIOD_S, FLAP_DOWN_S = 10.0, 3.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "date"}


def reset(sock: socket.socket) -> None:
    """Drop a connection at once (a reset, not an orderly close)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class FlappingProxy:
    """A TCP proxy to a local port, flapping once ``begin`` is called (up until then)."""

    def __init__(self, upstream_url: str) -> None:
        self.upstream = ("127.0.0.1", int(urlsplit(upstream_url).port or 80))
        self.listener: socket.socket | None = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.listener.getsockname()[1]
        self.url, self.t0 = f"http://127.0.0.1:{self.port}", 0.0
        self.lock, self.open, self.stop = threading.Lock(), set[socket.socket](), threading.Event()
        self.downs = self.dropped = 0
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def begin(self, t0: float) -> None:
        """Start flapping: down from ``t0 + 7 s`` to ``t0 + 10 s``, and every 10 s after."""
        self.t0 = t0

    def loop(self) -> None:
        """Accept while up; at each down window, stop listening and reset every connection."""
        while not self.stop.is_set():
            down = (
                self.t0 > 0
                and (time.time() - self.t0) % FLAP_PERIOD_S >= FLAP_PERIOD_S - FLAP_DOWN_S
            )
            if down and self.listener is not None:
                self.listener.close()
                self.listener, self.downs = None, self.downs + 1
                self.drop_all()
            elif not down and self.listener is None:
                with contextlib.suppress(OSError):  # the port may linger: retry shortly
                    self.listener = socket.create_server(("127.0.0.1", self.port), backlog=256)
            if self.listener is None:
                self.stop.wait(0.005)
            elif select.select([self.listener], [], [], 0.005)[0]:
                with contextlib.suppress(OSError):
                    conn = self.listener.accept()[0]
                    threading.Thread(target=self.pipe, args=(conn,), daemon=True).start()
        if self.listener is not None:
            self.listener.close()
        self.drop_all()

    def pipe(self, down: socket.socket) -> None:
        """Copy both ways until either side closes or fails; then close both."""
        try:
            up = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            reset(down)
            return
        pair = {down: up, up: down}
        with self.lock:
            self.open.update(pair)
        try:
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                for src in select.select(list(pair), [], [])[0]:
                    if not (data := src.recv(65536)):
                        return
                    pair[src].sendall(data)
        except OSError:
            pass  # reset by drop_all, or by either side
        finally:
            with self.lock:
                self.open.difference_update(pair)
            down.close()
            up.close()

    def drop_all(self) -> None:
        """Reset every open connection."""
        with self.lock:
            victims, self.open = list(self.open), set()
        self.dropped += len(victims) // 2
        for sock in victims:
            reset(sock)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self.stop.set()
        self.thread.join(timeout=5)


class Reject503Proxy:
    """The HTTP proxy of ``503 then retry``, serving in threads of its own (keep-alive)."""

    def __init__(self, upstream_url: str) -> None:
        self.upstream, self.rejected, self.passed = upstream_url, set[str](), Counter[str]()
        self.session, self.lock = requests.Session(), threading.Lock()
        self.session.mount("http://", HTTPAdapter(pool_maxsize=64))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), type("", (_Relay,), {"owner": self}))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reject(self, what: str, msg_id: str | None, body: bytes) -> bool:
        """Whether this request is the first delivery of a job event; counts the others."""
        kind = ""
        if what == "POST /webhooks":
            with contextlib.suppress(ValueError, AttributeError):
                kind = str(json.loads(body).get("type", ""))
            what = f"{what} {kind or '(no type)'}"
        with self.lock:
            if msg_id and kind.startswith("job.") and msg_id not in self.rejected:
                self.rejected.add(msg_id)
                return True
            self.passed[what] += 1
            return False

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.session.close()


class _Relay(BaseHTTPRequestHandler):
    """One downstream connection of ``Reject503Proxy``."""

    protocol_version = "HTTP/1.1"
    # headers and body leave in two writes: without this, Nagle's algorithm holds the body
    # back for the client's delayed ACK (~40 ms), a cost of the proxy, not of what it measures
    disable_nagle_algorithm = True
    owner: Reject503Proxy

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def relay(self) -> None:
        """Answer 503 or pass the request on (502 if the receiver did not answer)."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers: Mapping[str, str] = {"Content-Type": "application/problem+json"}
        status = 503
        data, what = b'{"title": "Service Unavailable", "status": 503}', self.path.split("?")[0]
        if not self.owner.reject(f"{self.command} {what}", self.headers["webhook-id"], body):
            keep = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            try:
                resp = self.owner.session.request(
                    self.command,
                    self.owner.upstream + self.path,
                    data=body,
                    headers=keep,
                    timeout=120,
                )
                status, headers, data = resp.status_code, resp.headers, resp.content
            except requests.RequestException:
                status, headers = 502, {}
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in HOP_BY_HOP | {"server", "content-encoding"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = relay
