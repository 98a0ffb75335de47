"""The client's address, believing X-Forwarded-For only as far as our own proxies vouch for it.

    >>> proxies = parse_proxies(["10.0.0.0/8"])
    >>> client_address("10.0.0.2", {"X-Forwarded-For": "203.0.113.7, 10.0.0.9"}, proxies)
    '203.0.113.7'
    >>> client_address("198.51.100.4", {"X-Forwarded-For": "203.0.113.7"}, proxies)
    '198.51.100.4'

Each proxy appends the address it received the request from, so the header reads left to right
from the client towards us, and only the entries our own proxies appended are true: anything left
of them came from the client and may be invented. So the walk goes from the right, past our
trusted proxies, and stops at the first address a trusted proxy reported; when the peer itself
is not one of ours the header is ignored entirely. Several X-Forwarded-For header lines count as
one list in order (RFC 9110 §5.3); taking only the first would hand the client the pen.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

from logline.errors import ConfigError

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]

UNKNOWN = "unknown"  # the address when the server has no peer (a Unix socket, a test client)

FORWARDED_FOR = "x-forwarded-for"
# "1.2.3.4:567" and "[2001:db8::1]:567": some proxies (Azure, some CDNs) append the port.
_WITH_PORT = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::\d{1,5})?|(?P<v4>[0-9.]+):\d{1,5}")


def parse_proxies(entries: Sequence[str]) -> list[Network]:
    """The trusted proxy networks from IP addresses and CIDR blocks; `ConfigError` on a bad one."""
    if isinstance(entries, str):
        raise ConfigError("trusted proxies must be a list of addresses, not one string")
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=True))
        except ValueError as exc:
            raise ConfigError(f"trusted proxy {entry!r} is not an IP or CIDR: {exc}") from None
    return networks


def client_address(
    peer: str | None,
    headers: Headers,
    trusted_proxies: Sequence[str] | Sequence[Network],
) -> str:
    """The address to attribute the request to (normalised, e.g. IPv6 in compressed form).

    `peer` is the host of the TCP peer (ASGI `scope["client"][0]`); `headers` a mapping or the
    raw ASGI header pairs. Parse configuration once with `parse_proxies` and pass the networks.
    """
    if peer is None:
        return UNKNOWN
    networks = _networks(trusted_proxies)
    peer_ip = _parse(peer)
    if peer_ip is None or not _trusted(peer_ip, networks):
        return str(peer_ip) if peer_ip is not None else peer
    last_good = peer_ip
    for entry in reversed(_forwarded_for(headers)):
        hop = _parse(entry)
        if hop is None:
            break  # a garbled hop: nothing left of it can be attributed
        last_good = hop
        if not _trusted(hop, networks):
            break
    return str(last_good)


def _networks(trusted: Sequence[str] | Sequence[Network]) -> list[Network]:
    return [entry if not isinstance(entry, str) else parse_proxies([entry])[0] for entry in trusted]


def _trusted(ip: Address, networks: Iterable[Network]) -> bool:
    return any(ip in network for network in networks)


def _parse(text: str) -> Address | None:
    text = text.strip()
    if match := _WITH_PORT.fullmatch(text):
        text = match["v6"] or match["v4"]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; match them as IPv4.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _forwarded_for(headers: Headers) -> list[str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    values: list[str] = []
    for name, value in pairs:
        name_text = name.decode("latin-1") if isinstance(name, bytes) else name
        if name_text.lower() == FORWARDED_FOR:
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            values.extend(text.split(","))
    return values
