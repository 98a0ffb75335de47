"""The webhook allow-list: which URLs a rule's `webhook` action may call.

    >>> allowed = WebhookAllowList(["https://hooks.example.com/logline/"])
    >>> allowed.allows("https://hooks.example.com/logline/payments?x=1")
    True
    >>> allowed.allows("https://hooks.example.com.evil.net/logline/")
    False
    >>> allowed.allows("https://hooks.example.com/other")
    False

An entry is an http(s) URL: a URL is allowed when its scheme, host and port equal the entry's and
its path is the entry's path or below it (on a `/` boundary). The empty list allows nothing.
`WebhookAllowList.unsafe_allow_any()` skips the check, for checking a document offline where the
instance's list is not known; never use it to compile a set that will run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from logline.errors import InvalidInput

_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_CHARS = 2048


def check_url(url: str) -> SplitResult:
    """An absolute http(s) URL with a host, without credentials or fragment."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_CHARS:
        raise InvalidInput(f"a URL is 1-{MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidInput(f"not a valid URL: {url[:80]!r} ({exc})") from exc
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidInput(f"a webhook URL is http(s)://host/..., got {url[:80]!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("a webhook URL must not carry credentials")
    if parts.fragment or any(ch.isspace() for ch in url):
        raise InvalidInput(f"a webhook URL has no fragment and no spaces, got {url[:80]!r}")
    return parts


@dataclass(frozen=True, slots=True)
class _Entry:
    scheme: str
    host: str
    port: int
    path: str

    def allows(self, parts: SplitResult) -> bool:
        if (parts.scheme, parts.hostname, _port(parts)) != (self.scheme, self.host, self.port):
            return False
        path = parts.path or "/"
        base = self.path.rstrip("/")
        return not base or path == base or path.startswith(base + "/")


def _port(parts: SplitResult) -> int:
    return parts.port or _DEFAULT_PORTS[parts.scheme]


class WebhookAllowList:
    """URL prefixes webhooks may call (see the module docstring)."""

    __slots__ = ("_any", "_entries", "prefixes")

    def __init__(self, prefixes: Iterable[str] = ()) -> None:
        self.prefixes = tuple(prefixes)
        self._any = False
        entries = []
        for prefix in self.prefixes:
            parts = check_url(prefix)
            if parts.query:
                raise InvalidInput(f"an allow-list entry has no query, got {prefix[:80]!r}")
            host = parts.hostname or ""
            entries.append(_Entry(parts.scheme, host, _port(parts), parts.path or "/"))
        self._entries = tuple(entries)

    @classmethod
    def unsafe_allow_any(cls) -> WebhookAllowList:
        allow = cls()
        allow._any = True
        return allow

    def allows(self, url: str) -> bool:
        try:
            parts = check_url(url)
        except InvalidInput:
            return False
        return self._any or any(entry.allows(parts) for entry in self._entries)

    def __repr__(self) -> str:
        return "WebhookAllowList(<any>)" if self._any else f"WebhookAllowList({self.prefixes!r})"


NO_WEBHOOKS = WebhookAllowList()
