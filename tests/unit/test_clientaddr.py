"""Client addresses behind proxies: the walk from the right, and the ways a client may lie."""

from __future__ import annotations

import doctest
import ipaddress

import pytest

import logline.server.clientaddr as clientaddr_module
from logline.errors import ConfigError
from logline.server.clientaddr import UNKNOWN, client_address, parse_proxies

PROXIES = parse_proxies(["10.0.0.0/8", "192.0.2.1", "2001:db8:ffff::/48"])


def xff(value: str) -> dict[str, str]:
    return {"X-Forwarded-For": value}


def test_module_example_runs() -> None:
    result = doctest.testmod(clientaddr_module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        # No proxy in front: the peer is the client.
        ("203.0.113.7", None, "203.0.113.7"),
        # One trusted proxy.
        ("10.0.0.2", "203.0.113.7", "203.0.113.7"),
        # A chain of trusted proxies: skip them from the right.
        ("10.0.0.2", "203.0.113.7, 10.1.1.1, 192.0.2.1", "203.0.113.7"),
        # A trusted proxy with no header: the proxy itself is the best we know.
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        # Every hop trusted: the leftmost.
        ("10.0.0.2", "10.9.9.9, 10.1.1.1", "10.9.9.9"),
        # IPv6, with normalisation, and IPv4 seen through a dual-stack socket.
        ("2001:db8:ffff::1", "2001:DB8:0:0::7", "2001:db8::7"),
        ("::ffff:10.0.0.2", "203.0.113.7", "203.0.113.7"),
        # Ports appended by some proxies.
        ("10.0.0.2", "203.0.113.7:51234", "203.0.113.7"),
        ("10.0.0.2", "[2001:db8::7]:443, 10.1.1.1:80", "2001:db8::7"),
        ("10.0.0.2", "[2001:db8::7]", "2001:db8::7"),
        # A malformed hop stops the walk at the last good address.
        ("10.0.0.2", "203.0.113.7, garbage, 10.1.1.1", "10.1.1.1"),
        ("10.0.0.2", "203.0.113.7, unknown", "10.0.0.2"),
        ("10.0.0.2", "203.0.113.7,, 10.1.1.1", "10.1.1.1"),
        ("10.0.0.2", "203.0.113.7, 10.1.1.1/8", "10.0.0.2"),
        # A peer that is not an IP address (Starlette's TestClient says "testclient").
        ("testclient", "203.0.113.7", "testclient"),
    ],
)
def test_walks_from_the_right_past_trusted_proxies(
    peer: str, header: str | None, expected: str
) -> None:
    headers = xff(header) if header is not None else {}
    assert client_address(peer, headers, PROXIES) == expected


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        # An untrusted peer's header is ignored entirely: it could say anything.
        ("198.51.100.4", "203.0.113.7", "198.51.100.4"),
        ("198.51.100.4", "10.0.0.2", "198.51.100.4"),
        # The client prepends a fake hop; our proxy appends the real one, which wins.
        ("10.0.0.2", "1.2.3.4, 198.51.100.4", "198.51.100.4"),
        # The client claims to be one of our proxies: that hop is skipped, the real one stays.
        ("10.0.0.2", "10.0.0.3, 198.51.100.4", "198.51.100.4"),
        # The client injects a comma-separated chain inside its own header value.
        ("10.0.0.2", "203.0.113.9, 10.1.1.1, 198.51.100.4", "198.51.100.4"),
    ],
)
def test_spoofed_headers_are_not_believed(peer: str, header: str, expected: str) -> None:
    assert client_address(peer, xff(header), PROXIES) == expected


def test_several_header_lines_are_one_list_in_order() -> None:
    # The client sent its own X-Forwarded-For; our proxy added a second line instead of
    # appending. Taking only the first line would return the client's invention.
    raw = [
        (b"host", b"logline.example"),
        (b"x-forwarded-for", b"6.6.6.6"),
        (b"X-Forwarded-For", b"198.51.100.4"),
    ]
    assert client_address("10.0.0.2", raw, PROXIES) == "198.51.100.4"
    text = [(name.decode(), value.decode()) for name, value in raw]
    assert client_address("10.0.0.2", text, PROXIES) == "198.51.100.4"


def test_starlette_headers_with_repeated_lines() -> None:
    from starlette.datastructures import Headers

    headers = Headers(raw=[(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.4")])
    assert client_address("10.0.0.2", headers, PROXIES) == "198.51.100.4"


def test_header_names_match_in_any_case() -> None:
    assert client_address("10.0.0.2", {"x-FORWARDED-for": "203.0.113.7"}, PROXIES) == (
        "203.0.113.7"
    )


def test_no_peer_is_unknown() -> None:
    assert client_address(None, xff("203.0.113.7"), PROXIES) == UNKNOWN


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("10.0.0.2", xff("203.0.113.7"), []) == "10.0.0.2"


def test_proxies_may_be_given_as_strings() -> None:
    assert client_address("10.0.0.2", xff("203.0.113.7"), ["10.0.0.0/8"]) == "203.0.113.7"


def test_parse_proxies_accepts_addresses_and_networks() -> None:
    assert parse_proxies(["10.0.0.0/8", " 192.0.2.1 ", "::1"]) == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.1/32"),
        ipaddress.ip_network("::1/128"),
    ]
    assert parse_proxies([]) == []


@pytest.mark.parametrize("entry", ["", "localhost", "10.0.0.0/33", "10.0.0.1/8", "300.1.1.1"])
def test_parse_proxies_rejects_bad_entries(entry: str) -> None:
    with pytest.raises(ConfigError, match="trusted proxy") as info:
        parse_proxies(["10.0.0.0/8", entry])
    assert "\n" not in str(info.value)


def test_parse_proxies_rejects_a_bare_string() -> None:
    # A string is a sequence too: "10.0.0.1" would be read as ten one-character entries.
    with pytest.raises(ConfigError, match="list of addresses"):
        parse_proxies("10.0.0.1")
