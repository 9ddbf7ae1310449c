"""Connecting to callback URLs: to the very address the allow-list checked, and nowhere else.

A callback URL is parsed by ``callbacks.parse_callback_url`` (the parser job creation
validated it with), its host resolved and every address checked by the policy; only then
does urllib3 connect, to that IP literal: a pool per (scheme, IP, port, Host), built with
urllib3's public arguments, sending the URL's own ``Host`` header and, for https, that name
as SNI and as the name the certificate must match. urllib3 never resolves a name here, so
there is nothing to re-resolve to another address. A host's checked addresses are used for
``RESOLVED_TTL_S`` before it is resolved (and checked) again; a refusal is never remembered.

Errors are recorded by class with a fixed text: a refused URL reads only ``REFUSED``, whether
its port is open or closed, and no text names an address the tenant did not give.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import certifi
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from client_lib.wire import APIProblem

from .callbacks import REFUSED, CallbackPolicy, CallbackTarget, Refused, parsed_callback_url

POOLS = 64  # (scheme, IP, port, Host) pools whose keep-alive connections are kept
RESOLVED_TTL_S = 5.0  # how long a host's allowed addresses are used without resolving it again
RESOLVED_KEPT = 1024  # hosts whose addresses are remembered

_TEXTS: tuple[tuple[type[BaseException], str], ...] = (
    # most specific first: urllib3 derives the last two from ConnectTimeoutError
    (NameResolutionError, "NameResolutionError: the host does not resolve"),
    (NewConnectionError, "NewConnectionError: the connection failed"),
    (ConnectTimeoutError, "ConnectTimeoutError: no connection within the connect timeout"),
    (ReadTimeoutError, "ReadTimeoutError: no answer within the timeout"),
    (SSLError, "SSLError: the TLS handshake or certificate check failed"),
    (ProtocolError, "ProtocolError: the connection was closed before an answer"),
)


class Forbidden(Exception):
    """Nothing was sent: the URL or an address of its host is outside the allow-list."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def error_text(exc: BaseException) -> str:
    """What a delivery record says of a failed attempt: the error class, a fixed text."""
    if isinstance(exc, Forbidden):
        return REFUSED
    for cls, text in _TEXTS:
        if isinstance(exc, cls):
            return text
    return f"{type(exc).__name__}: the attempt failed"


class Egress:
    """Signed POSTs to callback URLs through keep-alive pools shared by every sender."""

    def __init__(
        self,
        policy: CallbackPolicy,
        *,
        maxsize: int = 4,
        connect_timeout: float = 2.0,
        ca_certs: str | None = None,
    ) -> None:
        self._policy = policy
        self._ca_certs = ca_certs or certifi.where()  # requests' CA bundle by default
        self._maxsize = maxsize
        self._connect = connect_timeout
        self._pools: OrderedDict[tuple[str, str, int, str], HTTPConnectionPool] = OrderedDict()
        # (host, port): when its addresses were resolved and allowed, and those addresses
        self._resolved: OrderedDict[tuple[str, int], tuple[float, list[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> BaseHTTPResponse:
        """POST once, no redirect, no retry; ``Forbidden`` when the allow-list refuses, else
        urllib3's errors."""
        try:
            target = parsed_callback_url(url)
            addresses = self._addresses(target)
        except (APIProblem, Refused):
            raise Forbidden() from None
        limits = Timeout(connect=min(self._connect, timeout), read=timeout, total=timeout)
        for address in addresses[:-1]:
            try:
                return self._send(target, address, body, headers, limits)
            except NewConnectionError:
                continue  # refused at once: the next address may listen
        return self._send(target, addresses[-1], body, headers, limits)

    def _addresses(self, target: CallbackTarget) -> list[str]:
        """The policy's addresses of the target's host, as checked at most ``RESOLVED_TTL_S``
        ago; ``Refused`` as the policy says."""
        key, now = (target.host, target.port), time.monotonic()
        with self._lock:
            hit = self._resolved.get(key)
        if hit is not None and now - hit[0] < RESOLVED_TTL_S:
            return hit[1]
        addresses = self._policy.addresses(target)
        with self._lock:
            self._resolved[key] = (now, addresses)
            self._resolved.move_to_end(key)
            if len(self._resolved) > RESOLVED_KEPT:
                self._resolved.popitem(last=False)
        return addresses

    def _send(
        self,
        target: CallbackTarget,
        address: str,
        body: bytes,
        headers: dict[str, str],
        limits: Timeout,
    ) -> BaseHTTPResponse:
        return self._pool(target, address).urlopen(
            "POST",
            target.target,
            body=body,
            headers={**headers, "Host": target.host_header},
            retries=False,
            redirect=False,
            timeout=limits,
            assert_same_host=False,
        )

    def _pool(self, target: CallbackTarget, address: str) -> HTTPConnectionPool:
        key = (target.scheme, address, target.port, target.host_header)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            common: dict[str, Any] = {"maxsize": self._maxsize, "retries": False}
            if target.scheme == "https":
                pool = HTTPSConnectionPool(
                    address,
                    target.port,
                    server_hostname=target.host,
                    assert_hostname=target.host,
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=self._ca_certs,
                    **common,
                )
            else:
                pool = HTTPConnectionPool(address, target.port, **common)
            self._pools[key] = pool
            if len(self._pools) > POOLS:
                self._pools.popitem(last=False)[1].close()
            return pool

    def clear(self) -> None:
        """Close every pool."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), OrderedDict()
            self._resolved.clear()
        for pool in pools:
            pool.close()


def is_failure(exc: BaseException) -> bool:
    """True for the errors an attempt records (urllib3's, the OS's, a refusal)."""
    return isinstance(exc, HTTPError | OSError | Forbidden)
