"""Listeners that count the connections they accept and never answer: a hanging endpoint, or
a forbidden address that must see no connection at all. Used by tests and the benchmarks."""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Any


class Tarpit:
    """``count`` listening sockets on ``host``; every connection is accepted, counted, and
    held open unanswered (what it sends is read and discarded) until ``close``."""

    def __init__(self, host: str = "127.0.0.1", count: int = 1) -> None:
        self.host = host
        self._selector = selectors.DefaultSelector()
        self._listeners: list[socket.socket] = []
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepted = 0
        self._stop = False
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sock.listen(128)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, "listen")
            self._listeners.append(sock)
        self.ports = [s.getsockname()[1] for s in self._listeners]
        self._thread = threading.Thread(target=self._run, name="tarpit", daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._accepted

    def urls(self, path: str = "/hook") -> list[str]:
        """One URL per listening port."""
        return [f"http://{self.host}:{port}{path}" for port in self.ports]

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(timeout=0.1):
                sock: Any = key.fileobj
                if key.data == "listen":
                    try:
                        conn, _ = sock.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    self._selector.register(conn, selectors.EVENT_READ, "held")
                    with self._lock:
                        self._accepted += 1
                        self._held.append(conn)
                else:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:  # the sender gave up: let the connection go
                        self._selector.unregister(sock)
                        sock.close()

    def close(self) -> None:
        """Stop listening and drop every held connection."""
        self._stop = True
        self._thread.join(5)
        for sock in [*self._listeners, *self._held]:
            sock.close()
        self._selector.close()

    def __enter__(self) -> Tarpit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
