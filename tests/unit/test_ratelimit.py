"""The rate limiter on in-memory storage, with a clock the tests move (Redis: integration/)."""

from __future__ import annotations

import doctest
import re
from collections.abc import Iterator

import limits.storage.memory
import pytest

import logline.server.ratelimit as ratelimit_module
from logline.errors import ConfigError, RateLimited, StorageError
from logline.server.ratelimit import RateLimiter


class FakeTime:
    """Stands in for the `time` module where the limiter and its memory storage read the clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(limits.storage.memory, "time", fake)
    monkeypatch.setattr(ratelimit_module, "time", fake)
    return fake


@pytest.fixture
def limiter(clock: FakeTime) -> Iterator[RateLimiter]:
    limiter = RateLimiter(limits={"auth": "2/10 seconds", "read": "600/minute"})
    yield limiter
    limiter.close()


def test_module_example_runs() -> None:
    result = doctest.testmod(ratelimit_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_hits_within_the_limit_pass_and_the_next_is_refused(
    limiter: RateLimiter, clock: FakeTime
) -> None:
    limiter.hit("auth", "k")
    limiter.hit("auth", "k")
    clock.now += 0.5
    with pytest.raises(RateLimited, match="too many auth requests: limit 2 per 10 seconds") as info:
        limiter.hit("auth", "k")
    assert info.value.retry_after == 10


def test_retry_after_is_when_the_oldest_hit_leaves_the_window(
    limiter: RateLimiter, clock: FakeTime
) -> None:
    limiter.hit("auth", "k")
    clock.now += 5
    limiter.hit("auth", "k")
    clock.now += 3.2
    with pytest.raises(RateLimited) as info:
        limiter.hit("auth", "k")
    assert info.value.retry_after == 2  # 1.8 s, rounded up: never tell a client to retry early
    clock.now += 1.9  # 10.1 s after the first hit
    limiter.hit("auth", "k")  # the first hit has left the window; the refused one never counted
    with pytest.raises(RateLimited) as info:
        limiter.hit("auth", "k")
    assert info.value.retry_after == 5


def test_retry_after_is_at_least_one_second(limiter: RateLimiter, clock: FakeTime) -> None:
    limiter.hit("auth", "k")
    limiter.hit("auth", "k")
    clock.now += 9.999
    with pytest.raises(RateLimited) as info:
        limiter.hit("auth", "k")
    assert info.value.retry_after == 1
    clock.now += 0.001  # exactly at the window's edge the oldest hit still counts
    with pytest.raises(RateLimited) as info:
        limiter.hit("auth", "k")
    assert info.value.retry_after == 1


def test_budgets_are_per_key_and_per_route_class(limiter: RateLimiter) -> None:
    limiter.hit("auth", "a")
    limiter.hit("auth", "a")
    limiter.hit("auth", "b")
    limiter.hit("read", "a")
    assert limiter.remaining("auth", "a") == 0
    assert limiter.remaining("auth", "b") == 1
    assert limiter.remaining("read", "a") == 599


def test_clear_restores_the_budget(limiter: RateLimiter) -> None:
    limiter.hit("auth", "k")
    limiter.hit("auth", "k")
    limiter.clear("auth", "k")
    assert limiter.remaining("auth", "k") == 2
    limiter.hit("auth", "k")


def test_several_limits_per_class_all_hold(clock: FakeTime) -> None:
    limiter = RateLimiter(limits={"write": "2/second; 3/minute"})
    limiter.hit("write", "k")
    limiter.hit("write", "k")
    clock.now += 0.2
    with pytest.raises(RateLimited, match="2 per second") as info:
        limiter.hit("write", "k")
    assert info.value.retry_after == 1
    clock.now += 0.81
    limiter.hit("write", "k")
    clock.now += 1.49
    with pytest.raises(RateLimited, match="3 per minute") as info:
        limiter.hit("write", "k")
    assert info.value.retry_after == 58  # 57.5 s until the first hit leaves the minute
    assert limiter.remaining("write", "k") == 0
    limiter.close()


def test_an_unknown_route_class_is_a_key_error(limiter: RateLimiter) -> None:
    with pytest.raises(KeyError, match=r"unknown rate limit class 'stream' \(known: auth, read\)"):
        limiter.hit("stream", "k")
    assert limiter.route_classes == {"auth", "read"}


@pytest.mark.parametrize(
    "text", ["", "x", "600", "600/fortnight", "minute/600", "0/minute", "-1/minute", "1.5/second"]
)
def test_invalid_limit_strings_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="rate limit for 'read'") as info:
        RateLimiter(limits={"read": text})
    assert "\n" not in str(info.value)


def test_no_route_classes_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no route classes"):
        RateLimiter(limits={})


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "scheme must be one of"),
        ("127.0.0.1:6379", "scheme must be one of"),
        ("http://127.0.0.1:6379", "scheme must be one of"),
        ("memcached://127.0.0.1:11211", "scheme must be one of"),
        ("mongodb://127.0.0.1", "scheme must be one of"),
        ("redis://127.0.0.1:port/0", "is not valid: Port could not be cast"),
        ("redis://127.0.0.1:6379/zero", "database must be a number"),
    ],
)
def test_invalid_storage_uris_are_config_errors(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        RateLimiter(uri, limits={"read": "1/second"})
    assert "\n" not in str(info.value)


def test_storage_passwords_stay_out_of_error_messages() -> None:
    with pytest.raises(ConfigError) as info:
        RateLimiter("redis://:hunter2@127.0.0.1:port/0", limits={"read": "1/second"})
    assert "hunter2" not in str(info.value)
    assert "redis://:***@127.0.0.1:port/0" in str(info.value)


def test_memory_storage_is_always_ready(limiter: RateLimiter) -> None:
    limiter.check_storage()


def test_unreachable_redis_fails_the_check_and_the_hits() -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    limiter = RateLimiter("redis://:hunter2@127.0.0.1:1/0", limits={"read": "1/second"})
    with pytest.raises(ConfigError, match=re.escape("'redis://:***@127.0.0.1:1/0' is unreachable")):
        limiter.check_storage()
    with pytest.raises(StorageError, match=r"rate limit storage .* failed") as info:
        limiter.hit("read", "k")
    assert "hunter2" not in str(info.value)
    limiter.close()
