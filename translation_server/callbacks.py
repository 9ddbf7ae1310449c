"""The SSRF guard for callback URLs: an allow-list of hosts and networks.

A callback URL is checked when a job is created (422 when refused) and again when a webhook
connects, against the address actually connected to, so a name that later resolves somewhere
forbidden is never contacted. Default: loopback only, for the local simulation.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from .errors import invalid

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackPolicy:
    """Which callback hosts may be contacted."""

    def __init__(self, allow: tuple[str, ...]) -> None:
        self.networks: list[IPNetwork] = []
        self.hostnames: set[str] = set()
        for entry in allow:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hostnames.add(entry.lower().rstrip("."))

    def address_allowed(self, address: str) -> bool:
        """True when an IP address lies in an allowed network."""
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def host_allowed_by_name(self, host: str) -> bool:
        """True when the operator allowed this host name explicitly (its addresses are trusted)."""
        return host.lower().rstrip(".") in self.hostnames

    def check(self, url: str) -> None:
        """Raise a 422 naming ``callback_url`` unless the URL may be contacted."""
        host = urlsplit(url).hostname or ""
        if self.host_allowed_by_name(host):
            return
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            addresses = self._resolve(host)
        refused = [a for a in addresses if not self.address_allowed(a)]
        if refused:
            raise invalid(
                "callback_url",
                f"host {host} ({refused[0]}) is not in the callback allow-list",
                "invalid_callback_url",
            )

    @staticmethod
    def _resolve(host: str) -> list[str]:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise invalid(
                "callback_url", f"host {host} does not resolve", "invalid_callback_url"
            ) from None
        return sorted({str(info[4][0]) for info in infos})
