"""Callback URLs: one strict parser, and the allow-list of hosts and networks (the SSRF guard).

``parse_callback_url`` is the only reading of a callback URL: job creation refuses what it
refuses (422 naming ``callback_url``), and the sender connects to what it returns, so the
validator and the sender can never disagree on the host. It accepts a small, unambiguous
subset of RFC 3986: ``http`` or ``https``, no userinfo, a host that is a DNS name, a
dotted-quad IPv4 address or a bracketed IPv6 address, an optional port 1 to 65535, then a
path and query of printable ASCII; no fragment, backslash, whitespace or control character.
Numeric host forms that resolvers read differently (``2130706433``, ``0177.0.0.1``,
``0x7f.1``) and trailing dots are refused rather than interpreted.

``CallbackPolicy.addresses`` is what the sender connects to: the host resolved once, every
address checked; default allow-list: loopback only, for the local simulation.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import socket

from client_lib.wire import APIProblem, invalid

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FIELD, CODE = "callback_url", "invalid_callback_url"
REFUSED = "refused by the allow-list"  # all a delivery record says of a refused address
DEFAULT_PORTS = {"http": 80, "https": 443}

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?]*)(?P<rest>.*)")
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")  # what resolvers would read as a number
_OCTET = re.compile(r"0|[1-9][0-9]{0,2}")
_TARGET = re.compile(r"(/[!-~]*)?(\?[!-~]*)?")  # printable ASCII, no space
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclasses.dataclass(frozen=True, slots=True)
class CallbackTarget:
    """A parsed callback URL: where to connect, and what to send there."""

    scheme: str  # http or https
    host: str  # lower case; an IPv6 address without brackets
    port: int  # explicit or the scheme's default
    host_header: str  # the Host header (and, for https, the name the certificate must match)
    target: str  # the request target: path and query, at least "/"
    ip: IPAddress | None  # the host, when it is an address literal


def _refuse(reason: str) -> APIProblem:
    return invalid(FIELD, reason, CODE)


def parse_callback_url(url: str) -> CallbackTarget:
    """Parse a callback URL strictly; a 422 naming ``callback_url`` for anything else."""
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise _refuse("must be printable ASCII, without whitespace or control characters")
    if "\\" in url:
        raise _refuse("must not contain a backslash")
    if "#" in url:
        raise _refuse("must not contain a fragment")
    m = _URL.fullmatch(url)
    if m is None:
        raise _refuse("must be an absolute http or https URL")
    scheme = m["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise _refuse("scheme must be http or https")
    authority, rest = m["authority"], m["rest"]
    if "@" in authority:
        raise _refuse("must not contain userinfo (user@ or user:password@)")
    if not _TARGET.fullmatch(rest) or _PERCENT.search(rest):
        raise _refuse("path and query must be printable ASCII with valid percent-encoding")
    host, port_text = _split_authority(authority)
    ip = _host_ip(host)
    port = DEFAULT_PORTS[scheme]
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            raise _refuse("port must be 1 to 65535")
        port = int(port_text)
    shown = f"[{host}]" if isinstance(ip, ipaddress.IPv6Address) else host
    header = shown if port_text is None else f"{shown}:{port}"
    return CallbackTarget(scheme, host, port, header, rest if rest[:1] == "/" else "/" + rest, ip)


@functools.lru_cache(maxsize=4096)
def parsed_callback_url(url: str) -> CallbackTarget:
    """``parse_callback_url``, remembered per URL: the senders read the same few URLs again
    and again (a ``CallbackTarget`` is immutable; a refusal is not remembered)."""
    return parse_callback_url(url)


def _split_authority(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _refuse("IPv6 address must end with ]")
        host, after = authority[1:end], authority[end + 1 :]
        if after and not after.startswith(":"):
            raise _refuse("only a port may follow the host")
        if not host or not all(c in "0123456789abcdefABCDEF:." for c in host):
            raise _refuse("IPv6 address is malformed (zone identifiers are not accepted)")
        return host.lower(), after[1:] if after else None
    host, colon, port = authority.partition(":")
    if not host:
        raise _refuse("must name a host")
    return host.lower(), port if colon else None


def _host_ip(host: str) -> IPAddress | None:
    """The host as an address when it is a literal; checks a name's shape otherwise."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse("IPv6 address is malformed") from None
    if len(host) > 253 or host.endswith("."):
        raise _refuse("host must be a DNS name without a trailing dot, or an IP address")
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        if len(labels) != 4 or not all(_OCTET.fullmatch(p) and int(p) < 256 for p in labels):
            raise _refuse("an IPv4 address must be four decimal numbers 0 to 255")
        return ipaddress.IPv4Address(host)
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise _refuse("host must be letters, digits, hyphens and dots (IDNA names as xn--)")
    return None


class Refused(Exception):
    """The callback URL may not be contacted: its host or an address of it is not allowed."""

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSED)
        self.reason = reason  # for the creation answer only: never logged or recorded


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

    def address_allowed(self, address: str | IPAddress) -> bool:
        """True when an IP address lies in an allowed network (never 0.0.0.0, ::, multicast)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_unspecified or ip.is_multicast:
            return False
        return any(ip in net for net in self.networks)

    def host_allowed_by_name(self, host: str) -> bool:
        """True when the operator allowed this host name explicitly (its addresses are trusted)."""
        return host.lower().rstrip(".") in self.hostnames

    def addresses(self, target: CallbackTarget) -> list[str]:
        """The addresses to connect to, in the resolver's order: every one allowed, else
        ``Refused``. A name is resolved here, once; the sender never resolves it again."""
        if target.ip is not None:
            if not self.address_allowed(target.ip):
                raise Refused(f"host {target.host} is not in the callback allow-list")
            return [str(target.ip)]
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise Refused(f"host {target.host} does not resolve") from None
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        by_name = self.host_allowed_by_name(target.host)
        if not found or not (by_name or all(self.address_allowed(a) for a in found)):
            raise Refused(f"host {target.host} (or an address of it) is not in the allow-list")
        return found

    def check(self, url: str) -> None:
        """Parse and check a callback URL at creation; a 422 naming ``callback_url`` unless
        it may be contacted."""
        target = parse_callback_url(url)
        if self.host_allowed_by_name(target.host):
            return  # never resolved here: the operator vouched for the name
        try:
            self.addresses(target)
        except Refused as exc:
            raise _refuse(exc.reason) from None
