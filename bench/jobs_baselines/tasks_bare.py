"""The bare queue every system is compared with: a Redis list, RPUSH to submit, and worker
processes that BLPOP one job at a time and mark it. `python -m bench.jobs_baselines.tasks_bare`.
No acks, no retries, no serialization beyond a float: the floor of a Redis-backed queue."""

from __future__ import annotations

import os
import signal
from types import FrameType

import redis

from bench.jobs_baselines.mark import PREFIX_ENV, REDIS_ENV, mark


def queue_key(prefix: str) -> str:
    return f"{prefix}-bare:queue"


def run() -> None:
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client = redis.Redis.from_url(os.environ[REDIS_ENV])
    key = queue_key(os.environ[PREFIX_ENV])
    while not stopping:
        item = client.blpop([key], timeout=0.2)
        if item is not None:
            mark(float(item[1]))


if __name__ == "__main__":
    run()
