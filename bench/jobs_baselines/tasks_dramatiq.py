"""The Dramatiq no-op actor, on a Redis broker:
`dramatiq bench.jobs_baselines.tasks_dramatiq:broker`."""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

from bench.jobs_baselines.mark import PREFIX_ENV, REDIS_ENV, mark

QUEUE = "bench"


def build(redis_url: str, prefix: str) -> tuple[Any, Any]:
    """(broker, actor): the broker's keys under the run's prefix, no retries, no results."""
    redis_broker = importlib.import_module("dramatiq.brokers.redis")
    dramatiq = importlib.import_module("dramatiq")
    broker = redis_broker.RedisBroker(url=redis_url, namespace=f"{prefix}-dramatiq")

    def noop(submitted: float) -> None:
        mark(submitted)

    actor = dramatiq.actor(noop, actor_name="noop", queue_name=QUEUE, max_retries=0, broker=broker)
    return broker, actor


broker: Any = None
# Built on import for the `dramatiq` worker CLI; only where Dramatiq is installed, since other
# systems' workers import this package too.
if PREFIX_ENV in os.environ and importlib.util.find_spec("dramatiq") is not None:
    broker, _actor = build(os.environ[REDIS_ENV], os.environ[PREFIX_ENV])
