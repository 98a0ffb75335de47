"""Per-principal request budgets per route class, on the `limits` library.

    >>> limiter = RateLimiter(limits={"auth": "2/minute", "read": "600/minute"})
    >>> limiter.hit("auth", "203.0.113.7")
    >>> limiter.hit("auth", "203.0.113.7")
    >>> limiter.hit("auth", "203.0.113.7")
    Traceback (most recent call last):
    ...
    logline.errors.RateLimited: too many auth requests: limit 2 per minute
    >>> limiter.hit("auth", "198.51.100.1")  # budgets are per key

A route class may carry several limits, all of which must hold ("10/second; 600/minute": a burst
cap under a sustained rate). Storage is `memory://` (one process) or a Redis URI
(`redis://host:port/db`, `rediss://`, `redis+unix://`, `redis+sentinel://`, `redis+cluster://`),
which every worker process shares.

The strategy is the moving window: it counts the hits of the last full period exactly, so a
client can never get twice its budget across a window boundary (a fixed window allows that), and
`retry_after` is exact: the moment the oldest counted hit leaves the window. It stores one
timestamp per counted hit, which is cheap at our limits (hundreds per minute per key). A refused
hit is not counted, so a client hammering a closed door does not push its own reopening back.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.errors import StorageError as LimitsStorageError
from limits.storage import (
    MemoryStorage,
    MovingWindowSupport,
    RedisStorage,
    Storage,
    storage_from_string,
)
from limits.strategies import MovingWindowRateLimiter

from logline.errors import ConfigError, RateLimited, StorageError

# Only the schemes whose drivers we ship: the others (memcached, mongodb) would fail later, or
# noisily at garbage collection, for want of a driver.
STORAGE_SCHEMES = frozenset(
    {"memory", "redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster"}
)
# A hung Redis must cost a request seconds, not the OS default of minutes.
REDIS_TIMEOUT_S = 2.0

T = TypeVar("T")
_LimiterMethod = Callable[[RateLimitItem, str, str, str], T]


class RateLimiter:
    """Budgets keyed by (route class, principal key); `hit` spends one or raises `RateLimited`."""

    def __init__(
        self,
        storage_uri: str = "memory://",
        *,
        limits: Mapping[str, str],
        key_prefix: str = "logline",
    ) -> None:
        if not limits:
            raise ConfigError("rate limits: no route classes configured")
        self._limits: dict[str, list[RateLimitItem]] = {
            route_class: _parse_limits(route_class, text) for route_class, text in limits.items()
        }
        self._prefix = key_prefix
        self._storage_uri = _redact(storage_uri)
        self._storage = _open_storage(storage_uri)
        self._limiter = MovingWindowRateLimiter(self._storage)

    @property
    def route_classes(self) -> frozenset[str]:
        return frozenset(self._limits)

    def hit(self, route_class: str, key: str) -> None:
        """Spend one request of `key`'s budget for `route_class`, or raise `RateLimited`.

        Several limits are spent in the order configured and the first exhausted one refuses,
        so the limits before it have been charged for the refused request.
        """
        for item in self._items(route_class):
            if not self._call(self._limiter.hit, item, route_class, key):
                reset_at = self._call(self._limiter.get_window_stats, item, route_class, key)[0]
                # Whole seconds, rounded up past the reset: a hit exactly at the window's edge
                # still counts the oldest entry, and a client told to come back early is refused.
                retry_after = max(1, math.floor(reset_at - time.time()) + 1)
                raise RateLimited(
                    f"too many {route_class} requests: limit {_describe(item)}",
                    retry_after=retry_after,
                )

    def remaining(self, route_class: str, key: str) -> int:
        """How many more requests `key` may make now (the tightest of the class's limits)."""
        return min(
            self._call(self._limiter.get_window_stats, item, route_class, key)[1]
            for item in self._items(route_class)
        )

    def clear(self, route_class: str, key: str) -> None:
        """Forget `key`'s spending for `route_class` (e.g. failed logins after a success)."""
        for item in self._items(route_class):
            self._call(self._limiter.clear, item, route_class, key)

    def check_storage(self) -> None:
        """Raise `ConfigError` unless the storage answers (a readiness check)."""
        if not self._storage.check():
            raise ConfigError(f"rate limit storage {self._storage_uri!r} is unreachable")

    def close(self) -> None:
        """Release the storage's connections (Redis) or expiry timer (memory)."""
        if isinstance(self._storage, RedisStorage):
            # The storage's client protocol omits close(); the redis client has it.
            close = getattr(self._storage.get_connection(), "close", None)
            if close is not None:
                close()
        elif isinstance(self._storage, MemoryStorage):
            self._storage.timer.cancel()

    def _items(self, route_class: str) -> list[RateLimitItem]:
        try:
            return self._limits[route_class]
        except KeyError:
            known = ", ".join(sorted(self._limits))
            raise KeyError(f"unknown rate limit class {route_class!r} (known: {known})") from None

    def _call(self, method: _LimiterMethod[T], item: RateLimitItem, cls: str, key: str) -> T:
        try:
            return method(item, self._prefix, cls, key)
        except LimitsStorageError as exc:
            raise StorageError(
                f"rate limit storage {self._storage_uri!r} failed: {exc.storage_error}"
            ) from exc


def _parse_limits(route_class: str, text: str) -> list[RateLimitItem]:
    if not route_class:
        raise ConfigError("rate limits: empty route class name")
    try:
        items = parse_many(text)
    except ValueError:
        raise ConfigError(
            f"rate limit for {route_class!r} is not valid: {text!r} (expected e.g. '600/minute')"
        ) from None
    if not items or any(item.amount < 1 for item in items):
        raise ConfigError(f"rate limit for {route_class!r} must allow at least 1 request: {text!r}")
    return items


def _open_storage(uri: str) -> Storage:
    scheme = urlsplit(uri).scheme
    if scheme not in STORAGE_SCHEMES:
        allowed = ", ".join(sorted(f"{s}://" for s in STORAGE_SCHEMES))
        raise ConfigError(f"rate limit storage {_redact(uri)!r}: scheme must be one of {allowed}")
    parts = urlsplit(uri)
    if parts.scheme in {"redis", "rediss"} and not re.fullmatch(r"/?(\d+)?", parts.path):
        # redis-py would silently ignore a non-numeric database and use database 0.
        raise ConfigError(f"rate limit storage {_redact(uri)!r}: database must be a number")
    options: dict[str, float | str | bool] = {"wrap_exceptions": True}
    if scheme != "memory":
        options |= {"socket_connect_timeout": REDIS_TIMEOUT_S, "socket_timeout": REDIS_TIMEOUT_S}
    try:
        storage = storage_from_string(uri, **options)
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise ConfigError(f"rate limit storage {_redact(uri)!r} is not valid: {exc}") from None
    if not isinstance(storage, Storage) or not isinstance(storage, MovingWindowSupport):
        raise ConfigError(f"rate limit storage {_redact(uri)!r} cannot keep moving windows")
    return storage


def _redact(uri: str) -> str:
    """The URI without its password, fit for an error message."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


def _describe(item: RateLimitItem) -> str:
    period = item.GRANULARITY.name
    if item.multiples and item.multiples != 1:
        period = f"{item.multiples} {period}s"
    return f"{item.amount} per {period}"
