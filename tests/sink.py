"""A scripted webhook endpoint for tests: a real HTTP server on a free port, in a thread.

It verifies every request with the reference ``standardwebhooks`` package, records it, and
answers from a script (a list of (status, headers, delay) consumed in order, then 204).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Arrival:
    """One request the sink received."""

    at: float
    headers: dict[str, str]
    body: bytes
    verified_with: list[int] = field(default_factory=list)  # indexes of secrets that verify

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class Sink:
    """The endpoint; use as a context manager."""

    def __init__(self, secrets: list[str] | None = None, port: int = 0) -> None:
        self.secrets = list(secrets or [])
        self.script: list[tuple[int, dict[str, str], float]] = []
        self.arrivals: list[Arrival] = []
        self._cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink._record(dict(self.headers.items()), body)
                status, headers, delay = sink._next_answer()
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/webhooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Sink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, headers: dict[str, str], body: bytes) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        ok = []
        for i, secret in enumerate(self.secrets):
            try:
                Webhook(secret).verify(body, lowered)
                ok.append(i)
            except WebhookVerificationError:
                pass
        with self._cond:
            self.arrivals.append(Arrival(time.time(), lowered, body, ok))
            self._cond.notify_all()

    def _next_answer(self) -> tuple[int, dict[str, str], float]:
        with self._cond:
            return self.script.pop(0) if self.script else (204, {}, 0.0)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Arrival]:
        """Block until ``count`` requests arrived (an AssertionError at the deadline)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.arrivals) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.arrivals)} of {count} webhooks arrived")
                self._cond.wait(left)
            return list(self.arrivals)
