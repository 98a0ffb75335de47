"""The rate limiter on the real Redis at `LOGLINE_TEST_REDIS` (default 127.0.0.1:6379, db 0).

Skipped with a reason when no Redis answers, except under `CI=true`, where that is a failure:
CI must never go green without having run these. Each test uses a key prefix of its own and
deletes its keys afterwards, so parallel workers and other sessions on the server do not collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from logline.errors import RateLimited
from logline.server.ratelimit import RateLimiter

REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_uri() -> Iterator[str]:
    uri = os.environ.get("LOGLINE_TEST_REDIS", REDIS_DEFAULT)
    client = redis.Redis.from_url(uri, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        reason = f"Redis at {uri} is unreachable ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required when CI=true, but {reason}", pytrace=False)
        pytest.skip(f"Redis tests skipped: {reason} (set LOGLINE_TEST_REDIS to a reachable server)")
    yield uri
    client.close()


@pytest.fixture
def prefix(redis_uri: str) -> Iterator[str]:
    prefix = f"logline-test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(redis_uri)
    try:
        # limits stores keys as "LIMITS:LIMITER/<identifiers...>"; ours start with the prefix.
        for key in client.scan_iter(match=f"LIMITS:LIMITER/{prefix}/*"):
            client.delete(key)
    finally:
        client.close()


def limiter(uri: str, prefix: str, limit: str = "3/minute") -> RateLimiter:
    return RateLimiter(uri, limits={"auth": limit, "read": "100/minute"}, key_prefix=prefix)


def test_storage_check_passes(redis_uri: str, prefix: str) -> None:
    one = limiter(redis_uri, prefix)
    one.check_storage()
    one.close()


def test_workers_share_one_budget(redis_uri: str, prefix: str) -> None:
    # Two limiters on one Redis stand for two server processes.
    one, two = limiter(redis_uri, prefix), limiter(redis_uri, prefix)
    try:
        one.hit("auth", "203.0.113.7")
        two.hit("auth", "203.0.113.7")
        one.hit("auth", "203.0.113.7")
        with pytest.raises(RateLimited) as info:
            two.hit("auth", "203.0.113.7")
        assert 59 <= info.value.retry_after <= 61
        two.hit("auth", "198.51.100.1")
        two.hit("read", "203.0.113.7")
        assert one.remaining("auth", "198.51.100.1") == 2
        one.clear("auth", "203.0.113.7")
        two.hit("auth", "203.0.113.7")
    finally:
        one.close()
        two.close()


def test_prefixes_keep_budgets_apart(redis_uri: str, prefix: str) -> None:
    one = limiter(redis_uri, prefix, "1/minute")
    other = limiter(redis_uri, f"{prefix}/other", "1/minute")
    try:
        one.hit("auth", "k")
        other.hit("auth", "k")
        with pytest.raises(RateLimited):
            one.hit("auth", "k")
    finally:
        one.close()
        other.close()
