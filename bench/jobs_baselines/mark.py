"""How every job of every system reports that it ran: one Redis round trip, the same for all.

A task calls `mark(submitted)` first thing. One Lua script (EVALSHA, one round trip) counts the
job, keeps the earliest and latest start time seen (CLOCK_MONOTONIC, which all processes on the
machine share: `time.monotonic()`), and, for a latency job (`submitted` > 0), appends
`start - submitted` to a list. The benchmark process polls the count and reads the rest.

The worker processes learn where to mark from the environment: `LOGLINE_BENCH_JOBS_REDIS` (URL)
and `LOGLINE_BENCH_JOBS_PREFIX` (the run's key prefix).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

REDIS_ENV = "LOGLINE_BENCH_JOBS_REDIS"
PREFIX_ENV = "LOGLINE_BENCH_JOBS_PREFIX"

_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
local t = tonumber(ARGV[1])
local first = redis.call('GET', KEYS[2])
if (not first) or t < tonumber(first) then redis.call('SET', KEYS[2], ARGV[1]) end
local last = redis.call('GET', KEYS[3])
if (not last) or t > tonumber(last) then redis.call('SET', KEYS[3], ARGV[1]) end
if ARGV[2] ~= '' then redis.call('RPUSH', KEYS[4], ARGV[2]) end
return n
"""

_state: dict[str, Any] = {}


def keys(prefix: str) -> list[str]:
    """The count, first-start, last-start and latency-list keys of a run."""
    return [f"{prefix}:marks:{name}" for name in ("count", "first", "last", "latency")]


def mark(submitted: float = 0.0) -> None:
    """Record that a job started now; `submitted` is its submit time (0 for drain jobs)."""
    now = time.monotonic()
    script = _state.get("script")
    if script is None or _state.get("pid") != os.getpid():  # a fresh client after a fork
        client = redis.Redis.from_url(os.environ[REDIS_ENV])
        script = client.register_script(_SCRIPT)
        _state.update(script=script, pid=os.getpid(), keys=keys(os.environ[PREFIX_ENV]))
    latency = repr(now - submitted) if submitted > 0 else ""
    script(keys=_state["keys"], args=[repr(now), latency])


class Marks:
    """The benchmark's side: reset, count, and read what the jobs recorded."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.count_key, self.first_key, self.last_key, self.latency_key = keys(prefix)

    def reset(self) -> None:
        self.client.delete(self.count_key, self.first_key, self.last_key, self.latency_key)

    def count(self) -> int:
        value = self.client.get(self.count_key)
        return int(value) if value is not None else 0

    def first_last(self) -> tuple[float, float]:
        first, last = self.client.mget(self.first_key, self.last_key)
        if first is None or last is None:
            raise RuntimeError("no job has marked its start")
        return float(first), float(last)

    def latencies(self) -> list[float]:
        return [float(v) for v in self.client.lrange(self.latency_key, 0, -1)]

    def close(self) -> None:
        self.client.close()
